"""Uncertain inputs: marginal distributions, correlation, and their sampling for Monte Carlo per segment.

Two levels of variation, as in the paper (section 2.2.2, Figure 5):

* **subcell** -- the spread of a parameter *within* one electrode segment: each input's marginal distribution
  (constant, normal, lognormal, uniform, truncated normal, kernel density from measured data), optionally
  correlated through a Gaussian copula (Pearson correlation of the underlying normals, or Spearman rank
  correlation converted with r = 2 sin(pi rho_s / 6)). Sampled by :func:`sample`.
* **cell-to-cell** -- what changes *between* segments: a random shift of an input's location per segment
  (:class:`SegmentShift`) and a systematic temporal drift such as a heating machine (:class:`Drift`). Both
  move a marginal without changing its shape; :func:`segment_marginals` applies them for one segment.

Sampling uses a numpy ``Generator``; a segment's samples depend only on (seed, segment index), so any segment
can be recomputed alone and gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import special

__all__ = [
    "Marginal",
    "Constant",
    "Normal",
    "LogNormal",
    "Uniform",
    "TruncatedNormal",
    "KernelDensity",
    "Correlation",
    "Drift",
    "SegmentShift",
    "sample",
    "segment_marginals",
    "DISTRIBUTIONS",
]

DISTRIBUTIONS = ("constant", "normal", "lognormal", "uniform", "truncnormal", "kde")


class Marginal:
    """Base class of a one-dimensional input distribution (in the quantity's canonical unit)."""

    nominal: float

    def sample(self, rng: np.random.Generator, n: int):
        """n independent draws (a float for a constant)."""
        return self.ppf(rng.random(n))

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Quantile function (inverse CDF), vectorized over u in (0, 1)."""
        raise NotImplementedError

    def shifted(self, delta: float) -> "Marginal":
        """The same distribution moved by ``delta`` (cell-to-cell shift or drift)."""
        raise NotImplementedError

    @property
    def is_constant(self) -> bool:
        return False

    @property
    def std(self) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Marginal):
    nominal: float

    def sample(self, rng, n):
        return float(self.nominal)

    def ppf(self, u):
        return np.full(np.shape(u), float(self.nominal))

    def shifted(self, delta):
        return Constant(self.nominal + delta)

    @property
    def is_constant(self):
        return True

    @property
    def std(self):
        return 0.0


@dataclass(frozen=True)
class Normal(Marginal):
    nominal: float
    sd: float

    def sample(self, rng, n):
        return rng.normal(self.nominal, self.sd, n)

    def ppf(self, u):
        return self.nominal + self.sd * special.ndtri(u)

    def shifted(self, delta):
        return replace(self, nominal=self.nominal + delta)

    @property
    def std(self):
        return self.sd


@dataclass(frozen=True)
class LogNormal(Marginal):
    """Lognormal with the given mean (``nominal``) and standard deviation ``sd`` (both > 0)."""

    nominal: float
    sd: float

    @property
    def _sigma(self):
        return math.sqrt(math.log1p((self.sd / self.nominal) ** 2))

    @property
    def _mu(self):
        return math.log(self.nominal) - 0.5 * self._sigma**2

    def sample(self, rng, n):
        return rng.lognormal(self._mu, self._sigma, n)

    def ppf(self, u):
        return np.exp(self._mu + self._sigma * special.ndtri(u))

    def shifted(self, delta):
        # keep the relative spread when moving a lognormal
        return replace(self, nominal=self.nominal + delta, sd=self.sd * (self.nominal + delta) / self.nominal)

    @property
    def std(self):
        return self.sd


@dataclass(frozen=True)
class Uniform(Marginal):
    low: float
    high: float

    @property
    def nominal(self):
        return 0.5 * (self.low + self.high)

    def sample(self, rng, n):
        return rng.uniform(self.low, self.high, n)

    def ppf(self, u):
        return self.low + (self.high - self.low) * np.asarray(u)

    def shifted(self, delta):
        return Uniform(self.low + delta, self.high + delta)

    @property
    def std(self):
        return (self.high - self.low) / math.sqrt(12.0)


@dataclass(frozen=True)
class TruncatedNormal(Marginal):
    """Normal(nominal, sd) truncated to [low, high]."""

    nominal: float
    sd: float
    low: float
    high: float

    def _dist(self):
        from scipy import stats  # imported here: scipy.stats costs 0.5 s at start-up

        return stats.truncnorm((self.low - self.nominal) / self.sd, (self.high - self.nominal) / self.sd,
                               loc=self.nominal, scale=self.sd)

    def ppf(self, u):
        return self._dist().ppf(u)

    def shifted(self, delta):
        return TruncatedNormal(self.nominal + delta, self.sd, self.low + delta, self.high + delta)

    @property
    def std(self):
        return float(self._dist().std())


@dataclass(frozen=True)
class KernelDensity(Marginal):
    """Gaussian kernel density estimate of measured data (Scott's rule bandwidth unless given)."""

    data: tuple[float, ...]
    bandwidth: float | None = None
    _grid: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self):
        x = np.asarray(self.data, float)
        if x.size < 2 or not np.all(np.isfinite(x)):
            raise ValueError("kernel density needs at least 2 finite data points")
        h = self.bandwidth or float(np.std(x, ddof=1) * x.size ** (-1 / 5)) or 1e-12
        grid = np.linspace(x.min() - 6 * h, x.max() + 6 * h, 4097)
        cdf = special.ndtr((grid[:, None] - x[None, :]) / h).mean(axis=1)
        object.__setattr__(self, "_grid", (grid, cdf, h))

    @property
    def nominal(self):
        return float(np.mean(self.data))

    def ppf(self, u):
        grid, cdf, _ = self._grid
        return np.interp(u, cdf, grid)

    def sample(self, rng, n):
        x = np.asarray(self.data, float)
        return x[rng.integers(0, x.size, n)] + self._grid[2] * rng.standard_normal(n)

    def shifted(self, delta):
        return KernelDensity(tuple(np.asarray(self.data) + delta), self.bandwidth)

    @property
    def std(self):
        return float(math.sqrt(np.var(self.data) + self._grid[2] ** 2))


@dataclass(frozen=True)
class Correlation:
    """Correlation between inputs through a Gaussian copula.

    Attributes
    ----------
    names : inputs the matrix refers to, in row order
    matrix : symmetric, unit diagonal, positive definite
    kind : ``"pearson"`` (correlation of the underlying normals) or ``"spearman"`` (rank correlation)
    """

    names: tuple[str, ...]
    matrix: tuple[tuple[float, ...], ...]
    kind: str = "spearman"

    def __post_init__(self):
        R = np.asarray(self.matrix, float)
        n = len(self.names)
        if self.kind not in ("pearson", "spearman"):
            raise ValueError(f"correlation kind {self.kind!r} is not one of pearson, spearman")
        if R.shape != (n, n):
            raise ValueError(f"correlation matrix is {R.shape[0]}x{R.shape[1] if R.ndim > 1 else 1} "
                             f"but names {n} inputs")
        if not np.allclose(R, R.T) or not np.allclose(np.diag(R), 1.0) or np.any(np.abs(R) > 1):
            raise ValueError("correlation matrix must be symmetric with a unit diagonal and entries in [-1, 1]")
        if np.linalg.eigvalsh(self.normal_matrix()).min() <= 0:
            raise ValueError("correlation matrix is not positive definite")

    def normal_matrix(self) -> np.ndarray:
        """Correlation of the copula's underlying standard normals."""
        R = np.asarray(self.matrix, float)
        if self.kind == "spearman":
            R = 2.0 * np.sin(np.pi * R / 6.0)
            np.fill_diagonal(R, 1.0)
        return R


@dataclass(frozen=True)
class Drift:
    """Systematic change of an input's location with time since the start of production.

    ``kind="linear"``: offset = rate * t; ``kind="exponential"`` (a machine heating up): offset =
    delta * (1 - exp(-t / tau)). ``rate`` in unit/h, ``delta`` in the input's unit, ``tau`` in s.
    """

    kind: str
    rate: float = 0.0
    delta: float = 0.0
    tau: float = 1.0

    def __post_init__(self):
        if self.kind not in ("linear", "exponential"):
            raise ValueError(f"drift kind {self.kind!r} is not one of linear, exponential")
        if self.kind == "exponential" and not self.tau > 0:
            raise ValueError(f"drift tau = {self.tau} s must be > 0")

    def offset(self, t_s):
        """Offset at time ``t_s`` [s] since start, in the input's unit."""
        t = np.asarray(t_s, float)
        if self.kind == "linear":
            return self.rate * t / 3600.0
        return self.delta * (1.0 - np.exp(-t / self.tau))


@dataclass(frozen=True)
class SegmentShift:
    """Random cell-to-cell shift of an input's location, drawn once per segment: Normal(0, sd)."""

    sd: float


def segment_marginals(marginals: Mapping[str, Marginal], segment: int, t_s: float = 0.0,
                      shifts: Mapping[str, SegmentShift] | None = None,
                      drifts: Mapping[str, Drift] | None = None, seed: int = 0) -> dict[str, Marginal]:
    """The marginals of one segment: subcell distributions moved by its cell-to-cell shift and drift.

    The random shift of segment ``k`` depends only on (seed, k), so segments are independent and reproducible.
    """
    out = dict(marginals)
    if shifts:
        rng = np.random.default_rng([seed, int(segment), 1])
        for name in sorted(shifts):
            out[name] = out[name].shifted(float(rng.normal(0.0, shifts[name].sd)))
    for name, d in (drifts or {}).items():
        out[name] = out[name].shifted(float(d.offset(t_s)))
    return out


def sample(marginals: Mapping[str, Marginal], n: int, rng: np.random.Generator,
           correlation: Correlation | None = None,
           closed: Sequence[str] | None = None) -> dict[str, np.ndarray | float]:
    """Draw ``n`` Monte Carlo samples of every input.

    Parameters
    ----------
    marginals : input name -> :class:`Marginal`
    n : number of samples
    rng : numpy random generator (seeded by the caller)
    correlation : optional Gaussian copula between some of the inputs
    closed : names of mass fractions to renormalise per sample so they sum to 1 (``None``: as drawn, which is
        how the paper's Table A1 was produced)

    Returns
    -------
    dict name -> array of shape (n,), or a float for a constant input.
    """
    out: dict[str, np.ndarray | float] = {}
    corr_names = set(correlation.names) if correlation else set()
    for name in corr_names - set(marginals):
        raise KeyError(f"correlation names {name}, which is not an input")
    for name, m in marginals.items():
        if name not in corr_names:
            out[name] = m.sample(rng, n)
    if correlation:
        L = np.linalg.cholesky(correlation.normal_matrix())
        z = rng.standard_normal((n, len(correlation.names))) @ L.T
        u = np.clip(special.ndtr(z), 1e-15, 1 - 1e-15)
        for j, name in enumerate(correlation.names):
            out[name] = marginals[name].ppf(u[:, j])
    if closed:
        total = sum(out[c] for c in closed)
        for c in closed:
            out[c] = out[c] / total
    return out
