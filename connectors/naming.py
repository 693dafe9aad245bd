"""Names on the wire: stations, line signals, MQTT topic patterns and OPC UA browse names.

The canonical quantity names of :mod:`models.quantities` are used on every transport. This module holds what
the transports add around them:

- the stations of a line, lower-case in MQTT topics and :class:`~twin.readings.Reading` (``mixer``,
  ``coater``, ``dryer``, ``calender``, ``gauges``) and capitalised as OPC UA objects (``Mixer`` ...);
- line *signals*, values that are not physical quantities but that the twin needs (``batch_id``: the slurry
  batch the mixer released);
- :class:`TopicPattern`, the MQTT topic layout (default ``electrode/{line}/{station}/{name}``), which turns a
  topic into (line, station, name) and builds subscription filters and publish topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.quantities import QUANTITIES

__all__ = ["STATIONS", "OPCUA_OBJECTS", "SIGNALS", "DEFAULT_TOPIC_PATTERN", "TopicPattern", "TopicError",
           "is_known_name"]

#: Stations of an electrode line, in line order (lower-case: MQTT topics, readings, store).
STATIONS = ("mixer", "coater", "dryer", "calender", "gauges")

#: OPC UA object (browse name) of each station.
OPCUA_OBJECTS = {s: s.capitalize() for s in STATIONS}

#: Line signals that are not physical quantities: name -> meaning. Their value is a string.
SIGNALS = {
    "batch_id": "identifier of the slurry batch the mixer released (changes at a batch change)",
}

DEFAULT_TOPIC_PATTERN = "electrode/{line}/{station}/{name}"

_FIELDS = ("line", "station", "name")
_PLACEHOLDER = re.compile(r"^\{(\w+)\}$")


def is_known_name(name: str) -> bool:
    """True for a canonical quantity or a line signal."""
    return name in QUANTITIES or name in SIGNALS


class TopicError(ValueError):
    """A topic does not match the configured pattern."""


@dataclass(frozen=True)
class TopicPattern:
    """An MQTT topic layout with placeholders ``{line}``, ``{station}``, ``{name}``, one per level.

    ``{station}`` and ``{name}`` are required; without ``{line}`` the line comes from the configuration.
    Literal levels must match exactly.
    """

    pattern: str = DEFAULT_TOPIC_PATTERN

    def __post_init__(self):
        levels = self.pattern.split("/")
        seen = []
        for lv in levels:
            if not lv:
                raise ValueError(f"topic pattern {self.pattern!r} has an empty level")
            if "+" in lv or "#" in lv:
                raise ValueError(f"topic pattern {self.pattern!r}: level {lv!r} holds a wildcard; "
                                 f"use {{line}}, {{station}}, {{name}}")
            m = _PLACEHOLDER.match(lv)
            if m:
                if m.group(1) not in _FIELDS:
                    raise ValueError(f"topic pattern {self.pattern!r}: unknown placeholder {lv!r} "
                                     f"(known: {', '.join('{' + f + '}' for f in _FIELDS)})")
                if m.group(1) in seen:
                    raise ValueError(f"topic pattern {self.pattern!r}: {lv} appears twice")
                seen.append(m.group(1))
            elif "{" in lv or "}" in lv:
                raise ValueError(f"topic pattern {self.pattern!r}: a placeholder must fill a whole level, "
                                 f"not {lv!r}")
        for required in ("station", "name"):
            if required not in seen:
                raise ValueError(f"topic pattern {self.pattern!r} has no {{{required}}}")
        object.__setattr__(self, "_levels", tuple(levels))

    @property
    def has_line(self) -> bool:
        return "{line}" in self._levels

    def filter(self, line: str | None = None, station: str | None = None) -> str:
        """Subscription filter: ``+`` for every placeholder not fixed by ``line``/``station``."""
        fixed = {"line": line, "station": station}
        out = []
        for lv in self._levels:
            m = _PLACEHOLDER.match(lv)
            out.append((fixed.get(m.group(1)) or "+") if m else lv)
        return "/".join(out)

    def topic(self, line: str, station: str, name: str) -> str:
        """The topic a value of (line, station, name) is published on."""
        values = {"line": line, "station": station, "name": name}
        for k, v in values.items():
            if not v or "/" in v or "+" in v or "#" in v:
                raise ValueError(f"{k} = {v!r} cannot be a topic level (empty, or holds / + #)")
        return "/".join(values[m.group(1)] if (m := _PLACEHOLDER.match(lv)) else lv for lv in self._levels)

    def parse(self, topic: str, default_line: str | None = None) -> tuple[str, str, str]:
        """(line, station, name) of ``topic``; :class:`TopicError` naming the topic and the pattern."""
        levels = topic.split("/")
        if len(levels) != len(self._levels):
            raise TopicError(f"topic {topic!r} has {len(levels)} levels, pattern {self.pattern!r} has "
                             f"{len(self._levels)}")
        got = {}
        for lv, pat in zip(levels, self._levels):
            m = _PLACEHOLDER.match(pat)
            if m:
                if not lv:
                    raise TopicError(f"topic {topic!r}: {pat} is empty")
                got[m.group(1)] = lv
            elif lv != pat:
                raise TopicError(f"topic {topic!r} does not match pattern {self.pattern!r} "
                                 f"(level {lv!r} should be {pat!r})")
        line = got.get("line", default_line)
        if not line:
            raise TopicError(f"topic {topic!r}: pattern {self.pattern!r} has no {{line}} and no line is configured")
        return line, got["station"], got["name"]
