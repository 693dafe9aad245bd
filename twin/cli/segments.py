"""twin segments: the segments in a store with their latest predictions."""

from __future__ import annotations

ORDER = 62

from .streaming import add_store_arguments


def add_parser(sub):
    p = sub.add_parser(
        "segments", help="list segments with their latest predicted distributions",
        description="List the most recent segments in the store (newest first) with their slurry batch, stage, "
                    "number of measurements and latest prediction: mean, std and 5/50/95 %% quantiles of every "
                    "structural parameter (and capacity/energy_density with a cell surrogate), the conditioning "
                    "method, the effective sample size and the probability of being out of tolerance.")
    add_store_arguments(p)
    p.add_argument("--last", type=int, default=20, metavar="N", help="number of segments (default 20)")
    p.add_argument("--line", metavar="ID", help="only this line")
    p.add_argument("--histograms", action="store_true", help="include the histograms in --json output")
    return p


def _strip(seg: dict, keep_hist: bool) -> dict:
    pred = seg.get("prediction")
    if pred and not keep_hist:
        for q in pred.get("quantities", {}).values():
            q.pop("hist", None)
    return seg


def main(args) -> int:
    from twin.cli import UserInputError, emit_json

    from .streaming import open_existing_store, settings_from_args

    if args.last < 1:
        raise UserInputError(f"--last {args.last} must be at least 1")
    settings = settings_from_args(args)
    with open_existing_store(settings) as store:
        rows = [_strip(s, args.histograms) for s in store.segments(args.line, args.last)]
        counts = store.counts()
        url = store.url
    if args.json:
        emit_json({"store": url.split("@")[-1], "counts": counts, "segments": rows})
        return 0
    cols = ("m_dry", "h_cal", "rho_cal", "eps_cal", "capacity")
    head = f"{'line':<8}{'segment':>8}  {'batch':<8}{'stage':<12}{'n':>6}  {'method':<11}{'ESS':>7}" + \
        "".join(f"{c:>18}" for c in cols) + f"{'P(out)':>9}"
    print(head)
    print("-" * len(head))
    for s in rows:
        p = s["prediction"] or {}
        q = p.get("quantities", {})
        vals = "".join(f"{q[c]['mean']:>10.4g} ±{q[c]['std']:<6.2g}" if c in q else f"{'-':>18}" for c in cols)
        pout = p.get("p_out")
        print(f"{s['line']:<8}{s['segment']:>8}  {str(s['batch'] or '-'):<8}{str(s['stage'] or '-'):<12}"
              f"{s['n_measurements'] or 0:>6}  {str(p.get('method', '-')):<11}"
              f"{(p.get('ess') or 0):>7.0f}{vals}{'-' if pout is None else f'{pout:.3f}':>9}")
    print(f"{counts['segments']} segments, {counts['measurements']} measurements, {counts['predictions']} "
          f"predictions, {counts['dead_letters_open']} open dead letters ({url.split('@')[-1]})")
    return 0
