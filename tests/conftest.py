"""Shared fixtures: tiny configs and one-call runs for model tests.

Every test runs in its own temporary working directory, so RecBole's ``log/`` and ``saved/``
folders never land in the checkout.
"""

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import recbole_ext  # noqa: E402,F401  (applies the compat shims before any RecBole import)


def tiny_config_dict(**overrides):
    """A config small enough for a one-epoch run in a few seconds on 2 cores."""
    config = {
        "epochs": 1,
        "hidden_size": 16,
        "embedding_size": 16,
        "inner_size": 32,
        "n_layers": 1,
        "n_heads": 2,
        "n_graph_heads": 1,  # HUGT: one sequence and one graph head (2 of 2 graph heads needs graph_only)
        "MAX_ITEM_LIST_LENGTH": 10,
        "train_batch_size": 256,
        "eval_batch_size": 2048,
        "show_progress": False,
        "state": "ERROR",
        "use_gpu": False,
        "seed": 2020,
        "reproducibility": True,
    }
    config.update(overrides)
    return config


def run_tiny(model, dataset="synthetic", saved=False, **overrides):
    """Train one epoch of ``model`` on ``dataset`` with :func:`tiny_config_dict`; returns the record."""
    from recbole_ext.quick_start import run_single

    return run_single(
        model, dataset, config_dict=tiny_config_dict(**overrides), saved=saved, read_command_line=False
    )


@pytest.fixture(autouse=True)
def _isolated_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # RecBole's Config parses sys.argv
    yield


@pytest.fixture
def tiny_config():
    return tiny_config_dict
