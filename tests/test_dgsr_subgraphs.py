"""DGSR's sub-graph pipeline (issue 13, items 3 and 4): evaluation sub-graphs cached once per split
within a memory bound, training sub-graphs sampled in a dataloader worker and reproducible for a
seed, and the neighbourhood switches (one window size for every node, the cap on newly reached
users, the time window), each shown to change the sub-graph without letting in any edge at or after
the prediction time or from the evaluation split."""

import os

import pytest
import torch

from conftest import tiny_config_dict

SMALL = dict(user_inter_num_interval="[0,20]", embedding_size=8, max_neighbors=4, MAX_ITEM_LIST_LENGTH=10,
             n_layers=2, train_batch_size=128, eval_batch_size=512)
UNI100 = {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni100"}}


def _prepare(**overrides):
    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset, data_preparation

    config = Config("DGSR", "synthetic", config_dict=tiny_config_dict(**{**SMALL, **overrides}), read_command_line=False)
    dataset = create_dataset(config)
    return config, dataset, data_preparation(config, dataset)


def _model(config, dataset):
    from recbole_ext.registry import get_model

    torch.manual_seed(0)
    return get_model("DGSR")(config, dataset).eval()


def _scores(model, loader):
    """The user vectors ``W_P h_u`` of every row of an evaluation loader (uni100 repeats each
    example once per candidate; its negatives are redrawn at every pass, so scores would differ)."""
    out = []
    with torch.no_grad():
        for batch in loader:
            out.append(model.forward(batch[0]))
    return torch.cat(out)


def _fresh(sampler, interaction):
    """The sub-graph sampled from scratch (no cache), at the sampler's widths."""
    return sampler._sample(interaction, sampler.pad_to)


@pytest.mark.parametrize("mode", ["full", "uni100"])
def test_evaluation_subgraphs_are_computed_once_and_equal_fresh_ones(monkeypatch, mode):
    import recbole_ext.data.dataloader.subgraph_sampler as sampler_module

    config, dataset, (train, valid, test) = _prepare(**(UNI100 if mode == "uni100" else {}))
    model = _model(config, train.dataset)
    for loader in (valid, test):
        cache = loader.transform.cache
        assert cache is not None and cache.size == len(loader.dataset) and cache.nbytes > 0
    expected = {}
    for name, loader in (("valid", valid), ("test", test)):
        interaction = loader.dataset[torch.arange(len(loader.dataset))]
        fresh = _fresh(loader.transform, interaction)
        cached = loader.transform(loader.dataset, interaction)
        with torch.no_grad():
            torch.testing.assert_close(model.forward(cached), model.forward({**cached.interaction, **fresh}))
        expected[name] = _scores(model, loader)

    # every later evaluation reads the cache: sampling is never called again
    def forbidden(*args, **kwargs):
        raise AssertionError("evaluation sampled a sub-graph although it was cached")

    monkeypatch.setattr(sampler_module, "sample_subgraphs", forbidden)
    for name, loader in (("valid", valid), ("test", test)):
        torch.testing.assert_close(_scores(model, loader), expected[name])


def test_cache_bound_keeps_part_of_the_split_and_the_rest_is_sampled():
    config, dataset, (_, _, full_test) = _prepare()
    model = _model(config, full_test.dataset)
    expected = _scores(model, full_test)
    config, dataset, (_, _, bounded_test) = _prepare(eval_subgraph_cache_mb=0.02)
    cache = bounded_test.transform.cache
    assert 0 < cache.size < len(bounded_test.dataset)
    assert cache.nbytes <= 0.02 * 2**20
    torch.testing.assert_close(_scores(model, bounded_test), expected)
    config, dataset, (_, _, uncached_test) = _prepare(eval_subgraph_cache_mb=0)
    assert uncached_test.transform.cache is None
    torch.testing.assert_close(_scores(model, uncached_test), expected)


def _first_batches(seed, count=3):
    config, dataset, (train, _, _) = _prepare(seed=seed, worker=1)
    assert train.num_workers == 1  # sampled off the training process
    batches = []
    for batch in train:
        batches.append({k: batch[k] for k in batch.columns if k.startswith("dgsr_") or k == "user_id"})
        if len(batches) == count:
            break
    return batches


def test_training_batches_are_reproducible_for_a_seed_and_differ_across_seeds():
    first, again, other = _first_batches(2020), _first_batches(2020), _first_batches(7)
    for a, b in zip(first, again):
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), name
    assert not torch.equal(first[0]["user_id"], other[0]["user_id"])
    assert not all(torch.equal(a["dgsr_item_nodes"], b["dgsr_item_nodes"])
                   for a, b in zip(first, other) if a["dgsr_item_nodes"].shape == b["dgsr_item_nodes"].shape)
