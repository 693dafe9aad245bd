"""twin optimize: robust setpoints under the input uncertainty, compared with the nominal inverse solution."""

from __future__ import annotations

from .common import one_blas_thread

ORDER = 44


def add_parser(sub):
    p = sub.add_parser(
        "optimize", help="robust setpoints: highest share in spec (or least variance) under input uncertainty",
        description="Find setpoints within their bounds that maximize the share of segments meeting the "
                    "specification under the scenario's input uncertainty (objective probability), or minimize "
                    "an output's standard deviation at target means (objective variance), and compare them with "
                    "the nominal inverse solution (twin inverse) and the scenario's own setpoints. Every share "
                    "is checked by an independent Monte Carlo.",
        epilog="example: twin optimize --spec config/specs/paper_use_case.toml --json")
    p.add_argument("--spec", metavar="FILE", required=True,
                   help="specification TOML file, or the name of a shipped one in config/specs")
    p.add_argument("--scenario", metavar="FILE", help="scenario (default: the spec's, else the paper's use case)")
    p.add_argument("--objective", choices=("probability", "variance"), help="override the spec's objective")
    p.add_argument("--samples", type=int, metavar="N", help="Monte Carlo samples (default: spec)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
    return p


@one_blas_thread
def main(args) -> int:
    from models.quantities import QUANTITIES
    from twin.analysis import AnalysisInputError, optimize_setpoints
    from twin.cli import UserInputError, emit_json
    from twin.scenario import load_scenario
    from twin.spec import load_spec

    spec = load_spec(args.spec)
    scenario = load_scenario(args.scenario or spec.scenario)
    if args.samples is not None and args.samples < 1000:
        raise UserInputError(f"--samples {args.samples} is too few; use at least 1000")
    try:
        res = optimize_setpoints(spec, scenario, n=args.samples, seed=args.seed, objective=args.objective)
    except AnalysisInputError as exc:
        raise UserInputError(str(exc)) from None
    if args.json:
        emit_json(res)
        return 0
    print(f"scenario {res['scenario']}, spec {res['spec']}: objective {res['objective']}")
    rows = [("robust", res)] + list(res["compared"].items())
    names = list(res["mean"])
    print(f"{'':<18}" + "".join(f"{f:>14}" for f in res["free"]) + f"{'in spec':>10}{'verified':>10}"
          + "".join(f"{'mean ' + n:>20}{'std':>10}" for n in names))
    for label, r in rows:
        ver = res["verification"][label]["share_in_spec"]
        print(f"{label:<18}" + "".join(f"{r['setpoints'][f]:14.5g}" for f in res["free"])
              + f"{r['share_in_spec']:10.4f}{ver:10.4f}"
              + "".join(f"{r['mean'][n]:20.5g}{r['std'][n]:10.3g}" for n in names))
    if "error" in res["inverse"]:
        print(f"nominal inverse: {res['inverse']['error']}")
    if res["at_bound"]:
        print("on their bounds: " + ", ".join(f"{f} ({QUANTITIES[f].unit})" for f in res["at_bound"]))
    return 0
