"""Cell model in the twin: parameter files, the P2D, calibration, the surrogate (training, loading), Monte Carlo.

Files (``config/cell``, or ``$TWIN_CONFIG_DIR/cell``):

``table_a2.toml``
    the paper's Table A2 (battery model parameters) and its performance results, as printed
``half_cell.toml``
    stand-in parameters from a published set (PyBaMM's ``Xu2019``), protocol, structure surrogate parameters,
    numerics, what the calibration varies and the surrogate's design of experiments
``calibration.toml``
    written by :func:`write_calibration` (``twin cell --calibrate``): the calibrated c_0 and what it achieves
``surrogate.json``
    written by :func:`train_surrogate` / :func:`save_surrogate` (``twin cell --retrain``): the polynomial-chaos
    surrogate with its design space, materials, validation and provenance

The real-time path is :func:`load_cell_surrogate`: an object with ``.inputs``, ``.outputs`` and
``__call__(samples) -> {"capacity": array, "energy_density": array}``, pure numpy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.cell import CELL_INPUTS, CELL_OUTPUTS, MATERIALS, CellModel, Materials, StructureParameters
from models.cell_surrogate import CellSurrogate, fit_cell_surrogate, q2
from models.metamodel import DesignSpace
from models.p2d import HalfCellP2D, HalfCellParameters
from models.structure import STRUCTURE_MODELS

from .resources import config_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "CellConfig",
    "load_cell_config",
    "half_cell_parameters",
    "structure_parameters",
    "paper_materials",
    "materials_of",
    "build_cell_model",
    "calibrate",
    "write_calibration",
    "design_of_experiments",
    "train_surrogate",
    "save_surrogate",
    "parity_plot",
    "default_surrogate_path",
    "default_parity_path",
    "load_cell_surrogate",
    "surrogate_is_current",
    "run_cell",
]

log = logging.getLogger(__name__)

#: Units the cell parameter files must use (canonical for the model layer); anything else is refused.
_TABLE_UNITS = {
    "thickness": "m", "porosity": "-", "particle_radius": "m", "tortuosity": "-", "c_max": "mol/m3",
    "c_0": "mol/m3", "c_e0": "mol/m3", "diffusivity_solid": "m2/s", "rate_constant": "m^2.5/(mol^0.5*s)",
    "charge_transfer_coefficient": "-", "double_layer_capacity": "F/m2", "kappa_am": "S/m", "kappa_cbm": "S/m",
    "capacity": "mAh/cm2", "energy_density": "Wh/L", "current_density": "mA/cm2",
}


class CellConfigError(ValueError):
    """A cell parameter file is malformed; the message names the file and the entry."""


@dataclass
class CellConfig:
    """The parsed cell parameter files."""

    directory: Path
    table_a2: dict
    half_cell: dict
    calibration: dict | None
    sha256: dict[str, str] = field(default_factory=dict)

    def a2(self, section: str, name: str) -> float:
        """A Table A2 value in its file unit (checked against the expected unit)."""
        try:
            entry = self.table_a2[section][name]
        except KeyError:
            raise CellConfigError(f"{self.directory / 'table_a2.toml'}: [{section}] lacks {name!r}") from None
        if isinstance(entry, Mapping):
            unit = entry.get("unit")
            if name in _TABLE_UNITS and unit != _TABLE_UNITS[name]:
                raise CellConfigError(f"{self.directory / 'table_a2.toml'}: [{section}] {name} has unit {unit!r}, "
                                      f"expected {_TABLE_UNITS[name]!r}")
            entry = entry.get("value")
        if not isinstance(entry, (int, float)) or not math.isfinite(entry):
            raise CellConfigError(f"{self.directory / 'table_a2.toml'}: [{section}] {name} = {entry!r} is not a "
                                  f"number")
        return float(entry)

    def hc(self, section: str, name: str, default=None):
        """A half_cell.toml value."""
        try:
            return self.half_cell[section][name]
        except KeyError:
            if default is not None:
                return default
            raise CellConfigError(f"{self.directory / 'half_cell.toml'}: [{section}] lacks {name!r}") from None


def _read_toml(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text()
        return tomllib.loads(text), hashlib.sha256(text.encode()).hexdigest()
    except tomllib.TOMLDecodeError as exc:
        raise CellConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise CellConfigError(f"{path}: cannot be read: {exc}") from None


def load_cell_config(directory: str | Path | None = None) -> CellConfig:
    """Read ``table_a2.toml``, ``half_cell.toml`` and (if present) ``calibration.toml``."""
    d = Path(directory) if directory is not None else config_dir() / "cell"
    a2, h1 = _read_toml(d / "table_a2.toml")
    hc, h2 = _read_toml(d / "half_cell.toml")
    cal, h3 = (None, "")
    if (d / "calibration.toml").is_file():
        cal, h3 = _read_toml(d / "calibration.toml")
    cfg = CellConfig(d, a2, hc, cal, {"table_a2.toml": h1, "half_cell.toml": h2, "calibration.toml": h3})
    model = cfg.hc("structure", "model")
    if model not in STRUCTURE_MODELS:
        raise CellConfigError(f"{d / 'half_cell.toml'}: [structure] model = {model!r} is not one of "
                              f"{', '.join(STRUCTURE_MODELS)}")
    return cfg


def paper_materials(cfg: CellConfig) -> Materials:
    """Materials of the paper's use case: Table A1 densities, Table A2 particle radius."""
    nom = cfg.table_a2.get("nominal_inputs", {})
    return Materials(float(nom["rho_am"]), float(nom["rho_ca"]), float(nom["rho_pb"]),
                     cfg.a2("cathode", "particle_radius") * 1e6)


def materials_of(nominal: Mapping[str, float], fallback: Materials) -> Materials:
    """Materials from a scenario's nominal inputs (names missing there come from ``fallback``)."""
    base = fallback.to_dict()
    return Materials(**{k: float(nominal.get(k, base[k])) for k in MATERIALS})


def half_cell_parameters(cfg: CellConfig, materials: Materials | None = None,
                         calibrated: bool = True) -> HalfCellParameters:
    """The half cell's parameters: Table A2, stand-ins and protocol, and the calibration if ``calibrated``."""
    mat = materials or paper_materials(cfg)
    c_0 = cfg.a2("cathode", "c_0")
    c_max = cfg.a2("cathode", "c_max")
    if calibrated and cfg.calibration is not None:
        values = cfg.calibration.get("calibrated", {})
        c_0 = float(values.get("c_0", c_0))
        c_max = float(values.get("c_max", c_max))
    return HalfCellParameters(
        particle_radius=mat.particle_radius,
        c_max=c_max,
        c_0=c_0,
        c_e0=cfg.a2("cathode", "c_e0"),
        diffusivity_solid=cfg.a2("cathode", "diffusivity_solid"),
        rate_constant=cfg.a2("cathode", "rate_constant"),
        charge_transfer_coefficient=cfg.a2("cathode", "charge_transfer_coefficient"),
        double_layer_capacity=cfg.a2("cathode", "double_layer_capacity"),
        separator_thickness=float(cfg.hc("stand_in", "separator_thickness")),
        separator_porosity=cfg.a2("separator", "porosity"),
        separator_tortuosity=cfg.a2("separator", "tortuosity"),
        current_density=float(cfg.hc("protocol", "current_density")),
        lower_cutoff=float(cfg.hc("protocol", "lower_cutoff")),
        upper_cutoff=float(cfg.hc("protocol", "upper_cutoff")),
        temperature=float(cfg.hc("protocol", "temperature")),
        base_set=str(cfg.hc("stand_in", "base_set")),
        base_entries=tuple(cfg.hc("stand_in", "entries")),
    )


def structure_parameters(cfg: CellConfig) -> StructureParameters:
    """The structure surrogate's parameters (Table A2 conductivities, half_cell.toml [structure])."""
    s = cfg.half_cell.get("structure", {})
    return StructureParameters(
        model=str(s["model"]),
        kappa_am=cfg.a2("cathode", "kappa_am"),
        kappa_cbm=cfg.a2("cathode", "kappa_cbm"),
        exponent_am=float(s.get("exponent_am", 1.5)),
        exponent_cbm=float(s.get("exponent_cbm", 8.5583)),
        percolation_threshold=float(s.get("percolation_threshold", 0.02)),
        percolation_exponent=float(s.get("percolation_exponent", 2.0)),
    )


_MODELS: dict[tuple, CellModel] = {}


def build_cell_model(cfg: CellConfig | None = None, materials: Materials | None = None, calibrated: bool = True,
                     threads: int | None = None) -> CellModel:
    """Structure surrogate + P2D for these materials (cached: the PyBaMM model is built once per process)."""
    cfg = cfg or load_cell_config()
    mat = materials or paper_materials(cfg)
    params = half_cell_parameters(cfg, mat, calibrated)
    sp = structure_parameters(cfg)
    num = cfg.half_cell.get("numerics", {})
    nthreads = int(threads if threads is not None else num.get("threads", 1))
    key = (params, sp, mat, nthreads, tuple(sorted(num.items())))
    model = _MODELS.get(key)
    if model is None:
        p2d = HalfCellP2D(params, reference_thickness=float(num.get("reference_thickness", 100.0)),
                          threads=nthreads, chunk=int(num.get("chunk", 64)), rtol=float(num.get("rtol", 1e-6)),
                          atol=float(num.get("atol", 1e-8)))
        model = _MODELS[key] = CellModel(p2d, mat, sp)
    return model


def _nominal_inputs(cfg: CellConfig) -> dict[str, float]:
    nom = cfg.table_a2.get("nominal_inputs", {})
    missing = [k for k in CELL_INPUTS if k not in nom]
    if missing:
        raise CellConfigError(f"{cfg.directory / 'table_a2.toml'}: [nominal_inputs] lacks {', '.join(missing)}")
    return {k: float(nom[k]) for k in CELL_INPUTS}


# --------------------------------------------------------------------------------------------------------------
# calibration


def calibrate(cfg: CellConfig | None = None) -> dict:
    """Calibrate c_0 so that the P2D gives the paper's capacity at the paper's nominal structure.

    Only c_0 is supported as a calibration parameter: the paper calibrated c_0 and c_max from a formation curve
    (and D_s, k, kappa_AM from rate tests) that are not published; with its capacity as the one target, one
    parameter is identifiable. Returns the calibrated value, what the model achieves and the paper's targets.
    """
    from scipy.optimize import brentq

    cfg = cfg or load_cell_config()
    spec = cfg.half_cell.get("calibration", {})
    params = list(spec.get("parameters", ["c_0"]))
    targets = list(spec.get("targets", ["capacity"]))
    if params != ["c_0"] or targets != ["capacity"]:
        raise CellConfigError(f"{cfg.directory / 'half_cell.toml'}: [calibration] supports parameters = ['c_0'] "
                              f"with targets = ['capacity'] (got {params} / {targets})")
    model = build_cell_model(cfg, calibrated=False)
    nominal = _nominal_inputs(cfg)
    target = cfg.a2("performance", "capacity")
    lo, hi = (float(v) for v in spec.get("bracket_c_0", [3000.0, 20000.0]))

    def capacity(c0: float) -> float:
        r = model.solve(*(nominal[k] for k in CELL_INPUTS), c_0=c0)
        if r.n_failed:
            raise RuntimeError(f"P2D failed at c_0 = {c0:g}: {r.reasons[0]}")
        return float(r.capacity) - target

    f_lo, f_hi = capacity(lo), capacity(hi)
    if f_lo * f_hi > 0:
        raise RuntimeError(f"capacity {target} mAh/cm2 is not reached for c_0 in [{lo:g}, {hi:g}] mol/m3 "
                           f"(capacity {f_lo + target:.4g} .. {f_hi + target:.4g})")
    c0 = brentq(capacity, lo, hi, xtol=1e-3, rtol=1e-10)
    ref = model.solve(*(nominal[k] for k in CELL_INPUTS), c_0=c0)
    table = model.solve(*(nominal[k] for k in CELL_INPUTS), c_0=cfg.a2("cathode", "c_0"))
    st = model.structure(*(nominal[k] for k in CELL_INPUTS))
    return {
        "parameters": {"c_0": float(c0)},
        "table_a2": {"c_0": cfg.a2("cathode", "c_0"), "c_max": cfg.a2("cathode", "c_max")},
        "achieved": {"capacity": float(ref.capacity), "energy_density": float(ref.energy_density)},
        "with_table_a2_c_0": {"capacity": float(table.capacity), "energy_density": float(table.energy_density)},
        "targets": {"capacity": target, "energy_density": cfg.a2("performance", "energy_density")},
        "nominal_inputs": nominal,
        "structure": {k: float(v) for k, v in st.items()},
        "initial_stoichiometry": float(c0 / cfg.a2("cathode", "c_max")),
    }


def write_calibration(result: Mapping, path: str | Path | None = None) -> Path:
    """Write a :func:`calibrate` result as ``calibration.toml`` (generated file, with its provenance)."""
    path = Path(path) if path is not None else config_dir() / "cell" / "calibration.toml"
    t, a, tab = result["targets"], result["achieved"], result["with_table_a2_c_0"]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [
        "# GENERATED by `twin cell --calibrate` " + now + "; do not edit by hand (re-run the command).",
        "# Calibration of the P2D half cell to the paper's use case (Thomitzek et al. 2022, section 3.4):",
        "# c_0 (initial lithium concentration of the active material) is varied until the P2D, at the paper's",
        "# nominal structure (w_am .94, w_ca .03, w_pb .03, m_dry 14.3 mg/cm2, rho_cal 2.95 g/cm3 ->",
        f"# h_cal {result['structure']['h_cal']:.2f} um, eps_cal {result['structure']['eps_cal']:.4f}, "
        f"tau_eff {result['structure']['tau_eff']:.4f}), discharged at 1 mA/cm2,",
        f"# gives the paper's capacity {t['capacity']} mAh/cm2. Everything else is Table A2 or the stand-in set.",
        f"# With Table A2's c_0 = {result['table_a2']['c_0']:g} mol/m3 the model gives {tab['capacity']:.4f} mAh/cm2 "
        f"and {tab['energy_density']:.1f} Wh/L:",
        "# Table A2's c_0 belongs to the paper's own OCP curve, which is not published; with the stand-in OCP",
        "# (Xu2019) the same capacity needs a lower initial lithiation.",
        "",
        "[calibrated]",
        f"c_0 = {result['parameters']['c_0']:.2f}   # mol/m3 (Table A2: {result['table_a2']['c_0']:g}); initial "
        f"stoichiometry {result['initial_stoichiometry']:.4f} of c_max {result['table_a2']['c_max']:g}",
        "",
        "[achieved]   # P2D at the nominal structure with the calibrated c_0",
        f"capacity = {a['capacity']:.5f}         # mAh/cm2 (paper {t['capacity']})",
        f"energy_density = {a['energy_density']:.2f}     # Wh/L (paper {t['energy_density']:g}; "
        f"{100 * (a['energy_density'] / t['energy_density'] - 1):+.2f} %)",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


# --------------------------------------------------------------------------------------------------------------
# surrogate: design of experiments, training, validation, persistence


def default_surrogate_path() -> Path:
    return config_dir() / "cell" / "surrogate.json"


def default_parity_path() -> Path:
    return config_dir().parent / "docs" / "figures" / "cell_surrogate_parity.png"


def _box(cfg: CellConfig) -> DesignSpace:
    s = cfg.half_cell.get("surrogate", {})
    names = tuple(s.get("inputs", CELL_INPUTS))
    if set(names) != set(CELL_INPUTS):
        raise CellConfigError(f"{cfg.directory / 'half_cell.toml'}: [surrogate] inputs must be "
                              f"{', '.join(CELL_INPUTS)} (got {', '.join(names)})")
    lows, highs = [], []
    for n in names:
        try:
            lo, hi = (float(v) for v in s[n])
        except (KeyError, TypeError, ValueError):
            raise CellConfigError(f"{cfg.directory / 'half_cell.toml'}: [surrogate] {n} must be [low, high]") from None
        if not lo < hi:
            raise CellConfigError(f"{cfg.directory / 'half_cell.toml'}: [surrogate] {n} = [{lo}, {hi}]: low must be "
                                  f"below high")
        lows.append(lo)
        highs.append(hi)
    return DesignSpace(names, tuple(lows), tuple(highs))


def _constraints(cfg: CellConfig) -> dict[str, tuple[float, float]]:
    from models.cell_surrogate import DERIVED

    raw = cfg.half_cell.get("surrogate", {}).get("constraints", {})
    out = {}
    for k, v in raw.items():
        if k not in DERIVED:
            raise CellConfigError(f"{cfg.directory / 'half_cell.toml'}: [surrogate] constraints: {k!r} is not one of "
                                  f"{', '.join(DERIVED)}")
        try:
            lo, hi = (float(x) for x in v)
        except (TypeError, ValueError):
            raise CellConfigError(f"{cfg.directory / 'half_cell.toml'}: [surrogate] constraints: {k} must be "
                                  f"[low, high]") from None
        out[k] = (lo, hi)
    return out


def design_of_experiments(box: DesignSpace, n: int, seed: int, accept: Callable | None = None) -> np.ndarray:
    """``n`` scrambled Sobol' points uniform in the box, shape (n, d), columns in ``box.names`` order.

    ``accept(X) -> bool mask``: keep only accepted points (a design space cut by constraints); the sequence is
    drawn on until ``n`` are accepted, in order.
    """
    import warnings

    from scipy.stats import qmc

    lo, hi = np.asarray(box.low), np.asarray(box.high)
    sobol = qmc.Sobol(len(box.names), scramble=True, seed=seed)
    kept: list[np.ndarray] = []
    have, drawn = 0, 0
    while have < n:
        if drawn > 64 * n + 1024:
            raise ValueError(f"the constraints accept only {have} of {drawn} points of the box")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # balance warning when n is not a power of 2
            X = lo + sobol.random(max(n - have, 16) if accept is not None else n) * (hi - lo)
        drawn += len(X)
        if accept is not None:
            X = X[np.asarray(accept(X), bool)]
        kept.append(X)
        have += len(X)
    return np.vstack(kept)[:n]


def _parameter_record(cfg: CellConfig, materials: Materials) -> dict:
    return {"half_cell": {k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in asdict(half_cell_parameters(cfg, materials)).items() if k != "overrides"},
            "structure": structure_parameters(cfg).to_dict()}


def _scores(Y: np.ndarray, Y_hat: np.ndarray) -> dict:
    ok = np.all(np.isfinite(Y), axis=1)
    out: dict = {"n": int(ok.sum()), "n_failed": int((~ok).sum())}
    for i, o in enumerate(CELL_OUTPUTS):
        y, yh = Y[ok, i], Y_hat[ok, i]
        err = yh - y
        out[o] = {"q2": q2(y, yh), "rmse": float(np.sqrt(np.mean(err**2))), "bias": float(np.mean(err)),
                  "max_abs_error": float(np.max(np.abs(err))), "max_rel_error": float(np.max(np.abs(err / y))),
                  "p2d_mean": float(np.mean(y)), "p2d_std": float(np.std(y, ddof=1)),
                  "range": [float(y.min()), float(y.max())]}
    return out


def train_surrogate(cfg: CellConfig | None = None, n_train: int | None = None, n_test: int | None = None,
                    seed: int | None = None, degree: int | None = None, q_norm: float | None = None,
                    materials: Materials | None = None, local: Mapping[str, np.ndarray] | None = None,
                    local_name: str = "", progress: Callable[[str], None] | None = None
                    ) -> tuple[CellSurrogate, dict]:
    """Run the P2D on a virtual DoE, fit the PCE, validate it on held-out P2D runs.

    Training and test points are two independent scrambled Sobol' sequences over the box of ``half_cell.toml``
    [surrogate]. ``local`` (optional): Monte Carlo samples of a scenario ({name: array}, e.g. the paper's use
    case) on which the surrogate is validated too, where the spreads are small and errors show most.

    Returns
    -------
    (surrogate, validation): the surrogate's ``metrics["validation"]`` (and ``["validation_local"]``) hold Q2,
    RMSE, bias and max error per output; ``validation`` holds the arrays for :func:`parity_plot`.
    """
    import time

    import pybamm

    cfg = cfg or load_cell_config()
    s = cfg.half_cell.get("surrogate", {})
    n_train = int(n_train if n_train is not None else s.get("n_train", 512))
    n_test = int(n_test if n_test is not None else s.get("n_test", 256))
    seed = int(seed if seed is not None else s.get("seed", 0))
    degree = int(degree if degree is not None else s.get("max_degree", 5))
    q_norm = float(q_norm if q_norm is not None else s.get("q_norm", 1.0))
    if n_train < 20 or n_test < 2:
        raise ValueError(f"n_train = {n_train} must be at least 20 and n_test = {n_test} at least 2")
    say = progress or (lambda msg: None)
    mat = materials or paper_materials(cfg)
    box = _box(cfg)
    constraints = _constraints(cfg)
    model = build_cell_model(cfg, mat)
    sp = structure_parameters(cfg).to_dict()
    # an empty surrogate of this design space, to tell which DoE points its constraints accept
    probe = CellSurrogate(box.names, CELL_OUTPUTS, box, np.zeros((1, len(box.names)), int),
                          np.zeros((len(CELL_OUTPUTS), 1)), mat.to_dict(), structure=sp, constraints=constraints)

    def accept(X):
        return ~probe._violations(X, "")[0]

    X_train = design_of_experiments(box, n_train, seed, accept)
    X_test = design_of_experiments(box, n_test, seed + 1, accept)
    t0 = time.perf_counter()
    say(f"P2D on {n_train} training points of the design space ...")
    r_train = model.solve(*X_train.T)
    t1 = time.perf_counter()
    say(f"P2D on {n_test} held-out points of the design space ...")
    r_test = model.solve(*X_test.T)
    t2 = time.perf_counter()
    X_local = None
    if local is not None:
        n = max(np.size(np.asarray(local[k])) for k in box.names)
        X_local = np.column_stack([np.broadcast_to(np.asarray(local[k], float), (n,)) for k in box.names])
        X_local = X_local[accept(X_local)]
        say(f"P2D on {len(X_local)} held-out Monte Carlo samples of {local_name or 'the scenario'} ...")
        r_local = model.solve(*X_local.T)
    t3 = time.perf_counter()
    Y_train = np.column_stack([r_train.capacity, r_train.energy_density])
    Y_test = np.column_stack([r_test.capacity, r_test.energy_density])
    say(f"fitting the PCE (degree {degree}, q-norm {q_norm}) ...")
    info = {
        "trained": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": "structure surrogate + PyBaMM DFN half cell (working electrode positive), IDAKLU",
        "pybamm": pybamm.__version__,
        "config_sha256": cfg.sha256,
        "parameters": _parameter_record(cfg, mat),
        "doe": {"design": "scrambled Sobol', uniform in the design space", "n_train": n_train, "n_test": n_test,
                "seed": seed},
        "p2d_seconds": {"train": round(t1 - t0, 2), "test": round(t2 - t1, 2), "local": round(t3 - t2, 2)},
    }
    sur = fit_cell_surrogate(X_train, Y_train, box.names, CELL_OUTPUTS, box, mat.to_dict(), degree, q_norm, info,
                             sp, constraints)
    Y_hat = sur.predict(X_test)
    sur.metrics["validation"] = _scores(Y_test, Y_hat)
    sur.metrics["p2d_failures"] = {"train": r_train.failure_summary(), "test": r_test.failure_summary()}
    validation = {"X": X_test, "Y_p2d": Y_test, "Y_surrogate": Y_hat}
    if X_local is not None:
        Y_local = np.column_stack([r_local.capacity, r_local.energy_density])
        Y_local_hat = sur.predict(X_local)
        sur.metrics["validation_local"] = {"samples_of": local_name, **_scores(Y_local, Y_local_hat)}
        sur.metrics["p2d_failures"]["local"] = r_local.failure_summary()
        validation.update({"X_local": X_local, "Y_local_p2d": Y_local, "Y_local_surrogate": Y_local_hat})
    return sur, validation


def save_surrogate(sur: CellSurrogate, path: str | Path | None = None) -> Path:
    path = Path(path) if path is not None else default_surrogate_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sur.to_dict(), indent=1) + "\n")
    return path


def parity_plot(sur: CellSurrogate, validation: Mapping, path: str | Path | None = None) -> Path:
    """Parity plot of the held-out runs (P2D vs surrogate), one column per output as a PNG.

    Top row: the design-space test runs; bottom row (if present): the scenario's Monte Carlo samples, where
    the spread is small and an error would show.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.quantities import QUANTITIES

    path = Path(path) if path is not None else default_parity_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [("Y_p2d", "Y_surrogate", "validation", "held-out runs over the design space")]
    if "Y_local_p2d" in validation:
        name = sur.metrics.get("validation_local", {}).get("samples_of") or "scenario"
        rows.append(("Y_local_p2d", "Y_local_surrogate", "validation_local", f"Monte Carlo samples of {name}"))
    nc = len(sur.outputs)
    fig, axes = plt.subplots(len(rows), nc, figsize=(5.4 * nc, 4.9 * len(rows)), squeeze=False)
    for r, (ky, kh, km, label) in enumerate(rows):
        Y, Yh = np.asarray(validation[ky]), np.asarray(validation[kh])
        ok = np.all(np.isfinite(Y), axis=1)
        for i, o in enumerate(sur.outputs):
            ax = axes[r, i]
            y, yh = Y[ok, i], Yh[ok, i]
            lo, hi = float(min(y.min(), yh.min())), float(max(y.max(), yh.max()))
            pad = 0.04 * (hi - lo)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", lw=1, label="y = x")
            ax.scatter(y, yh, s=12, alpha=0.75, color="C0" if r == 0 else "C1")
            m = sur.metrics.get(km, {}).get(o, {})
            unit = QUANTITIES[o].unit
            ax.set_title(f"{o.replace('_', ' ')}: Q² = {m.get('q2', float('nan')):.5f}, "
                         f"RMSE {m.get('rmse', float('nan')):.2g} {unit}\n{int(ok.sum())} {label}", fontsize=9)
            ax.set_xlabel(f"P2D (PyBaMM DFN) [{unit}]")
            ax.set_ylabel(f"PCE surrogate [{unit}]")
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal")
            ax.grid(alpha=0.3)
    fig.suptitle("Cell surrogate (polynomial chaos) vs P2D half cell on held-out runs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def load_cell_surrogate(path: str | Path | None = None, policy: str = "raise") -> CellSurrogate:
    """The cell surrogate for the twin's real-time path.

    Returns an object with ``.inputs`` (``w_am, w_ca, w_pb, m_dry, rho_cal``), ``.outputs``
    (``capacity, energy_density``), ``.materials`` and ``__call__(samples) -> {output: array}``; ``policy``
    (``"raise"``, ``"warn"``, ``"nan"``) decides what samples outside its design space give.
    """
    path = Path(path) if path is not None else default_surrogate_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"cell surrogate {path} does not exist; train it with `twin cell --retrain`") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cell surrogate {path}: {exc}") from None
    try:
        return CellSurrogate.from_dict(doc, policy)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cell surrogate {path}: {exc}") from None


def surrogate_is_current(sur: CellSurrogate, cfg: CellConfig | None = None) -> list[str]:
    """Differences between the parameters the surrogate was trained with and the current files ([] if none)."""
    cfg = cfg or load_cell_config()
    rec = sur.info.get("parameters", {})
    mat = Materials(**{k: sur.materials[k] for k in MATERIALS}) if all(k in sur.materials for k in MATERIALS) \
        else paper_materials(cfg)
    now = json.loads(json.dumps(_parameter_record(cfg, mat)))
    diffs = []
    for group in ("half_cell", "structure"):
        for k, v in now.get(group, {}).items():
            if rec.get(group, {}).get(k) != v:
                diffs.append(f"{group}.{k}: trained with {rec.get(group, {}).get(k)!r}, now {v!r}")
    return diffs


# --------------------------------------------------------------------------------------------------------------
# Monte Carlo: chain -> cell


def run_cell(scenario, n: int, seed: int = 0, model: str = "surrogate", policy: str = "raise",
             surrogate: CellSurrogate | None = None, segment: int = 0, t_s: float = 0.0,
             close_fractions: bool = False, cfg: CellConfig | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Chain Monte Carlo of a scenario, then the cell model on every sample.

    Parameters
    ----------
    scenario : twin.scenario.Scenario
    n, seed, segment, t_s : as :func:`twin.montecarlo.run`
    model : ``"surrogate"`` (the PCE) or ``"p2d"`` (the full model, for validation; slow)
    policy : design-space policy of the surrogate
    close_fractions : evaluate the cell with w_pb = 1 - w_am - w_ca (the paper's convention for its cell
        model) instead of the chain's sampled w_pb

    Returns
    -------
    (samples, report): the chain's samples plus capacity and energy_density; report = {"failures": {reason:
    count}, "n_failed": k}.
    """
    from models.cell import close_fractions as _close

    from .montecarlo import run

    if model not in ("surrogate", "p2d"):
        raise ValueError(f"model {model!r} is not one of surrogate, p2d")
    samples = run(scenario, n, seed, segment, t_s)
    cell_in = {k: np.broadcast_to(np.asarray(samples[k], float), (n,)) for k in CELL_INPUTS if k in samples}
    cell_in = _close(cell_in) if close_fractions else cell_in
    report: dict = {"failures": {}, "n_failed": 0}
    if model == "surrogate":
        sur = surrogate or load_cell_surrogate(policy=policy)
        sur.check_materials(scenario.nominal())
        mats = {k: samples[k] for k in MATERIALS if k in samples}
        out = sur({**cell_in, **mats}, policy=policy)
        bad = ~(np.isfinite(out["capacity"]) & np.isfinite(out["energy_density"]))
        if bad.any():
            report = {"failures": {"outside the surrogate's design space": int(bad.sum())}, "n_failed": int(bad.sum())}
    else:
        cfg = cfg or load_cell_config()
        varying = [k for k in MATERIALS if k in samples and np.ptp(np.asarray(samples[k], float)) > 0]
        if varying:
            raise ValueError(f"--model p2d needs constant material properties; {', '.join(varying)} vary in the "
                             f"scenario")
        mat = materials_of(scenario.nominal(), paper_materials(cfg))
        cm = build_cell_model(cfg, mat)
        r = cm.solve(*(cell_in[k] for k in CELL_INPUTS))
        out = {"capacity": r.capacity, "energy_density": r.energy_density}
        report = {"failures": r.failure_summary(), "n_failed": r.n_failed}
    samples = dict(samples)
    samples.update(out)
    return samples, report
