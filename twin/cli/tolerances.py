"""twin tolerances: widest production tolerances that keep a target share of segments in spec."""

from __future__ import annotations

from .common import one_blas_thread

ORDER = 42


def add_parser(sub):
    p = sub.add_parser(
        "tolerances", help="widest production tolerances for which a target share of segments meets the spec",
        description="Identify the widest tolerances (relative standard deviation, or +- band) of the scenario's "
                    "inputs for which the target share of segments (e.g. 99 %%) meets every limit of the "
                    "specification file (capacity, energy_density, structural parameters), and name the binding "
                    "input. Monte Carlo with common random numbers; the claimed share is the one-sided lower "
                    "confidence bound and is checked by an independent Monte Carlo (verification).",
        epilog="example: twin tolerances --spec config/specs/paper_use_case.toml --json")
    p.add_argument("--spec", metavar="FILE", required=True,
                   help="specification TOML file, or the name of a shipped one in config/specs")
    p.add_argument("--scenario", metavar="FILE", help="scenario (default: the spec's, else the paper's use case)")
    p.add_argument("--samples", type=int, metavar="N", help="Monte Carlo samples per candidate (default: spec)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--target-share", type=float, metavar="P", help="override the spec's target_share (0-1)")
    p.add_argument("--kind", choices=("rel_std", "band"), help="override the spec's tolerance kind")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
    return p


@one_blas_thread
def main(args) -> int:
    from models.quantities import QUANTITIES
    from twin.analysis import AnalysisInputError, identify_tolerances
    from twin.cli import UserInputError, emit_json
    from twin.scenario import load_scenario
    from twin.spec import load_spec

    spec = load_spec(args.spec)
    scenario = load_scenario(args.scenario or spec.scenario)
    if args.samples is not None and args.samples < 1000:
        raise UserInputError(f"--samples {args.samples} is too few for a share near 1; use at least 1000")
    if args.target_share is not None and not 0 < args.target_share < 1:
        raise UserInputError(f"--target-share {args.target_share} is outside (0, 1)")
    try:
        res = identify_tolerances(spec, scenario, n=args.samples, seed=args.seed, target_share=args.target_share,
                                  kind=args.kind)
    except AnalysisInputError as exc:
        raise UserInputError(str(exc)) from None
    if args.json:
        emit_json(res)
        return 0
    kind = "relative std" if res["kind"] == "rel_std" else "+- band (relative)"
    print(f"scenario {res['scenario']}, spec {res['spec']}: target {res['target_share']:.2%} of segments in spec")
    for l in res["limits"]:
        lo = "" if l["low"] is None else f"{l['low']:g} <= "
        hi = "" if l["high"] is None else f" <= {l['high']:g}"
        print(f"  {lo}{l['name']}{hi} {QUANTITIES[l['name']].unit}")
    print(f"\nwidest tolerances ({kind}, allocation {res['allocation']}; common tolerance for all: "
          f"{res['common_tolerance']:.3%}):")
    cur = res["current"]["tolerances"]
    for k, t in res["tolerances"].items():
        note = " (at max)" if k in res["at_max"] else (" <- binding" if k == res["binding"] else "")
        today = f"   today {cur[k]:.3%}" if cur.get(k) else ""
        print(f"  {k:<14} {t:8.3%}{today}   lever {res['levers'].get(k, 0):+.4f}{note}")
    v = res["verification"]
    print(f"\nshare in spec {res['share_in_spec']:.4f} (lower bound {res['share_lower_bound']:.4f}); limiting output: "
          f"{res['limiting_output']}")
    print(f"independent Monte Carlo ({v['samples']} samples): {v['share_in_spec']:.4f} "
          f"[{v['ci'][0]:.4f}, {v['ci'][1]:.4f}] -> {'meets' if v['meets_target'] else 'MISSES'} the target")
    print(f"with today's tolerances: {res['current']['share_in_spec']:.4f} in spec")
    return 0
