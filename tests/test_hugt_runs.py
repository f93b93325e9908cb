"""HUGT end to end on `synthetic` and ml-100k (tiny): every switch changes the model on fixed
batches; RecBole's prefix examples are SASRec's; same seed, same metrics (a different seed differs)."""

import pytest
import torch
from recbole.utils import init_seed

from conftest import first_batch, fixed_batch_scores, run_tiny, tiny_loaders

ML100K_TINY = {"user_inter_num_interval": "[300,inf)"}  # 54 users, ~1.6k items
HUGT_TINY = {"n_heads": 2, "n_graph_heads": 1, "knn_k": 3, "spatial_clip": 3, "svd_rank": 16}

SWITCHES = [
    {"graph_mode": "se"},
    {"n_graph_heads": 0},  # SASRec-Ours
    {"n_graph_heads": 2, "graph_only": True, "graph_mode": "se"},  # graph heads only
    {"position_encoding": "distance"},
    {"position_encoding": "absolute"},
    {"position_encoding": "none"},
    {"head_arrangement": "graph_then_sequence"},
    {"head_arrangement": "sequence_then_graph", "graph_mode": "se"},
    {"loss_candidates": 20},
    {"knn_k": 1},
    {"hidden_act": "gelu"},
]


@pytest.fixture(scope="module", params=["synthetic", "ml-100k"])
def fixed(request):
    """One training and one test batch, fixed for every switch."""
    extra = ML100K_TINY if request.param == "ml-100k" else {}
    config, _, (train, _, test) = tiny_loaders("HUGT", request.param, **HUGT_TINY, **extra)
    init_seed(config["seed"], config["reproducibility"])
    train_batch, test_batch = first_batch(train), first_batch(test)
    return lambda **overrides: fixed_batch_scores(config, train._dataset, train_batch, test_batch, **overrides)


def test_same_seed_same_batches_same_scores(fixed):
    assert torch.equal(fixed(), fixed())
    assert not torch.allclose(fixed(seed=7), fixed(), atol=1e-6)  # the different-seed control


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_every_switch_changes_the_scores(fixed, overrides):
    assert not torch.allclose(fixed(**overrides), fixed(), atol=1e-6)


# The dataset switch: RecBole's every-prefix training examples (here with the last-position loss).
PREFIXES = {"train_windows": "prefixes", "train_positions": "last"}


def test_recbole_prefix_examples_are_sasrecs_and_change_the_model():
    config, _, (train, _, test) = tiny_loaders("HUGT", **PREFIXES, **HUGT_TINY)
    _, _, (stock_train, _, _) = tiny_loaders("SASRec")
    ours, stock = train._dataset.inter_feat, stock_train._dataset.inter_feat
    for field in ("user_id", "item_id", "item_id_list", "item_length"):
        assert torch.equal(ours[field], stock[field]), field
    init_seed(config["seed"], config["reproducibility"])
    train_batch, test_batch = first_batch(train), first_batch(test)
    last = fixed_batch_scores(config, train._dataset, train_batch, test_batch)
    every = fixed_batch_scores(config, train._dataset, train_batch, test_batch, train_positions="all")
    assert not torch.allclose(last, every, atol=1e-6)


def test_same_seed_same_metrics():
    first = run_tiny("HUGT", "ml-100k", graph_mode="se", **PREFIXES, **HUGT_TINY, **ML100K_TINY)
    second = run_tiny("HUGT", "ml-100k", graph_mode="se", **PREFIXES, **HUGT_TINY, **ML100K_TINY)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    other_seed = run_tiny("HUGT", "ml-100k", graph_mode="se", **PREFIXES, **HUGT_TINY, **ML100K_TINY, seed=7)
    assert other_seed["test_result"] != first["test_result"]


def test_benchmark_tests_the_best_validation_checkpoint(monkeypatch):
    """bench_hugt.py reports the best validation epoch (issue 12): it must train with saved=True,
    which makes run_single test the best checkpoint instead of the last epoch."""
    import importlib.util
    import os

    from conftest import REPO_ROOT

    path = os.path.join(REPO_ROOT, "benchmarks", "bench_hugt.py")
    monkeypatch.syspath_prepend(os.path.dirname(path))
    spec = importlib.util.spec_from_file_location("bench_hugt_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    calls = []
    monkeypatch.setattr(bench, "run_single", lambda *args, **kwargs: calls.append(kwargs) or {})
    bench.run("HUGT", "synthetic", {"epochs": 1})
    assert calls and all(call["saved"] is True for call in calls)
