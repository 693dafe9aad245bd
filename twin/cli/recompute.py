"""twin recompute: predictions recomputed from the raw measurements in the store."""

from __future__ import annotations

ORDER = 66

from .streaming import add_store_arguments


def add_parser(sub):
    p = sub.add_parser(
        "recompute", help="recompute every segment's prediction from the stored raw measurements",
        description="Rebuild the web position and slurry batches from the stored speed and batch signals, "
                    "re-attribute every stored measurement with the current configuration (positions, segment "
                    "length, dead time) and append a fresh prediction for each segment (sensor uncertainties, "
                    "specs, scenario and cell surrogate as configured now). Earlier predictions stay in the store.")
    add_store_arguments(p)
    p.add_argument("--line", metavar="ID", help="only this line")
    p.add_argument("--from-segment", type=int, metavar="K", help="first segment to recompute")
    p.add_argument("--to-segment", type=int, metavar="K", help="last segment to recompute")
    p.add_argument("--samples", type=int, metavar="N", help="Monte Carlo samples (default: the config's)")
    return p


def main(args) -> int:
    from twin.cli import emit_json
    from twin.recompute import recompute
    from twin.scenario import load_scenario
    from twin.update import Predictor, load_cell_model

    from .streaming import open_existing_store, settings_for_store, settings_from_args

    settings = settings_from_args(args)
    with open_existing_store(settings) as store:
        settings = settings_for_store(args, settings, store)
        if args.samples:
            settings = settings.model_copy(update={"model": settings.model.model_copy(
                update={"samples": args.samples})})
        predictor = Predictor(load_scenario(settings.scenario_path()), settings.update_config(),
                              cell=load_cell_model(settings.model.cell))
        out = recompute(store, settings, predictor, args.line, args.from_segment, args.to_segment)
    if args.json:
        emit_json(out)
    else:
        print(f"{out['measurements']} measurements ({out['re_attributed']} attributed differently than at "
              f"ingestion), {out['segments']} segments, {out['predictions']} predictions in {out['seconds']:.1f} s")
    return 0
