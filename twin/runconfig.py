"""The twin's run configuration (``twin run --config FILE``), TOML; see ``config/run.example.toml``.

Sections owned by the core (validated here, every one optional)::

    [line]          id, segment_length_m, feed_dead_time_s, [line.positions] station -> metres downstream of
                    the slot die ("station/name" for one quantity), batch_stations
    [store]         url (sqlite:///file or postgresql://...), password_env / password_file, sqlite_synchronous,
                    shared (several workers: predictions read the segment's values from the store)
    [model]         scenario, samples, seed, cell ("auto" | "off" | "required"), min_ess, alert_p_out, hold_s,
                    cell_samples, processes
    [uncertainty]   sensor standard uncertainty of one reading per quantity: { std = .. } or { rel_std = .. };
                    "default" for the rest
    [spec]          tolerance per quantity: [low, high] in canonical units (inf / -inf for an open side)
    [validation]    max_future_s, max_age_s, accept_status, [validation.limits] name -> [low, high]
    [mapping]       "address" -> { name, station, unit, line }: fix or add the mapping of a topic / node id
    [web]           enabled, host, port
    [publish]       predictions: publish predictions and alerts on MQTT (needs [mqtt])

``[mqtt]`` and ``[opcua]`` belong to the connectors (:mod:`connectors.mqtt`, :mod:`connectors.opcua`) and are
passed to them as they are. Secrets never sit in the file: ``password_env = "VAR"`` or ``password_file =
"/run/credentials/..."``.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.quantities import QUANTITIES

from .ingest import AddressMapping, ValidationPolicy
from .segments import LineLayout
from .update import SensorUncertainty, UpdateConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TwinSettings", "ConfigError", "load_config", "config_from_dict"]


class ConfigError(ValueError):
    """The configuration is malformed; the message names the file and the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_name(name: str, where: str) -> str:
    if name not in QUANTITIES:
        import difflib

        close = difflib.get_close_matches(name, QUANTITIES, n=2)
        raise ValueError(f"{where}: {name!r} is not a canonical quantity"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    return name


_LAYOUT = LineLayout()


class LineSection(_Strict):
    """``[line]``: defaults and geometry checks are :class:`twin.segments.LineLayout`'s (the simulator's
    ``SimLine`` reads the same table with the same rules)."""

    id: str = "line1"
    segment_length_m: float = _LAYOUT.segment_length_m
    feed_dead_time_s: float = _LAYOUT.feed_dead_time_s
    positions: dict[str, float] = dict(_LAYOUT.positions)
    batch_stations: list[str] = list(_LAYOUT.batch_stations)
    history_s: float = Field(1800.0, gt=0)

    @field_validator("positions")
    @classmethod
    def _pos(cls, v):
        for k in v:
            if "/" in k:
                _check_name(k.split("/", 1)[1], f"positions.{k}")
        return v

    @model_validator(mode="after")
    def _geometry(self):
        LineLayout(self.segment_length_m, self.positions, tuple(self.batch_stations), self.feed_dead_time_s)
        return self


class StoreSection(_Strict):
    url: str = "twin.sqlite"
    password_env: str | None = None
    password_file: Path | None = None
    sqlite_synchronous: Literal["FULL", "NORMAL", "OFF", "EXTRA"] = "FULL"
    shared: bool | None = None     # several workers write this store: predict from it (default: PostgreSQL)

    def resolved_url(self) -> str:
        """The URL with the password from the environment or file put in (PostgreSQL)."""
        pw = None
        if self.password_env:
            pw = os.environ.get(self.password_env)
            if pw is None:
                raise ConfigError(f"[store] password_env: environment variable {self.password_env} is not set")
        elif self.password_file:
            try:
                pw = self.password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"[store] password_file: cannot read {self.password_file}: {exc}") from None
        if pw is None:
            return self.url
        if not self.url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("[store] a password is only used with a postgresql:// url")
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        return make_conninfo(**{**conninfo_to_dict(self.url), "password": pw})


class ModelSection(_Strict):
    scenario: str | None = None
    samples: int = Field(10_000, ge=100, le=10_000_000)
    seed: int = 0
    cell: Literal["auto", "off", "required"] = "auto"
    min_ess: float = Field(200.0, ge=1)
    alert_p_out: float = Field(0.05, gt=0, le=1)
    histogram_bins: int = Field(24, ge=4, le=200)
    hold_s: float = Field(60.0, ge=0)
    cell_samples: int = Field(2000, ge=100, le=10_000_000)
    processes: int = Field(0, ge=0, le=64)   # prediction worker processes (0: one thread of the twin process)   # a process parameter's last reading holds this long for later segments


class Uncertainty(_Strict):
    std: float | None = Field(None, ge=0)
    rel_std: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.std is None) == (self.rel_std is None):
            raise ValueError("give exactly one of std, rel_std")
        return self


def _range(v, where: str) -> tuple[float | None, float | None]:
    if not (isinstance(v, (list, tuple)) and len(v) == 2):
        raise ValueError(f"{where} must be [low, high] (inf / -inf for an open side), not {v!r}")
    lo, hi = (None if (x is None or (isinstance(x, float) and math.isinf(x))) else float(x) for x in v)
    if lo is not None and hi is not None and not lo < hi:
        raise ValueError(f"{where}: low {lo} must be below high {hi}")
    return lo, hi


class ValidationSection(_Strict):
    max_future_s: float = Field(5.0, ge=0)
    max_age_s: float = Field(86_400.0, gt=0)
    accept_status: list[str] = ["Good"]
    limits: dict[str, list[float | None]] = {}


class MappingEntry(_Strict):
    name: str | None = None
    station: str | None = None
    unit: str | None = None
    line: str | None = None


class WebSection(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8050, ge=0, le=65535)


class PublishSection(_Strict):
    predictions: bool = True       # electrode/{line}/twin/predictions/{segment} and .../twin/alerts via [mqtt]


class TwinSettings(_Strict):
    """The whole configuration; ``mqtt`` and ``opcua`` are kept raw for the connectors."""

    line: LineSection = LineSection()
    store: StoreSection = StoreSection()
    model: ModelSection = ModelSection()
    uncertainty: dict[str, Uncertainty] = {}
    spec: dict[str, list[float | None]] = {}
    validation: ValidationSection = ValidationSection()
    mapping: dict[str, MappingEntry] = {}
    web: WebSection = WebSection()
    publish: PublishSection = PublishSection()
    mqtt: dict[str, Any] | None = None
    opcua: dict[str, Any] | None = None
    path: Path | None = None

    @model_validator(mode="after")
    def _names(self):
        for n in self.uncertainty:
            if n != "default":
                _check_name(n, "[uncertainty]")
        for n, v in self.spec.items():
            _check_name(n, "[spec]")
            _range(v, f"[spec] {n}")
        for n, v in self.validation.limits.items():
            _check_name(n, "[validation.limits]")
            _range(v, f"[validation.limits] {n}")
        for addr, m in self.mapping.items():
            if m.name is not None and m.name != "batch_id":
                _check_name(m.name, f"[mapping] {addr!r}")
            if m.unit is not None and m.name is not None and m.name in QUANTITIES:
                from .units import UnitError, conversion

                try:
                    conversion(m.unit, m.name)
                except UnitError as exc:
                    raise ValueError(f"[mapping] {addr!r}: {exc}") from None
        return self

    def core_dict(self) -> dict:
        """The core's sections (no store, connectors or secrets): kept in the store so that commands working on a
        store (recompute, dead-letter replay) use the configuration the twin ran with."""
        return self.model_dump(mode="json", include={"line", "model", "uncertainty", "spec", "validation",
                                                     "mapping"})

    # -- the core's objects -----------------------------------------------------------------------------------
    def layout(self) -> LineLayout:
        return LineLayout(self.line.segment_length_m, dict(self.line.positions), tuple(self.line.batch_stations),
                          self.line.feed_dead_time_s)

    def policy(self) -> ValidationPolicy:
        v = self.validation
        return ValidationPolicy(v.max_future_s, v.max_age_s,
                                {n: _range(r, n) for n, r in v.limits.items()},
                                tuple(dict.fromkeys(["Good", *v.accept_status])),
                                {a: AddressMapping(m.name, m.station, m.unit, m.line) for a, m in self.mapping.items()})

    def update_config(self) -> UpdateConfig:
        m = self.model
        sensors = {n: SensorUncertainty(u.std, u.rel_std) for n, u in self.uncertainty.items() if n != "default"}
        d = self.uncertainty.get("default")
        default = SensorUncertainty(d.std, d.rel_std) if d else SensorUncertainty(rel_std=0.005)
        return UpdateConfig(m.samples, m.seed, sensors, default, {n: _range(r, n) for n, r in self.spec.items()},
                            m.alert_p_out, m.min_ess, m.histogram_bins, m.cell_samples)

    def scenario_path(self) -> str | None:
        s = self.model.scenario
        if s and self.path is not None and not Path(s).is_absolute() and (self.path.parent / s).is_file():
            return str(self.path.parent / s)
        return s


def _format(err: ValidationError) -> str:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        val = e.get("input")
        shown = f" (got {val!r})" if val is not None and not isinstance(val, dict) else ""
        out.append(f"{loc}: {msg}{shown}" if loc else msg)
    return "; ".join(out)


def config_from_dict(doc: dict, path: Path | None = None) -> TwinSettings:
    try:
        s = TwinSettings.model_validate({**doc, "path": path})
    except ValidationError as exc:
        raise ConfigError(f"config {path or '(dict)'}: {_format(exc)}") from None
    return s


def load_config(path: str | Path) -> TwinSettings:
    """Read and validate a run configuration; :class:`ConfigError` names the file and the entry."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"config {p}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {p}: not valid TOML: {exc}") from None
    return config_from_dict(doc, p.resolve())
