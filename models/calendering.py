"""Calendering: compaction of the dried coating between two rolls.

Porosity after calendering follows the semi-empirical law of Meyer et al. (2017): it decays exponentially from
the dry porosity towards a minimal porosity with the line load, at a rate set by the compaction resistance
(eq. 15). Thickness and density follow from the mass balance as after drying, and the solid volume fractions
from the geometric volume contribution of each solid (eq. 16).

The compaction resistance depends on the electrode, notably on its areal mass loading (Meyer et al. 2018,
2019, paper refs. 25, 26). :func:`compaction_resistance` models that dependence as linear in m_dry; the paper's
use case gives gamma_c = 129 N/mm with a relative spread of 2.4 % at m_dry = 14.3 mg/cm2 +- 2.8 % (Table A1),
which fixes the elasticity d ln(gamma_c) / d ln(m_dry) = 0.857, hence the default intercept 18.5 N/mm and slope
7.73 N/mm per mg/cm2 in the shipped scenario. A measured or fixed ``gamma_c`` given as an input overrides it.

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, section 3.2, eq. (15), (16), Table A1.
C. Meyer, H. Bockholt, W. Haselrieder, A. Kwade, J. Mater. Process. Technol. 249 (2017) 172-178.
C. Meyer, M. Kosfeld, W. Haselrieder, A. Kwade, J. Energy Storage 18 (2018) 371-379.
"""

from __future__ import annotations

import numpy as np

from .chain import step
from .drying import density_from_loading, thickness_from_loading
from .mixing import specific_solids_volume

__all__ = [
    "compaction_resistance",
    "calendered_porosity",
    "calendered_thickness",
    "calendered_density",
    "solid_volume_fractions",
    "line_load_for_porosity",
]


@step("calendering", outputs="gamma_c")
def compaction_resistance(m_dry, gamma_c_intercept, gamma_c_per_loading):
    """Compaction resistance as a linear function of the dry mass loading.

    Parameters
    ----------
    m_dry : array_like -- dry mass loading [mg/cm2]
    gamma_c_intercept : array_like -- compaction resistance extrapolated to zero loading [N/mm]
    gamma_c_per_loading : array_like -- slope [N/mm per mg/cm2]

    Returns
    -------
    gamma_c : array_like -- compaction resistance [N/mm]. Paper use case: 129 N/mm.
    """
    return gamma_c_intercept + gamma_c_per_loading * m_dry


@step("calendering", outputs="eps_cal")
def calendered_porosity(eps_dry, line_load, eps_min, gamma_c):
    """Porosity after calendering, eq. (15) (Meyer et al. 2017).

    Parameters
    ----------
    eps_dry : array_like -- porosity before calendering [-]
    line_load : array_like -- calender line load q_L [N/mm]
    eps_min : array_like -- minimal porosity reachable by calendering [-]
    gamma_c : array_like -- compaction resistance [N/mm]

    Returns
    -------
    eps_cal : array_like -- porosity after calendering [-]. Paper use case: 0.315.

    Notes
    -----
    eps_cal = eps_min + (eps_dry - eps_min) exp(-q_L / gamma_c). Monotonically non-increasing in line load
    whenever eps_dry >= eps_min.
    """
    return eps_min + (eps_dry - eps_min) * np.exp(-line_load / gamma_c)


def line_load_for_porosity(eps_cal, eps_dry, eps_min, gamma_c):
    """Inverse of eq. (15): the line load [N/mm] that calenders from eps_dry to eps_cal.

    Requires eps_min < eps_cal <= eps_dry; returns NaN otherwise.
    """
    ratio = (np.asarray(eps_cal, float) - eps_min) / (np.asarray(eps_dry, float) - eps_min)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = -gamma_c * np.log(ratio)
    return np.where((ratio > 0) & (ratio <= 1), q, np.nan)


@step("calendering", outputs="h_cal")
def calendered_thickness(m_dry, rho_solids, eps_cal):
    """Coating thickness after calendering (eq. 13 with eps_cal).

    Parameters
    ----------
    m_dry : array_like -- dry mass loading [mg/cm2]
    rho_solids : array_like -- density of the dry mix [g/cm3]
    eps_cal : array_like -- porosity after calendering [-]

    Returns
    -------
    h_cal : array_like -- calendered thickness [um]. Paper use case: 48.5 um.
    """
    return thickness_from_loading(m_dry, rho_solids, eps_cal)


@step("calendering", outputs="rho_cal")
def calendered_density(m_dry, h_cal):
    """Coating density after calendering (eq. 14 with h_cal).

    Parameters
    ----------
    m_dry : array_like -- dry mass loading [mg/cm2]
    h_cal : array_like -- calendered thickness [um]

    Returns
    -------
    rho_cal : array_like -- calendered coating density [g/cm3]. Paper use case: 2.95 g/cm3.
    """
    return density_from_loading(m_dry, h_cal)


@step("calendering", outputs=("phi_am", "phi_ca", "phi_pb"))
def solid_volume_fractions(eps_cal, w_am, w_ca, w_pb, rho_am, rho_ca, rho_pb):
    """Volume fractions of the solids in the calendered coating, eq. (16).

    Parameters
    ----------
    eps_cal : array_like -- porosity after calendering [-]
    w_am, w_ca, w_pb : array_like -- mass fractions in the solids [-]
    rho_am, rho_ca, rho_pb : array_like -- particle densities [g/cm3]

    Returns
    -------
    phi_am, phi_ca, phi_pb : array_like -- volume fractions of AM, CA, PB in the coating [-]; they sum to
    1 - eps_cal. Paper use case: 0.58, 0.05, 0.05.
    """
    solid = (1.0 - eps_cal) / specific_solids_volume(w_am, w_ca, w_pb, rho_am, rho_ca, rho_pb)
    return solid * (w_am / rho_am), solid * (w_ca / rho_ca), solid * (w_pb / rho_pb)
