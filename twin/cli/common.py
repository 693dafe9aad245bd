"""Arguments and output shared by several commands."""

from __future__ import annotations

import argparse
import functools

from models.quantities import QUANTITIES

__all__ = ["add_scenario_arguments", "format_table", "parse_assignments", "one_blas_thread"]


def one_blas_thread(main):
    """Run a command's ``main`` with one BLAS thread: the analysis commands do many small matrix products, for
    which one thread is faster than two fighting over a shared 2-core machine."""

    @functools.wraps(main)
    def run(args):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            return main(args)

    return run


def add_scenario_arguments(p: argparse.ArgumentParser, samples: int | None = 10_000) -> None:
    p.add_argument("--scenario", metavar="FILE",
                   help="scenario TOML file, or the name of a shipped one (default: the paper's use case)")
    if samples is not None:
        p.add_argument("--samples", type=int, default=samples, metavar="N",
                       help=f"Monte Carlo samples (default {samples})")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")


def parse_assignments(items: list[str] | None, what: str) -> dict[str, float]:
    """NAME=VALUE strings -> {NAME: float}; ValueError naming the bad item."""
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"{what} {item!r} is not NAME=VALUE")
        if name not in QUANTITIES:
            from twin.scenario import quantity_hint

            raise ValueError(f"{what} {quantity_hint(name)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"{what} {name}: {value!r} is not a number") from None
        QUANTITIES[name].check(out[name], what)
    return out


def format_table(summary: dict[str, dict]) -> str:
    """Human-readable table of a summary {name: {unit, mean, std, p05, p50, p95}}."""
    head = f"{'parameter':<20}{'unit':<14}{'mean':>12}{'std':>11}{'rel. std':>10}{'p05':>12}{'p50':>12}{'p95':>12}"
    lines = [head, "-" * len(head)]
    for name, s in summary.items():
        rel = f"{100 * s['std'] / abs(s['mean']):.2f} %" if s["mean"] else "-"
        lines.append(f"{name:<20}{s['unit']:<14}{s['mean']:>12.5g}{s['std']:>11.3g}{rel:>10}"
                     f"{s['p05']:>12.5g}{s['p50']:>12.5g}{s['p95']:>12.5g}")
    return "\n".join(lines)
