"""Sensitivity refresh: ANCOVA (and Sobol') indices of the process chain and the cell model for a scenario.

Which input's uncertainty drives which output's uncertainty (paper section 3.4, Table 1, Figure 10)?

* **Chain** (nested model): every structural parameter the chain computes, as a function of the scenario's
  uncertain process and formulation inputs only. The inputs are independent, so S = S_U (S_C is sampling noise)
  and first-order and total Sobol' indices are reported as well.
* **Cell**: capacity and energy_density w.r.t. the cell model's inputs w_am, w_ca, m_dry, rho_cal (w_pb =
  1 - w_am - w_ca, the paper's convention). These inputs come out of the same chain Monte Carlo, so they are
  correlated (paper eq. 17): ANCOVA splits each share into S_U and S_C.

Both analyses work on Monte Carlo samples (sampling and analysis are separate): :func:`refresh` draws them, or
takes samples the twin already holds (``samples=``), so the advisor can refresh indices on a schedule from the
segment predictions it has. Results are plain JSON-able dicts (see :func:`models.sensitivity.ancova`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from models.quantities import QUANTITIES
from models.sensitivity import ancova, chaos_sobol, sankey_flows

from .montecarlo import chain_for, ordered, run
from .product import cell_inputs_from
from .scenario import FRACTIONS, Scenario

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_BOOT", "uncertain_inputs", "chain_outputs", "chain_sensitivity",
           "cell_sensitivity", "refresh", "load_cell"]

#: Monte Carlo samples of one refresh: the 95 % bootstrap intervals of the leading chain and capacity indices are
#: then about 0.01 wide (energy density's, which are ~2 in size, about 0.07) and a refresh takes ~0.5 s on
#: 2 cores (bench/bench_sensitivity.py --convergence shows both against the sample size).
DEFAULT_SAMPLES = 20_000
#: Bootstrap resamples for the confidence intervals.
DEFAULT_BOOT = 100


def uncertain_inputs(scenario: Scenario) -> list[str]:
    """The scenario's inputs with a distribution (not constants), in line order."""
    return ordered(k for k, m in scenario.marginals.items() if not m.is_constant)


def chain_outputs(scenario: Scenario, samples: Mapping[str, object] | None = None) -> list[str]:
    """Structural parameters the chain computes from the scenario's inputs (and, given samples, that vary)."""
    chain = chain_for(scenario)
    plan = chain.plan(scenario.marginals.keys())
    names = [o for s in plan for o in s.outputs if o in QUANTITIES]
    if samples is not None:
        names = [o for o in names if o in samples and np.ndim(samples[o]) == 1 and np.ptp(samples[o]) > 0]
    return ordered(names)


def chain_sensitivity(scenario: Scenario, samples: Mapping[str, object] | None = None, n: int = DEFAULT_SAMPLES,
                      seed: int = 0, degree: int = 2, n_boot: int = DEFAULT_BOOT, sobol: bool = True) -> dict:
    """ANCOVA indices (and Sobol' S1/ST) of every structural parameter w.r.t. the scenario's uncertain inputs.

    Sobol' indices are added when the inputs are independent (no ``[correlation]``, fractions not closed). With
    closed (renormalized) fractions w_pb is left out: it is 1 - w_am - w_ca.

    ``samples``: Monte Carlo samples of the chain (inputs and outputs) the caller already holds; drawn with
    :func:`twin.montecarlo.run` otherwise.
    """
    if samples is None:
        samples = run(scenario, n, seed)
    inputs = uncertain_inputs(scenario)
    outputs = chain_outputs(scenario, samples)
    note = None
    if scenario.closed_fractions and all(f in inputs for f in FRACTIONS):
        # renormalized fractions sum to one: w_pb is 1 - w_am - w_ca, not a separate input
        inputs.remove("w_pb")
        note = "closed fractions: w_pb = 1 - w_am - w_ca is not a separate input; its effect is in w_am and w_ca"
    independent = scenario.correlation is None and not scenario.closed_fractions
    res = ancova(samples, samples, inputs, outputs, degree=degree, n_boot=n_boot, seed=seed,
                 sobol=sobol and independent, check=False)
    res["model"] = "process chain"
    if note:
        res["note"] = note
    return res


def cell_sensitivity(samples: Mapping[str, object], cell, degree: int = 3, n_boot: int = DEFAULT_BOOT,
                     seed: int = 0, close_pb: bool = True, independent: bool = False) -> dict:
    """ANCOVA indices of the cell model's outputs w.r.t. its inputs, on chain Monte Carlo samples.

    Parameters
    ----------
    samples : chain samples (must hold the cell model's inputs, e.g. w_am, w_ca, m_dry, rho_cal)
    cell : the cell surrogate (``.inputs``, ``.outputs``, ``__call__``); evaluate it with policy ``"nan"`` to
        drop samples outside its design space instead of failing (they are counted in ``dropped``)
    degree : degree of the expansion supplying the first-order terms
    close_pb : the paper's convention w_pb = 1 - w_am - w_ca (then w_pb is not an input of the analysis)
    independent : also give Sobol' indices for the same marginals without correlation (``independent``), the
        reference for reading the correlated shares

    The result also holds the inputs' correlation matrix (``correlation``, the analogue of the paper's eq. 17).
    """
    n = max(np.size(v) for v in samples.values())
    X = cell_inputs_from(samples, cell, n, close_pb)
    inputs = [k for k in cell.inputs if not (k == "w_pb" and close_pb and "w_am" in X and "w_ca" in X)]
    Y = cell(X)
    outputs = [o for o in cell.outputs if o in Y]
    res = ancova(X, Y, inputs, outputs, degree=degree, n_boot=n_boot, seed=seed)
    res["model"] = "cell"
    Xm = np.column_stack([np.asarray(X[k], float) for k in inputs])
    ok = np.all(np.isfinite(Xm), axis=1)
    R = np.corrcoef(Xm[ok], rowvar=False)
    res["correlation"] = {"names": inputs, "matrix": np.round(R, 4).tolist()}
    res["mean"] = {o: float(np.nanmean(np.asarray(Y[o], float))) for o in outputs}
    res["std"] = {o: float(np.nanstd(np.asarray(Y[o], float), ddof=1)) for o in outputs}
    if independent:
        # the same marginals without their correlation: permute every input's samples independently
        rng = np.random.default_rng([int(seed), 0x1D])
        Xi = dict(X)
        for k in inputs:
            Xi[k] = np.asarray(X[k], float)[rng.permutation(n)]
        if "w_pb" in cell.inputs and close_pb and "w_pb" not in inputs:
            Xi["w_pb"] = 1.0 - Xi["w_am"] - Xi["w_ca"]
        Yi = cell(Xi)
        sob = chaos_sobol(Xi, Yi, inputs, outputs, degree=degree, n_boot=n_boot, seed=seed)
        res["independent"] = {
            "note": "Sobol' indices with the same marginals but independent inputs (samples permuted): what the "
                    "indices would be without the correlation the process chain creates",
            "indices": sob["indices"], "r2": sob["r2"],
            "mean": {o: float(np.nanmean(np.asarray(Yi[o], float))) for o in outputs},
            "std": {o: float(np.nanstd(np.asarray(Yi[o], float), ddof=1)) for o in outputs}}
    return res


def load_cell(policy: str = "auto", design_policy: str = "nan"):
    """The cell surrogate, or ``None`` (``policy="auto"`` and none available; ``"off"``); ``"required"`` raises.

    ``design_policy``: what the surrogate does outside its design space (``"nan"``: those samples are dropped
    from the analyses and counted).
    """
    if policy == "off":
        return None
    try:
        from twin.cell import load_cell_surrogate  # type: ignore[import-not-found]
    except ImportError as exc:
        if policy == "required":
            raise RuntimeError(f"the cell surrogate is not available: {exc}") from None
        return None
    try:
        return load_cell_surrogate(policy=design_policy)
    except Exception:
        if policy == "required":
            raise
        return None


def refresh(scenario: Scenario, cell=None, samples: Mapping[str, object] | None = None, n: int = DEFAULT_SAMPLES,
            seed: int = 0, n_boot: int = DEFAULT_BOOT, chain_degree: int = 2, cell_degree: int = 3,
            sobol: bool = True, independent: bool = False) -> dict:
    """One sensitivity refresh: chain and (if a cell surrogate is given) cell indices, plus the Sankey flows.

    Returns ``{"scenario", "samples", "seed", "chain", "cell", "sankey", "seconds"}``; ``cell`` and ``sankey``
    are ``None`` without a cell surrogate. ``independent`` adds the cell's Sobol' indices without the chain's
    correlation (see :func:`cell_sensitivity`).
    """
    t0 = time.perf_counter()
    if samples is None:
        samples = run(scenario, n, seed)
    n_actual = max(np.size(v) for v in samples.values())
    chain = chain_sensitivity(scenario, samples, seed=seed, degree=chain_degree, n_boot=n_boot, sobol=sobol)
    t1 = time.perf_counter()
    cell_res = None
    flows = None
    if cell is not None:
        cell_res = cell_sensitivity(samples, cell, degree=cell_degree, n_boot=n_boot, seed=seed,
                                    independent=independent)
        flows = sankey_flows(chain, cell_res)
    t2 = time.perf_counter()
    return {"scenario": scenario.name, "samples": int(n_actual), "seed": seed, "chain": chain, "cell": cell_res,
            "sankey": flows, "seconds": {"chain": t1 - t0, "cell": t2 - t1, "total": t2 - t0}}
