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


# ---------------------------------------------------------------- neighbourhood switches


def _edges(sampler, interaction, **switches):
    """Sub-graph fields and every sampled edge as (b, own_row, user, item, time, hop of the row)."""
    from recbole_ext.data.dataloader.subgraph_sampler import sample_subgraphs

    settings = {"neighbour_cap": sampler.neighbour_cap, "time_window": sampler.time_window, **switches}
    out = sample_subgraphs(
        sampler.user_csr, sampler.item_csr, sampler.edge_time_values, interaction[sampler.uid_field],
        interaction[sampler.item_list_field], interaction[sampler.time_list_field], interaction[sampler.length_field],
        interaction[sampler.time_field], sampler.num_users, sampler.num_items, sampler.max_neighbors,
        sampler.levels, return_times=True, **settings,
    )
    edges = []
    for kind, other in (("user", "item"), ("item", "user")):
        nodes, others, hops = out[f"dgsr_{kind}_nodes"], out[f"dgsr_{other}_nodes"], out[f"dgsr_{kind}_hop"]
        index, order, times = (out[f"dgsr_{kind}_nbr_{x}"] for x in ("index", "order", "time"))
        b, row, col = torch.nonzero(order >= 0, as_tuple=True)
        node, neighbour = nodes[b, row], others[b, index[b, row, col]]
        user, item = (node, neighbour) if kind == "user" else (neighbour, node)
        own = (row == 0) & (kind == "user")
        edges += list(zip(b.tolist(), own.tolist(), user.tolist(), item.tolist(), times[b, row, col].tolist(),
                          hops[b, row].tolist()))
    return out, edges


def _training_edges(dataset, train):
    from recbole_ext.data.dataset.dynamic_graph import events_of_examples

    users, items, times, _ = events_of_examples(
        train.dataset.inter_feat, dataset.uid_field, dataset.iid_field, dataset.time_field,
        dataset.item_id_list_field, f"{dataset.time_field}_list", dataset.item_list_length_field,
    )
    return set(zip(users.tolist(), items.tolist(), times.tolist()))


def _assert_no_leak(edges, interaction, dataset, training_edges):
    pred_time = interaction[dataset.time_field].double()
    assert edges
    for b, own, user, item, time, _ in edges:
        if own:  # the example's own prefix
            assert item in interaction[dataset.item_id_list_field][b].tolist()
        else:  # strictly before the prediction time, and never from the evaluation split
            assert time < float(pred_time[b]) and (user, item, time) in training_edges


@pytest.fixture(scope="module")
def prepared_l3(tmp_path_factory):
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("dgsr_l3"))
    try:
        yield _prepare(n_layers=3, max_neighbors=4, neighbour_cap=2)
    finally:
        os.chdir(cwd)


def test_one_window_size_for_every_node(prepared_l3):
    from recbole_ext.data.dataloader.subgraph_sampler import SubgraphSampler

    config, dataset, (train, _, _) = prepared_l3
    saved = config["max_neighbors"], config["MAX_ITEM_LIST_LENGTH"]
    try:
        config["max_neighbors"], config["MAX_ITEM_LIST_LENGTH"] = None, 6  # n follows the prefix length
        sampler = SubgraphSampler(config, dataset, "train")
        assert sampler.max_neighbors == 6
        assert _model(config, train.dataset).layers[0].items_to_user.order_key.num_embeddings == 6
        interaction = train.dataset[torch.arange(len(train.dataset))]
        out, _ = _edges(sampler, interaction, time_window="all")
        own = (out["dgsr_user_nbr_order"][:, 0] >= 0).sum(-1)
        items = (out["dgsr_item_nbr_order"] >= 0).sum(-1)
        # the user's own row and every other node's row reach the same size n = 6
        assert int(own.max()) == 6 and int(items.max()) == 6
        assert bool((own == interaction[dataset.item_list_length_field].clamp(max=6)).all())
        config["max_neighbors"] = 7  # wider than the prefix: the user's own window could not follow
        with pytest.raises(ValueError, match="max_neighbors .* MAX_ITEM_LIST_LENGTH"):
            SubgraphSampler(config, dataset, "train")
    finally:
        config["max_neighbors"], config["MAX_ITEM_LIST_LENGTH"] = saved


def _model_vectors(config, dataset, batch_fields):
    model = _model(config, dataset)
    with torch.no_grad():
        return model.forward(batch_fields)


def test_neighbour_cap_bounds_expanded_users_without_leaks(prepared_l3):
    config, dataset, (train, valid, test) = prepared_l3
    training_edges = _training_edges(dataset, train)
    for loader in (train, test):
        interaction = loader.dataset[torch.arange(min(len(loader.dataset), 200))]
        capped, capped_edges = _edges(loader.transform, interaction, time_window="all")
        free, free_edges = _edges(loader.transform, interaction, neighbour_cap=0, time_window="all")
        _assert_no_leak(capped_edges, interaction, dataset, training_edges)
        # at most 2 users of hop 2 are expanded per example (rows holding edges); without the cap more
        expanded = {}
        for b, own, user, item, time, hop in capped_edges:
            if hop == 2:
                expanded.setdefault(b, set()).add(user)
        assert max(len(v) for v in expanded.values()) <= 2
        free_expanded = {}
        for b, own, user, item, time, hop in free_edges:
            if hop == 2:
                free_expanded.setdefault(b, set()).add(user)
        assert max(len(v) for v in free_expanded.values()) > 2
        assert set(capped_edges) < set(free_edges)  # the cap only removes expansions
        # the capped users stay in the sub-graph as leaves, with the edges that reached them
        assert torch.equal(capped["dgsr_user_nodes"].ne(0).sum(1), free["dgsr_user_nodes"].ne(0).sum(1))
        assert sorted(e for e in capped_edges if e[5] < 2) == sorted(e for e in free_edges if e[5] < 2)
    # the switch changes the model's output (same parameters, same examples)
    interaction = train.dataset[torch.arange(200)]
    capped, _ = _edges(train.transform, interaction, time_window="all")
    free, _ = _edges(train.transform, interaction, neighbour_cap=0, time_window="all")
    base = dict(interaction.interaction)
    assert not torch.allclose(_model_vectors(config, train.dataset, {**base, **capped}),
                              _model_vectors(config, train.dataset, {**base, **free}))


def test_time_window_drops_edges_older_than_the_users_window_without_leaks(prepared_l3):
    config, dataset, (train, valid, test) = prepared_l3
    training_edges = _training_edges(dataset, train)
    for loader in (train, valid, test):
        interaction = loader.dataset[torch.arange(min(len(loader.dataset), 200))]
        windowed, windowed_edges = _edges(loader.transform, interaction, time_window="user")
        everything, all_edges = _edges(loader.transform, interaction, time_window="all")
        _assert_no_leak(windowed_edges, interaction, dataset, training_edges)
        lengths = interaction[dataset.item_list_length_field]
        n = loader.transform.max_neighbors
        oldest = interaction[f"{dataset.time_field}_list"].double()[torch.arange(len(lengths)), (lengths - n).clamp(min=0)]
        assert all(time >= float(oldest[b]) for b, own, _, _, time, _ in windowed_edges)
        assert any(time < float(oldest[b]) for b, own, _, _, time, _ in all_edges if not own)
    interaction = train.dataset[torch.arange(200)]
    windowed, _ = _edges(train.transform, interaction, time_window="user")
    everything, _ = _edges(train.transform, interaction, time_window="all")
    base = dict(interaction.interaction)
    assert not torch.allclose(_model_vectors(config, train.dataset, {**base, **windowed}),
                              _model_vectors(config, train.dataset, {**base, **everything}))


@pytest.mark.parametrize("key,value", [("neighbour_cap", -1), ("neighbour_cap", 2.5), ("time_window", "week")])
def test_bad_neighbourhood_switch_names_the_key(prepared_l3, key, value):
    from recbole_ext.data.dataloader.subgraph_sampler import SubgraphSampler

    config, dataset, _ = prepared_l3
    saved = config[key]
    config[key] = value
    try:
        with pytest.raises(ValueError, match=key):
            SubgraphSampler(config, dataset, "train")
    finally:
        config[key] = saved
