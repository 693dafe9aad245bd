"""Dry mixing and dispersion: densities of the dry mix and of the slurry.

The dry mix is an ideal mixture of active material (AM), conductive additive (CA) and polymer binder (PB); the
slurry adds the solvent. Both densities follow from volume additivity (paper eq. 8 and 9). Mass fractions are
used as given: they are *not* renormalised here, so a sample whose fractions do not sum to one (independent
sampling, as in the paper) is evaluated as it stands. Renormalisation, when wanted, is the sampler's job.

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, section 3.2, eq. (8), (9).
"""

from __future__ import annotations

from .chain import step

__all__ = ["specific_solids_volume", "solids_density", "slurry_density"]


def specific_solids_volume(w_am, w_ca, w_pb, rho_am, rho_ca, rho_pb):
    """Specific volume of the dry mix, sum of w_i / rho_i.

    Parameters
    ----------
    w_am, w_ca, w_pb : array_like -- mass fractions of AM, CA, PB in the solids [-]
    rho_am, rho_ca, rho_pb : array_like -- particle densities [g/cm3]

    Returns
    -------
    array_like -- specific volume of the solids [cm3/g]
    """
    return w_am / rho_am + w_ca / rho_ca + w_pb / rho_pb


@step("mixing", outputs="rho_solids")
def solids_density(w_am, w_ca, w_pb, rho_am, rho_ca, rho_pb):
    """Density of the dry mix, eq. (8).

    Parameters
    ----------
    w_am, w_ca, w_pb : array_like -- mass fractions in the solids [-]
    rho_am, rho_ca, rho_pb : array_like -- particle densities [g/cm3]

    Returns
    -------
    rho_solids : array_like -- density of the dry mix [g/cm3]

    Notes
    -----
    rho_solids = (w_AM/rho_AM + w_CA/rho_CA + w_PB/rho_PB)^-1. Paper use case: 4.31 g/cm3.
    """
    return 1.0 / specific_solids_volume(w_am, w_ca, w_pb, rho_am, rho_ca, rho_pb)


@step("mixing", outputs="rho_slurry")
def slurry_density(x_solids, rho_solids, rho_solvent):
    """Density of the slurry, eq. (9).

    Parameters
    ----------
    x_solids : array_like -- solid content of the slurry (mass fraction) [-]
    rho_solids : array_like -- density of the dry mix, eq. (8) [g/cm3]
    rho_solvent : array_like -- solvent density [g/cm3]

    Returns
    -------
    rho_slurry : array_like -- slurry density [g/cm3]

    Notes
    -----
    rho_slurry = (x_solids / rho_solids + (1 - x_solids) / rho_solvent)^-1, which is eq. (9) with the bracketed
    sum of eq. (8) written as 1/rho_solids. Paper use case: 2.20 g/cm3.
    """
    return 1.0 / (x_solids / rho_solids + (1.0 - x_solids) / rho_solvent)
