"""twin metamodel: fit, compare and select a meta-model from a virtual DoE table; inspect a fitted one."""

from __future__ import annotations

ORDER = 90


def add_parser(sub):
    p = sub.add_parser(
        "metamodel", help="fit a meta-model of a numerical process model from a DoE table, or show one",
        description="fit: read a DoE CSV (inputs, repetition, output), fit linear, quadratic, exponential, "
                    "Kriging and polynomial-chaos candidates on a train/test split, select by test RMSE and "
                    "AICc, refit the selected one on all rows and save it with its design space. "
                    "show: print a fitted meta-model's selection table and design space.")
    s = p.add_subparsers(dest="action", metavar="ACTION")
    s.required = True
    f = s.add_parser("fit", help="fit and select a meta-model from a DoE CSV")
    f.add_argument("doe", metavar="DOE.csv")
    f.add_argument("--output", "-o", metavar="FILE.json", required=True, help="where to write the meta-model")
    f.add_argument("--candidates", nargs="+", metavar="FAMILY",
                   help="families to compare (default: linear quadratic exponential kriging pce)")
    f.add_argument("--test-fraction", type=float, default=0.3, help="share of rows held out (default 0.3)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
    sh = s.add_parser("show", help="show a fitted meta-model")
    sh.add_argument("model", metavar="FILE.json")
    sh.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
    return p


def _table(metrics: dict) -> str:
    lines = [f"{'family':<12}{'params':>8}{'RMSE train':>12}{'R2 train':>10}{'AICc':>10}{'RMSE test':>11}"
             f"{'R2 test':>9}"]
    for c in metrics.get("candidates", []):
        if c.get("error"):
            lines.append(f"{c['kind']:<12}  failed: {c['error']}")
            continue
        mark = "  <- selected" if c["kind"] == metrics.get("selected") else ""
        lines.append(f"{c['kind']:<12}{c['n_params']:>8.1f}{c['rmse_train']:>12.3g}{c['r2_train']:>10.4f}"
                     f"{c['aicc']:>10.1f}{c['rmse_test']:>11.3g}{c['r2_test']:>9.4f}{mark}")
    lines.append(f"rule: {metrics.get('rule', '')}")
    return "\n".join(lines)


def main(args) -> int:
    from models.metamodel import FAMILIES
    from twin.cli import UserInputError, emit_json
    from twin.metamodels import fit_doe, load_metamodel, read_doe, save_metamodel

    if args.action == "fit":
        for c in args.candidates or []:
            if c not in FAMILIES:
                raise UserInputError(f"--candidates {c!r} is not one of {', '.join(FAMILIES)}")
        doe = read_doe(args.doe)
        model = fit_doe(doe, tuple(args.candidates or FAMILIES), args.test_fraction, args.seed)
        save_metamodel(model, args.output)
    else:
        model = load_metamodel(args.model)
    if args.json:
        emit_json({"kind": model.kind, "inputs": list(model.inputs), "output": model.output,
                   "design_space": model.design_space.to_dict(), "metrics": model.metrics, "info": model.info})
        return 0
    print(f"{model.output} = f({', '.join(model.inputs)}): selected {model.kind}"
          + ("   [fitted to SYNTHETIC data]" if model.info.get("synthetic") else ""))
    print("design space: " + ", ".join(f"{n} in [{lo:g}, {hi:g}]" for n, (lo, hi)
                                        in model.design_space.to_dict().items()))
    print(_table(model.metrics))
    return 0
