"""Polynomial-chaos surrogate of the cell model (structure surrogate + P2D), evaluated in plain numpy.

A P2D solve takes tens of milliseconds; the twin needs capacity and energy density for 10^4 Monte Carlo samples
per electrode segment within milliseconds. The paper replaces its P2D by a polynomial chaos expansion (PCE,
section 3.4, Figure 9); so does the twin. The expansion is fitted with OpenTURNS (``FunctionalChaosAlgorithm``,
Legendre basis on the inputs scaled to [-1, 1] over the design space, sparse by LARS, see
:func:`models.metamodel.fit_legendre_pce`) to P2D runs of a virtual design of experiments, one expansion per
output, and evaluated here in numpy, factorized so that most of the work is one matrix product (several
million samples per second; OpenTURNS' own evaluation manages ~1.5e5/s).

Like the process meta-models (:class:`models.metamodel.MetaModel`) the surrogate carries its design space and
refuses to extrapolate: outside it (a box of the inputs, optionally cut by bounds on structural quantities derived
from them, such as the electrolyte transport efficiency of the pores), ``policy`` ``"raise"`` raises :class:`~models.metamodel.DesignSpaceError`,
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

import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .cell import CELL_INPUTS, MATERIALS, StructureParameters
from .metamodel import POLICIES, DesignSpace, DesignSpaceError, fit_legendre_pce
from .structure import coating_structure, tortuosity_bruggeman, tortuosity_composition

__all__ = ["CellSurrogate", "fit_cell_surrogate", "q2", "FORMAT", "DERIVED"]

#: Structural quantities a surrogate's ``constraints`` may bound (computed from the inputs and materials).
DERIVED = ("eps_cal", "h_cal", "tau_eff", "transport_efficiency")

FORMAT = "electrode-twin cell surrogate 1"
_CHUNK = 4096
_MATERIAL_RTOL = 1e-6


def _legendre_table(zt: np.ndarray, degree: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Legendre polynomials P_0..P_degree (not normalized) of the rows of zt (d, n), written into ``out``
    (degree+1, d, n); ``tmp`` is scratch space of zt's shape."""
    out[0] = 1.0
    if degree >= 1:
        out[1] = zt
    for k in range(1, degree):
        # P_{k+1} = ((2k+1) z P_k - k P_{k-1}) / (k+1)
        np.multiply(zt, out[k], out=out[k + 1])
        out[k + 1] *= (2 * k + 1) / (k + 1)
        np.multiply(out[k - 1], k / (k + 1), out=tmp)
        out[k + 1] -= tmp
    return out


_BLAS = None


def _single_threaded_blas():
    """Context limiting BLAS to one thread. The surrogate's matrix products are small (tens x 4096): a second
    BLAS thread buys nothing, and on a busy two-core machine waiting for it made calls up to 10x slower."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except Exception:  # noqa: BLE001 - without threadpoolctl the surrogate still works, just less steadily
            _BLAS = False
    if _BLAS is False:
        import contextlib

        return contextlib.nullcontext()
    return _BLAS.limit(limits=1, user_api="blas")


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
    structure : parameters of the structure surrogate the training used
        (:class:`models.cell.StructureParameters` as a dict); needed for ``constraints``
    constraints : bounds {name: [low, high]} on structural quantities derived from the inputs
        (:data:`DERIVED`), which cut corners off the box, e.g. ``{"transport_efficiency": [0.007, 1.0]}``
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
    structure: dict = field(default_factory=dict)
    constraints: dict = field(default_factory=dict)

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
        self.constraints = {k: (float(v[0]), float(v[1])) for k, v in self.constraints.items()}
        unknown = [k for k in self.constraints if k not in DERIVED]
        if unknown:
            raise ValueError(f"unknown constraint {unknown[0]!r}; known: {', '.join(DERIVED)}")
        if self.constraints:
            missing = [k for k in CELL_INPUTS if k not in self.inputs] + [k for k in MATERIALS[:3]
                                                                         if k not in self.materials]
            if missing or not self.structure:
                raise ValueError("constraints need the cell inputs, the materials and the structure parameters "
                                 f"(missing: {', '.join(missing) or 'structure'})")
        self._factorize()
        self._tls = threading.local()

    def __getstate__(self):  # picklable (process pools): the per-thread scratch space stays behind
        state = dict(self.__dict__)
        state.pop("_tls", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._tls = threading.local()

    def derived(self, X) -> dict[str, np.ndarray]:
        """Structural quantities of :data:`DERIVED` computed from input rows X (columns in ``inputs`` order)."""
        X = np.atleast_2d(np.asarray(X, float))
        col = {n: X[:, i] for i, n in enumerate(self.inputs)}
        m = self.materials
        st = coating_structure(col["w_am"], col["w_ca"], col["w_pb"], col["m_dry"], col["rho_cal"], m["rho_am"],
                               m["rho_ca"], m["rho_pb"])
        sp = StructureParameters(**self.structure)
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = (tortuosity_bruggeman(st["eps_cal"], sp.exponent_am) if sp.model == "bruggeman" else
                   tortuosity_composition(st["eps_cal"], st["phi_am"], st["phi_ca"], st["phi_pb"], sp.exponent_am,
                                          sp.exponent_cbm))
            return {"eps_cal": st["eps_cal"], "h_cal": st["h_cal"], "tau_eff": tau,
                    "transport_efficiency": st["eps_cal"] / tau}

    def _factorize(self) -> None:
        """Precompute the factorized evaluation (see :meth:`_expand`)."""
        idx, d = self.indices, len(self.inputs)
        t = min(2, d)
        h = d - t
        self._h = h
        self._degree = int(idx.max()) if idx.size else 0
        if h:
            self._heads, hinv = np.unique(idx[:, :h], axis=0, return_inverse=True)
        else:
            self._heads, hinv = np.zeros((1, 0), int), np.zeros(len(idx), int)
        self._tails, tinv = np.unique(idx[:, h:], axis=0, return_inverse=True)
        hinv, tinv = np.ravel(hinv), np.ravel(tinv)
        p, P, Q = len(self.outputs), len(self._heads), len(self._tails)
        # orthonormal psi_a = sqrt(2a+1) P_a: the normalization goes into the coefficients, P_a is evaluated
        norm = np.prod(np.sqrt(2.0 * idx + 1.0), axis=1) if idx.size else np.ones(0)
        C = np.zeros((p, P, Q))
        for o in range(p):
            np.add.at(C[o], (hinv, tinv), self.coef[o] * norm)
        self._C = C.reshape(p * P, Q)

    def _work(self, m: int) -> dict[str, np.ndarray]:
        """Scratch arrays for a chunk of m samples, kept per thread and reused: allocating fresh megabyte-sized
        temporaries on every call costs more (page faults) than the arithmetic."""
        cache = getattr(self._tls, "work", None)
        if cache is None:
            cache = self._tls.work = {}
        w = cache.get(m)
        if w is None:
            if len(cache) >= 4:
                cache.clear()
            d, p = len(self.inputs), len(self.outputs)
            w = cache[m] = {"zt": np.empty((d, m)), "tmp": np.empty((d, m)),
                            "psi": np.empty((self._degree + 1, d, m)), "T": np.empty((len(self._tails), m)),
                            "F": np.empty((len(self._tails), m)), "G": np.empty((self._C.shape[0], m)),
                            "M": np.empty((len(self._heads), m)), "H": np.empty((len(self._heads), m)),
                            "Y": np.empty((p, m))}
        return w

    def _expand(self, z: np.ndarray) -> np.ndarray:
        """Outputs at scaled inputs z (m, d) -> (len(outputs), m), factorized over the last (up to) two inputs.

        y_o = sum_k c_ok prod_j psi_{a_kj}(z_j) is regrouped by the multi-index of the first d-2 inputs (head h)
        and of the last two (tail t): y_o = sum_h M_h(z) sum_t C_oht T_t(z), where M and T are products of
        univariate Legendre polynomials. The inner sum is one matrix product; the work per sample drops from
        terms x inputs gathers to about (heads + tails) x 2, ~10x faster than the plain design matrix. The
        returned array is scratch space: copy it before the next call.
        """
        m = z.shape[0]
        w = self._work(m)
        np.copyto(w["zt"], z.T)
        psi = _legendre_table(w["zt"], self._degree, w["psi"], w["tmp"])  # (degree+1, d, m)
        h, tails, heads = self._h, self._tails, self._heads
        T, F = w["T"], w["F"]
        np.take(psi[:, h, :], tails[:, 0], axis=0, out=T, mode="clip")
        for j in range(1, tails.shape[1]):
            np.take(psi[:, h + j, :], tails[:, j], axis=0, out=F, mode="clip")
            T *= F
        G = np.matmul(self._C, T, out=w["G"]).reshape(len(self.outputs), len(heads), m)
        if h == 0:
            np.copyto(w["Y"], G[:, 0, :])
            return w["Y"]
        M, H = w["M"], w["H"]
        np.take(psi[:, 0, :], heads[:, 0], axis=0, out=M, mode="clip")
        for j in range(1, h):
            np.take(psi[:, j, :], heads[:, j], axis=0, out=H, mode="clip")
            M *= H
        return np.einsum("hn,ohn->on", M, G, out=w["Y"])

    # ----------------------------------------------------------------------------------------------------------
    # evaluation

    def _violations(self, X: np.ndarray, where: str) -> tuple[np.ndarray, str]:
        """Mask of rows outside the design space (box and constraints) or not finite, and a message naming
        field, values and limits."""
        finite = np.isfinite(X)
        bad = self.design_space.outside(np.where(finite, X, np.asarray(self.design_space.low))) | ~finite.all(1)
        derived = self.derived(X) if self.constraints else {}
        for name, (lo, hi) in self.constraints.items():
            v = derived[name]
            bad |= ~((v >= lo) & (v <= hi))
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
        for name, (clo, chi) in self.constraints.items():
            v = derived[name]
            out = v[np.isfinite(v) & ((v < clo) | (v > chi))]
            if out.size:
                parts.append(f"{name} (derived from the inputs) in [{out.min():.6g}, {out.max():.6g}] vs design "
                             f"space [{clo:.6g}, {chi:.6g}]")
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
        with _single_threaded_blas():
            for start in range(0, len(X), _CHUNK):
                Y[start:start + _CHUNK] = self._expand(z[start:start + _CHUNK]).T
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
            "structure": dict(self.structure),
            "constraints": {k: list(v) for k, v in self.constraints.items()},
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
                   dict(d.get("info", {})), dict(d.get("structure", {})), dict(d.get("constraints", {})))


def fit_cell_surrogate(X, Y, inputs: Sequence[str], outputs: Sequence[str], design_space: DesignSpace,
                       materials: Mapping[str, float] | None = None, degree: int = 5, q_norm: float = 0.75,
                       info: Mapping | None = None, structure: Mapping | None = None,
                       constraints: Mapping | None = None) -> CellSurrogate:
    """Fit one sparse Legendre PCE per output on a DoE and join them into a :class:`CellSurrogate`.

    Parameters
    ----------
    X : array_like, shape (n, d) -- DoE inputs in canonical units, columns in ``inputs`` order, inside
        ``design_space``
    Y : array_like, shape (n, p) -- outputs (rows with NaN, i.e. failed P2D runs, are dropped)
    inputs, outputs : canonical names
    design_space : the box the DoE was drawn from (not the data's min/max)
    materials : material constants of the training
    structure, constraints : see :class:`CellSurrogate` (the DoE must respect the constraints)
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
    sur = CellSurrogate(tuple(inputs), tuple(outputs), design_space, np.array(terms, int), coef,
                        dict(materials or {}), "raise", metrics, dict(info or {}), dict(structure or {}),
                        dict(constraints or {}))
    if sur._violations(X, "")[0].any():
        raise ValueError("the DoE has rows outside the constraints it claims")
    return sur
