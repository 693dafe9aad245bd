"""Monte Carlo of the process chain for a scenario: build the chain, sample the inputs, evaluate, summarize.

Sampling and evaluation are separate steps (:func:`sample_inputs`, :func:`evaluate`) so the twin can condition
samples on measurements before evaluating, and :func:`run` chains them for the command line. Samples of
segment ``k`` are drawn from ``numpy.random.default_rng([seed, k])``: reproducible, independent per segment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

import models
from models.chain import ProcessChain
from models.quantities import QUANTITIES, STAGES
from models.uncertainty import sample, segment_marginals

from .metamodels import load_metamodel
from .scenario import FRACTIONS, Scenario

__all__ = ["chain_for", "sample_inputs", "evaluate", "run", "summarize", "ordered"]


@lru_cache(maxsize=16)
def _chain(paths: tuple[tuple[str, str, float], ...]) -> ProcessChain:
    return models.build_chain([load_metamodel(p) for _, p, _ in paths])


def chain_for(scenario: Scenario) -> ProcessChain:
    """The process chain of a scenario: registered steps plus its meta-models (cached per file version)."""
    key = tuple(sorted((out, str(p), Path(p).stat().st_mtime) for out, p in scenario.metamodel_paths.items()))
    return _chain(key)


def sample_inputs(scenario: Scenario, n: int, seed: int = 0, segment: int = 0, t_s: float = 0.0):
    """Monte Carlo samples of every scenario input for one segment (cell-to-cell shift and drift applied)."""
    marg = segment_marginals(scenario.marginals, segment, t_s, scenario.shifts, scenario.drifts, seed)
    rng = np.random.default_rng([int(seed), int(segment)])
    closed = FRACTIONS if scenario.closed_fractions else None
    return sample(marg, int(n), rng, scenario.correlation, closed)


def _threads() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


def evaluate(chain: ProcessChain, inputs: Mapping[str, object], n: int) -> dict[str, np.ndarray]:
    """Evaluate the chain on samples; large runs go in cache-sized chunks on all cores."""
    if n >= 200_000:
        return chain.evaluate_chunked(inputs, n, chunk=32768, threads=_threads())
    out = chain.evaluate(inputs)
    return {k: np.broadcast_to(np.asarray(v, float), (n,)) for k, v in out.items()}


def run(scenario: Scenario, n: int = 10_000, seed: int = 0, segment: int = 0, t_s: float = 0.0):
    """Sample and evaluate: every input and structural parameter as an array of ``n`` samples."""
    if n < 2:
        raise ValueError(f"samples = {n} must be at least 2")
    chain = chain_for(scenario)
    return evaluate(chain, sample_inputs(scenario, n, seed, segment, t_s), n)


def ordered(names: Iterable[str]) -> list[str]:
    """Canonical names in line order (stage, then registry order)."""
    order = {name: i for i, name in enumerate(QUANTITIES)}
    return sorted(names, key=lambda n: (STAGES.index(QUANTITIES[n].stage) if n in QUANTITIES else 99,
                                        order.get(n, 1 << 30)))


def summarize(samples: Mapping[str, np.ndarray], names: Iterable[str] | None = None) -> dict[str, dict]:
    """{name: {unit, mean, std, p05, p50, p95}} of each quantity (std with ddof=1)."""
    out = {}
    for name in ordered(names if names is not None else samples):
        x = np.asarray(samples[name], float)
        if x.ndim == 0 or np.all(x == x.flat[0]):
            v = float(x.flat[0])
            out[name] = {"unit": QUANTITIES[name].unit, "mean": v, "std": 0.0, "p05": v, "p50": v, "p95": v}
            continue
        p05, p50, p95 = np.quantile(x, [0.05, 0.5, 0.95])
        out[name] = {"unit": QUANTITIES[name].unit, "mean": float(x.mean()), "std": float(x.std(ddof=1)),
                     "p05": float(p05), "p50": float(p50), "p95": float(p95)}
    return out
