"""Robust setpoints: setpoints that keep the product in spec under the production's input uncertainty.

The nominal (product-oriented) inverse workflow (:mod:`models.inverse`) finds setpoints at which the chain,
fed with *nominal* inputs, hits structural targets. Under scatter of the inputs that point need not be the best
one: the spread of the outputs is not symmetric about their targets (non-linear chain, mean shift E[f(X)] !=
f(E[X])), limits may be one-sided or off-centre, and some setpoints make the outputs less sensitive to the
scatter (e.g. a higher line load sits further down the calendering curve, eq. 15). Two robust objectives:

``probability``
    maximize the share of segments that meet every limit (the probability of meeting the specification).
``variance``
    minimize the standard deviation of one output (``minimize``) while the Monte Carlo *means* of the target
    outputs equal their targets.

Both are estimated by Monte Carlo with common random numbers (the same uniform draws at every candidate, the
inputs re-centred at the candidate setpoints), which makes them deterministic, smooth functions of the
setpoints. The share in spec is an indicator average and piecewise constant; it is optimized through a smoothed
indicator (each limit as a normal CDF of the margin over ``smoothing`` times the output's standard deviation)
and the result is reported with the exact share. Optimizer: a quasi-random screen of the bounded setpoint box
plus the start point, then Powell's method from the best candidates (``probability``), or SLSQP with the mean
constraints (``variance``); setpoints are scaled to [0, 1] over their bounds.

Setpoints to compare with (e.g. the nominal inverse solution) are evaluated on the same draws, and
:func:`models.tolerance.verify_share` checks every claimed share with independent random numbers.

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, section 2.4 (robust optimization to identify stable production
points that result in low deviating performance characteristics).
H.-G. Beyer, B. Sendhoff, Comput. Methods Appl. Mech. Eng. 196 (2007) 3190-3218 (robust optimization review).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import special

from .tolerance import CommonDraws, Limit, _values, in_spec, out_of_spec, verify_share, wilson_interval
from .uncertainty import Correlation, Marginal

__all__ = ["robust_setpoints", "OBJECTIVES"]

OBJECTIVES = ("probability", "variance")


class _Problem:
    def __init__(self, model, marginals_at, free, bounds, limits, start, n, seed, correlation, closed):
        self.model = model
        self.marginals_at = marginals_at
        self.free = list(free)
        self.lo = np.array([bounds[f][0] for f in free], float)
        self.hi = np.array([bounds[f][1] for f in free], float)
        self.limits = list(limits)
        m0 = marginals_at(dict(start))
        self.names = [k for k, m in m0.items() if not m.is_constant]
        self.draws = CommonDraws(self.names, n, np.random.default_rng([int(seed), 0x0B]), correlation)
        self.closed = closed
        self.n = int(n)
        self._cache: dict[tuple, dict] = {}
        self.evaluations = 0

    def x_of(self, s) -> dict[str, float]:
        return {f: float(v) for f, v in zip(self.free, self.lo + np.clip(s, 0, 1) * (self.hi - self.lo))}

    def s_of(self, x: Mapping[str, float]) -> np.ndarray:
        return np.array([(x[f] - a) / (b - a) for f, a, b in zip(self.free, self.lo, self.hi)])

    def values(self, x: Mapping[str, float]) -> dict:
        """Model outputs at setpoints ``x`` on the common draws (the last few are kept)."""
        key = tuple(round(x[f], 12) for f in self.free)
        self.evaluations += 1
        if key not in self._cache:
            marg = self.marginals_at(dict(x))
            moved = [k for k, m in marg.items() if not m.is_constant and k not in self.names]
            if moved:
                raise ValueError(f"input {moved[0]} became uncertain at setpoints {dict(x)}; give it a "
                                 f"distribution in the scenario")
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self.model(_values(self.draws, marg, self.closed, self.n))
        return self._cache[key]

    def stats(self, x: Mapping[str, float], names: Sequence[str], confidence: float) -> dict:
        v = self.values(x)
        mask = in_spec(v, self.limits)
        k = int(mask.sum())
        out = {"setpoints": dict(x), "share_in_spec": k / self.n, "ci": list(wilson_interval(k, self.n, confidence)),
               "out_of_spec": out_of_spec(v, self.limits), "mean": {}, "std": {}}
        for name in names:
            y = np.asarray(v[name], float)
            y = y[np.isfinite(y)]
            out["mean"][name] = float(y.mean()) if y.size else float("nan")
            out["std"][name] = float(y.std(ddof=1)) if y.size > 1 else float("nan")
        return out


def _soft_step(x: np.ndarray) -> np.ndarray:
    """Normal CDF of x, computed only where it is not already 0 or 1 to double precision (|x| < 9)."""
    q = (x > 0).astype(float)
    near = np.abs(x) < 9.0
    q[near] = special.ndtr(x[near])
    return q


def _smoothed_share(values: Mapping, limits: Sequence[Limit], h: Mapping[str, float]) -> float:
    p = None
    for lim in limits:
        y = np.asarray(values[lim.name], float)
        q = np.ones_like(y)
        if lim.low is not None:
            q = q * _soft_step((y - lim.low) / h[lim.name])
        if lim.high is not None:
            q = q * _soft_step((lim.high - y) / h[lim.name])
        q = np.where(np.isfinite(y), q, 0.0)
        p = q if p is None else p * q
    return float(np.mean(p))


def robust_setpoints(model: Callable[[dict], Mapping], marginals_at: Callable[[dict], Mapping[str, Marginal]],
                     free: Sequence[str], bounds: Mapping[str, tuple[float, float]], limits: Sequence[Limit],
                     start: Mapping[str, float], objective: str = "probability",
                     targets: Mapping[str, float] | None = None, minimize: str | None = None, n: int = 20000,
                     seed: int = 0, correlation: Correlation | None = None, closed: Sequence[str] | None = None,
                     compare: Mapping[str, Mapping[str, float]] | None = None, smoothing: float = 0.2,
                     n_verify: int | None = None, confidence: float = 0.95, screen: int | None = None) -> dict:
    """Setpoints ``free`` within ``bounds`` that are robust against the input uncertainty.

    Parameters
    ----------
    model : ``model(values) -> mapping`` of at least the limited quantities (vectorized over samples)
    marginals_at : setpoints {name: value} -> the distributions of every model input with the free ones
        re-centred there (e.g. a scenario's ``with_nominal(...).marginals``)
    free : setpoints to move; bounds : {name: (low, high)} for each of them [canonical units]
    limits : the specification (used by ``probability``, and reported for both objectives)
    start : starting setpoints (e.g. the nominal inverse solution); must lie within the bounds
    objective : ``"probability"`` or ``"variance"``
    targets : for ``variance``: {output: required Monte Carlo mean}
    minimize : for ``variance``: the output whose standard deviation is minimized
    n, seed : Monte Carlo samples and seed of the common random numbers
    correlation, closed : as in :func:`models.uncertainty.sample`
    compare : {label: setpoints} evaluated on the same draws and verified the same way (e.g. the nominal
        inverse solution)
    smoothing : width of the smoothed indicator, in output standard deviations at the start point
    n_verify : samples of the independent verification (default 5 n)
    screen : quasi-random candidates screened before the local search (default 16 * len(free))

    Returns
    -------
    dict with ``setpoints``, ``share_in_spec`` (exact, on the common draws), ``mean``/``std`` of the limited
    outputs, ``at_bound``, ``compared`` {label: same figures}, and ``verification`` {label: independent Monte
    Carlo share in spec with its Wilson interval} for ``robust`` and every compared point.
    """
    from scipy.optimize import minimize as _minimize
    from scipy.stats import qmc

    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    free = list(dict.fromkeys(free))
    if not free:
        raise ValueError("no free setpoint given")
    for f in free:
        if f not in bounds:
            raise ValueError(f"free setpoint {f} has no bounds")
        lo, hi = bounds[f]
        if not lo < hi:
            raise ValueError(f"bounds of {f}: low {lo:g} must be below high {hi:g}")
        if f not in start:
            raise ValueError(f"free setpoint {f} has no start value")
        if not lo <= start[f] <= hi:
            raise ValueError(f"start {f} = {start[f]:g} is outside its bounds [{lo:g}, {hi:g}]")
    targets = dict(targets or {})
    if objective == "variance":
        if not minimize:
            raise ValueError("objective 'variance' needs the output to minimize")
        if not targets:
            raise ValueError("objective 'variance' needs target means")
    prob = _Problem(model, marginals_at, free, bounds, limits, start, n, seed, correlation, closed)
    report = list(dict.fromkeys([l.name for l in limits] + list(targets) + ([minimize] if minimize else [])))
    v0 = prob.values(start)
    for name in report:
        if name not in v0:
            raise KeyError(f"the model does not compute {name!r} (it computes: {', '.join(v0)})")
    s0 = prob.s_of(start)
    k = len(free)
    m_screen = screen if screen is not None else 16 * k
    cands = [s0] + list(qmc.Sobol(k, scramble=True, seed=np.random.default_rng([int(seed), 0x5C])).random(
        max(2, 1 << int(np.ceil(np.log2(max(m_screen, 2)))))))
    if objective == "probability":
        h = {}
        for lim in limits:
            y = np.asarray(v0[lim.name], float)
            sd = float(np.nanstd(y)) if np.isfinite(y).sum() > 1 else 0.0
            span = (lim.high - lim.low) if (lim.low is not None and lim.high is not None) else abs(
                lim.low if lim.low is not None else lim.high)
            h[lim.name] = smoothing * (sd if sd > 0 else 1e-3 * span) or 1e-12

        def f(s):
            return -_smoothed_share(prob.values(prob.x_of(s)), limits, h)

        scored = sorted(((f(s), i) for i, s in enumerate(cands)), key=lambda t: t[0])
        starts = [cands[i] for _, i in scored[:2]]
        if 0 not in [i for _, i in scored[:2]]:
            starts.append(s0)
        best = None
        for x0 in starts:
            res = _minimize(f, x0, method="Powell", bounds=[(0.0, 1.0)] * k,
                            options={"xtol": 1e-3, "ftol": 1e-6, "maxfev": 150 * k})
            s = np.clip(res.x, 0, 1)
            exact = float(np.mean(in_spec(prob.values(prob.x_of(s)), limits)))
            key = (exact, -float(res.fun))
            if best is None or key > best[0]:
                best = (key, s)
        s_best = best[1]
    else:
        tnames = list(targets)
        tval = np.array([targets[t] for t in tnames], float)
        tscale = np.where(tval != 0, np.abs(tval), 1.0)
        y0 = np.asarray(v0[minimize], float)
        yscale = abs(float(np.nanmean(y0))) or 1.0

        def mean_err(s):
            v = prob.values(prob.x_of(s))
            return np.array([np.nanmean(np.asarray(v[t], float)) for t in tnames]) - tval

        def obj(s):
            y = np.asarray(prob.values(prob.x_of(s))[minimize], float)
            return float(np.nanstd(y)) / yscale

        cons = [{"type": "eq", "fun": lambda s: mean_err(s) / tscale}]
        # start from the screened candidate closest to the target means, and from the given start
        scored = sorted(((float(np.max(np.abs(mean_err(s) / tscale))), i) for i, s in enumerate(cands)))
        starts = [s0] + [cands[i] for _, i in scored[:2] if i != 0]
        best = None
        for x0 in starts:
            res = _minimize(obj, x0, method="SLSQP", bounds=[(0.0, 1.0)] * k, constraints=cons,
                            options={"ftol": 1e-12, "maxiter": 200})
            s = np.clip(res.x, 0, 1)
            err = float(np.max(np.abs(mean_err(s) / tscale)))
            key = (err <= 1e-6, -obj(s) if err <= 1e-6 else -err)
            if best is None or key > best[0]:
                best = (key, s)
        s_best = best[1]
        if not best[0][0]:
            miss = mean_err(s_best)
            raise ValueError("target means not reachable within the bounds: " + "; ".join(
                f"mean {t} = {tv + e:.6g} instead of {tv:.6g}" for t, tv, e in zip(tnames, tval, miss)))
    x_best = prob.x_of(s_best)
    out = prob.stats(x_best, report, confidence)
    span = prob.hi - prob.lo
    out["at_bound"] = [f for f, v, a, b, sp in zip(free, [x_best[f] for f in free], prob.lo, prob.hi, span)
                       if min(v - a, b - v) <= 1e-4 * sp]
    out.update({"objective": objective, "free": free, "bounds": {f: list(bounds[f]) for f in free},
                "samples": int(n), "seed": int(seed), "targets": targets, "minimize": minimize,
                "limits": [{"name": l.name, "low": l.low, "high": l.high} for l in limits],
                "evaluations": prob.evaluations})
    compared = {}
    for label, x in (compare or {}).items():
        missing = [f for f in free if f not in x]
        if missing:
            raise ValueError(f"compared setpoints {label!r} lack {', '.join(missing)}")
        compared[label] = prob.stats({f: float(x[f]) for f in free}, report, confidence)
    out["compared"] = compared
    nv = n_verify or 5 * n
    verification = {"robust": verify_share(model, marginals_at(x_best), limits, nv, seed + 1, correlation, closed,
                                           confidence)}
    for label, c in compared.items():
        verification[label] = verify_share(model, marginals_at(c["setpoints"]), limits, nv, seed + 1, correlation,
                                           closed, confidence)
    out["verification"] = verification
    return out

