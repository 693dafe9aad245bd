"""The record every connector hands the twin core: one value as it was received, with its provenance.

Connectors (``connectors.mqtt``, ``connectors.opcua``, replay of dead letters) only parse the protocol and map
the topic or node to a canonical name; they put a :class:`Reading` on the ingestion queue and return. Whatever
they could not parse still becomes a ``Reading`` with ``error`` set (and the raw ``payload``), so nothing is
dropped at the boundary: the ingestion step validates every reading and either stores it as a measurement or
keeps it in the dead-letter table with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Reading"]


@dataclass(frozen=True, slots=True)
class Reading:
    """One received value.

    Attributes
    ----------
    source : transport, ``"mqtt"``, ``"opcua"``, ``"replay"`` ...
    address : MQTT topic or OPC UA node id it came from
    line : production line id (``line1``)
    station : station on the line (``mixer``, ``coater``, ``dryer``, ``gauges``, ``calender``)
    name : canonical quantity name the address maps to, or ``None`` if it maps to none
    value : the value as received (a number, or whatever the payload held)
    unit : the unit as received (``None``: the canonical unit)
    source_ts : source timestamp, seconds since the epoch (UTC), ``None`` if absent
    server_ts : server timestamp (OPC UA) or broker receive time, seconds since the epoch, if known
    received_ts : when the twin received it, seconds since the epoch
    status : OPC UA status code name (``"Good"`` for MQTT)
    payload : the raw payload text, kept for dead letters and replay
    error : why the connector could not parse it (malformed JSON, unmapped node ...), ``None`` if it could
    """

    source: str
    address: str
    line: str
    station: str
    name: str | None
    value: object
    unit: str | None
    source_ts: float | None
    server_ts: float | None
    received_ts: float
    status: str = "Good"
    payload: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)
