"""DGSR building blocks: the dynamic graph's CSR indexes and the vectorised sub-graph sampler.

Hand-checked cases (the paper's quintuple example, Section 4.1) and a comparison of the vectorised
sampler with a plain, loop-based implementation of Algorithm 1 on small random graphs.
"""

import math

import numpy as np
import pytest
import torch

from recbole_ext.data.dataloader.subgraph_sampler import (
    expanded_levels,
    fixed_sizes,
    sample_subgraphs,
)
from recbole_ext.data.dataset.dynamic_graph import build_dynamic_graph


def _orders_by_edge(csr, num_nodes):
    """{(node, neighbour, time): order} read back from a CSR index."""
    out = {}
    for node in range(num_nodes):
        for e in range(int(csr.indptr[node]), int(csr.indptr[node + 1])):
            out[(node, int(csr.neighbors[e]), float(csr.times[e]))] = int(csr.orders[e])
    return out


def test_paper_quintuple_orders():
    # Section 4.1: u1 buys (i1, i2, i3) at (t1, t2, t3), u2 buys (i2, i3, i1) at (t4, t5, t6)
    users = np.array([1, 1, 1, 2, 2, 2])
    items = np.array([1, 2, 3, 2, 3, 1])
    times = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    user_csr, item_csr, _ = build_dynamic_graph(users, items, times, np.arange(6), num_users=3, num_items=4)
    user_orders = _orders_by_edge(user_csr, 3)  # o_u^i: position of i among u's items
    item_orders = _orders_by_edge(item_csr, 4)  # o_i^u: position of u among i's users
    # the quintuples (u, i, t, o_u^i, o_i^u), as the paper lists them for these sequences
    expected = [(1, 1, 1.0, 1, 1), (1, 2, 2.0, 2, 1), (1, 3, 3.0, 3, 1), (2, 2, 4.0, 1, 2), (2, 3, 5.0, 2, 2), (2, 1, 6.0, 3, 2)]
    for u, i, t, o_user, o_item in expected:
        assert user_orders[(u, i, t)] == o_user
        assert item_orders[(i, u, t)] == o_item
    assert len(user_orders) == len(item_orders) == 6


def test_ties_are_broken_by_the_tie_order():
    users = np.array([1, 2, 1])
    items = np.array([1, 1, 2])
    times = np.array([5.0, 5.0, 5.0])
    user_csr, item_csr, _ = build_dynamic_graph(users, items, times, np.array([2, 0, 1]), num_users=3, num_items=3)
    # u1's two items at the same time: tie 1 (item 2) before tie 2 (item 1)
    assert user_csr.neighbors[user_csr.indptr[1] : user_csr.indptr[2]].tolist() == [2, 1]
    # item 1's users at the same time: tie 0 (u2) before tie 2 (u1)
    assert item_csr.neighbors[item_csr.indptr[1] : item_csr.indptr[2]].tolist() == [2, 1]


def _paper_graph():
    users = np.array([1, 1, 1, 2, 2, 2])
    items = np.array([1, 2, 3, 2, 3, 1])
    times = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    return build_dynamic_graph(users, items, times, np.arange(6), num_users=3, num_items=4)


def test_paper_example_subgraph_by_hand():
    # predicting u2's third item at t6 from its prefix (i2, i3): Figure 2's situation for u2
    user_csr, item_csr, time_values = _paper_graph()
    out = sample_subgraphs(
        user_csr, item_csr, time_values,
        user_ids=torch.tensor([2]), seq_items=torch.tensor([[2, 3, 0]]), seq_times=torch.tensor([[4.0, 5.0, 0.0]]),
        seq_len=torch.tensor([2]), pred_time=torch.tensor([6.0]),
        num_users=3, num_items=4, max_neighbors=5, levels=3, return_times=True,
    )
    assert out["dgsr_user_nodes"].tolist() == [[2, 1]]  # u2 (hop 0), u1 (hop 2)
    assert out["dgsr_item_nodes"].tolist() == [[2, 3, 1]]  # i2, i3 (hop 1), i1 (hop 3, a leaf)
    # u2 <- (i2, r=1), (i3, r=0); u1 <- i1, i2, i3 (all before t6), r = 2, 1, 0
    assert out["dgsr_user_nbr_index"][0, :, :3].tolist() == [[0, 1, 0], [2, 0, 1]]
    assert out["dgsr_user_nbr_order"][0, :, :3].tolist() == [[1, 0, -1], [2, 1, 0]]
    # i2 <- u1 (t2), u2 (t4); i3 <- u1 (t3), u2 (t5); the leaf i1 has no row
    assert out["dgsr_item_nbr_index"].shape[1] == 2
    assert out["dgsr_item_nbr_index"][0, :, :2].tolist() == [[1, 0], [1, 0]]
    assert out["dgsr_item_nbr_order"][0, :, :2].tolist() == [[1, 0], [1, 0]]
    # strictly before t6: (u2, i1, t6) is not there
    assert out["dgsr_item_nbr_time"].max() < 6.0


def test_edges_at_the_prediction_time_are_excluded_and_caps_hold():
    user_csr, item_csr, time_values = _paper_graph()
    out = sample_subgraphs(
        user_csr, item_csr, time_values,
        user_ids=torch.tensor([1]), seq_items=torch.tensor([[1, 2]]), seq_times=torch.tensor([[1.0, 2.0]]),
        seq_len=torch.tensor([2]), pred_time=torch.tensor([4.0]),
        num_users=3, num_items=4, max_neighbors=1, levels=3, return_times=True,
    )
    # u1's own cap: only its most recent prefix item i2; i2's users before t4: u1 only (u2 is at t4)
    assert out["dgsr_user_nodes"].tolist() == [[1]]
    assert out["dgsr_item_nodes"].tolist() == [[2]]
    assert out["dgsr_user_nbr_index"].tolist() == [[[0]]] and out["dgsr_user_nbr_order"].tolist() == [[[0]]]
    assert out["dgsr_item_nbr_order"].tolist() == [[[0]]] and out["dgsr_item_nbr_time"].tolist() == [[[2.0]]]


def test_levels_follow_layers_and_order():
    assert expanded_levels(n_layers=2, subgraph_order=3) == 2  # layers bind: hops >= L are dead compute
    assert expanded_levels(n_layers=4, subgraph_order=1) == 1  # m = 1: the user's items only
    assert expanded_levels(n_layers=4, subgraph_order=2) == 3  # radius 2m - 1
    assert expanded_levels(n_layers=0, subgraph_order=2) == 1
    # hop caps 1, k, k^2; users at even hops, items at odd ones, capped by the id spaces
    assert fixed_sizes(2, 3, num_users=100, num_items=100) == (1 + 9, 3, 1, 3)
    assert fixed_sizes(3, 3, num_users=5, num_items=100) == (4, 3 + 27, 4, 3)


# ---------------------------------------------------------------- reference Algorithm 1


def _reference_subgraph(edges, user, prefix, t, k, levels):
    """Plain Algorithm 1: BFS from the user, each node's k most recent edges strictly before t.

    ``edges``: list of (user, item, time, tie). Returns ({user: hop}, {item: hop}, {(kind, node):
    sorted [(neighbour, relative order)]}) for the expanded nodes with at least one edge.
    """

    def recent(kind, node):
        if kind == "user":
            found = sorted((tm, tie, i) for (u, i, tm, tie) in edges if u == node and tm < t)
        else:
            found = sorted((tm, tie, u) for (u, i, tm, tie) in edges if i == node and tm < t)
        found = found[-k:]
        return [(nbr, len(found) - 1 - j) for j, (_, _, nbr) in enumerate(found)]

    users, items, rows = {user: 0}, {}, {}
    own = prefix[-k:]
    rows[("user", user)] = sorted((item, len(own) - 1 - j) for j, item in enumerate(own))
    frontier = []
    for item, _ in rows[("user", user)]:
        if item not in items:
            items[item] = 1
            frontier.append(("item", item))
    for hop in range(1, levels):
        next_frontier = []
        for kind, node in frontier:
            neighbours = recent(kind, node)
            if neighbours:
                rows[(kind, node)] = sorted(neighbours)
            seen = users if kind == "item" else items
            for nbr, _ in neighbours:
                if nbr not in seen:
                    seen[nbr] = hop + 1
                    next_frontier.append(("user" if kind == "item" else "item", nbr))
        frontier = next_frontier
    return users, items, rows


def _decode(out, b):
    user_nodes = out["dgsr_user_nodes"][b].tolist()
    item_nodes = out["dgsr_item_nodes"][b].tolist()
    rows = {}
    for kind, nodes, others in (("user", user_nodes, item_nodes), ("item", item_nodes, user_nodes)):
        index, order = out[f"dgsr_{kind}_nbr_index"][b], out[f"dgsr_{kind}_nbr_order"][b]
        for r in range(index.shape[0]):
            entries = [(others[int(i)], int(o)) for i, o in zip(index[r], order[r]) if o >= 0]
            if entries:
                rows[(kind, nodes[r])] = sorted(entries)
    return [u for u in user_nodes if u], [i for i in item_nodes if i], rows


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels,k", [(1, 3), (2, 2), (3, 3), (4, 2)])
def test_vectorised_sampler_matches_reference(seed, levels, k):
    rng = np.random.default_rng(seed)
    num_users, num_items, num_edges = 7, 9, 45
    users = rng.integers(1, num_users, num_edges)
    items = rng.integers(1, num_items, num_edges)
    times = rng.integers(0, 12, num_edges).astype(float)  # many ties
    tie = rng.permutation(num_edges)
    user_csr, item_csr, time_values = build_dynamic_graph(users, items, times, tie, num_users, num_items)
    edges = list(zip(users.tolist(), items.tolist(), times.tolist(), tie.tolist()))

    batch_users, prefixes, pred_times = [], [], []
    for _ in range(12):
        u = int(rng.integers(1, num_users))
        t = float(rng.integers(1, 13))
        history = [i for (_, _, i) in sorted((tm, tie_, i) for (uu, i, tm, tie_) in edges if uu == u and tm < t)]
        if not history:
            continue
        batch_users.append(u)
        prefixes.append(history[-5:])  # MAX_ITEM_LIST_LENGTH = 5
        pred_times.append(t)
    seq_items = torch.zeros(len(prefixes), 5, dtype=torch.long)
    for b, prefix in enumerate(prefixes):
        seq_items[b, : len(prefix)] = torch.tensor(prefix)
    seq_len = torch.tensor([len(p) for p in prefixes])
    seq_times = torch.zeros(len(prefixes), 5)
    out = sample_subgraphs(
        user_csr, item_csr, time_values, torch.tensor(batch_users), seq_items, seq_times, seq_len,
        torch.tensor(pred_times), num_users, num_items, k, levels, return_times=True,
    )
    for b, (u, prefix, t) in enumerate(zip(batch_users, prefixes, pred_times)):
        ref_users, ref_items, ref_rows = _reference_subgraph(edges, u, prefix, t, k, levels)
        got_users, got_items, got_rows = _decode(out, b)
        assert got_users[0] == u
        assert sorted(got_users) == sorted(ref_users) and sorted(got_items) == sorted(ref_items)
        # nodes are laid out by hop: hops never decrease along the padded node lists
        assert [ref_users[x] for x in got_users] == sorted(ref_users[x] for x in got_users)
        assert [ref_items[x] for x in got_items] == sorted(ref_items[x] for x in got_items)
        assert got_rows == ref_rows
    assert out["dgsr_item_nbr_time"].max() < torch.tensor(pred_times).max()
    # every CSR edge of example b is strictly before its own prediction time
    pred = torch.tensor(pred_times, dtype=torch.float64).view(-1, 1, 1)
    assert bool((out["dgsr_item_nbr_time"] < pred).logical_or(out["dgsr_item_nbr_order"] < 0).all())
    csr_user_rows = out["dgsr_user_nbr_order"][:, 1:]
    assert bool((out["dgsr_user_nbr_time"][:, 1:] < pred).logical_or(csr_user_rows < 0).all())
    assert int((out["dgsr_user_nbr_order"] >= 0).sum(-1).max()) <= k


def test_fixed_padding_only_adds_padding():
    user_csr, item_csr, time_values = _paper_graph()
    args = (
        user_csr, item_csr, time_values, torch.tensor([2, 1]), torch.tensor([[2, 3], [1, 2]]),
        torch.tensor([[4.0, 5.0], [1.0, 2.0]]), torch.tensor([2, 2]), torch.tensor([6.0, 6.0]), 3, 4, 5, 3,
    )
    tight = sample_subgraphs(*args)
    padded = sample_subgraphs(*args, pad_to=fixed_sizes(3, 5, 3, 4))
    for name, value in tight.items():
        wide = padded[name]
        region = tuple(slice(0, s) for s in value.shape)
        assert torch.equal(wide[region], value), name
        fill = -1 if name.endswith("order") else 0
        rest = wide.clone()
        rest[region] = fill
        assert bool((rest == fill).all()), name


def test_gcn_weights_are_the_symmetric_degree_normalisation():
    """DGSR-GCN on the paper's example: D_in^-1/2 A D_out^-1/2, checked by hand and against dense algebra."""
    from recbole_ext.model.sequential_recommender.dgsr import EdgeList, NeighbourAggregator

    user_csr, item_csr, time_values = _paper_graph()
    out = sample_subgraphs(
        user_csr, item_csr, time_values,
        user_ids=torch.tensor([2]), seq_items=torch.tensor([[2, 3, 0]]), seq_times=torch.tensor([[4.0, 5.0, 0.0]]),
        seq_len=torch.tensor([2]), pred_time=torch.tensor([6.0]),
        num_users=3, num_items=4, max_neighbors=5, levels=3,
    )
    users, items = out["dgsr_user_nodes"][0].tolist(), out["dgsr_item_nodes"][0].tolist()  # [u2, u1], [i2, i3, i1]
    edges = EdgeList(len(users), len(items), out["dgsr_user_nbr_index"], out["dgsr_user_nbr_order"],
                     torch.arange(len(users)), torch.arange(len(items)), out["dgsr_user_hop"].reshape(-1))
    # items -> users: u2 <- i2, i3 (in-degree 2); u1 <- i1, i2, i3 (in-degree 3);
    # out-degrees: i2 and i3 feed both users (2), i1 only u1 (1)
    by_hand = {(2, 2): 1 / 2, (2, 3): 1 / 2, (1, 1): 1 / math.sqrt(3), (1, 2): 1 / math.sqrt(6), (1, 3): 1 / math.sqrt(6)}
    got = {(users[d], items[s]): float(w) for d, s, w in zip(edges.dst.tolist(), edges.src.tolist(), edges.gcn_norm)}
    assert got.keys() == by_hand.keys()
    for key, weight in by_hand.items():
        assert got[key] == pytest.approx(weight, rel=1e-6)
    # the aggregation is the normalised adjacency times the neighbour states
    adjacency = torch.zeros(len(users), len(items))
    adjacency[edges.dst, edges.src] = 1.0
    normalised = adjacency / torch.sqrt(adjacency.sum(1, keepdim=True) * adjacency.sum(0, keepdim=True)).clamp(min=1)
    torch.manual_seed(0)
    states = torch.randn(len(items), 4)
    gcn = NeighbourAggregator(4, 5, "gcn", "global", "gru", 0.0).eval()
    messages = gcn.long_term(torch.zeros(len(users), 4), states[edges.src], edges, len(users))
    torch.testing.assert_close(messages, normalised @ states)
    # a plain mean (the old DGSR-GCN) would weight u1's neighbours 1/3 each: not what GCN does
    assert not torch.allclose(messages[1], states.mean(0))


def test_event_times_keep_their_seconds_so_the_users_own_latest_edge_is_before_t(tmp_path, monkeypatch):
    """``synthetic`` has epoch-second timestamps (~1.7e9) a few seconds to minutes apart; RecBole stores
    float fields as float32 (steps of 128 s there), so without the dataset's shift to 0 a third of the
    examples had their prediction time equal to their newest input's, and the strict ``< t`` filter
    left the user out of its own newest item's in-users."""
    from conftest import tiny_config_dict
    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset, data_preparation
    from recbole_ext.data.dataloader.subgraph_sampler import SubgraphSampler

    monkeypatch.chdir(tmp_path)
    overrides = dict(user_inter_num_interval="[0,20]", embedding_size=8, n_layers=2, MAX_ITEM_LIST_LENGTH=10)
    config = Config("DGSR", "synthetic", config_dict=tiny_config_dict(**overrides), read_command_line=False)
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    examples = train.dataset.inter_feat
    lengths = examples[dataset.item_list_length_field]
    newest_time = examples[f"{dataset.time_field}_list"][torch.arange(len(lengths)), lengths - 1]
    assert bool((examples[dataset.time_field] > newest_time).all())
    batch = SubgraphSampler(config, dataset, "train")(train.dataset, examples[torch.arange(min(len(lengths), 2048))])
    order = batch["dgsr_user_nbr_order"][:, 0]
    newest = batch["dgsr_user_nbr_index"][:, 0].gather(1, (order == 0).long().argmax(1, keepdim=True)).squeeze(1)
    rows = torch.arange(len(newest))
    # item rows are laid out like item nodes (hop-1 items first); user node 0 is the example's user
    in_users, in_order = batch["dgsr_item_nbr_index"][rows, newest], batch["dgsr_item_nbr_order"][rows, newest]
    assert bool(((in_users == 0) & (in_order >= 0)).any(1).all())
