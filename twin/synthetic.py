"""Synthetic data, clearly marked as such: stand-ins for data the paper used but did not publish.

Nothing here is measured. Every file written from this module says so in its header.

Drying DoE (stand-in for the paper's DEM runs, Figure 7)
    The paper computed the porosity after drying with a DEM model at seven wet mass loadings from 14.2 to
    35.4 mg/cm2, five runs each, and fitted an exponential meta-model; neither the runs nor the fit
    coefficients are published. What is published: eps_dry = 0.439 at m_wet = 20.5 mg/cm2 (Table A1), falling
    with mass loading, with an exponential law fitting best. Table A1's h_dry spread implies a local elasticity
    d ln(eps_dry) / d ln(m_wet) of about -0.14 at that point.

    The generator is eps = a + b exp(-m_wet / m_c) with m_c = 8 mg/cm2 (a marked approach to a plateau, which is
    what makes an exponential law distinguishable from a quadratic one) and a, b solved so that eps(20.5) = 0.439
    and the elasticity at 20.5 is -0.14. Each run adds DEM-like scatter: normal noise with a standard deviation
    of 0.002 (porosity), the order of the run-to-run spread of random particle placement in a DEM box of a few
    thousand particles. Seeded, so the shipped file is reproducible.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DRYING_DOE_HEADER", "drying_porosity_truth", "synthetic_drying_doe"]

EPS_REF, M_REF, ELASTICITY, M_C = 0.439, 20.5, -0.14, 8.0
_B = -ELASTICITY * EPS_REF / M_REF * M_C * math.exp(M_REF / M_C)
_A = EPS_REF - _B * math.exp(-M_REF / M_C)

DRYING_DOE_HEADER = f"""\
# SYNTHETIC DATA - not DEM results, not measurements.
# Stand-in for the virtual DoE of the paper's DEM drying model (Thomitzek et al. 2022, Figure 7), whose data are
# unpublished. Generator: eps_dry = {_A:.6f} + {_B:.6f} * exp(-m_wet / {M_C}) + N(0, 0.002), chosen so that
# eps_dry(20.5) = 0.439 and d ln eps_dry / d ln m_wet = -0.14 there (Table A1). Written by
# twin.synthetic.synthetic_drying_doe; replace this file with real DEM results in the same format.
"""


def drying_porosity_truth(m_wet):
    """The noise-free generator of the synthetic drying DoE: porosity after drying [-] for m_wet [mg/cm2]."""
    return _A + _B * np.exp(-np.asarray(m_wet, float) / M_C)


def synthetic_drying_doe(levels: int = 7, repetitions: int = 5, low: float = 14.2, high: float = 35.4,
                         noise: float = 0.002, seed: int = 20220128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m_wet [mg/cm2], repetition, eps_dry [-]) of the synthetic drying DoE; see the module docstring."""
    rng = np.random.default_rng(seed)
    m = np.repeat(np.linspace(low, high, levels), repetitions)
    rep = np.tile(np.arange(1, repetitions + 1), levels)
    eps = drying_porosity_truth(m) + rng.normal(0.0, noise, m.size)
    return m, rep, eps
