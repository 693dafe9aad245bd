"""The ``twin`` command line.

Each sub-command lives in its own module of this package with two functions, ``add_parser(subparsers)``,
which declares its arguments, and ``main(args) -> int``, which runs it, and an ``ORDER`` number that places it
in ``twin --help``. Every module of this package that has ``add_parser`` is a command: to add one, write the
module, nothing else. Heavy libraries (PyBaMM, OpenTURNS, asyncua) are imported inside ``main`` so
``twin --help`` and light commands stay fast.

Conventions: ``--json`` prints exactly one JSON document on stdout and nothing else (logs and warnings go to
stderr); errors in the user's input (a malformed scenario, an unreachable target) print one line naming what
is wrong on stderr and exit with status 2; other failures exit with status 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import pkgutil
import sys
import warnings

__all__ = ["main", "commands", "emit_json", "UserInputError"]


def commands() -> list:
    """The command modules of this package, in ``ORDER``."""
    mods = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
            if not m.name.startswith("_")]
    mods = [m for m in mods if hasattr(m, "add_parser") and hasattr(m, "main")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


class UserInputError(Exception):
    """Raised by a command for a problem in what the user gave it (exit status 2)."""


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def emit_json(doc) -> None:
    """Print one JSON document on stdout (NaN/inf become null, so the output is strict JSON)."""
    sys.stdout.write(json.dumps(_clean(doc), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twin",
        description="electrode-twin: digital twin of a lithium-ion electrode production line "
                    "(process chain and cell model of Thomitzek et al. 2022).")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in commands():
        p = module.add_parser(sub)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    if getattr(args, "json", False):
        warnings.simplefilter("default")
    try:
        return int(args._module.main(args) or 0)
    except UserInputError as exc:
        print(f"twin {args.command}: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"twin {args.command}: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
