"""Where the shipped data lives: the ``config/`` directory (scenarios, meta-models, DoE tables, parameter sets).

``TWIN_CONFIG_DIR`` points elsewhere (e.g. a plant's own configuration repository); otherwise the ``config/``
directory of the source checkout the package runs from is used.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["config_dir", "default_scenario_path", "resolve_scenario_path"]

DEFAULT_SCENARIO = "paper_use_case"


def config_dir() -> Path:
    """The configuration directory."""
    env = os.environ.get("TWIN_CONFIG_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[1] / "config"


def default_scenario_path() -> Path:
    """The paper's use case, shipped as the default scenario."""
    return config_dir() / "scenarios" / f"{DEFAULT_SCENARIO}.toml"


def resolve_scenario_path(ref: str | os.PathLike | None) -> Path:
    """A scenario given as a path, or as the name of a file in ``config/scenarios`` (with or without .toml)."""
    if ref is None:
        return default_scenario_path()
    p = Path(ref).expanduser()
    if p.is_file():
        return p.resolve()
    for cand in (config_dir() / "scenarios" / p.name, config_dir() / "scenarios" / f"{p.name}.toml"):
        if cand.is_file():
            return cand
    known = sorted(f.stem for f in (config_dir() / "scenarios").glob("*.toml"))
    raise FileNotFoundError(f"scenario {str(ref)!r} is neither a file nor a shipped scenario "
                            f"(shipped: {', '.join(known) or 'none'})")
