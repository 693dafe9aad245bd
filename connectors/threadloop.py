"""Event loops that connectors run in threads of their own (OPC UA source, line simulator, embedded broker)."""

from __future__ import annotations

import asyncio

__all__ = ["close_loop"]


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks a library left running (asyncua's session timeout and subscription loops, amqtt's
    handlers), let them finish, then close the loop: no "Task was destroyed but it is pending" at exit."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
