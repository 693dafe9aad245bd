"""Adapters to the outside world: OPC UA, MQTT, time-series database, Grafana. Each converts to canonical names
and units at the boundary and hands the twin core plain records; the core never imports a protocol library."""
