"""twin sensitivity: ANCOVA (and Sobol') indices of the process chain and the cell model, Sankey diagram."""

from __future__ import annotations

from .common import one_blas_thread

ORDER = 40


def add_parser(sub):
    from twin.sensitivity import DEFAULT_BOOT, DEFAULT_SAMPLES

    p = sub.add_parser(
        "sensitivity", help="which input's uncertainty drives which output's uncertainty (ANCOVA, Sobol')",
        description="Monte Carlo of the scenario, then ANCOVA indices S = S_U + S_C (paper eq. 4-7) of every "
                    "structural parameter w.r.t. the uncertain process and formulation inputs (independent, "
                    "so S_C ~ 0; Sobol' S1/ST as well), and of capacity and energy_density w.r.t. the cell "
                    "model's inputs w_am, w_ca, m_dry, rho_cal, which the chain makes correlated (eq. 17). "
                    "Bootstrap confidence intervals. Optionally the Sankey diagram of Figure 10.",
        epilog="example: twin sensitivity --json --sankey sensitivity.html   (also writes sensitivity.png)")
    p.add_argument("--scenario", metavar="FILE",
                   help="scenario TOML file, or the name of a shipped one (default: the paper's use case)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, metavar="N",
                   help=f"Monte Carlo samples (default {DEFAULT_SAMPLES})")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--boot", type=int, default=DEFAULT_BOOT, metavar="B",
                   help=f"bootstrap resamples for the confidence intervals (default {DEFAULT_BOOT}; 0: none)")
    p.add_argument("--cell", choices=("auto", "required", "off"), default="auto",
                   help="cell model: auto (if the surrogate is installed), required, off (default auto)")
    p.add_argument("--sankey", metavar="FILE.html",
                   help="write the Sankey diagram process -> structure -> performance as interactive HTML, and "
                        "as PNG next to it (needs the cell model)")
    p.add_argument("--index", choices=("S", "S_U"), default="S",
                   help="index that sizes the Sankey flows (default S, the total ANCOVA share)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
    return p


def _fmt(v: float) -> str:
    return f"{v:7.3f}"


@one_blas_thread
def main(args) -> int:
    import sys

    from models.sensitivity import sankey_flows
    from twin.cli import UserInputError, emit_json
    from twin.scenario import load_scenario
    from twin.sensitivity import load_cell, refresh

    if args.samples < 100:
        raise UserInputError(f"--samples {args.samples} is too few; use at least 100 (recommended 10000)")
    if args.boot < 0:
        raise UserInputError(f"--boot {args.boot} must be >= 0")
    scenario = load_scenario(args.scenario)
    try:
        cell = load_cell(args.cell)
    except Exception as exc:
        raise UserInputError(f"--cell required: {exc}") from None
    if cell is None and args.cell == "auto":
        print("twin sensitivity: no cell surrogate available (train it with `twin cell --retrain`); chain only",
              file=sys.stderr)
    if args.sankey and cell is None:
        raise UserInputError("--sankey needs the cell model (performance layer); it is not available")
    if cell is not None and hasattr(cell, "check_materials"):
        cell.check_materials(scenario.nominal())
    res = refresh(scenario, cell, n=args.samples, seed=args.seed, n_boot=args.boot, independent=True)
    if args.sankey:
        from twin.sankey import write_sankey

        flows = sankey_flows(res["chain"], res["cell"], index=args.index) if args.index != "S" else res["sankey"]
        html, png = write_sankey(flows, args.sankey)
        res["sankey_files"] = {"html": str(html), "png": str(png)}
    if args.json:
        emit_json(res)
        return 0
    chain = res["chain"]
    print(f"scenario {res['scenario']}: {res['samples']} samples, seed {res['seed']}, "
          f"{res['seconds']['total']:.2f} s")
    indep = "S1" in chain["indices"][chain["outputs"][0]][chain["inputs"][0]]
    print("\nProcess chain: ANCOVA S of each structural parameter"
          + (" (= first-order Sobol': independent inputs)" if indep else " (inputs not independent: S_C in --json)"))
    if chain.get("note"):
        print(f"note: {chain['note']}")
    ins = chain["inputs"]
    print(f"{'':<14}" + "".join(f"{i[:12]:>13}" for i in ins) + f"{'sum':>8}{'R2':>8}")
    for o in chain["outputs"]:
        row = chain["indices"][o]
        print(f"{o:<14}" + "".join(f"{row[i]['S']:13.3f}" for i in ins) + f"{chain['sum'][o]['S']:8.3f}"
              f"{chain['r2'][o]:8.4f}")
    if res["cell"] is not None:
        c = res["cell"]
        print("\nCell model (cf. paper Table 1): ANCOVA indices w.r.t. correlated inputs")
        head = "".join(f"{o + ' ' + k:>22}" for o in c["outputs"] for k in ("S", "S_U", "S_C"))
        print(f"{'':<10}{head}")
        for i in c["inputs"]:
            print(f"{i:<10}" + "".join(f"{c['indices'][o][i][k]:22.3f}" for o in c["outputs"]
                                        for k in ("S", "S_U", "S_C")))
        print(f"{'sum':<10}" + "".join(f"{c['sum'][o][k]:22.3f}" for o in c["outputs"] for k in ("S", "S_U", "S_C")))
        if "independent" in c:
            ind = c["independent"]
            print("\nthe same without the chain's correlation (independent inputs, Sobol' S1):")
            for i in c["inputs"]:
                print(f"{i:<10}" + "".join(f"{ind['indices'][o][i]['S1']:22.3f}" for o in c["outputs"]))
            print("std: " + ", ".join(f"{o} {c['std'][o]:.4g} correlated vs {ind['std'][o]:.4g} independent"
                                       for o in c["outputs"]))
        names = c["correlation"]["names"]
        print("\ncorrelation of the cell inputs (cf. paper eq. 17): " + ", ".join(names))
        for r in c["correlation"]["matrix"]:
            print("  " + " ".join(f"{v:7.3f}" for v in r))
    if args.sankey:
        print(f"\nSankey diagram: {res['sankey_files']['html']}, {res['sankey_files']['png']}")
    return 0
