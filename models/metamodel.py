"""Meta-models of numerical process models (paper section 2.2.1): fit, compare, select, evaluate.

A numerical process model (DEM, CFD, FEM) is too slow for a process chain run per electrode segment. It is
replaced by a data-based meta-model fitted to a virtual design of experiments (DoE): a table of input
configurations, repeated where the numerical model is stochastic, with the computed output.

Pipeline (SALib-like: fitting and evaluation are separate steps)
    1. :func:`split` the DoE into training and test rows (seeded).
    2. :func:`fit_candidates` fits every candidate family on the training rows and scores it on both:
       RMSE, R² and AICc on the training rows, RMSE and R² (Q²) on the test rows.
    3. :func:`select` picks the model: candidates whose test RMSE is more than ``rmse_tolerance`` (relative)
       above the best test RMSE are out (they do not predict); among the rest the lowest AICc wins (the
       likelihood of the fit, penalised for its number of parameters); exact ties go to fewer parameters, then
       to the simpler family in the order of :data:`FAMILIES`.
    4. The chosen :class:`MetaModel` is refitted on all rows, carries its design space, and evaluates in plain
       vectorized numpy; evaluation outside the design space raises, warns or returns NaN, never silently
       extrapolates.

Candidate families (inputs are scaled to z in [-1, 1] over the design space)
    ``linear``       y = b0 + sum b_i z_i
    ``quadratic``    y = b0 + sum b_i z_i + sum_{i<=j} b_ij z_i z_j
    ``exponential``  y = a + b exp(sum c_i z_i)
    ``kriging``      Gaussian process, constant mean, anisotropic squared-exponential kernel plus a nugget for
                     the scatter of repeated runs (fitted with scikit-learn); its AICc counts the effective
                     degrees of freedom of the GP smoother plus its hyper-parameters
    ``pce``          polynomial chaos on a Legendre basis (uniform inputs), sparse by LARS with a hyperbolic
                     truncation (fitted with OpenTURNS ``FunctionalChaosAlgorithm``)

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, section 2.2.1, Figure 4, Figure 7.
Hurvich & Tsai, Biometrika 76 (1989) 297-307 (AICc).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FAMILIES",
    "POLICIES",
    "DesignSpace",
    "DesignSpaceError",
    "MetaModel",
    "CandidateScore",
    "split",
    "fit_family",
    "fit_candidates",
    "select",
    "fit_metamodel",
    "aicc",
    "legendre_design_matrix",
    "fit_legendre_pce",
]

FAMILIES = ("linear", "quadratic", "exponential", "kriging", "pce")
POLICIES = ("raise", "warn", "nan")


class DesignSpaceError(ValueError):
    """A meta-model was asked to evaluate outside the design space it was fitted on."""


@dataclass(frozen=True)
class DesignSpace:
    """Box of input values a meta-model was fitted on.

    Attributes
    ----------
    names : canonical input names
    low, high : bounds per input, in the inputs' canonical units
    """

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def of(cls, names: Sequence[str], X: np.ndarray) -> "DesignSpace":
        X = np.atleast_2d(np.asarray(X, float))
        return cls(tuple(names), tuple(X.min(axis=0).tolist()), tuple(X.max(axis=0).tolist()))

    def scale(self, X: np.ndarray) -> np.ndarray:
        """Map inputs to z in [-1, 1] (columns in ``names`` order)."""
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        span = np.where(hi > lo, hi - lo, 1.0)
        return 2.0 * (X - lo) / span - 1.0

    def outside(self, X: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
        """Boolean mask of rows outside the box (a relative tolerance absorbs round-off at the bounds)."""
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        tol = rtol * np.maximum(np.abs(lo), np.abs(hi))
        return np.any((X < lo - tol) | (X > hi + tol), axis=1)

    def describe_violation(self, X: np.ndarray, output: str) -> str:
        mask = self.outside(X)
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        parts = []
        for j, name in enumerate(self.names):
            col = X[mask, j]
            bad = col[(col < lo[j]) | (col > hi[j])]
            if bad.size:
                parts.append(f"{name} in [{bad.min():.6g}, {bad.max():.6g}] vs design space "
                             f"[{lo[j]:.6g}, {hi[j]:.6g}]")
        return (f"meta-model for {output}: {int(mask.sum())} of {len(X)} evaluation(s) outside its design space "
                f"({'; '.join(parts)}); refit it on a DoE that covers them, or give {output} directly")

    def to_dict(self) -> dict:
        return {n: [lo, hi] for n, lo, hi in zip(self.names, self.low, self.high)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> "DesignSpace":
        names = tuple(d)
        return cls(names, tuple(float(d[n][0]) for n in names), tuple(float(d[n][1]) for n in names))


# --------------------------------------------------------------------------------------------------------------
# evaluation of each family in numpy (z: scaled inputs, shape (n, d))


def _quadratic_features(z: np.ndarray) -> np.ndarray:
    n, d = z.shape
    cols = [np.ones(n)] + [z[:, i] for i in range(d)]
    cols += [z[:, i] * z[:, j] for i in range(d) for j in range(i, d)]
    return np.column_stack(cols)


def _legendre_orthonormal(z: np.ndarray, degree: int) -> np.ndarray:
    """psi_k(z) = sqrt(2k+1) P_k(z) for k = 0..degree, orthonormal for z ~ U(-1, 1). Shape (degree+1, n)."""
    out = np.empty((degree + 1,) + z.shape)
    out[0] = 1.0
    if degree >= 1:
        out[1] = z
    for k in range(1, degree):
        out[k + 1] = ((2 * k + 1) * z * out[k] - k * out[k - 1]) / (k + 1)
    norm = np.sqrt(2 * np.arange(degree + 1) + 1.0).reshape((-1,) + (1,) * z.ndim)
    return out * norm


def legendre_design_matrix(z: np.ndarray, indices) -> np.ndarray:
    """Values of the orthonormal Legendre product polynomials ``indices`` (multi-indices, shape (terms, d)) at
    scaled inputs z in [-1, 1] (shape (n, d)); returns shape (n, terms). A PCE is this matrix times its
    coefficients."""
    z = np.atleast_2d(np.asarray(z, float))
    idx = np.asarray(indices, int).reshape(-1, z.shape[1])
    psi = _legendre_orthonormal(z.T, int(idx.max()) if idx.size else 0)  # (deg+1, d, n)
    out = np.ones((idx.shape[0], z.shape[0]))
    for j in range(z.shape[1]):
        used = idx[:, j] > 0
        if used.any():
            out[used] *= psi[idx[used, j], j]
    return out.T


def fit_legendre_pce(z: np.ndarray, y: np.ndarray, degree: int, q_norm: float = 0.75):
    """Sparse polynomial chaos on a Legendre basis (inputs uniform on [-1, 1]) fitted with OpenTURNS.

    ``FunctionalChaosAlgorithm`` with the candidate basis of total degree ``degree`` under a hyperbolic
    truncation of quasi-norm ``q_norm`` (1: full total-degree basis), terms selected by LARS and corrected
    leave-one-out error.

    Parameters
    ----------
    z : array_like, shape (n, d) -- inputs scaled to [-1, 1]
    y : array_like, shape (n,) -- output
    degree : int -- maximal total degree of the candidate basis
    q_norm : float -- hyperbolic quasi-norm in (0, 1]

    Returns
    -------
    (indices, coef): multi-indices of the selected terms (list of d-lists) and their coefficients (ndarray),
    for :func:`legendre_design_matrix`.
    """
    import openturns as ot

    z = np.atleast_2d(np.asarray(z, float))
    d = z.shape[1]
    dist = ot.JointDistribution([ot.Uniform(-1.0, 1.0)] * d)
    enum = ot.HyperbolicAnisotropicEnumerateFunction(d, q_norm if d > 1 else 1.0)
    basis = ot.OrthogonalProductPolynomialFactory([ot.LegendreFactory()] * d, enum)
    size = enum.getBasisSizeFromTotalDegree(int(degree))
    selection = ot.LeastSquaresMetaModelSelectionFactory(ot.LARS(), ot.CorrectedLeaveOneOut())
    strategy = ot.LeastSquaresStrategy(selection)
    adaptive = ot.FixedStrategy(basis, size)
    algo = ot.FunctionalChaosAlgorithm(ot.Sample(z), ot.Sample(np.asarray(y, float)[:, None]), dist, adaptive,
                                       strategy)
    algo.run()
    res = algo.getResult()
    coef = np.asarray(res.getCoefficients()).ravel()
    indices = [list(enum(int(i))) for i in res.getIndices()]
    return indices, coef


def _evaluate(kind: str, params: Mapping, z: np.ndarray) -> np.ndarray:
    if kind == "linear":
        coef = np.asarray(params["coef"])
        return coef[0] + z @ coef[1:]
    if kind == "quadratic":
        return _quadratic_features(z) @ np.asarray(params["coef"])
    if kind == "exponential":
        return params["a"] + params["b"] * np.exp(z @ np.asarray(params["c"]))
    if kind == "kriging":
        xt = np.asarray(params["x_train"])
        ls = np.asarray(params["length_scale"])
        d2 = (((z[:, None, :] - xt[None, :, :]) / ls) ** 2).sum(axis=2)
        k = params["signal_variance"] * np.exp(-0.5 * d2)
        return params["y_mean"] + params["y_std"] * (k @ np.asarray(params["alpha"]))
    if kind == "pce":
        return legendre_design_matrix(z, params["indices"]) @ np.asarray(params["coef"], float)
    raise ValueError(f"unknown meta-model family {kind!r}; known: {', '.join(FAMILIES)}")


# --------------------------------------------------------------------------------------------------------------
# fitting each family: returns (params, number of effective parameters for AICc)


def _fit_linear(z, y, rng):
    A = np.column_stack([np.ones(len(z)), z])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    return {"coef": coef.tolist()}, A.shape[1]


def _fit_quadratic(z, y, rng):
    A = _quadratic_features(z)
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    return {"coef": coef.tolist()}, A.shape[1]


def _fit_exponential(z, y, rng):
    from scipy.optimize import least_squares

    d = z.shape[1]
    best = None
    # a + b exp(c.z) is linear in (a, b) for fixed c: profile over a few start directions, then polish all.
    starts = [np.zeros(d) + s for s in (-2.0, -0.5, 0.5, 2.0)]
    starts += [rng.normal(0, 1.5, d) for _ in range(4)]
    for c0 in starts:
        e = np.exp(z @ c0)
        ab = np.linalg.lstsq(np.column_stack([np.ones(len(z)), e]), y, rcond=None)[0]
        p0 = np.concatenate([ab, c0])

        def resid(p):
            return p[0] + p[1] * np.exp(np.clip(z @ p[2:], -50, 50)) - y

        try:
            sol = least_squares(resid, p0, method="lm", max_nfev=2000)
        except Exception:  # noqa: BLE001 - a failed start is just skipped
            continue
        cost = float(np.sum(sol.fun**2))
        if np.isfinite(cost) and (best is None or cost < best[0]):
            best = (cost, sol.x)
    if best is None:
        raise RuntimeError("exponential fit did not converge from any start")
    p = best[1]
    return {"a": float(p[0]), "b": float(p[1]), "c": p[2:].tolist()}, 2 + d


def _fit_kriging(z, y, rng):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    d = z.shape[1]
    kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(d), (1e-2, 1e2))
              + WhiteKernel(0.1, (1e-10, 1e1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=3,
                                      random_state=int(rng.integers(2**31))).fit(z, y)
    k = gp.kernel_
    signal_variance = float(k.k1.k1.constant_value)
    length_scale = np.atleast_1d(k.k1.k2.length_scale).astype(float)
    noise = float(k.k2.noise_level)
    y_mean, y_std = float(gp._y_train_mean), float(gp._y_train_std)
    # effective degrees of freedom of the GP smoother: trace(K (K + noise I)^-1), plus hyper-parameters
    d2 = (((z[:, None, :] - z[None, :, :]) / length_scale) ** 2).sum(axis=2)
    K = signal_variance * np.exp(-0.5 * d2)
    dof = float(np.trace(np.linalg.solve(K + noise * np.eye(len(z)), K)))
    params = {
        "x_train": z.tolist(),
        "alpha": np.ravel(gp.alpha_).tolist(),
        "length_scale": length_scale.tolist(),
        "signal_variance": signal_variance,
        "noise_variance": noise,
        "y_mean": y_mean,
        "y_std": y_std,
    }
    return params, dof + 2 + d


def _fit_pce(z, y, rng, max_degree: int = 6):
    n = len(z)
    # keep the basis small against the number of distinct training points
    distinct = len({tuple(r) for r in np.round(z, 12)})
    degree = max(1, min(max_degree, distinct - 1))
    indices, coef = fit_legendre_pce(z, y, degree, 0.75)
    k = len(coef)
    if k >= n - 1:
        raise RuntimeError(f"PCE needs {k} terms for {n} training rows")
    return {"indices": indices, "coef": coef.tolist()}, k


_FITTERS = {
    "linear": _fit_linear,
    "quadratic": _fit_quadratic,
    "exponential": _fit_exponential,
    "kriging": _fit_kriging,
    "pce": _fit_pce,
}


# --------------------------------------------------------------------------------------------------------------


@dataclass
class MetaModel:
    """A fitted meta-model y = f(x) with its design space.

    Call it with the canonical inputs as keyword arguments (scalars or arrays, broadcast together); it returns
    the output in its canonical unit. ``policy`` decides what happens outside the design space: ``"raise"``
    (:class:`DesignSpaceError`, default), ``"warn"`` (evaluate and emit a ``UserWarning`` with the count) or
    ``"nan"`` (NaN for those samples).
    """

    kind: str
    inputs: tuple[str, ...]
    output: str
    design_space: DesignSpace
    params: dict
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    policy: str = "raise"

    def __post_init__(self):
        if self.kind not in FAMILIES:
            raise ValueError(f"unknown meta-model family {self.kind!r}; known: {', '.join(FAMILIES)}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown design-space policy {self.policy!r}; known: {', '.join(POLICIES)}")
        self.inputs = tuple(self.inputs)

    def predict(self, X: np.ndarray, policy: str | None = None) -> np.ndarray:
        """Evaluate on a matrix of inputs, shape (n, len(inputs)), columns in ``inputs`` order."""
        X = np.atleast_2d(np.asarray(X, float))
        policy = policy or self.policy
        mask = self.design_space.outside(X)
        if mask.any():
            if policy == "raise":
                raise DesignSpaceError(self.design_space.describe_violation(X, self.output))
            if policy == "warn":
                warnings.warn(self.design_space.describe_violation(X, self.output), UserWarning, stacklevel=2)
        y = _evaluate(self.kind, self.params, self.design_space.scale(X))
        if mask.any() and policy == "nan":
            y = np.where(mask, np.nan, y)
        return y

    def __call__(self, **inputs):
        arrays = np.broadcast_arrays(*[np.asarray(inputs[n], float) for n in self.inputs])
        shape = arrays[0].shape
        X = np.column_stack([a.ravel() for a in arrays])
        y = self.predict(X)
        return y.reshape(shape) if shape else float(y[0])

    def as_step(self, stage: str):
        """This meta-model as a process chain step producing ``output`` from ``inputs``."""
        from .chain import Step

        return Step.from_callable(self, stage, self.inputs, self.output, name=f"{self.output}_metamodel")

    def to_dict(self) -> dict:
        return {
            "format": "electrode-twin metamodel 1",
            "kind": self.kind,
            "inputs": list(self.inputs),
            "output": self.output,
            "design_space": self.design_space.to_dict(),
            "params": self.params,
            "metrics": self.metrics,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: Mapping, policy: str = "raise") -> "MetaModel":
        for key in ("kind", "inputs", "output", "design_space", "params"):
            if key not in d:
                raise ValueError(f"meta-model document lacks {key!r}")
        return cls(d["kind"], tuple(d["inputs"]), d["output"], DesignSpace.from_dict(d["design_space"]),
                   dict(d["params"]), dict(d.get("metrics", {})), dict(d.get("info", {})), policy)


@dataclass(frozen=True)
class CandidateScore:
    """Goodness of fit of one candidate family (RMSE in the output's unit)."""

    kind: str
    n_params: float
    rmse_train: float
    r2_train: float
    aicc: float
    rmse_test: float
    r2_test: float
    error: str = ""

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.__dict__.items()}


def aicc(rss: float, n: int, k: float) -> float:
    """Corrected Akaike information criterion of a least-squares fit with Gaussian errors.

    AICc = n ln(RSS/n) + 2k + 2k(k+1)/(n-k-1); infinite when n <= k + 1.
    """
    if n - k - 1 <= 0 or rss <= 0:
        return math.inf if n - k - 1 <= 0 else -math.inf
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _r2(y, yhat) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss if ss > 0 else math.nan


def split(n: int, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test row indices (seeded). At least 2 rows go to each part."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction = {test_fraction} is outside (0, 1)")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(2, int(round(test_fraction * n))), n - 2)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def fit_family(kind: str, X: np.ndarray, y: np.ndarray, design_space: DesignSpace, seed: int = 0):
    """Fit one family on (X, y); returns (params, effective number of parameters)."""
    if kind not in _FITTERS:
        raise ValueError(f"unknown meta-model family {kind!r}; known: {', '.join(FAMILIES)}")
    z = design_space.scale(np.atleast_2d(np.asarray(X, float)))
    return _FITTERS[kind](z, np.asarray(y, float), np.random.default_rng(seed))


def fit_candidates(X, y, inputs: Sequence[str], candidates: Sequence[str] = FAMILIES,
                   test_fraction: float = 0.3, seed: int = 0) -> list[CandidateScore]:
    """Fit every candidate on the training rows and score it on training and test rows."""
    unknown = [c for c in candidates if c not in _FITTERS]
    if unknown:
        raise ValueError(f"unknown meta-model family {unknown[0]!r}; known: {', '.join(FAMILIES)}")
    X = np.atleast_2d(np.asarray(X, float))
    y = np.asarray(y, float)
    ds = DesignSpace.of(inputs, X)
    train, test = split(len(y), test_fraction, seed)
    scores = []
    for kind in candidates:
        try:
            params, k = fit_family(kind, X[train], y[train], ds, seed)
            yt = _evaluate(kind, params, ds.scale(X[train]))
            yv = _evaluate(kind, params, ds.scale(X[test]))
            rss = float(np.sum((y[train] - yt) ** 2))
            scores.append(CandidateScore(
                kind, float(k), math.sqrt(rss / len(train)), _r2(y[train], yt), aicc(rss, len(train), k),
                float(np.sqrt(np.mean((y[test] - yv) ** 2))), _r2(y[test], yv)))
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot be fitted is reported, not fatal
            scores.append(CandidateScore(kind, math.nan, math.inf, math.nan, math.inf, math.inf, math.nan,
                                         f"{type(exc).__name__}: {exc}"))
    return scores


def select(scores: Sequence[CandidateScore], rmse_tolerance: float = 0.5) -> CandidateScore:
    """The selected candidate: lowest AICc among those whose test RMSE is within ``rmse_tolerance`` (relative)
    of the best test RMSE; ties (equal AICc to 1e-6) go to fewer parameters, then to the earlier family.

    The tolerance is wide on purpose: a test RMSE from a dozen rows carries a sampling error of roughly
    1/sqrt(2 n_test) (~20 % at 12 rows, two standard errors ~40 %). The test rows screen out models that clearly
    do not predict; AICc on the training rows decides between those that do."""
    ok = [s for s in scores if math.isfinite(s.rmse_test)]
    if not ok:
        raise RuntimeError("no meta-model candidate could be fitted: "
                           + "; ".join(f"{s.kind}: {s.error}" for s in scores))
    best = min(s.rmse_test for s in ok)
    eligible = [s for s in ok if s.rmse_test <= best * (1.0 + rmse_tolerance)]
    return min(eligible, key=lambda s: (round(s.aicc, 6), s.n_params, FAMILIES.index(s.kind)))


def fit_metamodel(X, y, inputs: Sequence[str], output: str, candidates: Sequence[str] = FAMILIES,
                  test_fraction: float = 0.3, seed: int = 0, rmse_tolerance: float = 0.5,
                  info: Mapping | None = None) -> MetaModel:
    """Fit, compare and select a meta-model, then refit the chosen family on all rows.

    Parameters
    ----------
    X : array_like, shape (n, d) -- DoE inputs in canonical units, columns in ``inputs`` order
    y : array_like, shape (n,) -- DoE output in its canonical unit
    inputs, output : canonical names
    candidates : families to compare (subset of :data:`FAMILIES`)

    Returns
    -------
    MetaModel whose ``metrics`` hold every candidate's scores and the selection rule.
    """
    X = np.atleast_2d(np.asarray(X, float))
    if X.shape[0] != len(y):
        X = X.T
    y = np.asarray(y, float)
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("the DoE holds NaN or infinite values")
    scores = fit_candidates(X, y, inputs, candidates, test_fraction, seed)
    chosen = select(scores, rmse_tolerance)
    ds = DesignSpace.of(inputs, X)
    params, _ = fit_family(chosen.kind, X, y, ds, seed)
    metrics = {
        "selected": chosen.kind,
        "rule": f"lowest AICc among candidates with test RMSE within {rmse_tolerance:.0%} of the best",
        "n_rows": int(len(y)),
        "test_fraction": test_fraction,
        "seed": seed,
        "candidates": [s.to_dict() for s in scores],
    }
    return MetaModel(chosen.kind, tuple(inputs), output, ds, params, metrics, dict(info or {}))
