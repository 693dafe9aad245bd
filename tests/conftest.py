"""Shared fixtures. Tests mirror the package layout; integration tests that need a server start it themselves."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def paper_scenario():
    from twin.scenario import load_scenario

    return load_scenario()


@pytest.fixture(scope="session")
def paper_nominal(paper_scenario):
    """Nominal inputs of the paper's use case, with eps_dry from the shipped meta-model."""
    return paper_scenario.nominal()
