"""Specification files: product limits, tolerance sizing and robust-setpoint settings, as TOML.

Format (every section but ``[limits]`` optional; names are canonical quantities, values in canonical units
unless ``unit`` says otherwise)::

    name = "paper use case"
    scenario = "paper_use_case"      # scenario file or shipped name (default: the paper's use case);
                                     # the command's --scenario overrides it
    target_share = 0.99              # share of segments that must meet every limit (0-1)

    [limits]                         # product specification: low and/or high, or nominal with a tolerance
    capacity = { low = 2.30 }                            # mAh/cm2, one-sided
    energy_density = { low = 1860.0, high = 1930.0 }     # Wh/L
    m_dry = { nominal = 14.3, rel_tol = 0.05 }           # -> [13.585, 15.015] mg/cm2
    rho_cal = { nominal = 2.95, tol = 0.06 }             # -> [2.89, 3.01] g/cm3
    h_cal = { low = 0.046, high = 0.051, unit = "mm" }   # converted to um

    [tolerances]                     # twin tolerances
    kind = "rel_std"                 # "rel_std" (normal, sd = t * nominal) or "band" (uniform, nominal*(1 +- t))
    allocation = "balanced"          # "balanced" (wider for inputs that matter less) or "common" (one for all)
    inputs = ["w_am", "x_solids"]    # inputs to size (default: every uncertain input of the scenario)
    max = 0.05                       # widest relative tolerance considered
    fixed = { line_load = 0.02 }     # tolerances that are given, not sized (relative, same kind)
    samples = 20000                  # Monte Carlo samples per candidate (common random numbers)
    confidence = 0.95                # the claimed share's one-sided lower confidence bound reaches target_share

    [optimize]                       # twin optimize
    free = ["flow_rate", "line_load"]            # setpoints to move
    objective = "probability"                    # or "variance"
    bounds = { flow_rate = [600.0, 800.0] }      # default: the scenario's [bounds], else the physical range
    targets = { m_dry = 14.3, rho_cal = 2.95 }   # the nominal inverse solution these setpoints are compared
                                                 # with (default: centres of the two-sided limits of chain
                                                 # outputs); for objective = "variance" the target means
    minimize = "capacity"                        # objective = "variance": output whose std is minimized
    samples = 20000

Everything is checked when the file is loaded; the error names the file, the entry, the value and the limit.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.quantities import QUANTITIES
from models.tolerance import Limit, SpecError

from .units import UnitError, conversion

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Spec", "ToleranceSettings", "OptimizeSettings", "load_spec", "spec_from_dict", "SpecFileError"]

OBJECTIVES = ("probability", "variance")


class SpecFileError(ValueError):
    """A specification file is malformed; the message names the file and the entry."""


class _Limit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: float | None = None
    high: float | None = None
    nominal: float | None = None
    tol: float | None = Field(None, gt=0)
    rel_tol: float | None = Field(None, gt=0)
    unit: str | None = None

    @model_validator(mode="after")
    def _consistent(self):
        band = self.tol is not None or self.rel_tol is not None
        if self.tol is not None and self.rel_tol is not None:
            raise ValueError("give tol or rel_tol, not both")
        if band and self.nominal is None:
            raise ValueError("tol / rel_tol need a nominal value")
        if band and (self.low is not None or self.high is not None):
            raise ValueError("give either low/high or nominal with tol/rel_tol, not both")
        if not band and self.nominal is not None:
            raise ValueError("nominal needs tol or rel_tol (or give low/high)")
        if not band and self.low is None and self.high is None:
            raise ValueError("needs low and/or high (or nominal with tol/rel_tol)")
        for k in ("low", "high", "nominal"):
            v = getattr(self, k)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{k} = {v} is not finite")
        return self


class _Tolerances(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["rel_std", "band"] = "rel_std"
    allocation: Literal["balanced", "common"] = "balanced"
    inputs: list[str] | None = None
    max: float = Field(0.05, gt=0, le=1.0)
    fixed: dict[str, float] = {}
    samples: int = Field(20000, ge=1000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)


class _Optimize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    free: list[str] = ["flow_rate", "line_load"]
    objective: Literal["probability", "variance"] = "probability"
    bounds: dict[str, tuple[float, float]] = {}
    targets: dict[str, float] = {}
    minimize: str | None = None
    samples: int = Field(20000, ge=1000)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    description: str = ""
    scenario: str | None = None
    target_share: float = Field(0.99, gt=0.0, lt=1.0)
    limits: dict[str, _Limit]
    tolerances: _Tolerances = _Tolerances()
    optimize: _Optimize = _Optimize()


@dataclass(frozen=True)
class ToleranceSettings:
    kind: str = "rel_std"
    allocation: str = "balanced"
    inputs: tuple[str, ...] | None = None
    max: float = 0.05
    fixed: dict[str, float] = field(default_factory=dict)
    samples: int = 20000
    confidence: float = 0.95


@dataclass(frozen=True)
class OptimizeSettings:
    free: tuple[str, ...] = ("flow_rate", "line_load")
    objective: str = "probability"
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)
    minimize: str | None = None
    samples: int = 20000


@dataclass(frozen=True)
class Spec:
    """A validated specification in canonical units."""

    name: str
    description: str
    path: Path | None
    scenario: str | None
    target_share: float
    limits: tuple[Limit, ...]
    tolerances: ToleranceSettings
    optimize: OptimizeSettings

    def limit(self, name: str) -> Limit | None:
        return next((l for l in self.limits if l.name == name), None)

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path) if self.path else None, "target_share": self.target_share,
                "limits": {l.name: {"low": l.low, "high": l.high, "unit": QUANTITIES[l.name].unit}
                           for l in self.limits}}


def _fail(path: Path | None, msg: str) -> SpecFileError:
    return SpecFileError(f"{'spec ' + str(path) if path else 'spec'}: {msg}")


def _hint(name: str) -> str:
    from .scenario import quantity_hint

    return quantity_hint(name)


def _format_validation(err: ValidationError) -> str:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
        out.append(f"{loc}: {msg}{shown}")
    return "; ".join(out)


def load_spec(path: str | Path) -> Spec:
    """Load and validate a specification file (TOML; see the module docstring for the format)."""
    p = Path(path).expanduser()
    if not p.is_file():
        from .resources import config_dir

        for cand in (config_dir() / "specs" / p.name, config_dir() / "specs" / f"{p.name}.toml"):
            if cand.is_file():
                p = cand
                break
        else:
            known = sorted(f.stem for f in (config_dir() / "specs").glob("*.toml"))
            raise FileNotFoundError(f"spec {str(path)!r} is neither a file nor a shipped spec "
                                    f"(shipped: {', '.join(known) or 'none'})")
    try:
        doc = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise _fail(p, f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise _fail(p, f"cannot be read: {exc}") from None
    return spec_from_dict(doc, p.resolve())


def _limit(name: str, raw: _Limit) -> Limit:
    q = QUANTITIES[name]
    try:
        a, b = conversion(raw.unit, name) if raw.unit is not None else (1.0, 0.0)
    except UnitError as exc:
        raise ValueError(str(exc)) from None

    def conv(v):
        return None if v is None else a * v + b

    if raw.nominal is not None:
        nominal = conv(raw.nominal)
        half = abs(a) * raw.tol if raw.tol is not None else raw.rel_tol * abs(nominal)
        low, high = nominal - half, nominal + half
    else:
        low, high = conv(raw.low), conv(raw.high)
    if low is not None and high is not None and not low < high:
        raise ValueError(f"low = {low:g} must be below high = {high:g} {q.unit}")
    for label, v in (("low", low), ("high", high)):
        if v is not None and not q.low <= v <= q.high:
            raise ValueError(f"{label} = {v:g} {q.unit} is outside the physical range "
                             f"[{q.low:g}, {q.high:g}] {q.unit} of {name}")
    both_open = (low is None or low <= q.low) and (high is None or high >= q.high)
    if both_open:
        raise ValueError(f"the limits do not restrict {name} at all (its physical range is "
                         f"[{q.low:g}, {q.high:g}] {q.unit})")
    return Limit(name, low, high)


def spec_from_dict(doc: dict, path: Path | None = None) -> Spec:
    """Validate a parsed specification document."""
    try:
        sp = _Spec.model_validate(doc)
    except ValidationError as exc:
        raise _fail(path, _format_validation(exc)) from None
    if not sp.limits:
        raise _fail(path, "[limits] is empty: give at least one limit")
    limits = []
    for name, raw in sp.limits.items():
        if name not in QUANTITIES:
            raise _fail(path, f"[limits] {_hint(name)}")
        try:
            limits.append(_limit(name, raw))
        except (ValueError, SpecError) as exc:
            raise _fail(path, f"[limits] {name}: {exc}") from None
    t = sp.tolerances
    for name in list(t.inputs or []) + list(t.fixed):
        if name not in QUANTITIES:
            raise _fail(path, f"[tolerances] {_hint(name)}")
    for name, v in t.fixed.items():
        if not 0 <= v <= t.max:
            raise _fail(path, f"[tolerances] fixed {name} = {v:g} is outside [0, max = {t.max:g}]")
    o = sp.optimize
    for name in list(o.free) + list(o.bounds) + list(o.targets) + ([o.minimize] if o.minimize else []):
        if name not in QUANTITIES:
            raise _fail(path, f"[optimize] {_hint(name)}")
    for name, (lo, hi) in o.bounds.items():
        if not lo < hi:
            raise _fail(path, f"[optimize] bounds {name}: low {lo:g} must be below high {hi:g}")
        if name not in o.free:
            raise _fail(path, f"[optimize] bounds {name}: {name} is not a free setpoint ({', '.join(o.free)})")
    if not o.free:
        raise _fail(path, "[optimize] free is empty: name at least one setpoint to move")
    if o.objective == "variance":
        if not o.minimize:
            raise _fail(path, "[optimize] objective = \"variance\" needs minimize = NAME (the output whose "
                              "standard deviation is minimized)")
    for name, v in o.targets.items():
        try:
            QUANTITIES[name].check(v, "[optimize] targets")
        except ValueError as exc:
            raise _fail(path, str(exc)) from None
    scenario = sp.scenario
    if scenario is not None and path is not None and (path.parent / scenario).is_file():
        scenario = str((path.parent / scenario).resolve())
    return Spec(
        sp.name or (path.stem if path else "spec"), sp.description, path, scenario, sp.target_share,
        tuple(limits),
        ToleranceSettings(t.kind, t.allocation, tuple(t.inputs) if t.inputs is not None else None, t.max, dict(t.fixed),
                          t.samples, t.confidence),
        OptimizeSettings(tuple(dict.fromkeys(o.free)), o.objective, {k: (float(a), float(b)) for k, (a, b) in
                                                                     o.bounds.items()},
                         dict(o.targets), o.minimize, o.samples),
    )

