"""A throw-away asyncua server that writes counters, run as a separate process by tests and the bench.

Each of ``--vars`` Double variables ``ns=<idx>;s=Counter.c<i>`` (namespace ``urn:electrode-twin:test-counters``,
EngineeringUnits "m/min") takes the values ``start, start + 1, ..., start + count - 1``, ``--rate`` writes per
second per variable (0: as fast as the event loop allows), every write with its own SourceTimestamp; then the
server keeps running (holding the last values) until it is killed (``--wait-go``: the writes start when a line
arrives on stdin, so a client can subscribe first). It prints ``ready <port>`` on stdout once it
listens and ``done <writes>`` after the last write. Being a separate process, it can be killed with SIGKILL,
which is what "the OPC UA server dies" means in the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import datetime, timezone

NAMESPACE = "urn:electrode-twin:test-counters"


async def main(args) -> None:
    from asyncua import Server, ua

    logging.basicConfig(level=logging.ERROR)
    srv = Server()
    await srv.init()
    srv.set_server_name("electrode-twin test counter server")
    srv.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/")
    srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await srv.register_namespace(NAMESPACE)
    obj = await srv.nodes.objects.add_object(ua.NodeId("Counter", idx), ua.QualifiedName("Counter", idx))
    nodes = []
    for i in range(args.vars):
        v = await obj.add_variable(ua.NodeId(f"Counter.c{i}", idx), ua.QualifiedName(f"c{i}", idx),
                                   ua.Variant(float(args.start - 1), ua.VariantType.Double))
        await v.add_property(0, "EngineeringUnits", ua.EUInformation(DisplayName=ua.LocalizedText("m/min")))
        nodes.append(v.nodeid)
    async with srv:
        print(f"ready {args.port}", flush=True)
        if args.wait_start:
            await asyncio.sleep(args.wait_start)
        if args.wait_go:                       # the bench subscribes first, then says go
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        t0 = time.perf_counter()
        writes = 0
        for k in range(args.count):
            now = datetime.now(timezone.utc)
            value = float(args.start + k)
            for nid in nodes:
                await srv.write_attribute_value(nid, ua.DataValue(ua.Variant(value, ua.VariantType.Double),
                                                                  SourceTimestamp=now, ServerTimestamp=now))
                writes += 1
            if args.rate > 0:
                delay = t0 + (k + 1) / args.rate - time.perf_counter()
                await asyncio.sleep(max(delay, 0.0))
            else:
                await asyncio.sleep(0)      # let the publish loop run between rounds
        print(f"done {writes} {time.perf_counter() - t0:.6f}", flush=True)
        while True:
            await asyncio.sleep(3600)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--vars", type=int, default=10)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--wait-start", type=float, default=0.0, help="seconds between 'ready' and the first write")
    p.add_argument("--wait-go", action="store_true", help="start writing after a line on stdin")
    try:
        asyncio.run(main(p.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
