"""Polynomial-chaos surrogate of the cell model (structure surrogate + P2D), evaluated in plain numpy.

A P2D solve takes tens of milliseconds; the twin needs capacity and energy density for 10^4 Monte Carlo samples
per electrode segment within milliseconds. The paper replaces its P2D by a polynomial chaos expansion (PCE,
section 3.4, Figure 9); so does the twin. The expansion is fitted with OpenTURNS (``FunctionalChaosAlgorithm``,
Legendre basis on the inputs scaled to [-1, 1] over the design space, sparse by LARS, see
:func:`models.metamodel.fit_legendre_pce`) to P2D runs of a virtual design of experiments, one expansion per
output, and evaluated here as a matrix product (OpenTURNS' own evaluation is ~10x slower).

Like the process meta-models (:class:`models.metamodel.MetaModel`) the surrogate carries its design space and
refuses to extrapolate: outside it, ``policy`` ``"raise"`` raises :class:`~models.metamodel.DesignSpaceError`,
``"warn"`` evaluates and warns, ``"nan"`` returns NaN for those samples. It also records the material
constants it was trained for (particle densities, particle radius); samples that carry different values are
outside its validity in the same way.

Units: inputs and outputs in canonical units (mass fractions [-], m_dry [mg/cm2], rho_cal [g/cm3],
capacity [mAh/cm2], energy density [Wh/L]).

References
----------
Thomitzek et al., Sustainability 2022, 14, 1530, section 3.4, Figure 9.
B. Sudret, Reliab. Eng. Syst. Saf. 93 (2008) 964-979 (PCE, and its use for sensitivity analysis).
G. Blatman, B. Sudret, J. Comput. Phys. 230 (2011) 2345-2367 (sparse PCE by LARS, hyperbolic truncation).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .metamodel import POLICIES, DesignSpace, DesignSpaceError, fit_legendre_pce, legendre_design_matrix

__all__ = ["CellSurrogate", "fit_cell_surrogate", "q2", "FORMAT"]

FORMAT = "electrode-twin cell surrogate 1"
_CHUNK = 8192
_MATERIAL_RTOL = 1e-6


def q2(y, yhat) -> float:
    """Predictivity coefficient Q2 = 1 - sum (y - yhat)^2 / sum (y - mean y)^2 on held-out data."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss if ss > 0 else float("nan")


@dataclass
class CellSurrogate:
    """Fitted PCE of several outputs over a box of inputs.

    Attributes
    ----------
    inputs : canonical input names (columns of ``X``)
    outputs : canonical output names
    design_space : box the expansion was fitted on
    indices : multi-indices of the Legendre terms, shape (terms, len(inputs)); shared by all outputs
    coef : coefficients, shape (len(outputs), terms) (zero where an output's LARS selection left a term out)
    materials : material constants the training assumed {name: value}
    policy : ``"raise"``, ``"warn"`` or ``"nan"``: what evaluation outside the design space does
    metrics, info : validation figures and provenance (free-form, JSON-able)
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    design_space: DesignSpace
    indices: np.ndarray
    coef: np.ndarray
    materials: dict[str, float] = field(default_factory=dict)
    policy: str = "raise"
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"unknown design-space policy {self.policy!r}; known: {', '.join(POLICIES)}")
        self.inputs = tuple(self.inputs)
        self.outputs = tuple(self.outputs)
        self.indices = np.asarray(self.indices, int).reshape(-1, len(self.inputs))
        self.coef = np.asarray(self.coef, float).reshape(len(self.outputs), -1)
        if self.coef.shape[1] != self.indices.shape[0]:
            raise ValueError(f"{self.coef.shape[1]} coefficients per output for {self.indices.shape[0]} terms")
        if tuple(self.design_space.names) != self.inputs:
            raise ValueError(f"design space names {self.design_space.names} differ from inputs {self.inputs}")

    # ----------------------------------------------------------------------------------------------------------
    # evaluation

    def _violations(self, X: np.ndarray, where: str) -> tuple[np.ndarray, str]:
        """Mask of rows outside the design space or not finite, and a message naming field, value and limit."""
        finite = np.isfinite(X)
        bad = self.design_space.outside(np.where(finite, X, np.asarray(self.design_space.low))) | ~finite.all(1)
        if not bad.any():
            return bad, ""
        parts = []
        lo, hi = np.asarray(self.design_space.low), np.asarray(self.design_space.high)
        for j, name in enumerate(self.inputs):
            col = X[:, j]
            nonfinite = int((~np.isfinite(col)).sum())
            if nonfinite:
                parts.append(f"{name}: {nonfinite} value(s) not finite")
            c = col[np.isfinite(col)]
            out = c[(c < lo[j] - 1e-9 * abs(lo[j])) | (c > hi[j] + 1e-9 * abs(hi[j]))]
            if out.size:
                parts.append(f"{name} in [{out.min():.6g}, {out.max():.6g}] vs design space "
                             f"[{lo[j]:.6g}, {hi[j]:.6g}]")
        return bad, (f"cell surrogate{where}: {int(bad.sum())} of {len(X)} sample(s) outside its design space "
                     f"({'; '.join(parts)}); retrain it over a wider box (twin cell --retrain) or use "
                     f"--model p2d")

    def predict(self, X, policy: str | None = None) -> np.ndarray:
        """Outputs of a matrix of inputs (columns in ``inputs`` order), shape (n, len(outputs))."""
        policy = policy or self.policy
        if policy not in POLICIES:
            raise ValueError(f"unknown design-space policy {policy!r}; known: {', '.join(POLICIES)}")
        X = np.atleast_2d(np.asarray(X, float))
        if X.shape[1] != len(self.inputs):
            raise ValueError(f"X has {X.shape[1]} columns, the surrogate takes {len(self.inputs)} "
                             f"({', '.join(self.inputs)})")
        bad, msg = self._violations(X, "")
        if bad.any():
            if policy == "raise":
                raise DesignSpaceError(msg)
            if policy == "warn":
                warnings.warn(msg, UserWarning, stacklevel=2)
        z = self.design_space.scale(X)
        Y = np.empty((len(X), len(self.outputs)))
        for start in range(0, len(X), _CHUNK):
            Y[start:start + _CHUNK] = legendre_design_matrix(z[start:start + _CHUNK], self.indices) @ self.coef.T
        if bad.any() and policy == "nan":
            Y[bad] = np.nan
        return Y

    def material_mismatch(self, values: Mapping[str, object]) -> tuple[np.ndarray | bool, str]:
        """Where ``values`` carry material constants that differ from the training's: (mask or bool, message)."""
        bad: np.ndarray | bool = False
        parts = []
        for name, ref in self.materials.items():
            if name not in values:
                continue
            v = np.asarray(values[name], float)
            off = ~np.isclose(v, ref, rtol=_MATERIAL_RTOL, atol=0.0)
            if np.any(off):
                w = v[off] if v.ndim else v
                parts.append(f"{name} = {float(np.min(w)):.6g}..{float(np.max(w)):.6g} vs {ref:.6g} the surrogate "
                             f"was trained for")
                bad = bad | off
        msg = ("cell surrogate: material constants differ from its training (" + "; ".join(parts)
               + "); retrain it for these materials (twin cell --retrain)") if parts else ""
        return bad, msg

    def check_materials(self, values: Mapping[str, object]) -> None:
        """Raise :class:`DesignSpaceError` if ``values`` (e.g. a scenario's nominal inputs) carry other
        material constants than the training's. Names not in ``values`` are not checked."""
        bad, msg = self.material_mismatch(values)
        if np.any(bad):
            raise DesignSpaceError(msg)

    def __call__(self, samples: Mapping[str, object], policy: str | None = None) -> dict[str, np.ndarray]:
        """{output: array} of a mapping of samples (arrays or scalars, broadcast together).

        Every name of ``inputs`` must be present; material constants (``rho_am``, ``particle_radius``, ...) may
        be, and are then checked against the training's under the same policy.
        """
        missing = [k for k in self.inputs if k not in samples]
        if missing:
            hint = (" (for the paper's convention w_pb = 1 - w_am - w_ca, pass models.cell.close_fractions(samples))"
                    if "w_pb" in missing else "")
            raise KeyError(f"cell surrogate inputs missing: {', '.join(missing)}{hint}")
        policy = policy or self.policy
        arrays = np.broadcast_arrays(*[np.asarray(samples[k], float) for k in self.inputs])
        shape = arrays[0].shape
        X = np.column_stack([a.ravel() for a in arrays]) if shape else np.array([[float(a) for a in arrays]])
        mat_bad, mat_msg = self.material_mismatch(samples)
        if np.any(mat_bad):
            if policy == "raise":
                raise DesignSpaceError(mat_msg)
            if policy == "warn":
                warnings.warn(mat_msg, UserWarning, stacklevel=2)
        Y = self.predict(X, policy)
        if np.any(mat_bad) and policy == "nan":
            Y[np.broadcast_to(mat_bad, shape).ravel() if np.ndim(mat_bad) else slice(None)] = np.nan
        return {o: (Y[:, i].reshape(shape) if shape else float(Y[0, i])) for i, o in enumerate(self.outputs)}

    # ----------------------------------------------------------------------------------------------------------
    # persistence

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "design_space": self.design_space.to_dict(),
            "materials": dict(self.materials),
            "basis": "orthonormal Legendre on inputs scaled to [-1, 1] over the design space",
            "indices": self.indices.tolist(),
            "coef": {o: self.coef[i].tolist() for i, o in enumerate(self.outputs)},
            "metrics": self.metrics,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: Mapping, policy: str = "raise") -> "CellSurrogate":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a cell surrogate document (format {d.get('format')!r}, expected {FORMAT!r})")
        for key in ("inputs", "outputs", "design_space", "indices", "coef"):
            if key not in d:
                raise ValueError(f"cell surrogate document lacks {key!r}")
        ds = DesignSpace.from_dict(d["design_space"])
        ds = DesignSpace(tuple(d["inputs"]), tuple(ds.low[ds.names.index(n)] for n in d["inputs"]),
                         tuple(ds.high[ds.names.index(n)] for n in d["inputs"]))
        coef = np.array([d["coef"][o] for o in d["outputs"]], float)
        return cls(tuple(d["inputs"]), tuple(d["outputs"]), ds, np.asarray(d["indices"], int), coef,
                   {k: float(v) for k, v in d.get("materials", {}).items()}, policy, dict(d.get("metrics", {})),
                   dict(d.get("info", {})))


def fit_cell_surrogate(X, Y, inputs: Sequence[str], outputs: Sequence[str], design_space: DesignSpace,
                       materials: Mapping[str, float] | None = None, degree: int = 5, q_norm: float = 0.75,
                       info: Mapping | None = None) -> CellSurrogate:
    """Fit one sparse Legendre PCE per output on a DoE and join them into a :class:`CellSurrogate`.

    Parameters
    ----------
    X : array_like, shape (n, d) -- DoE inputs in canonical units, columns in ``inputs`` order, inside
        ``design_space``
    Y : array_like, shape (n, p) -- outputs (rows with NaN, i.e. failed P2D runs, are dropped)
    inputs, outputs : canonical names
    design_space : the box the DoE was drawn from (not the data's min/max)
    materials : material constants of the training
    degree, q_norm : candidate basis (total degree, hyperbolic quasi-norm)

    Returns
    -------
    CellSurrogate whose ``metrics`` hold the training size and the number of terms per output.
    """
    X = np.atleast_2d(np.asarray(X, float))
    Y = np.asarray(Y, float).reshape(len(X), -1)
    keep = np.all(np.isfinite(X), axis=1) & np.all(np.isfinite(Y), axis=1)
    X, Y = X[keep], Y[keep]
    if design_space.outside(X).any():
        raise ValueError("the DoE has rows outside the design space it claims")
    z = design_space.scale(X)
    fits = [fit_legendre_pce(z, Y[:, i], degree, q_norm) for i in range(Y.shape[1])]
    terms = sorted({tuple(a) for idx, _ in fits for a in idx}, key=lambda a: (sum(a), a))
    pos = {a: k for k, a in enumerate(terms)}
    coef = np.zeros((Y.shape[1], len(terms)))
    for i, (idx, c) in enumerate(fits):
        for a, v in zip(idx, c):
            coef[i, pos[tuple(a)]] = v
    metrics = {"n_train": int(len(X)), "n_dropped": int((~keep).sum()), "degree": int(degree),
               "q_norm": float(q_norm), "terms": {o: int(len(f[0])) for o, f in zip(outputs, fits)}}
    return CellSurrogate(tuple(inputs), tuple(outputs), design_space, np.array(terms, int), coef,
                         dict(materials or {}), "raise", metrics, dict(info or {}))
