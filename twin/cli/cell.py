"""twin cell: capacity and energy density distributions (chain Monte Carlo -> cell surrogate or P2D);
calibration of the P2D and retraining of the surrogate."""

from __future__ import annotations

ORDER = 20

_P2D_SAMPLES = 200
_SURROGATE_SAMPLES = 10_000


def add_parser(sub):
    p = sub.add_parser(
        "cell", help="cell performance: capacity and energy density distributions; calibrate the P2D, retrain "
                     "the surrogate",
        description="Sample the scenario's inputs, run the process chain, then the cell model on every sample "
                    "(structure surrogate + P2D half cell, through its polynomial-chaos surrogate by default) and "
                    "report mean, standard deviation and 5/50/95 %% quantiles of capacity [mAh/cm2] and volumetric "
                    "energy density [Wh/L of coating] at 1 mA/cm2. --model p2d runs the full PyBaMM model instead "
                    "(slow: use a few hundred samples). --calibrate re-runs the calibration of c_0 to the paper's "
                    "capacity; --retrain regenerates the surrogate from P2D runs and validates it.")
    from .common import add_scenario_arguments

    add_scenario_arguments(p, samples=None)
    p.add_argument("--samples", type=int, default=None, metavar="N",
                   help=f"Monte Carlo samples (default {_SURROGATE_SAMPLES} with the surrogate, {_P2D_SAMPLES} "
                        f"with --model p2d)")
    p.add_argument("--segment", type=int, default=0, metavar="K", help="segment index (default 0)")
    p.add_argument("--time", type=float, default=0.0, metavar="SECONDS",
                   help="time since start of production, for drifts (default 0)")
    p.add_argument("--model", choices=("surrogate", "p2d"), default="surrogate",
                   help="cell model: the polynomial-chaos surrogate (default) or the full P2D")
    p.add_argument("--policy", choices=("raise", "warn", "nan"), default="raise",
                   help="samples outside the surrogate's design space: refuse (default), warn, or give NaN "
                        "(then left out of the statistics and counted)")
    p.add_argument("--surrogate", metavar="FILE.json", help="surrogate file (default config/cell/surrogate.json)")
    p.add_argument("--close-fractions", action="store_true",
                   help="evaluate the cell with w_pb = 1 - w_am - w_ca, the paper's convention for its cell model, "
                        "instead of the chain's sampled w_pb")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--calibrate", action="store_true",
                     help="calibrate c_0 of the P2D to the paper's capacity at its nominal structure and print it")
    act.add_argument("--retrain", action="store_true",
                     help="run the P2D on a virtual DoE, fit the surrogate, validate it on held-out runs (and on "
                          "the scenario's Monte Carlo samples), write it and its parity plot; trained for the "
                          "scenario's materials")
    p.add_argument("--write", action="store_true", help="with --calibrate: write config/cell/calibration.toml")
    p.add_argument("--train", type=int, metavar="N", help="with --retrain: training runs (default from "
                                                          "config/cell/half_cell.toml)")
    p.add_argument("--test", type=int, metavar="N", help="with --retrain: held-out runs over the design space")
    p.add_argument("--output", metavar="FILE.json", help="with --retrain: where to write the surrogate "
                                                         "(default config/cell/surrogate.json)")
    p.add_argument("--plot", metavar="FILE.png", help="with --retrain: parity plot (default "
                                                      "docs/figures/cell_surrogate_parity.png)")
    return p


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def _calibrate(args) -> int:
    from twin.cell import calibrate, load_cell_config, write_calibration
    from twin.cli import emit_json

    cfg = load_cell_config()
    result = calibrate(cfg)
    path = write_calibration(result) if args.write else None
    if args.json:
        emit_json({**result, "written": str(path) if path else None})
        return 0
    t, a, tab = result["targets"], result["achieved"], result["with_table_a2_c_0"]
    print(f"calibrated c_0 = {result['parameters']['c_0']:.1f} mol/m3 (Table A2: {result['table_a2']['c_0']:g}; "
          f"initial stoichiometry {result['initial_stoichiometry']:.4f})")
    print(f"{'':<16}{'paper':>10}{'calibrated':>12}{'Table A2 c_0':>14}")
    print(f"{'capacity':<16}{t['capacity']:>10.3f}{a['capacity']:>12.3f}{tab['capacity']:>14.3f}   mAh/cm2")
    print(f"{'energy_density':<16}{t['energy_density']:>10.0f}{a['energy_density']:>12.1f}"
          f"{tab['energy_density']:>14.1f}   Wh/L")
    print(f"written to {path}" if path else "(not written; add --write to store it in config/cell/calibration.toml)")
    return 0


def _retrain(args) -> int:
    from twin.cell import (load_cell_config, materials_of, paper_materials, parity_plot, save_surrogate,
                           train_surrogate)
    from twin.cli import emit_json
    from twin.montecarlo import run
    from twin.scenario import load_scenario

    cfg = load_cell_config()
    scenario = load_scenario(args.scenario)
    # trained for the scenario's materials (the paper's where the scenario does not give them)
    materials = materials_of(scenario.nominal(), paper_materials(cfg))
    n_local = int(cfg.half_cell.get("surrogate", {}).get("n_local", 128))
    local = run(scenario, n_local, seed=args.seed + 1000) if n_local >= 2 else None
    sur, val = train_surrogate(cfg, n_train=args.train, n_test=args.test, materials=materials, local=local,
                               local_name=scenario.name, progress=_stderr)
    path = save_surrogate(sur, args.output)
    plot = parity_plot(sur, val, args.plot)
    if args.json:
        emit_json({"surrogate": str(path), "parity_plot": str(plot), "inputs": list(sur.inputs),
                   "outputs": list(sur.outputs), "design_space": sur.design_space.to_dict(), "metrics": sur.metrics})
        return 0
    print(f"surrogate written to {path}; parity plot {plot}")
    for key, label in (("validation", "held-out runs over the design space"),
                       ("validation_local", f"held-out Monte Carlo samples of {scenario.name}")):
        m = sur.metrics.get(key)
        if not m:
            continue
        print(f"{m['n']} {label} ({m['n_failed']} P2D failures):")
        for o in sur.outputs:
            v = m[o]
            print(f"  {o:<16} Q2 {v['q2']:.6f}   RMSE {v['rmse']:.3g}   max |error| {v['max_abs_error']:.3g} "
                  f"({100 * v['max_rel_error']:.3f} %)")
    print(f"terms: {sur.metrics['terms']} (degree {sur.metrics['degree']}, q-norm {sur.metrics['q_norm']})")
    return 0


def main(args) -> int:
    import numpy as np

    from twin.cli import UserInputError, emit_json

    if args.write and not args.calibrate:
        raise UserInputError("--write only goes with --calibrate")
    if (args.train or args.test or args.output or args.plot) and not args.retrain:
        raise UserInputError("--train, --test, --output and --plot only go with --retrain")
    if args.calibrate:
        return _calibrate(args)
    if args.retrain:
        return _retrain(args)

    from models.cell import CELL_OUTPUTS
    from twin.cell import load_cell_config, load_cell_surrogate, run_cell, surrogate_is_current
    from twin.montecarlo import summarize
    from twin.scenario import load_scenario

    n = args.samples if args.samples is not None else (_P2D_SAMPLES if args.model == "p2d" else _SURROGATE_SAMPLES)
    if n < 2:
        raise UserInputError(f"--samples {n} must be at least 2")
    scenario = load_scenario(args.scenario)
    sur = None
    if args.model == "surrogate":
        sur = load_cell_surrogate(args.surrogate, args.policy)
        stale = surrogate_is_current(sur, load_cell_config())
        if stale:
            _stderr("twin cell: warning: the surrogate was trained with other cell parameters than the current "
                    "config/cell files (" + "; ".join(stale[:3]) + (" ..." if len(stale) > 3 else "")
                    + "); retrain it with `twin cell --retrain`")
    samples, report = run_cell(scenario, n, args.seed, args.model, args.policy, sur, args.segment, args.time,
                               args.close_fractions)
    finite = np.isfinite(samples["capacity"]) & np.isfinite(samples["energy_density"])
    if finite.sum() < 2:
        raise UserInputError(f"only {int(finite.sum())} of {n} samples gave a cell result: "
                             + "; ".join(f"{k} ({v})" for k, v in report["failures"].items()))
    summary = summarize({k: np.asarray(samples[k])[finite] for k in CELL_OUTPUTS}, CELL_OUTPUTS)
    if args.json:
        emit_json({"scenario": scenario.name, "model": args.model, "samples": n, "seed": args.seed,
                   "segment": args.segment, "close_fractions": bool(args.close_fractions),
                   "parameters": summary,
                   "failed": {"count": report["n_failed"], "reasons": report["failures"]}})
        return 0
    from .common import format_table

    what = "polynomial-chaos surrogate" if args.model == "surrogate" else "P2D (PyBaMM DFN half cell)"
    print(f"scenario {scenario.name}: {n} samples, seed {args.seed}, segment {args.segment}, cell model: {what}"
          + (", w_pb = 1 - w_am - w_ca" if args.close_fractions else ""))
    print(format_table(summary))
    if report["n_failed"]:
        print(f"{report['n_failed']} sample(s) without a result, left out: "
              + "; ".join(f"{k} ({v})" for k, v in report["failures"].items()))
    perf = load_cell_config().table_a2.get("performance", {})
    if scenario.name == "paper_use_case" and "capacity" in perf and "energy_density" in perf:
        c, e = perf["capacity"], perf["energy_density"]
        dc = 100 * (summary["capacity"]["mean"] / c["value"] - 1)
        de = 100 * (summary["energy_density"]["mean"] / e["value"] - 1)
        print(f"paper (section 3.4): capacity {c['value']} +- {c['std']} mAh/cm2 (mean here {dc:+.1f} %), "
              f"energy density {e['value']:g} +- {e['std']:g} Wh/L (mean here {de:+.1f} %)")
    return 0
