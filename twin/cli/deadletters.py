"""twin deadletters: inspect rejected readings and replay them after a fix."""

from __future__ import annotations

ORDER = 64

from .streaming import add_store_arguments


def add_parser(sub):
    p = sub.add_parser(
        "deadletters", help="list rejected readings with their reasons, or replay them after a fix",
        description="Every reading the twin rejected is kept in the store's dead-letter table with the reason "
                    "(field, value, limit). 'list' shows them; 'replay' re-validates the open ones with the "
                    "current configuration (e.g. after adding a [mapping] entry for an unknown topic, a unit "
                    "fix or wider [validation.limits]) and stores those that now pass, exactly once.",
        epilog="example: twin deadletters replay --config line1.toml --json")
    p.add_argument("action", choices=("list", "replay"), nargs="?", default="list")
    add_store_arguments(p)
    p.add_argument("--id", type=int, action="append", metavar="N", help="only this dead letter (repeatable)")
    p.add_argument("--state", choices=("open", "replayed", "all"), default="open",
                   help="which to list (default open)")
    p.add_argument("--last", type=int, default=100, metavar="N", help="list at most N (default 100)")
    return p


def main(args) -> int:
    from twin.cli import emit_json

    from .streaming import open_existing_store, settings_for_store, settings_from_args

    settings = settings_from_args(args)
    with open_existing_store(settings) as store:
        if args.action == "list":
            rows = store.dead_letters(None if args.state == "all" else args.state, args.last, args.id)
            if args.json:
                emit_json({"dead_letters": rows, "counts": store.counts()})
            else:
                for r in rows:
                    print(f"#{r['id']} [{r['state']}] {r['source']} {r['address']}: {r['reason']}"
                          + (f"  -> {r['replay_note']}" if r.get("replay_note") else ""))
                c = store.counts()
                print(f"{c['dead_letters']} dead letters, {c['dead_letters_open']} open")
            return 0
        from twin.ingest import replay_dead_letters
        from twin.recompute import ingestor_for

        out = replay_dead_letters(ingestor_for(store, settings_for_store(args, settings, store)), args.id)
        out["counts"] = store.counts()
    if args.json:
        emit_json(out)
    else:
        for x in out["letters"]:
            print(f"#{x['id']}: {x['outcome']}" + (f" ({x['reason']})" if "reason" in x else
                                                   f" as measurement {x.get('measurement_id')}"))
        print(f"replayed {out['replayed']}, already stored {out['duplicates']}, still invalid "
              f"{out['still_invalid']}")
        if out["replayed"]:
            print("run `twin recompute` (or keep `twin run` going) to update the predictions of their segments")
    return 0
