"""Shared by the streaming commands (run, demo, segments, deadletters, recompute): configuration and store."""

from __future__ import annotations

import argparse

DEFAULT_STORE = "twin.sqlite"


def add_store_arguments(p: argparse.ArgumentParser, config: bool = True) -> None:
    p.add_argument("--store", metavar="FILE_OR_URL",
                   help=f"store: an SQLite file or a postgresql:// URL (default: the config's [store] url, "
                        f"else {DEFAULT_STORE})")
    if config:
        p.add_argument("--config", metavar="FILE", help="run configuration TOML (see config/run.example.toml)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")


def settings_from_args(args):
    """The run configuration of ``--config`` (defaults without), with ``--store`` overriding its [store] url."""
    from twin.runconfig import TwinSettings, load_config

    s = load_config(args.config) if getattr(args, "config", None) else TwinSettings()
    if getattr(args, "store", None):
        s = s.model_copy(update={"store": s.store.model_copy(update={"url": args.store})})
    elif not getattr(args, "config", None):
        s = s.model_copy(update={"store": s.store.model_copy(update={"url": DEFAULT_STORE})})
    return s


def settings_for_store(args, settings, store):
    """Without ``--config``: the core configuration the twin last ran with on this store (kept in it), with
    ``--store``; with ``--config``: that file's."""
    if getattr(args, "config", None):
        return settings
    saved = store.get_state("config")
    if not saved:
        return settings
    from twin.runconfig import config_from_dict

    return config_from_dict({**saved, "store": settings.store.model_dump(mode="json")})


def open_existing_store(settings):
    """Open the configured store for reading; a missing SQLite file is the user's mistake (exit 2)."""
    from pathlib import Path

    from twin.cli import UserInputError
    from twin.store import open_store

    url = settings.store.resolved_url()
    if not url.startswith(("postgresql://", "postgres://")):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserInputError(f"store {path} does not exist (run `twin demo` or `twin run` first, or give "
                                 f"--store)")
    return open_store(url)
