"""Scenario files: the nominal values and uncertainties of a line's inputs, as TOML.

Format (every section but ``[inputs]`` optional; every name is a canonical quantity, see README)::

    name = "paper use case"
    extends = "other.toml"          # start from another scenario and override entries
    [inputs]
    rho_am = 4.75                                                  # constant, canonical unit
    w_am = { nominal = 0.94, dist = "normal", rel_std = 0.01 }
    flow_rate = { nominal = 11.6, unit = "mL/min", dist = "normal", std = 0.1 }   # converted to cm3/h
    line_load = { dist = "uniform", low = 80.0, high = 88.0 }
    eps_dry = 0.44                                                 # a computed quantity given: overrides its model
    [correlation]                   # Gaussian copula between inputs
    names = ["w_am", "x_solids"]
    matrix = [[1.0, 0.3], [0.3, 1.0]]
    kind = "spearman"               # or "pearson"
    [cell_to_cell]                  # random shift of an input's location per segment
    flow_rate = { rel_std = 0.005 }
    [drift]                         # systematic change over time (heating machine)
    gamma_c_intercept = { kind = "exponential", delta = -4.0, tau = 1800 }
    [bounds]                        # limits of setpoints for the inverse workflow
    flow_rate = [100.0, 5000.0]
    [metamodels]                    # fitted meta-models of numerical process models, by output
    eps_dry = "../metamodels/eps_dry.json"
    [options]
    closed_fractions = false        # renormalise w_am, w_ca, w_pb per sample

Everything is checked when the file is loaded; the error names the file, the entry and what is wrong.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.quantities import QUANTITIES, quantity
from models.uncertainty import (
    DISTRIBUTIONS,
    Constant,
    Correlation,
    Drift,
    KernelDensity,
    LogNormal,
    Marginal,
    Normal,
    SegmentShift,
    TruncatedNormal,
    Uniform,
)

from .resources import resolve_scenario_path
from .units import UnitError, conversion

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Scenario", "ScenarioError", "load_scenario", "scenario_from_dict", "FRACTIONS"]

FRACTIONS = ("w_am", "w_ca", "w_pb")
_FRACTION_TOL = 1e-6


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file and the entry."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nominal: float | None = None
    dist: Literal["constant", "normal", "lognormal", "uniform", "truncnormal", "kde"] | None = None
    std: float | None = Field(None, ge=0)
    rel_std: float | None = Field(None, ge=0)
    low: float | None = None
    high: float | None = None
    data: list[float] | None = None
    data_file: str | None = None
    column: str | None = None
    bandwidth: float | None = Field(None, gt=0)
    unit: str | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.std is not None and self.rel_std is not None:
            raise ValueError("give std or rel_std, not both")
        dist = self.dist or ("normal" if (self.std or self.rel_std) else
                             "kde" if (self.data or self.data_file) else
                             "uniform" if self.nominal is None and self.low is not None else "constant")
        self.dist = dist
        if dist in ("constant", "normal", "lognormal", "truncnormal") and self.nominal is None:
            raise ValueError(f"dist = {dist!r} needs a nominal value")
        if dist in ("normal", "lognormal", "truncnormal") and self.std is None and self.rel_std is None:
            raise ValueError(f"dist = {dist!r} needs std or rel_std")
        if dist in ("uniform", "truncnormal"):
            if self.low is None or self.high is None:
                raise ValueError(f"dist = {dist!r} needs low and high")
            if not self.low < self.high:
                raise ValueError(f"low = {self.low} must be below high = {self.high}")
        if dist == "truncnormal" and not self.low <= self.nominal <= self.high:
            raise ValueError(f"nominal = {self.nominal} is outside [low, high] = [{self.low}, {self.high}]")
        if dist == "lognormal" and not (self.nominal and self.nominal > 0):
            raise ValueError("a lognormal needs nominal > 0")
        if dist == "kde" and not (self.data or self.data_file):
            raise ValueError("dist = 'kde' needs data = [...] or data_file = 'file.csv'")
        for k in ("nominal", "std", "rel_std", "low", "high"):
            v = getattr(self, k)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{k} = {v} is not finite")
        return self


class _Correlation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    names: list[str]
    matrix: list[list[float]]
    kind: Literal["pearson", "spearman"] = "spearman"


class _Shift(BaseModel):
    model_config = ConfigDict(extra="forbid")
    std: float | None = Field(None, ge=0)
    rel_std: float | None = Field(None, ge=0)


class _Drift(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["linear", "exponential"]
    rate: float = 0.0
    delta: float = 0.0
    tau: float = Field(1.0, gt=0)


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    closed_fractions: bool = False


class _Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    description: str = ""
    extends: str | None = None
    inputs: dict[str, float | _Entry]
    correlation: _Correlation | None = None
    cell_to_cell: dict[str, _Shift] = {}
    drift: dict[str, _Drift] = {}
    bounds: dict[str, tuple[float, float]] = {}
    metamodels: dict[str, str] = {}
    options: _Options = _Options()


@dataclass
class Scenario:
    """A validated scenario in canonical units."""

    name: str
    description: str
    path: Path | None
    marginals: dict[str, Marginal]
    correlation: Correlation | None = None
    shifts: dict[str, SegmentShift] = field(default_factory=dict)
    drifts: dict[str, Drift] = field(default_factory=dict)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    metamodel_paths: dict[str, Path] = field(default_factory=dict)
    closed_fractions: bool = False
    relative_spread: dict[str, float] = field(default_factory=dict)

    def nominal(self) -> dict[str, float]:
        """Nominal value of every input (the distribution's nominal/centre)."""
        return {k: float(m.nominal) for k, m in self.marginals.items()}

    def with_nominal(self, values: dict[str, float]) -> "Scenario":
        """A copy whose inputs ``values`` are moved to new nominal values, keeping their spread.

        A relative spread stays relative (a normal given by rel_std scales with the new nominal).
        """
        import dataclasses

        new = dict(self.marginals)
        for k, v in values.items():
            if k not in new:
                raise KeyError(f"{k} is not an input of scenario {self.name!r}")
            m, v = new[k], float(v)
            rel = self.relative_spread.get(k)
            new[k] = type(m)(v, rel * abs(v)) if rel is not None and isinstance(m, (Normal, LogNormal)) \
                else m.shifted(v - m.nominal)
        return dataclasses.replace(self, marginals=new)

    def bounds_for(self, name: str) -> tuple[float, float]:
        """Setpoint bounds for the inverse workflow: from ``[bounds]``, else the quantity's physical range."""
        if name in self.bounds:
            return self.bounds[name]
        q = quantity(name)
        return (q.low, q.high)


def _fail(path: Path | None, msg: str) -> ScenarioError:
    where = f"scenario {path}" if path else "scenario"
    return ScenarioError(f"{where}: {msg}")


def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        if "float" in e["loc"] and isinstance(e.get("input"), dict):
            continue  # a table given where a number or a table is allowed: report the table's problem
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("float", "_Entry", "function")))
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
        lines.append(f"{loc}: {msg}{shown}")
    # a union (number | table) reports the same location twice; keep the table's message
    seen, out = set(), []
    for line in lines:
        key = line.split(":")[0]
        if key not in seen:
            seen.add(key)
            out.append(line)
    return "; ".join(out)


def _merge(base: dict, over: dict) -> dict:
    """Sections of ``over`` add to or replace entries of ``base``; an entry is replaced whole, never mixed."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("correlation", "options"):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise _fail(path, "extends itself (cycle: " + " -> ".join(str(p) for p in seen + (path,)) + ")")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read: {exc}") from None
    base_ref = doc.get("extends")
    if base_ref:
        base_path = (path.parent / base_ref) if (path.parent / base_ref).is_file() else resolve_scenario_path(base_ref)
        base = _read(base_path.resolve(), seen + (path,))
        # paths in the base stay relative to the base file
        for k, v in list(base.get("metamodels", {}).items()):
            base["metamodels"][k] = str((base_path.parent / v).resolve())
        doc = _merge({k: v for k, v in base.items() if k not in ("name", "description")}, doc)
        doc.pop("extends", None)
    return doc


def load_scenario(ref: str | Path | None = None) -> Scenario:
    """Load and validate a scenario (path, or name of a shipped scenario; ``None``: the paper's use case)."""
    path = resolve_scenario_path(ref)
    return scenario_from_dict(_read(path), path)


def _kde_data(entry: _Entry, name: str, base: Path | None) -> list[float]:
    if entry.data:
        return entry.data
    import csv

    f = Path(entry.data_file)
    if not f.is_absolute() and base is not None:
        f = base.parent / f
    column = entry.column or name
    try:
        with open(f, newline="") as fh:
            rows = [r for r in csv.DictReader(line for line in fh if not line.startswith("#"))]
    except OSError as exc:
        raise ValueError(f"data_file {str(f)!r} cannot be read: {exc}") from None
    if not rows or column not in rows[0]:
        raise ValueError(f"data_file {str(f)!r} has no column {column!r}")
    vals = []
    for i, r in enumerate(rows, start=2):
        try:
            vals.append(float(r[column]))
        except (TypeError, ValueError):
            raise ValueError(f"data_file {str(f)!r} line {i}: {column} = {r[column]!r} is not a number") from None
    return vals


def _marginal(name: str, raw: float | _Entry, path: Path | None) -> Marginal:
    q = quantity(name)
    if not isinstance(raw, _Entry):
        raw = _Entry(nominal=float(raw))
    try:
        a, b = conversion(raw.unit, name) if raw.unit is not None else (1.0, 0.0)
    except UnitError as exc:
        raise ValueError(str(exc)) from None

    def conv(v):
        return None if v is None else a * v + b

    nominal, low, high = conv(raw.nominal), conv(raw.low), conv(raw.high)
    for label, v in (("nominal", nominal), ("low", low), ("high", high)):
        if v is not None:
            try:
                q.check(v)
            except ValueError as exc:
                raise ValueError(f"{label}: {exc}") from None
    std = abs(a) * raw.std if raw.std is not None else (raw.rel_std * abs(nominal) if raw.rel_std is not None
                                                         else None)
    d = raw.dist
    if d == "constant":
        m: Marginal = Constant(nominal)
    elif d == "normal":
        m = Normal(nominal, std)
    elif d == "lognormal":
        m = LogNormal(nominal, std)
    elif d == "uniform":
        m = Uniform(low, high)
    elif d == "truncnormal":
        m = TruncatedNormal(nominal, std, low, high)
    elif d == "kde":
        m = KernelDensity(tuple(conv(v) for v in _kde_data(raw, name, path)),
                          None if raw.bandwidth is None else abs(a) * raw.bandwidth)
    else:  # pragma: no cover - pydantic restricts dist
        raise ValueError(f"dist {d!r} is not one of {', '.join(DISTRIBUTIONS)}")
    return m


def scenario_from_dict(doc: dict[str, Any], path: Path | None = None) -> Scenario:
    """Validate a parsed scenario document (see the module docstring for the format)."""
    try:
        sc = _Scenario.model_validate(doc)
    except ValidationError as exc:
        raise _fail(path, _format_validation(exc)) from None
    marginals: dict[str, Marginal] = {}
    for name, raw in sc.inputs.items():
        if name not in QUANTITIES:
            raise _fail(path, f"[inputs] {quantity_hint(name)}")
        try:
            marginals[name] = _marginal(name, raw, path)
        except ValueError as exc:
            raise _fail(path, f"[inputs] {name}: {exc}") from None
    present = [f for f in FRACTIONS if f in marginals]
    if present:
        if len(present) < len(FRACTIONS):
            missing = [f for f in FRACTIONS if f not in marginals]
            raise _fail(path, f"[inputs] mass fractions {', '.join(present)} given without {', '.join(missing)}")
        total = sum(marginals[f].nominal for f in FRACTIONS)
        if abs(total - 1.0) > _FRACTION_TOL:
            parts = " + ".join(f"{f} {marginals[f].nominal:g}" for f in FRACTIONS)
            raise _fail(path, f"[inputs] mass fractions must sum to 1: {parts} = {total:.6g}")
    correlation = None
    if sc.correlation is not None:
        for n in sc.correlation.names:
            if n not in marginals:
                raise _fail(path, f"[correlation] names {n!r}, which is not in [inputs]")
            if marginals[n].is_constant:
                raise _fail(path, f"[correlation] names {n!r}, which is a constant")
        try:
            correlation = Correlation(tuple(sc.correlation.names), tuple(map(tuple, sc.correlation.matrix)),
                                      sc.correlation.kind)
        except ValueError as exc:
            raise _fail(path, f"[correlation] {exc}") from None
    shifts = {}
    for n, s in sc.cell_to_cell.items():
        if n not in marginals:
            raise _fail(path, f"[cell_to_cell] {n!r} is not in [inputs]")
        if (s.std is None) == (s.rel_std is None):
            raise _fail(path, f"[cell_to_cell] {n}: give exactly one of std, rel_std")
        shifts[n] = SegmentShift(s.std if s.std is not None else s.rel_std * abs(marginals[n].nominal))
    drifts = {}
    for n, d in sc.drift.items():
        if n not in marginals:
            raise _fail(path, f"[drift] {n!r} is not in [inputs]")
        drifts[n] = Drift(d.kind, d.rate, d.delta, d.tau)
    bounds = {}
    for n, (lo, hi) in sc.bounds.items():
        if n not in QUANTITIES:
            raise _fail(path, f"[bounds] {quantity_hint(n)}")
        if not lo < hi:
            raise _fail(path, f"[bounds] {n}: low {lo} must be below high {hi}")
        bounds[n] = (float(lo), float(hi))
    mm_paths = {}
    for out, ref in sc.metamodels.items():
        if out not in QUANTITIES:
            raise _fail(path, f"[metamodels] {quantity_hint(out)}")
        p = Path(ref)
        if not p.is_absolute() and path is not None:
            p = path.parent / p
        if not p.is_file():
            raise _fail(path, f"[metamodels] {out}: file {str(p)!r} does not exist")
        mm_paths[out] = p.resolve()
    relative = {n: raw.rel_std for n, raw in sc.inputs.items()
                if isinstance(raw, _Entry) and raw.rel_std is not None and raw.dist in ("normal", "lognormal")}
    return Scenario(sc.name or (path.stem if path else "scenario"), sc.description, path, marginals,
                    correlation, shifts, drifts, bounds, mm_paths, sc.options.closed_fractions, relative)


def quantity_hint(name: str) -> str:
    """'NAME is not a canonical quantity; did you mean ...?'"""
    import difflib

    close = difflib.get_close_matches(name, QUANTITIES, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else " (see the README for the list of names)"
    return f"{name!r} is not a canonical quantity{hint}"
