"""HUGT end to end: one epoch for every switch on `synthetic` and ml-100k (tiny); same seed, same metrics."""

import math

import pytest
from recbole.utils import init_seed

from conftest import run_tiny, tiny_config_dict
from recbole_ext import registry
from recbole_ext.config import Config
from recbole_ext.data import create_dataset, data_preparation

ML100K_TINY = {"user_inter_num_interval": "[300,inf)"}  # 54 users, ~1.6k items
HUGT_TINY = {"n_heads": 2, "n_graph_heads": 1, "knn_k": 3, "spatial_clip": 3, "svd_rank": 16}

SWITCHES = [
    {},
    {"graph_mode": "se"},
    {"n_graph_heads": 0},  # SASRec-Ours
    {"n_graph_heads": 2, "graph_only": True, "graph_mode": "se"},  # graph heads only
    {"position_encoding": "distance"},
    {"position_encoding": "absolute"},
    {"position_encoding": "none"},
    {"head_arrangement": "graph_then_sequence"},
    {"head_arrangement": "sequence_then_graph", "graph_mode": "se"},
    {"loss_candidates": 20},
]


@pytest.fixture(scope="module", params=["synthetic", "ml-100k"])
def prepared(request, tmp_path_factory):
    extra = ML100K_TINY if request.param == "ml-100k" else {}
    config_dict = tiny_config_dict(
        checkpoint_dir=str(tmp_path_factory.mktemp("saved")), **HUGT_TINY, **extra
    )
    config = Config("HUGT", request.param, config_dict=config_dict, read_command_line=False)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    return config, data_preparation(config, dataset)


def train_one_epoch(config, loaders, overrides):
    saved = {key: config[key] for key in overrides}
    try:
        for key, value in overrides.items():
            config[key] = value
        init_seed(config["seed"], config["reproducibility"])
        train, valid, test = loaders
        model = registry.get_model("HUGT")(config, train._dataset)
        trainer = registry.get_trainer(config["MODEL_TYPE"], "HUGT")(config, model)
        trainer.fit(train, valid, saved=False, show_progress=False)
        return trainer.evaluate(test, load_best_model=False, show_progress=False)
    finally:
        for key, value in saved.items():
            config[key] = value


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_one_epoch_for_every_switch(prepared, overrides):
    config, loaders = prepared
    result = train_one_epoch(config, loaders, overrides)
    assert set(result) >= {"ndcg@10", "hit@10"}
    assert all(math.isfinite(value) and 0.0 <= value <= 1.0 for value in result.values())


# The dataset switch (RecBole's every-prefix training examples, here with the last-position
# loss) runs end to end on `synthetic` here and on ml-100k in the same-seed test below.
PREFIXES = {"train_windows": "prefixes", "train_positions": "last"}


def test_recbole_prefix_examples_on_synthetic():
    record = run_tiny("HUGT", "synthetic", **PREFIXES, **HUGT_TINY)
    assert math.isfinite(record["test_result"]["ndcg@10"])


def test_same_seed_same_metrics():
    first = run_tiny("HUGT", "ml-100k", graph_mode="se", **PREFIXES, **HUGT_TINY, **ML100K_TINY)
    second = run_tiny("HUGT", "ml-100k", graph_mode="se", **PREFIXES, **HUGT_TINY, **ML100K_TINY)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]


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
