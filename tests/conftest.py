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


def tiny_loaders(model, dataset="synthetic", **overrides):
    """``(config, dataset, (train, valid, test))`` for :func:`tiny_config_dict`, seeded as RecBole does."""
    from recbole.utils import init_seed

    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset, data_preparation

    config = Config(model, dataset, config_dict=tiny_config_dict(**overrides), read_command_line=False)
    init_seed(config["seed"], config["reproducibility"])
    built = create_dataset(config)
    return config, built, data_preparation(config, built)


def first_batch(loader):
    """The first batch of a RecBole dataloader, its transform applied (an ``Interaction``)."""
    batch = next(iter(loader))
    return batch[0] if isinstance(batch, tuple) else batch  # full-sort loaders add history indices


def fixed_batch_scores(config, dataset, train_batch, eval_batch, steps=1, **overrides):
    """Full-ranking scores on ``eval_batch`` of ``config["model"]`` built with ``overrides``.

    The model is built under ``init_seed(config["seed"])`` (a ``seed`` override gives the
    different-seed control), takes ``steps`` optimiser steps (the trainer's optimiser) on
    ``train_batch``, then scores in eval mode. Two calls that differ in one switch see the same
    seed and the same batches, so a difference in their scores is the switch's; it costs
    milliseconds where a training epoch costs seconds. Switches read by a batch transform need
    batches from loaders built with them.
    """
    import copy

    import torch
    from recbole.utils import init_seed

    from recbole_ext import registry

    config = copy.deepcopy(config)
    for key, value in overrides.items():
        config[key] = value
    init_seed(config["seed"], config["reproducibility"])
    model = registry.get_model(config["model"])(config, dataset)
    trainer = registry.get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    model.train()
    for _ in range(steps):
        trainer.optimizer.zero_grad()
        model.calculate_loss(train_batch).backward()
        trainer.optimizer.step()
    model.eval()
    with torch.no_grad():
        return model.full_sort_predict(eval_batch)


@pytest.fixture(autouse=True)
def _isolated_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # RecBole's Config parses sys.argv
    yield


@pytest.fixture
def tiny_config():
    return tiny_config_dict
