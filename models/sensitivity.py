"""Global sensitivity analysis: ANCOVA indices (correlated inputs) and Sobol' indices (independent inputs).

Which input's *uncertainty* drives an output's *uncertainty*? Two families of variance-based indices, both
estimated from Monte Carlo samples, with sampling and analysis as separate steps (as in SALib): the twin already
holds Monte Carlo samples of every segment and refreshes the indices from them without re-sampling.

ANCOVA (paper section 2.4, eq. 4-7; Li et al. 2010, Caniou 2012)
    The model is written as its functional (ANOVA/HDMR) decomposition with respect to *independent* inputs with
    the same marginals, Y = M_0 + sum_i M_i(X_i) + interactions, and the first-order terms M_i are then
    evaluated on the actual, possibly correlated, samples::

        S_i   = Cov[M_i(X_i), Y] / Var[Y]                  (eq. 4, total share of input i)
        S_i^U = Var[M_i(X_i)] / Var[Y]                     (eq. 5, uncorrelated / "physical" part)
        S_i^C = Cov[M_i(X_i), Y - M_i(X_i)] / Var[Y]       (eq. 6, part due to correlation with other inputs)
        S_i   = S_i^U + S_i^C                              (eq. 7)

    With independent inputs S_i^C vanishes (up to sampling noise) and S_i = S_i^U is the first-order Sobol'
    index. With correlated inputs S_i^C may be negative and S_i^U may exceed 1: two strongly correlated inputs
    whose effects cancel each have a large physical effect but a small net share.

    The first-order terms come from a polynomial expansion fitted by least squares on the samples
    (:func:`fit_chaos`): products of Hermite polynomials of the standardized inputs, total degree <= ``degree``,
    each univariate factor centred on its input's marginal, so that every term integrates to zero over each of
    its inputs. The terms in x_i alone are then the M_i of the decomposition with respect to independent inputs
    with the same marginals (exactly so when the model is a polynomial of that degree; the fit's R^2 and
    leave-one-out Q^2 are reported so a poor decomposition is visible). This is the construction of Caniou
    (2012) and OpenTURNS' ``ANCOVA``, done in numpy so the bootstrap refits stay cheap.

Sobol' (independent inputs only)
    First-order S1_i = Var[E(Y|X_i)]/Var[Y] and total ST_i = E[Var(Y|X_~i)]/Var[Y]; from a pick-freeze design
    (:func:`sobol_design` then :func:`sobol_indices`: Saltelli 2010 estimator for S1, Jansen 1999 for ST), or
    from the coefficients of a chaos expansion fitted on plain Monte Carlo samples (:func:`chaos_sobol`,
    Sudret 2008), which is the route for samples the twin already holds.

Confidence intervals: percentile bootstrap over the sample rows (the expansion is refitted on every
resample), at the level ``confidence``.

Results are plain JSON-able dicts (floats, lists, strings).

All functions are unit-agnostic: indices are dimensionless shares of an output's variance; samples are given
in the quantities' canonical units (see :mod:`models.quantities`), but nothing here depends on them.

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, section 2.4 eq. (2)-(7), section 3.4, Table 1, Figure 10.
G. Li, H. Rabitz et al., J. Phys. Chem. A 114 (2010) 6022-6032 (covariance decomposition, paper ref. 37).
Y. Caniou, PhD thesis, Universite Blaise Pascal (2012) (ANCOVA indices from a polynomial chaos expansion).
B. Sudret, Reliab. Eng. Syst. Saf. 93 (2008) 964-979 (Sobol' indices from polynomial chaos coefficients).
A. Saltelli et al., Comput. Phys. Commun. 181 (2010) 259-270; M. Jansen, Comput. Phys. Commun. 117 (1999) 35-43.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = [
    "ChaosExpansion",
    "SobolDesign",
    "fit_chaos",
    "ancova",
    "chaos_sobol",
    "sobol_design",
    "sobol_indices",
    "sankey_flows",
    "check_independent",
]


# --------------------------------------------------------------------------------------------------------------
# polynomial chaos by least squares


def _hermite_orthonormal(z: np.ndarray, degree: int) -> np.ndarray:
    """He_k(z)/sqrt(k!) for k = 0..degree (orthonormal for z ~ N(0, 1)); shape (degree + 1,) + z.shape."""
    out = np.empty((degree + 1,) + z.shape)
    out[0] = 1.0
    if degree >= 1:
        out[1] = z
    for k in range(1, degree):
        out[k + 1] = z * out[k] - k * out[k - 1]
    norm = np.sqrt(special.factorial(np.arange(degree + 1))).reshape((-1,) + (1,) * z.ndim)
    return out / norm


def _multi_indices(d: int, degree: int) -> np.ndarray:
    """All multi-indices alpha in N^d with |alpha| <= degree, constant first, then by total degree."""
    rows = [a for total in range(degree + 1)
            for a in itertools.product(range(total + 1), repeat=d) if sum(a) == total]
    return np.array(rows, dtype=int).reshape(-1, d)


def _univariate(z: np.ndarray, degree: int, offsets: np.ndarray | None = None):
    """Centred univariate factors phi_k(z_i) = He_k(z_i)/sqrt(k!) - offset_ki, k = 0..degree; z shape (n, d).

    Returns (phi, offsets) with phi of shape (degree + 1, n, d). ``offsets`` (degree + 1, d) are the sample
    means of the factors (0 for k = 0); computed from z when not given.
    """
    phi = _hermite_orthonormal(z, degree)
    if offsets is None:
        offsets = phi.mean(axis=1)
        offsets[0] = 0.0
    return phi - offsets[:, None, :], offsets


def _design_matrix(phi: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Psi[k, j] = prod_i phi_{alpha_ji}(z_ki) from univariate factors phi (degree + 1, n, d)."""
    out = np.ones((phi.shape[1], len(indices)))
    for i in range(phi.shape[2]):
        out *= phi[indices[:, i], :, i].T
    return out


@dataclass(frozen=True)
class ChaosExpansion:
    """A polynomial expansion Y ~ sum_j coef_j Psi_j(x) whose terms are a functional (ANOVA) decomposition.

    Each basis function is a product of univariate factors phi_k(x_i) = He_k(z_i)/sqrt(k!) - offset_ki with
    z_i = (x_i - center_i) / scale_i (He_k: probabilists' Hermite polynomials). The offsets centre every
    factor of degree >= 1 on the marginal distribution of its input (as sampled), so every term integrates to
    zero over each of its inputs: the terms in x_i alone are exactly the first-order component M_i of the
    decomposition with respect to independent inputs with these marginals, whatever the marginals are and
    whether or not the samples themselves are correlated. For independent normal inputs the factors are the
    orthonormal Hermite polynomials.

    Attributes
    ----------
    inputs, outputs : canonical names
    center, scale : mean and standard deviation of each input [its unit]
    offsets : (degree + 1, d) centring of the univariate factors
    marginal_gram : (d, degree + 1, degree + 1) E[phi_a(x_i) phi_b(x_i)] over the marginal of each input
    indices : multi-indices of the basis, shape (P, d)
    coef : coefficients, shape (P, m), in the outputs' units
    r2 : coefficient of determination of the fit on its samples, per output
    q2 : leave-one-out coefficient of determination, per output (how well it predicts unseen samples)
    n : number of samples it was fitted on
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    offsets: np.ndarray
    marginal_gram: np.ndarray
    indices: np.ndarray
    coef: np.ndarray
    r2: np.ndarray
    q2: np.ndarray
    n: int

    @property
    def degree(self) -> int:
        return int(self.indices.sum(axis=1).max())

    def basis(self, X: np.ndarray) -> np.ndarray:
        """Basis matrix Psi of inputs X, shape (n, d) with columns in ``inputs`` order."""
        z = (np.asarray(X, float) - self.center) / self.scale
        phi, _ = _univariate(z, self.offsets.shape[0] - 1, self.offsets)
        return _design_matrix(phi, self.indices)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expansion evaluated at X (n, d); shape (n, m)."""
        return self.basis(X) @ self.coef

    def first_order_masks(self) -> np.ndarray:
        """Boolean (d, P): term j belongs to M_i (depends on input i only)."""
        nz = self.indices > 0  # (P, d)
        return (nz & (nz.sum(axis=1) == 1)[:, None]).T

    def independent_gram(self) -> np.ndarray:
        """E[Psi_j Psi_k] (P, P) if the inputs were independent with the sampled marginals."""
        G = np.ones((len(self.indices),) * 2)
        for i in range(len(self.inputs)):
            a = self.indices[:, i]
            G *= self.marginal_gram[i][np.ix_(a, a)]
        return G


def _as_matrix(samples: Mapping[str, object], names: Sequence[str], what: str) -> np.ndarray:
    cols = []
    n = None
    for name in names:
        if name not in samples:
            raise KeyError(f"{what} {name!r} is not in the samples (have: {', '.join(samples)})")
        col = np.asarray(samples[name], float)
        if col.ndim != 1:
            raise ValueError(f"{what} {name}: samples must be a 1-d array, got shape {col.shape}")
        if n is not None and col.shape[0] != n:
            raise ValueError(f"{what} {name} has {col.shape[0]} samples, the others {n}")
        n = col.shape[0]
        cols.append(col)
    return np.column_stack(cols) if cols else np.empty((0, 0))


def _solve_gram(G: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Solve the normal equations G coef = b by a (diagonally scaled) Cholesky factorization.

    The Hermite basis of standardized inputs is well conditioned, so the normal equations lose nothing against
    QR here and are several times cheaper, which matters for the bootstrap refits.
    Raises ``LinAlgError`` when the basis is (nearly) rank deficient.
    """
    from scipy.linalg import cho_factor, cho_solve

    d = np.sqrt(np.diag(G))
    if d.min() <= 0:
        raise np.linalg.LinAlgError("basis matrix has an all-zero column")
    try:
        c = cho_factor(G / np.outer(d, d), lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise np.linalg.LinAlgError("basis matrix is rank deficient") from None
    if np.min(np.abs(np.diag(c[0]))) ** 2 < 1e-11:
        raise np.linalg.LinAlgError("basis matrix is rank deficient")
    return cho_solve(c, b / d[:, None], check_finite=False) / d[:, None], (c, d)


def _augmented(psi: np.ndarray, Ys: np.ndarray) -> np.ndarray:
    """[Psi | Y] as one C-contiguous matrix, so one product gives every moment a refit needs."""
    return np.ascontiguousarray(np.hstack([psi, Ys]))


def fit_chaos(X: Mapping[str, object], Y: Mapping[str, object], inputs: Sequence[str] | None = None,
              outputs: Sequence[str] | None = None, degree: int = 2) -> ChaosExpansion:
    """Fit a polynomial expansion (a functional decomposition) of ``outputs`` over ``inputs`` by least squares.

    Parameters
    ----------
    X : name -> samples of each input, shape (n,), canonical units
    Y : name -> samples of each output, shape (n,) (may be the same mapping as X)
    inputs, outputs : names to use (default: every key of X, every key of Y)
    degree : total polynomial degree (1 = linear; 2 is plenty for the process chain at percent-level spreads)

    Raises
    ------
    ValueError : an input or output without variance, fewer samples than basis terms, NaN in the samples,
        collinear inputs.
    """
    return _fit(X, Y, inputs, outputs, degree)[0]


def _fit(X: Mapping[str, object], Y: Mapping[str, object], inputs: Sequence[str] | None,
         outputs: Sequence[str] | None, degree: int):
    """(expansion, basis matrix, standardized outputs); see :func:`fit_chaos`."""
    inputs = tuple(inputs if inputs is not None else X.keys())
    outputs = tuple(outputs if outputs is not None else Y.keys())
    if not inputs or not outputs:
        raise ValueError("fit_chaos needs at least one input and one output")
    if degree < 1:
        raise ValueError(f"degree = {degree} must be at least 1")
    Xm = _as_matrix(X, inputs, "input")
    Ym = _as_matrix(Y, outputs, "output")
    if Xm.shape[0] != Ym.shape[0]:
        raise ValueError(f"{Xm.shape[0]} input samples but {Ym.shape[0]} output samples")
    for M, names, what in ((Xm, inputs, "input"), (Ym, outputs, "output")):
        bad = [n for n, ok in zip(names, np.all(np.isfinite(M), axis=0)) if not ok]
        if bad:
            raise ValueError(f"{what} {bad[0]} has NaN or infinite samples; drop those rows first")
    center, scale = Xm.mean(axis=0), Xm.std(axis=0)
    for name, s, c in zip(inputs, scale, center):
        if not s > 1e-12 * max(abs(c), 1e-300):
            raise ValueError(f"input {name} has no variance in the samples (all {c:g}); leave it out")
    ystd = Ym.std(axis=0)
    for name, s, c in zip(outputs, ystd, Ym.mean(axis=0)):
        if not s > 1e-12 * max(abs(c), 1e-300):
            raise ValueError(f"output {name} has no variance in the samples (all {c:g}); nothing to attribute")
    indices = _multi_indices(len(inputs), degree)
    n = Xm.shape[0]
    if n < 2 * len(indices):
        raise ValueError(f"{n} samples are too few for a degree-{degree} expansion in {len(inputs)} inputs "
                         f"({len(indices)} terms; need at least {2 * len(indices)})")
    phi, offsets = _univariate((Xm - center) / scale, degree)
    psi = _design_matrix(phi, indices)
    mgram = np.einsum("ani,bni->iab", phi, phi) / n
    ymean = Ym.mean(axis=0)
    Ys = (Ym - ymean) / ystd  # standardized outputs: no cancellation for outputs with a tiny relative spread
    try:
        coef_s, (c, dg) = _solve_gram(psi.T @ psi, psi.T @ Ys)
    except np.linalg.LinAlgError:
        raise ValueError(_collinear_message(Xm, inputs)) from None
    from scipy.linalg import cho_solve

    lev = np.einsum("ij,ji->i", psi / dg, cho_solve(c, (psi / dg).T, check_finite=False))
    resid = Ys - psi @ coef_s
    sst = np.sum(Ys**2, axis=0)
    r2 = 1.0 - np.sum(resid**2, axis=0) / sst
    loo = resid / np.clip(1.0 - lev, 1e-12, None)[:, None]
    q2 = 1.0 - np.sum(loo**2, axis=0) / sst
    coef = coef_s * ystd
    coef[0] += ymean
    return ChaosExpansion(inputs, outputs, center, scale, offsets, mgram, indices, coef, r2, q2, n), psi, Ys


def _collinear_message(Xm: np.ndarray, inputs: Sequence[str]) -> str:
    """Name the inputs that are (nearly) a linear function of each other, from the smallest principal axis."""
    involved = ""
    if Xm.shape[1] > 1:
        R = np.corrcoef(Xm, rowvar=False)
        w, v = np.linalg.eigh(R)
        if w[0] < 1e-6:
            names = [n for n, a in zip(inputs, v[:, 0]) if abs(a) > 0.1]
            involved = f" ({', '.join(names)})"
    return (f"the inputs are (nearly) collinear in the samples{involved}: one is a function of the others; "
            f"leave it out")


# --------------------------------------------------------------------------------------------------------------
# ANCOVA


def _coef_from(M: np.ndarray, P: int) -> np.ndarray:
    """Least-squares coefficients from the moment matrix M = A'A/n of A = [Psi | Y]."""
    return _solve_gram(M[:P, :P], M[:P, P:])[0]


def _ancova_from(M: np.ndarray, P: int, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices (3, d, m): S, S_U, S_C of every input for every output; coefficients) from M = A'A/n.

    Everything follows from the moment matrix of A = [Psi | Y]: the least-squares coefficients, the covariance
    of the basis functions, and their covariance with the outputs (the constant basis function gives the means).
    """
    G, b = M[:P, :P], M[:P, P:]
    coef = _solve_gram(G, b)[0]
    mp, my = G[0], M[0, P:]
    sig = G - np.outer(mp, mp)                 # Cov[Psi_j, Psi_k]
    cpy = b - np.outer(mp, my)                 # Cov[Psi_j, Y]
    vy = np.diag(M[P:, P:]) - my**2            # Var[Y]
    d = masks.shape[0]
    out = np.empty((3, d, coef.shape[1]))
    for i in range(d):
        k = masks[i]
        ci = coef[k]
        out[1, i] = np.einsum("km,kl,lm->m", ci, sig[np.ix_(k, k)], ci) / vy    # Var[M_i] / Var[Y]
        out[0, i] = np.sum(ci * cpy[k], axis=0) / vy                              # Cov[M_i, Y] / Var[Y]
    out[2] = out[0] - out[1]
    return out, coef


def _ci(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    a = (1.0 - confidence) / 2.0
    return np.quantile(boot, a, axis=0), np.quantile(boot, 1.0 - a, axis=0)


def _rows(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n))


#: Samples are bootstrapped in this many blocks (see :func:`_bootstrap_moments`).
BOOT_BLOCKS = 200


def _block_sums(A: np.ndarray, n_blocks: int = BOOT_BLOCKS) -> tuple[np.ndarray, np.ndarray]:
    """Per-block sums A_b'A_b (B, p, p) and block sizes (B,) of consecutive row blocks of A."""
    n = A.shape[0]
    B = max(1, min(n_blocks, n))
    edges = np.linspace(0, n, B + 1).astype(int)
    sums = np.stack([A[a:b].T @ A[a:b] for a, b in zip(edges[:-1], edges[1:])])
    return sums, np.diff(edges).astype(float)


def _bootstrap_moments(sums: np.ndarray, sizes: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Moment matrices (n_boot, p, p) of ``n_boot`` bootstrap resamples.

    The resampling unit is a block of consecutive samples rather than a single sample: the Monte Carlo samples
    are independent, so the blocks are too, and every statistic here is a smooth function of the moment matrix
    (a mean), whose bootstrap distribution over ~200 independent block means is the same as over the samples
    themselves. A resample then costs a weighted sum of block matrices instead of a pass over all samples.
    """
    B, p = sums.shape[0], sums.shape[1]
    counts = rng.multinomial(B, np.full(B, 1.0 / B), size=n_boot).astype(float)
    return (counts @ sums.reshape(B, -1)).reshape(n_boot, p, p) / (counts @ sizes)[:, None, None]


def _finite_rows(X: Mapping[str, object], names: Sequence[str]) -> np.ndarray | None:
    """Mask of rows where every named array is finite (None if all are)."""
    mask = None
    for name in names:
        col = np.asarray(X[name], float)
        if col.ndim == 1:
            ok = np.isfinite(col)
            mask = ok if mask is None else mask & ok
    return None if mask is None or mask.all() else mask


def ancova(X: Mapping[str, object], Y: Mapping[str, object], inputs: Sequence[str] | None = None,
           outputs: Sequence[str] | None = None, degree: int = 2, n_boot: int = 100,
           confidence: float = 0.95, seed: int = 0, sobol: bool = False, check: bool = True) -> dict:
    """ANCOVA sensitivity indices S, S_U, S_C (paper eq. 4-7) of each output w.r.t. each input, from samples.

    Parameters
    ----------
    X : name -> Monte Carlo samples of each input, shape (n,); the inputs may be correlated (e.g. structural
        parameters from a process chain Monte Carlo)
    Y : name -> model outputs on the same samples, shape (n,)
    inputs, outputs : names to analyze (default: all keys of X, all keys of Y)
    degree : total degree of the chaos expansion that supplies the first-order terms M_i
    n_boot : bootstrap resamples for confidence intervals (0: none)
    confidence : level of the percentile intervals
    seed : seed of the bootstrap
    sobol : also give Sobol' first-order ``S1`` and total ``ST`` indices from the same expansion (only
        meaningful for independent inputs; ``check`` refuses clearly correlated samples)

    Rows with a NaN or infinite value in any used input or output (e.g. a surrogate evaluated outside its
    design space with policy "nan") are dropped and counted in ``dropped``.

    Returns
    -------
    dict with ``method``, ``samples``, ``dropped``, ``degree``, ``inputs``, ``outputs`` and ``indices``:
    ``{output: {input: {"S", "S_U", "S_C", "ci": {"S": [lo, hi], "S_U": [...], "S_C": [...]}}}}`` (and
    ``S1``, ``ST`` with ``sobol``), plus per
    output ``sum`` (column sums, as the last row of the paper's Table 1), ``variance`` (of the output, its
    unit squared), ``r2`` and ``q2`` of the expansion. ``1 - sum.S`` is the share of interactions and of what
    the expansion does not capture.
    """
    inputs = tuple(inputs if inputs is not None else X.keys())
    outputs = tuple(outputs if outputs is not None else Y.keys())
    if not 0 < confidence < 1:
        raise ValueError(f"confidence = {confidence} is outside (0, 1)")
    merged = {**{k: X[k] for k in inputs if k in X}, **{k: Y[k] for k in outputs if k in Y}}
    for k in inputs:
        if k not in X:
            raise KeyError(f"input {k!r} is not in the samples (have: {', '.join(X)})")
    for k in outputs:
        if k not in Y:
            raise KeyError(f"output {k!r} is not in the samples (have: {', '.join(Y)})")
    mask = _finite_rows(merged, list(merged))
    dropped = 0
    if mask is not None:
        dropped = int((~mask).sum())
        merged = {k: np.asarray(v, float)[mask] for k, v in merged.items()}
    if sobol and check:
        check_independent(merged, inputs)
    pce, psi, Ys = _fit(merged, merged, inputs, outputs, degree)
    Ym = _as_matrix(merged, outputs, "output")
    P = len(pce.indices)
    A = _augmented(psi, Ys)
    masks = pce.first_order_masks()
    est, coef = _ancova_from(A.T @ A / len(A), P, masks)
    gram = pce.independent_gram() if sobol else None
    if sobol:
        est = np.concatenate([est, _chaos_sobol_from(coef, pce.indices, gram)])
    lo = hi = None
    if n_boot:
        rng = np.random.default_rng(seed)
        sums, sizes = _block_sums(A)
        boot = []
        for M in _bootstrap_moments(sums, sizes, n_boot, rng):
            try:
                b, c = _ancova_from(M, P, masks)
            except np.linalg.LinAlgError:  # a degenerate resample: skip it
                continue
            boot.append(np.concatenate([b, _chaos_sobol_from(c, pce.indices, gram)]) if sobol else b)
        lo, hi = _ci(np.array(boot), confidence)
    var = Ym.var(axis=0)
    result: dict = {"method": "ancova", "samples": int(len(Ym)), "dropped": dropped, "degree": degree,
                    "confidence": confidence, "n_boot": n_boot, "inputs": list(inputs), "outputs": list(outputs),
                    "indices": {}}
    keys = ("S", "S_U", "S_C", "S1", "ST") if sobol else ("S", "S_U", "S_C")
    for j, out in enumerate(outputs):
        entry = {}
        for i, inp in enumerate(inputs):
            e = {key: float(est[q, i, j]) for q, key in enumerate(keys)}
            if lo is not None:
                e["ci"] = {key: [float(lo[q, i, j]), float(hi[q, i, j])] for q, key in enumerate(keys)}
            entry[inp] = e
        result["indices"][out] = entry
    result["sum"] = {out: {key: float(est[q, :, j].sum()) for q, key in enumerate(keys[:3])}
                     for j, out in enumerate(outputs)}
    result["variance"] = {out: float(var[j]) for j, out in enumerate(outputs)}
    result["r2"] = {out: float(pce.r2[j]) for j, out in enumerate(outputs)}
    result["q2"] = {out: float(pce.q2[j]) for j, out in enumerate(outputs)}
    return result


# --------------------------------------------------------------------------------------------------------------
# Sobol' indices


def check_independent(X: Mapping[str, object], inputs: Sequence[str], threshold: float | None = None) -> None:
    """Raise ``ValueError`` naming the pair if two inputs' samples are clearly correlated.

    ``threshold`` defaults to 0.05 + 4/sqrt(n): far above the sampling noise of independent samples.
    """
    Xm = _as_matrix(X, inputs, "input")
    n = Xm.shape[0]
    if len(inputs) < 2 or n < 3:
        return
    thr = threshold if threshold is not None else 0.05 + 4.0 / math.sqrt(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.corrcoef(Xm, rowvar=False)
    iu = np.triu_indices(len(inputs), 1)
    worst = int(np.nanargmax(np.abs(R[iu]))) if np.isfinite(R[iu]).any() else None
    if worst is not None and abs(R[iu][worst]) > thr:
        a, b = inputs[iu[0][worst]], inputs[iu[1][worst]]
        raise ValueError(f"Sobol' indices need independent inputs, but {a} and {b} correlate at "
                         f"{R[iu][worst]:+.3f} (limit {thr:.3f}); use ANCOVA indices instead")


def _chaos_sobol_from(coef: np.ndarray, indices: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """(2, d, m): first-order and total Sobol' indices of an expansion under independent inputs.

    ``gram`` is E[Psi_j Psi_k] under the independent product of the marginals. Because every term integrates
    to zero over each of its inputs, Var[E(Y|X_i)] is the variance of the terms in x_i alone, and
    Var[E(Y|X_~i)] the variance of the terms without x_i (Sudret 2008 for orthonormal bases).
    """
    c = coef[1:]
    nz = indices[1:] > 0
    G = gram[1:, 1:]
    var = np.einsum("jm,jk,km->m", c, G, c)
    d = indices.shape[1]
    out = np.empty((2, d, coef.shape[1]))
    only = nz.sum(axis=1) == 1
    for i in range(d):
        k1 = nz[:, i] & only
        kn = ~nz[:, i]
        out[0, i] = np.einsum("jm,jk,km->m", c[k1], G[np.ix_(k1, k1)], c[k1]) / var
        out[1, i] = 1.0 - np.einsum("jm,jk,km->m", c[kn], G[np.ix_(kn, kn)], c[kn]) / var
    return out


def chaos_sobol(X: Mapping[str, object], Y: Mapping[str, object], inputs: Sequence[str] | None = None,
                outputs: Sequence[str] | None = None, degree: int = 2, n_boot: int = 100,
                confidence: float = 0.95, seed: int = 0, check: bool = True) -> dict:
    """Sobol' first-order (S1) and total (ST) indices from a polynomial expansion fitted on plain Monte Carlo
    samples (no pick-freeze design needed: the route for samples the twin already holds).

    Valid for independent inputs with any marginals (the variances of the terms are taken under the product of
    the sampled marginals); ``check`` refuses clearly correlated samples. The model must be smooth enough for a
    polynomial of ``degree``: look at ``r2`` and ``q2`` in the result. Returns ``{"method": "chaos_sobol", ...,
    "indices": {output: {input: {"S1", "ST", "ci": {...}}}}}``.
    """
    res = ancova(X, Y, inputs, outputs, degree, n_boot, confidence, seed, sobol=True, check=check)
    out = {k: v for k, v in res.items() if k not in ("indices", "sum", "method")}
    out["method"] = "chaos_sobol"
    out["indices"] = {o: {i: {"S1": e["S1"], "ST": e["ST"],
                              **({"ci": {"S1": e["ci"]["S1"], "ST": e["ci"]["ST"]}} if "ci" in e else {})}
                          for i, e in ent.items()} for o, ent in res["indices"].items()}
    return out


def _sobol_result(method, inputs, outputs, est, lo, hi, n, confidence, n_boot, extra=None) -> dict:
    res = {"method": method, "samples": int(n), "confidence": confidence, "n_boot": n_boot,
           "inputs": list(inputs), "outputs": list(outputs), "indices": {}}
    res.update(extra or {})
    for j, out in enumerate(outputs):
        entry = {}
        for i, inp in enumerate(inputs):
            e = {"S1": float(est[0, i, j]), "ST": float(est[1, i, j])}
            if lo is not None:
                e["ci"] = {"S1": [float(lo[0, i, j]), float(hi[0, i, j])],
                           "ST": [float(lo[1, i, j]), float(hi[1, i, j])]}
            entry[inp] = e
        res["indices"][out] = entry
    return res


@dataclass(frozen=True)
class SobolDesign:
    """A pick-freeze design: base matrices A and B and, per input i, A with column i taken from B.

    Attributes
    ----------
    inputs : the varied inputs, in column order
    n : rows of each block
    samples : every input -> array of n * (d + 2) values, blocks stacked as [A, B, AB_1, ..., AB_d]; constant
        inputs are plain floats. Evaluate the model on these, then call :func:`sobol_indices`.
    """

    inputs: tuple[str, ...]
    n: int
    samples: dict

    @property
    def size(self) -> int:
        return self.n * (len(self.inputs) + 2)


def sobol_design(marginals: Mapping[str, object], n: int, rng: np.random.Generator,
                 inputs: Sequence[str] | None = None, qmc: bool = False) -> SobolDesign:
    """Sample a pick-freeze design for Sobol' indices of independent inputs.

    Parameters
    ----------
    marginals : name -> :class:`models.uncertainty.Marginal` (anything with ``ppf`` and ``is_constant``)
    n : base sample size (the model is evaluated n * (d + 2) times)
    rng : numpy generator
    inputs : inputs to vary (default: every non-constant marginal); the others are held at their nominal value
    qmc : use a scrambled Sobol' sequence for A and B instead of pseudo-random numbers
    """
    if n < 2:
        raise ValueError(f"n = {n} must be at least 2")
    names = tuple(inputs if inputs is not None else [k for k, m in marginals.items() if not m.is_constant])
    for k in names:
        if k not in marginals:
            raise KeyError(f"input {k!r} has no marginal (have: {', '.join(marginals)})")
    d = len(names)
    if d == 0:
        raise ValueError("no uncertain input to vary")
    if qmc:
        from scipy.stats import qmc as _qmc

        u = _qmc.Sobol(2 * d, scramble=True, seed=rng).random(n)
    else:
        u = rng.random((n, 2 * d))
    u = np.clip(u, 1e-12, 1 - 1e-12)
    A = np.column_stack([marginals[k].ppf(u[:, i]) for i, k in enumerate(names)])
    B = np.column_stack([marginals[k].ppf(u[:, d + i]) for i, k in enumerate(names)])
    blocks = [A, B]
    for i in range(d):
        ABi = A.copy()
        ABi[:, i] = B[:, i]
        blocks.append(ABi)
    stacked = np.vstack(blocks)
    samples: dict = {k: float(m.nominal) for k, m in marginals.items() if k not in names}
    samples.update({k: stacked[:, i] for i, k in enumerate(names)})
    return SobolDesign(names, int(n), samples)


def _pick_freeze(fA, fB, fAB):
    """(2, d, m) from fA, fB (n, m) and fAB (d, n, m): Saltelli 2010 first order, Jansen total.

    The outputs are centred first: the first-order estimator is unbiased either way, but its variance grows with
    the output's squared mean (m_dry ~ 14 mg/cm2 with a spread of 0.4 would drown in noise uncentred).
    """
    mu = np.mean(np.concatenate([fA, fB]), axis=0)
    fA, fB, fAB = fA - mu, fB - mu, fAB - mu
    var = np.var(np.concatenate([fA, fB]), axis=0)
    first = np.mean(fB[None] * (fAB - fA[None]), axis=1) / var
    total = 0.5 * np.mean((fA[None] - fAB) ** 2, axis=1) / var
    return np.stack([first, total])


def sobol_indices(design: SobolDesign, Y: Mapping[str, object], outputs: Sequence[str] | None = None,
                  n_boot: int = 200, confidence: float = 0.95, seed: int = 0) -> dict:
    """Sobol' first-order (S1) and total (ST) indices from the model outputs on a :func:`sobol_design`.

    Parameters
    ----------
    design : the design the outputs were computed on
    Y : output name -> array of ``design.size`` values, in the design's row order
    outputs : names (default: every key of Y with ``design.size`` samples)
    n_boot, confidence, seed : percentile bootstrap over the n base rows

    Returns ``{"method": "sobol_pick_freeze", ..., "indices": {output: {input: {"S1", "ST", "ci"}}}}``.
    """
    d, n = len(design.inputs), design.n
    if outputs is None:
        outputs = [k for k, v in Y.items() if np.ndim(v) == 1 and len(v) == design.size
                   and k not in design.inputs]
    outputs = tuple(outputs)
    Ym = _as_matrix(Y, outputs, "output")
    if Ym.shape[0] != design.size:
        raise ValueError(f"outputs have {Ym.shape[0]} rows but the design has {design.size} = {n} x ({d} + 2)")
    if not np.all(np.isfinite(Ym)):
        bad = outputs[int(np.argmin(np.all(np.isfinite(Ym), axis=0)))]
        raise ValueError(f"output {bad} has NaN or infinite values on the design")
    blocks = Ym.reshape(d + 2, n, -1)
    fA, fB, fAB = blocks[0], blocks[1], blocks[2:]
    for j, out in enumerate(outputs):
        if np.var(np.concatenate([fA[:, j], fB[:, j]])) <= 0:
            raise ValueError(f"output {out} has no variance on the design; nothing to attribute")
    est = _pick_freeze(fA, fB, fAB)
    lo = hi = None
    if n_boot:
        rng = np.random.default_rng(seed)
        boot = np.array([_pick_freeze(fA[r], fB[r], fAB[:, r]) for r in _rows(rng, n, n_boot)])
        lo, hi = _ci(boot, confidence)
    return _sobol_result("sobol_pick_freeze", design.inputs, outputs, est, lo, hi, n, confidence, n_boot,
                         extra={"evaluations": design.size})


# --------------------------------------------------------------------------------------------------------------
# Sankey flows process -> structure -> performance (paper Figure 10)


def sankey_flows(chain: Mapping, cell: Mapping, index: str = "S", min_flow: float = 0.005) -> dict:
    """Nodes and links of the sensitivity Sankey diagram: process -> structure -> performance.

    Parameters
    ----------
    chain : :func:`ancova` result of structural parameters w.r.t. the (independent) process inputs
    cell : :func:`ancova` result of performance outputs w.r.t. the cell model's inputs
    index : which index sizes a link: ``"S"`` (total ANCOVA share, the paper's choice) or ``"S_U"``
    min_flow : links with |index| below this are left out

    Returns
    -------
    ``{"nodes": [{"name", "layer"}], "links": [{"source", "target", "value", "width", "negative"}],
    "index": index, "caveat": str}``. Layers: ``process`` (inputs of the chain; formulation parameters that are
    also cell inputs stay here and link straight to performance, as in the paper), ``structure`` (chain
    outputs used by the cell model), ``performance`` (cell outputs). ``width`` is |value|: a negative ANCOVA
    index (a correlated input whose effect cancels another's) is drawn as a flow of its magnitude and flagged.

    Notes
    -----
    The flows are sensitivity indices of two separate models. They are not a conserved quantity: for a
    non-linear model the shares of a structural parameter's uncertainty coming in from the process need not
    equal what goes out to performance, and multiplying indices along a path is only valid for strictly linear
    models (paper section 3.4).
    """
    if index not in ("S", "S_U"):
        raise ValueError(f"index {index!r} is not one of S, S_U")
    process = list(chain["inputs"])
    cell_inputs = list(cell["inputs"])
    structure = [s for s in cell_inputs if s in chain["outputs"] and s not in process]
    unknown = [s for s in cell_inputs if s not in process and s not in structure]
    if unknown:
        raise ValueError(f"cell input(s) {', '.join(unknown)} are neither process inputs nor chain outputs")
    performance = list(cell["outputs"])
    nodes = ([{"name": p, "layer": "process"} for p in process]
             + [{"name": s, "layer": "structure"} for s in structure]
             + [{"name": o, "layer": "performance"} for o in performance])
    links = []

    def add(src, dst, value):
        if abs(value) >= min_flow:
            links.append({"source": src, "target": dst, "value": float(value), "width": float(abs(value)),
                          "negative": bool(value < 0)})

    for s in structure:
        for p in process:
            add(p, s, chain["indices"][s][p][index])
    for o in performance:
        for c in cell_inputs:
            add(c, o, cell["indices"][o][c][index])
    caveat = ("Flows are sensitivity indices of two separate models (process chain, cell model). For non-linear "
              "models they do not balance: what flows into a structural parameter need not equal what flows out, "
              "and multiplying indices along a path is only valid for strictly linear models (Thomitzek et al. "
              "2022, section 3.4).")
    return {"nodes": nodes, "links": links, "index": index, "caveat": caveat}
