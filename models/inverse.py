"""Product-oriented (inverse) workflow: find the setpoints that give target structural parameters.

Paper section 2.1 (Figure 2) and 3.4: the cell design fixes structural targets (e.g. m_dry 14.3 mg/cm2 and
rho_cal 2.95 g/cm3) and the process chain is adjusted until it produces them. Here that is a bounded nonlinear
least-squares problem on the relative target errors, solved with scipy's trust-region reflective method from
several starts. With more free setpoints than targets the solution closest to the nominal setpoints is taken
(a small Tikhonov term on the relative setpoint change); with fewer, or when a target lies outside what the
bounded setpoints can reach, :class:`TargetUnreachable` says which target misses by how much and which
setpoints sit on a bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from .chain import ProcessChain

__all__ = ["InverseResult", "TargetUnreachable", "solve_setpoints"]


class TargetUnreachable(ValueError):
    """No setpoints within their bounds reach the targets."""


@dataclass(frozen=True)
class InverseResult:
    setpoints: dict[str, float]
    achieved: dict[str, float]
    relative_error: dict[str, float]
    at_bound: tuple[str, ...]
    nfev: int


def solve_setpoints(chain: ProcessChain, inputs: Mapping[str, float], targets: Mapping[str, float],
                    free: Sequence[str], bounds: Mapping[str, tuple[float, float]],
                    rtol: float = 1e-6, regularization: float = 1e-4) -> InverseResult:
    """Setpoints ``free`` (within ``bounds``) for which the chain at ``inputs`` hits ``targets``.

    Parameters
    ----------
    chain : the process chain
    inputs : nominal value of every chain input (canonical units); the free ones are the start point
    targets : output name -> target value (canonical units)
    free : names of the inputs to adjust
    bounds : name -> (low, high) for every free input
    rtol : largest relative error per target accepted as "reached"
    regularization : weight of the relative change of each setpoint, used only when there are more free
        setpoints than targets (picks the solution nearest the nominal)

    Raises
    ------
    TargetUnreachable : when the best bounded solution misses a target by more than ``rtol``.
    ValueError : unknown target or free name, or a start outside its bounds.
    """
    free = list(free)
    names = list(targets)
    if not names:
        raise ValueError("no target given")
    if not free:
        raise ValueError("no free setpoint given")
    for t in names:
        if chain.producer(t) is None and t not in free:
            raise ValueError(f"target {t} is not computed by the process chain (outputs: {', '.join(chain.outputs)})")
    for f in free:
        if f not in inputs:
            raise ValueError(f"free setpoint {f} is not an input of the scenario")
        if f not in bounds:
            raise ValueError(f"free setpoint {f} has no bounds")
    lo = np.array([bounds[f][0] for f in free], float)
    hi = np.array([bounds[f][1] for f in free], float)
    if np.any(lo >= hi):
        bad = [f for f, a, b in zip(free, lo, hi) if a >= b]
        raise ValueError(f"empty bounds for {', '.join(bad)}")
    x_nom = np.array([float(inputs[f]) for f in free])
    scale = np.where(x_nom != 0, np.abs(x_nom), np.maximum(np.abs(lo), np.abs(hi)))
    tgt = np.array([float(targets[t]) for t in names])
    tscale = np.where(tgt != 0, np.abs(tgt), 1.0)
    reg = regularization if len(free) > len(names) else 0.0
    base = {k: float(v) for k, v in inputs.items() if k not in names}

    def achieved(x):
        vals = dict(base)
        vals.update(zip(free, x))
        out = chain.evaluate(vals)
        return np.array([float(out[t]) for t in names])

    def resid(x):
        r = (achieved(x) - tgt) / tscale
        if reg:
            r = np.concatenate([r, reg * (x - x_nom) / scale])
        return r

    starts = [np.clip(x_nom, lo, hi)]
    rng = np.random.default_rng(0)
    starts += [lo + (hi - lo) * rng.uniform(0.05, 0.95, len(free)) for _ in range(6)]
    best = None
    nfev = 0
    for x0 in starts:
        try:
            sol = least_squares(resid, x0, bounds=(lo, hi), x_scale=scale, method="trf",
                                xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=500)
        except (ValueError, FloatingPointError):
            continue
        nfev += sol.nfev
        err = np.abs(achieved(sol.x) - tgt) / tscale
        if best is None or err.max() < best[1].max():
            best = (sol.x, err)
        if err.max() <= rtol:
            break
    if best is None:
        raise TargetUnreachable("the solver found no point where the chain can be evaluated")
    x, err = best
    ach = achieved(x)
    span = hi - lo
    at_bound = tuple(f for f, v, a, b, s in zip(free, x, lo, hi, span) if min(v - a, b - v) <= 1e-6 * s)
    if len(free) < len(names) or err.max() > rtol:
        misses = "; ".join(f"{t} = {a:.6g} instead of {g:.6g} ({e:+.2%})"
                           for t, a, g, e in zip(names, ach, tgt, (ach - tgt) / tscale) if abs(e) > rtol)
        bound_note = ("; on their bounds: " + ", ".join(f"{f} = {v:.6g} in [{a:.6g}, {b:.6g}]"
                      for f, v, a, b in zip(free, x, lo, hi) if f in at_bound)) if at_bound else ""
        few = (f"; {len(free)} free setpoint(s) for {len(names)} target(s)" if len(free) < len(names) else "")
        raise TargetUnreachable(f"target not reachable with free setpoints {', '.join(free)}: {misses}"
                                f"{bound_note}{few}")
    return InverseResult(dict(zip(free, map(float, x))), dict(zip(names, map(float, ach))),
                         dict(zip(names, map(float, (ach - tgt) / tscale))), at_bound, nfev)
