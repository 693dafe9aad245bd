"""Meta-model files: read a virtual DoE table, fit and select a meta-model, save and load it as JSON.

DoE table (CSV, ``#`` comment lines allowed and kept as provenance)::

    # any comment, e.g. where the data come from
    m_wet [mg/cm2],repetition,eps_dry
    14.2,1,0.4671
    ...

Columns are canonical names, optionally followed by a unit in brackets (converted to the canonical unit). The
last column is the output; a column called ``repetition`` (or ``rep``) numbers repeated runs and is not an
input; every other column is an input. A real DEM/CFD DoE in this format is a drop-in replacement for the
shipped synthetic one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.metamodel import FAMILIES, MetaModel, fit_metamodel
from models.quantities import QUANTITIES

from .units import to_canonical

__all__ = ["DoE", "read_doe", "fit_doe", "save_metamodel", "load_metamodel"]

_HEADER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[(.*)\])?\s*$")


@dataclass
class DoE:
    inputs: tuple[str, ...]
    output: str
    X: np.ndarray
    y: np.ndarray
    comments: list[str]
    path: Path
    sha256: str

    @property
    def synthetic(self) -> bool:
        return any("SYNTHETIC" in c.upper() for c in self.comments)


def read_doe(path: str | Path) -> DoE:
    """Read a DoE table; ``ValueError`` naming the file, line and column for anything malformed."""
    path = Path(path)
    text = path.read_text()
    comments = [ln[1:].strip() for ln in text.splitlines() if ln.lstrip().startswith("#")]
    body = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(body) < 2:
        raise ValueError(f"DoE {path}: needs a header line and at least one row")
    header = next(csv.reader([body[0]]))
    cols = []
    for h in header:
        m = _HEADER.match(h)
        if not m:
            raise ValueError(f"DoE {path}: header {h!r} is not 'name' or 'name [unit]'")
        cols.append((m.group(1), m.group(2)))
    names = [c[0] for c in cols]
    for n in names:
        if n not in QUANTITIES and n not in ("repetition", "rep"):
            raise ValueError(f"DoE {path}: column {n!r} is not a canonical quantity")
    output = names[-1]
    input_idx = [i for i, n in enumerate(names[:-1]) if n not in ("repetition", "rep")]
    if not input_idx:
        raise ValueError(f"DoE {path}: no input column")
    rows = []
    for lineno, row in enumerate(csv.reader(body[1:]), start=2):
        if len(row) != len(cols):
            raise ValueError(f"DoE {path}: data line {lineno} has {len(row)} fields, header has {len(cols)}")
        vals = []
        for (name, unit), cell in zip(cols, row):
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(f"DoE {path}: data line {lineno}: {name} = {cell!r} is not a number") from None
            if not np.isfinite(v):
                raise ValueError(f"DoE {path}: data line {lineno}: {name} = {cell!r} is not finite")
            if name in QUANTITIES:
                v = to_canonical(v, unit, name)
                QUANTITIES[name].check(v, f"DoE {path} data line {lineno}")
            vals.append(v)
        rows.append(vals)
    data = np.asarray(rows)
    return DoE(tuple(names[i] for i in input_idx), output, data[:, input_idx], data[:, -1], comments, path,
               hashlib.sha256(text.encode()).hexdigest())


def fit_doe(doe: DoE, candidates=FAMILIES, test_fraction: float = 0.3, seed: int = 0) -> MetaModel:
    """Fit and select a meta-model on a DoE table, recording its provenance."""
    info = {
        "doe": doe.path.name,
        "doe_sha256": doe.sha256,
        "synthetic": doe.synthetic,
        "doe_comments": doe.comments,
        "fitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return fit_metamodel(doe.X, doe.y, doe.inputs, doe.output, candidates, test_fraction, seed, info=info)


def save_metamodel(model: MetaModel, path: str | Path) -> None:
    Path(path).write_text(json.dumps(model.to_dict(), indent=1) + "\n")


def load_metamodel(path: str | Path, policy: str = "raise") -> MetaModel:
    """Load a meta-model JSON file; ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        return MetaModel.from_dict(doc, policy)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"meta-model {path}: {exc}") from None
