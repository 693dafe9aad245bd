"""Unit conversion at the boundary: any unit a scenario file, PLC or MQTT payload uses -> the canonical unit.

Unit strings are parsed by pint, with the wire conventions of electrode-twin accepted as well: ``cm2``,
``g/cm3`` (digits as exponents), ``um``/``µm`` for micrometre, ``-`` (or empty) for dimensionless, ``%`` for
percent. A conversion factor is computed once per (unit, canonical unit) pair and cached, so converting a
stream costs a dictionary look-up and a multiply-add.
"""

from __future__ import annotations

import re
from functools import lru_cache

from models.quantities import quantity

__all__ = ["UnitError", "conversion", "to_canonical", "parse_unit"]


class UnitError(ValueError):
    """A unit cannot be parsed or has the wrong dimension for a quantity."""


@lru_cache(maxsize=1)
def _registry():
    import pint

    return pint.UnitRegistry()


def _normalise(unit: str) -> str:
    u = (unit or "").strip()
    if u in ("", "-", "1", "dimensionless"):
        return "dimensionless"
    u = u.replace("µ", "u").replace("μ", "u").replace("%", "percent").replace("²", "2").replace("³", "3")
    return re.sub(r"([A-Za-z])(\d+)", r"\1**\2", u)


@lru_cache(maxsize=None)
def parse_unit(unit: str):
    """The pint unit for a unit string; :class:`UnitError` if it cannot be parsed."""
    ureg = _registry()
    try:
        return ureg.Quantity(1.0, _normalise(unit)).units
    except Exception as exc:  # pint raises several types
        raise UnitError(f"cannot parse unit {unit!r}: {exc}") from None


@lru_cache(maxsize=None)
def conversion(unit: str, name: str) -> tuple[float, float]:
    """(factor, offset) such that canonical = factor * value + offset for quantity ``name`` given in ``unit``.

    Raises :class:`UnitError` naming the quantity, the unit given and the canonical unit when the dimensions
    differ, and ``KeyError`` for an unknown quantity.
    """
    q = quantity(name)
    if _normalise(unit) == _normalise(q.unit):
        return 1.0, 0.0
    src, dst = parse_unit(unit), parse_unit(q.unit)
    ureg = _registry()
    try:
        zero = ureg.Quantity(0.0, src).to(dst).magnitude
        one = ureg.Quantity(1.0, src).to(dst).magnitude
    except Exception:
        raise UnitError(f"{name} given in {unit!r}, which cannot be converted to its canonical unit "
                        f"{q.unit!r}") from None
    return float(one - zero), float(zero)


def to_canonical(value: float, unit: str | None, name: str) -> float:
    """``value`` in ``unit`` expressed in the canonical unit of ``name`` (``unit=None``: already canonical)."""
    if unit is None:
        return float(value)
    a, b = conversion(unit, name)
    return a * float(value) + b
