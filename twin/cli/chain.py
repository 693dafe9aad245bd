"""twin chain: Monte Carlo of the process chain for a scenario."""

from __future__ import annotations

ORDER = 10

from .common import add_scenario_arguments, format_table


def add_parser(sub):
    p = sub.add_parser(
        "chain", help="Monte Carlo of the process chain: distributions of every input and structural parameter",
        description="Sample the scenario's inputs, run the process chain (mixing, coating, drying, calendering) "
                    "on every sample and report mean, standard deviation and 5/50/95 %% quantiles of every "
                    "input and structural parameter.")
    add_scenario_arguments(p, samples=100_000)
    p.add_argument("--segment", type=int, default=0, metavar="K",
                   help="segment index (selects its cell-to-cell shift; default 0)")
    p.add_argument("--time", type=float, default=0.0, metavar="SECONDS",
                   help="time since start of production, for drifts (default 0)")
    return p


def main(args) -> int:
    from twin.cli import emit_json
    from twin.montecarlo import run, summarize
    from twin.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    samples = run(scenario, args.samples, args.seed, args.segment, args.time)
    summary = summarize(samples)
    if args.json:
        emit_json({"scenario": scenario.name, "samples": args.samples, "seed": args.seed,
                   "segment": args.segment, "parameters": summary})
    else:
        print(f"scenario {scenario.name}: {args.samples} samples, seed {args.seed}, segment {args.segment}")
        print(format_table(summary))
    return 0
