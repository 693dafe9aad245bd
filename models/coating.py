"""Slot-die coating: wet film thickness and wet mass loading.

A slot die meters the pump's volume flow onto the moving substrate, so the wet film thickness is the flow
divided by the coated area per unit time (Schmitt 2015, paper eq. 10) and the wet mass loading follows from
the slurry density (eq. 11).

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, eq. (10), (11); M. Schmitt, Slot die coating of lithium-ion
battery electrodes, KIT Scientific Publishing 2015.
"""

from __future__ import annotations

from .chain import step

__all__ = ["wet_thickness", "wet_mass_loading"]

# flow [cm3/h] / (speed [m/min] * width [mm]) -> thickness [um]:
# cm3/h / (100 cm/min * 60 min/h * 0.1 cm) = 1/600 cm = 10000/600 um
_UM_PER_FLOW_UNIT = 1.0e4 / 600.0


@step("coating", outputs="h_wet")
def wet_thickness(flow_rate, web_speed, coating_width):
    """Wet film thickness of a slot-die coating, eq. (10).

    Parameters
    ----------
    flow_rate : array_like -- slurry volume flow [cm3/h]
    web_speed : array_like -- substrate velocity [m/min]
    coating_width : array_like -- coating width [mm]

    Returns
    -------
    h_wet : array_like -- wet film thickness [um]

    Notes
    -----
    h_wet = V / (v w). Paper use case: 696 cm3/h, 1.0 m/min, 125 mm -> 92.8 um.
    """
    return _UM_PER_FLOW_UNIT * flow_rate / (web_speed * coating_width)


@step("coating", outputs="m_wet")
def wet_mass_loading(rho_slurry, h_wet):
    """Wet mass loading, eq. (11).

    Parameters
    ----------
    rho_slurry : array_like -- slurry density [g/cm3]
    h_wet : array_like -- wet film thickness [um]

    Returns
    -------
    m_wet : array_like -- wet mass loading [mg/cm2]

    Notes
    -----
    m_wet = rho_slurry h_wet; g/cm3 * um = 1e-4 g/cm2 = 0.1 mg/cm2. Paper use case: 20.5 mg/cm2.
    """
    return 0.1 * rho_slurry * h_wet
