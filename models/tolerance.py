"""Specifications, share of segments in spec, and production tolerance identification.

A *specification* is a set of :class:`Limit` (lower and/or upper) on product quantities: capacity,
energy_density, structural parameters. A *tolerance* is how far a production input may scatter around its
nominal value: a relative standard deviation (``kind="rel_std"``: normal, sd = t |nominal|) or a relative band
(``kind="band"``: uniform within nominal (1 +- t), the worst case of a controlled variable kept inside its
limits). The *share in spec* is the probability that a segment meets every limit.

:func:`widest_tolerances` identifies the widest tolerances for which a target share of segments (e.g. 99 %) is
in spec (after Thomitzek et al. 2021, paper ref. 35):

1. **Allocation.** ``"common"``: every sized input gets the same relative tolerance k (the paper's "all process
   parameters deviate equally"). ``"balanced"`` (default): tolerances in proportion to weights that give every
   input the same linearized share of the tightest limit (an input that hardly matters gets a wide tolerance,
   a dominant one a narrow tolerance; for a linear model this maximizes the product of the tolerances). The
   largest common scale that keeps the share in spec at the target is found by bisection; the common tolerance
   is always reported for reference.
2. **Relaxation.** Inputs are then widened one by one, least influential first, each as far as the target
   still holds (up to ``max_tolerance``), the others kept. The result is a set of tolerances none of which can
   be widened without tightening another.
3. **Binding tolerance.** The *binding* input is the one whose identified tolerance is tightest relative to
   what the line holds today (``reference``; ties, as with a common tolerance, go to the input whose 10 %
   tightening gains the largest share in spec, its *lever*). The output with the largest out-of-spec share is
   the *limiting* output.

The share is estimated by Monte Carlo with common random numbers (the same uniform draws for every candidate
tolerance, so the share is a deterministic, monotone function of the tolerances), and a candidate is accepted
only if the one-sided Wilson lower confidence bound of its share reaches the target: the claim is
conservative against the Monte Carlo error. An independent Monte Carlo with fresh random numbers verifies it
(:func:`verify_share`).

The model is any callable ``model(values) -> mapping`` taking arrays of inputs in canonical units and returning
at least the limited quantities (canonical units); NaN (e.g. a surrogate outside its design space with policy
``"nan"``) counts as out of spec, since nothing can be certified there.

References
----------
M. Thomitzek, O. Schmidt et al., Model-based identification of production tolerances in battery production,
Procedia CIRP 104 (2021) 1059-1064 (paper ref. 35).
E. B. Wilson, J. Am. Stat. Assoc. 22 (1927) 209-212 (score interval of a proportion).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from .uncertainty import Correlation, Marginal, Normal, Uniform

__all__ = [
    "Limit",
    "SpecError",
    "KINDS",
    "ALLOCATIONS",
    "in_spec",
    "share_in_spec",
    "out_of_spec",
    "wilson_interval",
    "tolerance_marginal",
    "CommonDraws",
    "verify_share",
    "widest_tolerances",
]

KINDS = ("rel_std", "band")
ALLOCATIONS = ("balanced", "common")


class SpecError(ValueError):
    """A specification cannot be met at all, or is malformed; the message names the quantity and the limit."""


@dataclass(frozen=True)
class Limit:
    """Specification limit of one quantity: ``low <= value <= high`` (either side may be open).

    Attributes
    ----------
    name : canonical quantity name
    low, high : limits in the quantity's canonical unit (``None``: no limit on that side)
    """

    name: str
    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        if self.low is None and self.high is None:
            raise SpecError(f"limit on {self.name} has neither low nor high")
        for side in ("low", "high"):
            v = getattr(self, side)
            if v is not None and not math.isfinite(v):
                raise SpecError(f"limit on {self.name}: {side} = {v} is not a finite number")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise SpecError(f"limit on {self.name}: low = {self.low:g} must be below high = {self.high:g}")

    def ok(self, values) -> np.ndarray:
        """Boolean mask: values within the limit (NaN is not)."""
        v = np.asarray(values, float)
        ok = np.isfinite(v)
        if self.low is not None:
            ok &= v >= self.low
        if self.high is not None:
            ok &= v <= self.high
        return ok

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g} <= {self.name} <= {self.high:g}"
        return f"{self.name} >= {self.low:g}" if self.low is not None else f"{self.name} <= {self.high:g}"


def _check_names(values: Mapping[str, object], limits: Sequence[Limit]) -> None:
    for lim in limits:
        if lim.name not in values:
            raise KeyError(f"the model does not compute {lim.name!r}, which has a limit "
                           f"(it computes: {', '.join(values)})")


def in_spec(values: Mapping[str, object], limits: Sequence[Limit]) -> np.ndarray:
    """Boolean mask of the samples that meet every limit."""
    _check_names(values, limits)
    ok = None
    for lim in limits:
        m = lim.ok(values[lim.name])
        ok = m if ok is None else ok & m
    return np.asarray(ok)


def share_in_spec(values: Mapping[str, object], limits: Sequence[Limit]) -> float:
    """Share of samples meeting every limit (0-1)."""
    return float(np.mean(in_spec(values, limits)))


def out_of_spec(values: Mapping[str, object], limits: Sequence[Limit]) -> dict[str, float]:
    """Share of samples violating each limit (a sample may violate several)."""
    _check_names(values, limits)
    return {lim.name: float(1.0 - np.mean(lim.ok(values[lim.name]))) for lim in limits}


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval of a proportion k/n at ``confidence``."""
    if n <= 0:
        return (0.0, 1.0)
    z = float(special.ndtri(0.5 + confidence / 2.0))
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _lower_bound(k: int, n: int, confidence: float) -> float:
    """One-sided lower Wilson bound at ``confidence``."""
    return wilson_interval(k, n, 2.0 * confidence - 1.0)[0]


def tolerance_marginal(nominal: float, tolerance: float, kind: str) -> Marginal:
    """Distribution of an input held to a relative ``tolerance`` around ``nominal``."""
    if kind not in KINDS:
        raise ValueError(f"tolerance kind {kind!r} is not one of {', '.join(KINDS)}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance = {tolerance} must be >= 0")
    half = tolerance * abs(nominal)
    if kind == "rel_std":
        return Normal(nominal, half)
    return Uniform(nominal - half, nominal + half)


class CommonDraws:
    """Fixed uniform random numbers for a set of inputs (common random numbers across candidate settings).

    Parameters
    ----------
    names : the inputs, in column order
    n : number of samples
    rng : numpy generator
    correlation : optional Gaussian copula between some of the inputs (as in :func:`models.uncertainty.sample`)
    """

    def __init__(self, names: Sequence[str], n: int, rng: np.random.Generator,
                 correlation: Correlation | None = None):
        self.names = tuple(names)
        self.n = int(n)
        u = rng.random((self.n, len(self.names)))
        if correlation is not None:
            idx = [self.names.index(c) for c in correlation.names if c in self.names]
            if len(idx) != len(correlation.names):
                missing = [c for c in correlation.names if c not in self.names]
                raise KeyError(f"correlation names {', '.join(missing)}, which has no draws")
            L = np.linalg.cholesky(correlation.normal_matrix())
            z = special.ndtri(np.clip(u[:, idx], 1e-15, 1 - 1e-15)) @ L.T
            u[:, idx] = special.ndtr(z)
        self.u = np.clip(u, 1e-15, 1 - 1e-15)
        self._z: dict[int, np.ndarray] = {}

    def _normal_scores(self, j: int) -> np.ndarray:
        if j not in self._z:
            self._z[j] = special.ndtri(self.u[:, j])
        return self._z[j]

    def values(self, marginals: Mapping[str, Marginal], closed: Sequence[str] | None = None) -> dict:
        """Samples of every marginal from the fixed draws (constants as floats)."""
        out: dict = {}
        for name, m in marginals.items():
            if m.is_constant:
                out[name] = float(m.nominal)
            else:
                if name not in self.names:
                    raise KeyError(f"input {name} is uncertain but has no common draws")
                j = self.names.index(name)
                # a normal's quantiles are an affine map of the standard normal scores: computed once
                out[name] = (m.nominal + m.sd * self._normal_scores(j)) if type(m) is Normal else m.ppf(self.u[:, j])
        if closed:
            total = sum(out[c] for c in closed)
            for c in closed:
                out[c] = out[c] / total
        return out


def verify_share(model: Callable[[dict], Mapping], marginals: Mapping[str, Marginal], limits: Sequence[Limit],
                 n: int, seed: int, correlation: Correlation | None = None, closed: Sequence[str] | None = None,
                 confidence: float = 0.95) -> dict:
    """Share in spec by an independent Monte Carlo: ``{"samples", "seed", "share_in_spec", "ci",
    "out_of_spec"}`` (``ci``: Wilson interval at ``confidence``)."""
    names = [k for k, m in marginals.items() if not m.is_constant]
    draws = CommonDraws(names, n, np.random.default_rng([int(seed), 0x5EC]), correlation)
    values = model(_values(draws, marginals, closed, n))
    mask = in_spec(values, limits)
    k = int(mask.sum())
    return {"samples": int(n), "seed": int(seed), "share_in_spec": k / n,
            "ci": list(wilson_interval(k, n, confidence)), "out_of_spec": out_of_spec(values, limits)}


def _nominal_violations(model, marginals, limits) -> list[str]:
    nominal = {k: float(m.nominal) for k, m in marginals.items()}
    values = model({k: np.array([v]) for k, v in nominal.items()})
    _check_names(values, limits)
    bad = []
    for lim in limits:
        v = float(np.asarray(values[lim.name], float).ravel()[0])
        if not lim.ok(v):
            bad.append(f"{lim.name} = {v:.6g} at the nominal setpoints violates {lim.describe()}")
    return bad


def widest_tolerances(model: Callable[[dict], Mapping], marginals: Mapping[str, Marginal], inputs: Sequence[str],
                      limits: Sequence[Limit], target_share: float = 0.99, kind: str = "rel_std",
                      max_tolerance: float = 0.05, fixed: Mapping[str, float] | None = None, n: int = 20000,
                      seed: int = 0, confidence: float = 0.95, n_verify: int | None = None,
                      correlation: Correlation | None = None, closed: Sequence[str] | None = None,
                      rtol: float = 5e-3, allocation: str = "balanced",
                      reference: Mapping[str, float] | None = None) -> dict:
    """Widest production tolerances for which ``target_share`` of segments meet every limit.

    Parameters
    ----------
    model : ``model(values) -> mapping`` of the limited quantities (vectorized over samples)
    marginals : every model input (canonical units); ``inputs`` are re-centred at their nominal with the sized
        tolerance, the others keep these distributions (constants stay constant)
    inputs : the inputs whose tolerances are sized
    limits : the specification
    target_share : required share of segments in spec (0-1), e.g. 0.99
    kind : ``"rel_std"`` (relative standard deviation, normal) or ``"band"`` (relative +- band, uniform)
    max_tolerance : widest relative tolerance considered (inputs reaching it are reported ``at_max``)
    fixed : tolerances (relative, same kind) of some of ``inputs`` that are given, not sized
    n : Monte Carlo samples per candidate (common random numbers)
    seed : seed of the draws; the verification uses an independent stream
    confidence : the accepted share's one-sided Wilson lower bound must reach ``target_share`` at this level
    n_verify : samples of the independent verification (default 5 n)
    correlation, closed : Gaussian copula and closed mass fractions, as in :func:`models.uncertainty.sample`
    rtol : relative precision of the bisections
    allocation : ``"balanced"`` (tolerances weighted so that every input uses about the same share of the
        tightest limit, see :func:`_balance_weights`) or ``"common"`` (one tolerance for all); both are then
        relaxed input by input
    reference : the tolerances the line holds today (relative, same kind), per input; the binding input is the
        one whose identified tolerance is smallest relative to it (default: smallest tolerance)

    Returns
    -------
    dict: ``tolerances`` {input: relative tolerance}, ``common_tolerance``, ``binding``, ``limiting_output``,
    ``levers`` {input: share gained by tightening it 10 %}, ``at_max``, ``share_in_spec`` (and its lower bound),
    ``out_of_spec`` per limit, and ``verification`` by an independent Monte Carlo.

    Raises
    ------
    SpecError : the nominal point violates a limit, or the share is below target even with every sized
        tolerance at zero (the other inputs' uncertainty alone breaks the spec): the message names the limit.
    """
    if kind not in KINDS:
        raise ValueError(f"tolerance kind {kind!r} is not one of {', '.join(KINDS)}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation {allocation!r} is not one of {', '.join(ALLOCATIONS)}")
    if not 0 < target_share < 1:
        raise SpecError(f"target_share = {target_share} must be inside (0, 1)")
    if not max_tolerance > 0:
        raise SpecError(f"max_tolerance = {max_tolerance} must be > 0")
    inputs = list(dict.fromkeys(inputs))
    fixed = dict(fixed or {})
    for name in inputs + list(fixed):
        if name not in marginals:
            raise KeyError(f"tolerance input {name!r} is not a model input (inputs: {', '.join(marginals)})")
    for name, t in fixed.items():
        if name not in inputs:
            inputs.append(name)
        if not 0 <= t:
            raise SpecError(f"fixed tolerance of {name} = {t} must be >= 0")
    sized = [k for k in inputs if k not in fixed]
    if not sized:
        raise SpecError("no input left to size: every tolerance input has a fixed tolerance")
    bad = _nominal_violations(model, marginals, limits)
    if bad:
        raise SpecError("specification cannot be met: " + "; ".join(bad))
    nominal = {k: float(marginals[k].nominal) for k in inputs}
    zero = [k for k in inputs if nominal[k] == 0]
    if zero:
        raise SpecError(f"relative tolerance of {zero[0]} is undefined: its nominal value is 0")
    others = {k: m for k, m in marginals.items() if k not in inputs}
    draw_names = inputs + [k for k, m in others.items() if not m.is_constant]
    draws = CommonDraws(draw_names, n, np.random.default_rng([int(seed), 0x70]), correlation)

    def marg_for(tol: Mapping[str, float]) -> dict:
        out = dict(others)
        for k in inputs:
            t = tol[k]
            out[k] = tolerance_marginal(nominal[k], t, kind) if t > 0 else _constant(nominal[k])
        return out

    cache: dict[tuple, tuple[int, dict]] = {}

    def evaluate(tol: Mapping[str, float]) -> tuple[int, dict]:
        key = tuple(round(tol[k], 12) for k in inputs)
        if key not in cache:
            values = model(_values(draws, marg_for(tol), closed, n))
            cache[key] = (int(in_spec(values, limits).sum()), out_of_spec(values, limits))
        return cache[key]

    def accepted(tol) -> bool:
        return _lower_bound(evaluate(tol)[0], n, confidence) >= target_share

    def tol_with(base, **over):
        t = dict(base)
        t.update(over)
        return t

    base0 = {k: fixed.get(k, 0.0) for k in inputs}
    if not accepted(base0):
        k0, oos = evaluate(base0)
        worst = max(oos, key=oos.get)
        raise SpecError(f"specification cannot be met at the target share {target_share:g}: with every sized "
                        f"tolerance at zero only {k0 / n:.4%} of segments are in spec ({worst} out of spec in "
                        f"{oos[worst]:.2%}; limit {next(l for l in limits if l.name == worst).describe()}); "
                        f"the fixed tolerances or the other inputs' uncertainty break it")

    def bisect(make: Callable[[float], dict], lo: float, hi: float) -> float:
        """Largest t in [lo, hi] with make(t) accepted, given make(lo) is."""
        if accepted(make(hi)):
            return hi
        while hi - lo > rtol * max(hi, 1e-12):
            mid = 0.5 * (lo + hi)
            if accepted(make(mid)):
                lo = mid
            else:
                hi = mid
        return lo

    common = bisect(lambda t: tol_with(base0, **{k: t for k in sized}), 0.0, max_tolerance)
    tol = tol_with(base0, **{k: common for k in sized})
    weights = None
    if allocation == "balanced" and common < max_tolerance:
        weights = _balance_weights(model, nominal, sized, limits, marginals)
        wmin = min(weights.values())
        # t_k = min(s * w_k, max): s from 0 to where every tolerance is at max
        def make(sc):
            return tol_with(base0, **{k: min(sc * weights[k], max_tolerance) for k in sized})
        s_hi = max_tolerance / wmin
        sc = bisect(make, 0.0, s_hi)
        balanced = make(sc)
        # keep the balanced allocation only if it widens the tolerances overall (geometric mean)
        if sum(math.log(max(balanced[k], 1e-300)) for k in sized) > len(sized) * math.log(max(common, 1e-300)):
            tol = balanced
    # relaxation: least influential first, each as far as the target still holds
    if any(tol[k] < max_tolerance for k in sized):
        loss = {}
        k_now = evaluate(tol)[0]
        for k in sized:
            loss[k] = k_now - evaluate(tol_with(tol, **{k: max_tolerance}))[0]
        for k in sorted(sized, key=lambda x: (loss[x], sized.index(x))):
            tol[k] = bisect(lambda t, k=k: tol_with(tol, **{k: t}), tol[k], max_tolerance)
    k_fin, oos = evaluate(tol)
    levers = {}
    for k in sized:
        if tol[k] > 0:
            levers[k] = (evaluate(tol_with(tol, **{k: 0.9 * tol[k]}))[0] - k_fin) / n
    at_max = [k for k in sized if tol[k] >= max_tolerance * (1 - 1e-12)]
    binding = None
    candidates = [k for k in sized if k not in at_max and tol[k] > 0]
    if candidates:
        ref = {k: (reference or {}).get(k) or 1.0 for k in candidates}
        # tightest relative to what the line holds today; ties (e.g. a common tolerance) go to the best lever
        binding = min(candidates, key=lambda k: (float(f"{tol[k] / ref[k]:.3g}"), -levers.get(k, 0.0),
                                                 sized.index(k)))
    limiting = max(oos, key=oos.get) if any(v > 0 for v in oos.values()) else None
    verification = verify_share(model, marg_for(tol), limits, n_verify or 5 * n, seed + 1, correlation, closed,
                                confidence)
    verification["meets_target"] = verification["share_in_spec"] >= target_share
    return {
        "kind": kind,
        "target_share": target_share,
        "confidence": confidence,
        "samples": int(n),
        "max_tolerance": max_tolerance,
        "inputs": inputs,
        "fixed": fixed,
        "nominal": nominal,
        "allocation": allocation,
        "common_tolerance": common,
        "weights": weights,
        "tolerances": {k: float(tol[k]) for k in inputs},
        "at_max": at_max,
        "binding": binding,
        "reference": dict(reference or {}),
        "limiting_output": limiting,
        "levers": levers,
        "share_in_spec": k_fin / n,
        "share_lower_bound": _lower_bound(k_fin, n, confidence),
        "out_of_spec": oos,
        "limits": [{"name": l.name, "low": l.low, "high": l.high} for l in limits],
        "verification": verification,
        "evaluations": len(cache),
    }


def _balance_weights(model, nominal: Mapping[str, float], sized: Sequence[str], limits: Sequence[Limit],
                     marginals: Mapping[str, Marginal], h: float = 1e-4) -> dict[str, float]:
    """Relative tolerance weights w_k giving every input the same linearized share of the tightest limit.

    At the nominal point, g_yk = dy/d(ln x_k) by central differences; the margin m_y is the distance from the
    nominal y to its nearest limit. Input k then uses c_k = max_y (g_yk / m_y)^2 of "limit budget" per unit
    squared relative tolerance, and w_k = c_k^(-1/2) makes c_k t_k^2 equal for all inputs: under a linear model
    and one limit this maximizes the product of the tolerances (Lagrange), the usual cost proxy of tolerance
    allocation. Inputs without effect get an infinite weight (they go to the maximum tolerance).
    """
    base = {k: float(m.nominal) for k, m in marginals.items()}
    base.update(nominal)
    d = len(sized)
    rows = 2 * d + 1
    values = {k: np.full(rows, v) for k, v in base.items()}
    for j, k in enumerate(sized):
        values[k][1 + 2 * j] = base[k] * (1 + h)
        values[k][2 + 2 * j] = base[k] * (1 - h)
    out = model(values)
    c = {k: 0.0 for k in sized}
    for lim in limits:
        y = np.asarray(out[lim.name], float)
        y0 = float(y[0])
        margins = [y0 - lim.low if lim.low is not None else math.inf, lim.high - y0 if lim.high is not None
                   else math.inf]
        m = min(margins)
        if not (m > 0 and math.isfinite(m)):
            continue
        for j, k in enumerate(sized):
            g = (y[1 + 2 * j] - y[2 + 2 * j]) / (2 * h)
            if math.isfinite(g):
                c[k] = max(c[k], (g / m) ** 2)
    cmax = max(c.values()) if c else 0.0
    return {k: (math.inf if c[k] <= 1e-12 * cmax or c[k] == 0 else 1.0 / math.sqrt(c[k] / cmax)) for k in sized}


def _constant(v: float) -> Marginal:
    from .uncertainty import Constant

    return Constant(v)


def _values(draws: CommonDraws, marginals: Mapping[str, Marginal], closed, n: int) -> dict:
    vals = draws.values(marginals, closed)
    return {k: (np.full(n, v) if np.ndim(v) == 0 else v) for k, v in vals.items()}
