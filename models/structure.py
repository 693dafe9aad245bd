"""Structure surrogate: effective transport parameters of the calendered coating for the P2D cell model.

The process chain ends with the calendered structure (porosity, volume fractions of active material (AM),
conductive additive (CA) and polymer binder (PB), thickness). A P2D (Doyle-Fuller-Newman) model needs
effective, volume-averaged parameters instead: the effective electronic conductivity of the solid phase
``kappa_s_eff``, the electrochemically active surface area ``a_s`` and the effective tortuosity of the pores
``tau_eff`` (which sets the effective electrolyte transport, ``kappa_e_eff = kappa_e eps / tau_eff`` and
``D_e_eff = D_e eps / tau_eff``). This module computes them from the structure, with two models chosen by name:

``"bruggeman"`` (baseline)
    The classical P2D closure. Tortuosity from porosity alone, ``tau = eps^(1 - 1.5)`` (Bruggeman 1935, spheres);
    each solid network (AM, carbon-binder matrix) conducts with its own Bruggeman factor,
    ``kappa_s_eff = kappa_AM phi_AM^1.5 + kappa_CBM phi_CBM^1.5``.

``"composition"``
    Depends on the solid volume fractions, not only on the porosity (the paper's point, section 3.3):

    * Tortuosity by Bruggeman's *differential* effective-medium scheme for a mixture of obstacle shapes. Adding
      insulating inclusions of shape j to a conducting pore phase lowers its conductivity as
      d ln(sigma) = m_j d ln(eps), where m_j is the inclusion's "cementation exponent": 3/2 for spheres
      (Bruggeman 1935; Sen, Scala & Cohen 1981) and larger for flat, oblate inclusions (Mendelson & Cohen
      1982). When the solids are added in fixed proportions, the increments add linearly, so
      sigma/sigma_0 = eps^m with m = (phi_AM m_AM + phi_CBM m_CBM) / (1 - eps), and tau_eff = eps^(1 - m).
      The carbon-binder matrix (CBM = CA + PB) forms films and bridges between the AM particles, which is
      why it blocks the pores far more than its volume suggests (Zielke et al. 2015; Usseglio-Viretta et al.
      2018): at the same porosity, more binder and carbon means a more tortuous electrode.
    * Electronic conductivity by percolation of the carbon-binder matrix (Kirkpatrick 1973; Stauffer &
      Aharony 1994): ``kappa_CBM ((phi_CBM - phi_c) / (1 - phi_c))^t`` above the percolation threshold
      ``phi_c`` (zero below it), in parallel with the AM network ``kappa_AM phi_AM^1.5``.

Both models use the geometric surface of spherical particles for the active area, ``a_s = 3 phi_AM / R_p``:
the carbon-binder matrix is nanoporous and wetted by the electrolyte, so it is not counted as blocking the
surface. At 1 mA/cm2 the cell's capacity is insensitive to ``kappa_s_eff`` (the ohmic drop in the solid stays
below a millivolt for any value above ~1 S/m); ``tau_eff`` and ``a_s`` matter more.

The paper uses the structure surrogate of Laue, Röder & Krewer (2019), trained on stochastic 3D
microstructures; its closed form is not published. The ``"composition"`` model stands in for it, with its one
free shape parameter ``m_CBM`` anchored so that the paper's Table A2 tortuosity (5.9449 at its structure) is
reproduced (see :func:`cbm_exponent_for_tortuosity`); that anchoring uses the paper's *structure* output, not
its cell performance.

Units: volume fractions and porosity [-], particle radius [um] (canonical), conductivities [S/m], a_s [1/m].

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, sections 2.3 and 3.3, eq. (16), Table A2.
D. A. G. Bruggeman, Ann. Phys. 416 (1935) 636-664.
P. N. Sen, C. Scala, M. H. Cohen, Geophysics 46 (1981) 781-795 (self-similar / differential effective medium,
m = 3/2 for spheres).
K. S. Mendelson, M. H. Cohen, Geophysics 47 (1982) 257-263 (cementation exponent of ellipsoidal grains).
S. Kirkpatrick, Rev. Mod. Phys. 45 (1973) 574-588; D. Stauffer, A. Aharony, Introduction to Percolation
Theory, 2nd ed., Taylor & Francis 1994 (conductivity exponent t ~ 2 in 3D).
L. Zielke et al., Adv. Energy Mater. 5 (2015) 1401612; F. L. E. Usseglio-Viretta et al., J. Electrochem. Soc.
165 (2018) A3403 (the carbon-binder domain raises the tortuosity of cathodes well above Bruggeman).
V. Laue, F. Röder, U. Krewer, Electrochim. Acta 314 (2019) 20-31 (the paper's structure surrogate).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "STRUCTURE_MODELS",
    "coating_structure",
    "active_surface_area",
    "tortuosity_bruggeman",
    "tortuosity_composition",
    "conductivity_bruggeman",
    "conductivity_percolation",
    "effective_parameters",
    "cbm_exponent_for_tortuosity",
]

#: Names of the structure models :func:`effective_parameters` knows.
STRUCTURE_MODELS = ("bruggeman", "composition")


def coating_structure(w_am, w_ca, w_pb, m_dry, rho_cal, rho_am, rho_ca, rho_pb):
    """Calendered structure from the cell-model inputs (paper eq. 13, 14 and 16, rearranged).

    The volume fraction of each solid is its mass per coating volume over its density,
    phi_i = rho_cal w_i / rho_i, which is eq. (16) with rho_cal = rho_solids (1 - eps_cal); the porosity is
    what the solids leave, and the thickness follows from the mass balance.

    Parameters
    ----------
    w_am, w_ca, w_pb : array_like -- mass fractions of AM, CA, PB in the solids [-] (used as given; they need
        not sum to one, as in the paper's independent sampling)
    m_dry : array_like -- dry mass loading [mg/cm2]
    rho_cal : array_like -- calendered coating density [g/cm3]
    rho_am, rho_ca, rho_pb : array_like -- particle densities [g/cm3]

    Returns
    -------
    dict with
        h_cal : calendered thickness [um] (mg/cm2 / (g/cm3) = 10 um)
        eps_cal : porosity [-]
        phi_am, phi_ca, phi_pb : solid volume fractions [-]

    Notes
    -----
    Paper use case (0.94/0.03/0.03, 14.3 mg/cm2, 2.95 g/cm3): h_cal 48.5 um, eps_cal 0.315, phi_am 0.584.
    """
    phi_am = rho_cal * w_am / rho_am
    phi_ca = rho_cal * w_ca / rho_ca
    phi_pb = rho_cal * w_pb / rho_pb
    return {
        "h_cal": 10.0 * m_dry / rho_cal,
        "eps_cal": 1.0 - (phi_am + phi_ca + phi_pb),
        "phi_am": phi_am,
        "phi_ca": phi_ca,
        "phi_pb": phi_pb,
    }


def active_surface_area(phi_am, particle_radius):
    """Active surface area per electrode volume of spherical particles.

    Parameters
    ----------
    phi_am : array_like -- active material volume fraction [-]
    particle_radius : array_like -- particle radius [um]

    Returns
    -------
    a_s : array_like -- surface area per electrode volume [1/m]; paper use case 3 * 0.584 / 5.5 um = 3.19e5 1/m.
    """
    return 3.0 * phi_am / (np.asarray(particle_radius, float) * 1e-6)


def tortuosity_bruggeman(eps_cal, exponent=1.5):
    """Bruggeman tortuosity, depending on porosity only.

    Parameters
    ----------
    eps_cal : array_like -- porosity [-]
    exponent : float -- Bruggeman exponent b of the transport efficiency eps^b [-]; 1.5 for spheres

    Returns
    -------
    tau_eff : array_like -- tortuosity factor [-], tau = eps / eps^b = eps^(1 - b); 1.78 at eps 0.315.
    """
    return np.asarray(eps_cal, float) ** (1.0 - exponent)


def tortuosity_composition(eps_cal, phi_am, phi_ca, phi_pb, exponent_am=1.5, exponent_cbm=8.56):
    """Tortuosity of a pore phase obstructed by AM spheres and the carbon-binder matrix (differential EMT).

    Parameters
    ----------
    eps_cal : array_like -- porosity [-]
    phi_am, phi_ca, phi_pb : array_like -- solid volume fractions [-]
    exponent_am : float -- cementation exponent of the AM particles [-]; 3/2 for spheres
    exponent_cbm : float -- cementation exponent of the carbon-binder matrix [-]; larger than 3/2 because the
        matrix forms films and bridges (oblate obstacles)

    Returns
    -------
    tau_eff : array_like -- tortuosity factor [-], eps^(1 - m) with m the solid-volume-weighted exponent.

    Notes
    -----
    With no carbon-binder matrix (phi_ca = phi_pb = 0) and exponent_am = 1.5 this is the Bruggeman tortuosity.
    At fixed porosity, tau grows with the share of carbon and binder in the solids.
    """
    phi_cbm = phi_ca + phi_pb
    m = (phi_am * exponent_am + phi_cbm * exponent_cbm) / (phi_am + phi_cbm)
    return np.asarray(eps_cal, float) ** (1.0 - m)


def conductivity_bruggeman(phi_am, phi_ca, phi_pb, kappa_am, kappa_cbm, exponent=1.5):
    """Effective electronic conductivity of two parallel Bruggeman networks (AM and carbon-binder matrix).

    Parameters
    ----------
    phi_am, phi_ca, phi_pb : array_like -- solid volume fractions [-]
    kappa_am : float -- intrinsic conductivity of the active material [S/m]
    kappa_cbm : float -- conductivity of the carbon-binder matrix [S/m]
    exponent : float -- Bruggeman exponent [-]

    Returns
    -------
    kappa_s_eff : array_like -- [S/m]
    """
    return kappa_am * phi_am**exponent + kappa_cbm * (phi_ca + phi_pb) ** exponent


def conductivity_percolation(phi_am, phi_ca, phi_pb, kappa_am, kappa_cbm, threshold=0.02, exponent=2.0,
                             exponent_am=1.5):
    """Effective electronic conductivity with a percolating carbon-binder matrix.

    Parameters
    ----------
    phi_am, phi_ca, phi_pb : array_like -- solid volume fractions [-]
    kappa_am : float -- intrinsic conductivity of the active material [S/m]
    kappa_cbm : float -- conductivity of the carbon-binder matrix [S/m]
    threshold : float -- percolation threshold phi_c of the matrix volume fraction [-]
    exponent : float -- conductivity exponent t [-]; ~2 in three dimensions
    exponent_am : float -- Bruggeman exponent of the AM network [-]

    Returns
    -------
    kappa_s_eff : array_like -- [S/m]; kappa_AM phi_AM^1.5 + kappa_CBM ((phi_CBM - phi_c)/(1 - phi_c))^t, the
    second term zero below the threshold.
    """
    x = np.clip((phi_ca + phi_pb - threshold) / (1.0 - threshold), 0.0, None)
    return kappa_am * phi_am**exponent_am + kappa_cbm * x**exponent


def effective_parameters(eps_cal, phi_am, phi_ca, phi_pb, particle_radius, kappa_am, kappa_cbm,
                         model="composition", exponent_am=1.5, exponent_cbm=8.56, percolation_threshold=0.02,
                         percolation_exponent=2.0):
    """Effective parameters of the P2D model from the calendered structure.

    Parameters
    ----------
    eps_cal : array_like -- porosity [-]
    phi_am, phi_ca, phi_pb : array_like -- solid volume fractions [-]
    particle_radius : array_like -- AM particle radius [um]
    kappa_am : float -- intrinsic electronic conductivity of the active material [S/m] (Table A2: 0.0309)
    kappa_cbm : float -- electronic conductivity of the carbon-binder matrix [S/m] (Table A2: 760)
    model : str -- one of :data:`STRUCTURE_MODELS`
    exponent_am, exponent_cbm : float -- cementation exponents of AM and carbon-binder matrix [-]
        (``"composition"``; ``"bruggeman"`` uses exponent_am for everything)
    percolation_threshold, percolation_exponent : float -- phi_c [-] and t [-] of the matrix (``"composition"``)

    Returns
    -------
    dict with
        kappa_s_eff : effective electronic conductivity of the solid phase [S/m]
        a_s : active surface area per electrode volume [1/m]
        tau_eff : tortuosity factor of the pore phase [-]
        transport_efficiency : eps / tau_eff [-], the factor on the electrolyte's conductivity and
            diffusivity (kappa_e_eff = kappa_e eps / tau_eff, D_e_eff = D_e eps / tau_eff)
    """
    if model not in STRUCTURE_MODELS:
        raise ValueError(f"unknown structure model {model!r}; known: {', '.join(STRUCTURE_MODELS)}")
    eps_cal = np.asarray(eps_cal, float)
    if model == "bruggeman":
        tau = tortuosity_bruggeman(eps_cal, exponent_am)
        kappa = conductivity_bruggeman(phi_am, phi_ca, phi_pb, kappa_am, kappa_cbm, exponent_am)
    else:
        tau = tortuosity_composition(eps_cal, phi_am, phi_ca, phi_pb, exponent_am, exponent_cbm)
        kappa = conductivity_percolation(phi_am, phi_ca, phi_pb, kappa_am, kappa_cbm, percolation_threshold,
                                         percolation_exponent, exponent_am)
    return {
        "kappa_s_eff": kappa,
        "a_s": active_surface_area(phi_am, particle_radius),
        "tau_eff": tau,
        "transport_efficiency": eps_cal / tau,
    }


def cbm_exponent_for_tortuosity(tau_eff, eps_cal, phi_am, phi_ca, phi_pb, exponent_am=1.5):
    """The carbon-binder cementation exponent for which :func:`tortuosity_composition` gives ``tau_eff``.

    Parameters
    ----------
    tau_eff : float -- tortuosity factor to reproduce [-] (Table A2: 5.9449)
    eps_cal : float -- porosity [-] (Table A2: 0.315)
    phi_am, phi_ca, phi_pb : float -- solid volume fractions at that structure [-]
    exponent_am : float -- cementation exponent of the AM particles [-]

    Returns
    -------
    float -- m_CBM [-]; 8.56 for Table A2 (tau 5.9449) at the paper's nominal structure.
    """
    if not (0.0 < eps_cal < 1.0) or tau_eff <= 0:
        raise ValueError(f"eps_cal = {eps_cal} must lie in (0, 1) and tau_eff = {tau_eff} must be positive")
    m = 1.0 - np.log(tau_eff) / np.log(eps_cal)
    phi_cbm = phi_ca + phi_pb
    if phi_cbm <= 0:
        raise ValueError("the structure has no carbon-binder matrix (phi_ca + phi_pb = 0): nothing to anchor")
    return float((m * (phi_am + phi_cbm) - phi_am * exponent_am) / phi_cbm)
