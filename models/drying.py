"""Drying: dry mass loading, structure formation (porosity), dry thickness and density.

The solvent leaves and the solids stay (eq. 12). How densely the particles settle while the film shrinks
comes from a numerical (DEM) model in the paper, represented in the chain by a meta-model of ``eps_dry`` over
``m_wet`` fitted with :mod:`models.metamodel`; it enters the chain as a step built from the fitted model, not
as a function here. Thickness and density of the dry coating then follow from the mass balance (eq. 13, 14).

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, section 3.2, eq. (12)-(14), Figure 7.
"""

from __future__ import annotations

from .chain import step

__all__ = ["dry_mass_loading", "thickness_from_loading", "density_from_loading", "dry_thickness", "dry_density"]


@step("drying", outputs="m_dry")
def dry_mass_loading(m_wet, x_solids):
    """Dry mass loading, eq. (12).

    Parameters
    ----------
    m_wet : array_like -- wet mass loading [mg/cm2]
    x_solids : array_like -- solid content of the slurry [-]

    Returns
    -------
    m_dry : array_like -- dry mass loading [mg/cm2]. Paper use case: 14.3 mg/cm2.
    """
    return m_wet * x_solids


def thickness_from_loading(mass_loading, rho_solids, porosity):
    """Thickness of a porous coating from its areal mass, eq. (13) and its calendering analogue.

    Parameters
    ----------
    mass_loading : array_like -- areal mass of solids [mg/cm2]
    rho_solids : array_like -- density of the solids [g/cm3]
    porosity : array_like -- pore volume fraction [-]

    Returns
    -------
    array_like -- thickness [um]; mg/cm2 / (g/cm3) = 10 um.
    """
    return 10.0 * mass_loading / (rho_solids * (1.0 - porosity))


def density_from_loading(mass_loading, thickness):
    """Coating density from areal mass and thickness, eq. (14).

    Parameters
    ----------
    mass_loading : array_like -- areal mass [mg/cm2]
    thickness : array_like -- thickness [um]

    Returns
    -------
    array_like -- coating density [g/cm3]; mg/cm2 / um = 10 g/cm3.
    """
    return 10.0 * mass_loading / thickness


@step("drying", outputs="h_dry")
def dry_thickness(m_dry, rho_solids, eps_dry):
    """Coating thickness after drying, eq. (13).

    Parameters
    ----------
    m_dry : array_like -- dry mass loading [mg/cm2]
    rho_solids : array_like -- density of the dry mix [g/cm3]
    eps_dry : array_like -- porosity after drying [-]

    Returns
    -------
    h_dry : array_like -- dry coating thickness [um]. Paper use case: 59.2 um.
    """
    return thickness_from_loading(m_dry, rho_solids, eps_dry)


@step("drying", outputs="rho_dry")
def dry_density(m_dry, h_dry):
    """Coating density after drying, eq. (14).

    Parameters
    ----------
    m_dry : array_like -- dry mass loading [mg/cm2]
    h_dry : array_like -- dry coating thickness [um]

    Returns
    -------
    rho_dry : array_like -- dry coating density [g/cm3]. Paper use case: 2.42 g/cm3.
    """
    return density_from_loading(m_dry, h_dry)
