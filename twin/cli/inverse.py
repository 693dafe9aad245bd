"""twin inverse: product-oriented workflow, setpoints for structural targets."""

from __future__ import annotations

ORDER = 20

from .common import add_scenario_arguments, parse_assignments

DEFAULT_FREE = ("flow_rate", "line_load")


def add_parser(sub):
    p = sub.add_parser(
        "inverse", help="setpoints that give target structural parameters (product-oriented workflow)",
        description="Find the free setpoints (default: flow_rate and line_load) for which the process chain at "
                    "the scenario's nominal inputs produces the target structural parameters. Bounds come from "
                    "the scenario's [bounds] table, else the physical range of each quantity.",
        epilog="example: twin inverse --target m_dry=14.3 --target rho_cal=2.95 --json")
    p.add_argument("--target", action="append", metavar="NAME=VALUE", required=True,
                   help="target value of a structural parameter, canonical unit (repeatable)")
    p.add_argument("--free", action="append", metavar="NAME",
                   help=f"setpoint to adjust (repeatable; default: {' '.join(DEFAULT_FREE)})")
    p.add_argument("--bound", action="append", metavar="NAME=LOW:HIGH", help="override a setpoint's bounds")
    p.add_argument("--samples", type=int, default=0, metavar="N",
                   help="also run the chain at the found setpoints with N Monte Carlo samples and report the "
                        "distributions of the targets (default 0: nominal only)")
    add_scenario_arguments(p, samples=None)
    return p


def main(args) -> int:
    from models.inverse import TargetUnreachable, solve_setpoints
    from twin.cli import UserInputError, emit_json
    from twin.montecarlo import chain_for, run, summarize
    from twin.scenario import load_scenario, quantity_hint
    from models.quantities import QUANTITIES

    scenario = load_scenario(args.scenario)
    targets = parse_assignments(args.target, "--target")
    free = list(dict.fromkeys(args.free or DEFAULT_FREE))
    for f in free:
        if f not in QUANTITIES:
            raise UserInputError(f"--free {quantity_hint(f)}")
    bounds = {f: scenario.bounds_for(f) for f in free}
    for item in args.bound or []:
        name, _, rng = item.partition("=")
        lo, _, hi = rng.partition(":")
        try:
            bounds[name.strip()] = (float(lo), float(hi))
        except ValueError:
            raise UserInputError(f"--bound {item!r} is not NAME=LOW:HIGH") from None
    chain = chain_for(scenario)
    try:
        res = solve_setpoints(chain, scenario.nominal(), targets, free, bounds)
    except TargetUnreachable as exc:
        raise UserInputError(str(exc)) from None
    doc = {"scenario": scenario.name, "targets": targets, "free": free,
           "setpoints": res.setpoints, "achieved": res.achieved, "relative_error": res.relative_error,
           "bounds": {f: list(bounds[f]) for f in free}}
    if args.samples:
        samples = run(scenario.with_nominal(res.setpoints), args.samples, args.seed)
        doc["monte_carlo"] = {"samples": args.samples, "seed": args.seed,
                              "parameters": summarize(samples, list(targets) + free)}
    if args.json:
        emit_json(doc)
        return 0
    print(f"scenario {scenario.name}: targets " + ", ".join(f"{k} = {v:g} {QUANTITIES[k].unit}"
                                                             for k, v in targets.items()))
    for f, v in res.setpoints.items():
        print(f"  {f:<14} = {v:12.6g} {QUANTITIES[f].unit:<8} (nominal {scenario.nominal()[f]:g}, "
              f"bounds {bounds[f][0]:g}..{bounds[f][1]:g})")
    for t, v in res.achieved.items():
        print(f"  achieved {t:<8} = {v:12.6g} {QUANTITIES[t].unit:<8} ({res.relative_error[t]:+.1e} relative)")
    if args.samples:
        from .common import format_table

        print(format_table(doc["monte_carlo"]["parameters"]))
    return 0
