"""HUGT: building blocks (hand-computed), leakage, padding invariance, config errors."""

import os
from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbole_ext.data.dataset.hug_dataset import (
    binary_user_item_matrix,
    svd_item_factors,
    tiled_window_mask,
)
from recbole_ext.model.sequential_recommender import hugt as hugt_module
from recbole_ext.model.sequential_recommender.hugt import (
    HUGT,
    collaborative_adjacency,
    shortest_path_lengths,
)

N_ITEMS = 12
MAX_LEN = 8

BASE_CONFIG = {
    "USER_ID_FIELD": "user_id",
    "ITEM_ID_FIELD": "item_id",
    "LIST_SUFFIX": "_list",
    "ITEM_LIST_LENGTH_FIELD": "item_length",
    "NEG_PREFIX": "neg_",
    "MAX_ITEM_LIST_LENGTH": MAX_LEN,
    "device": torch.device("cpu"),
    "n_layers": 2,
    "n_heads": 4,
    "n_graph_heads": 2,
    "hidden_size": 16,
    "inner_size": 32,
    "hidden_dropout_prob": 0.2,
    "attn_dropout_prob": 0.2,
    "hidden_act": "relu",
    "layer_norm_eps": 1e-8,
    "initializer_range": 0.02,
    "graph_mode": "mp",
    "knn_k": 3,
    "spatial_clip": 3,
    "position_encoding": "tupe",
    "head_arrangement": "concurrent",
    "train_positions": "all",
    "loss_candidates": 0,
    "loss_type": "CE",
}

SWITCHES = [
    {},
    {"graph_mode": "se"},
    {"n_graph_heads": 0},
    {"n_graph_heads": 4, "graph_only": True},
    {"n_graph_heads": 4, "graph_only": True, "graph_mode": "se"},
    {"position_encoding": "distance"},
    {"position_encoding": "absolute"},
    {"position_encoding": "none"},
    {"head_arrangement": "graph_then_sequence"},
    {"head_arrangement": "sequence_then_graph", "graph_mode": "se"},
    {"train_positions": "last"},
    {"loss_candidates": 5},
]


class DictConfig(dict):
    """The part of RecBole's Config a model reads: item access, None for a missing key."""

    def __getitem__(self, key):
        return self.get(key)


def fake_dataset(seed=0, rank=4):
    generator = torch.Generator().manual_seed(seed)
    factors = torch.randn(N_ITEMS, rank, generator=generator)
    factors = torch.nn.functional.normalize(factors, dim=1)
    factors[0] = 0.0
    return SimpleNamespace(num=lambda field: N_ITEMS, svd_item_factors=factors)


def make_model(**overrides):
    torch.manual_seed(0)
    model = HUGT(DictConfig(BASE_CONFIG, **overrides), fake_dataset())
    return model.eval()


def bfs_distances(adjacency, clip):
    """Reference: breadth-first search from every node along directed edges, clipped."""
    n = len(adjacency)
    result = np.full((n, n), clip)
    for source in range(n):
        seen = {source: 0}
        queue = deque([source])
        while queue:
            node = queue.popleft()
            for neighbour in np.flatnonzero(adjacency[node]):
                if neighbour not in seen:
                    seen[neighbour] = seen[node] + 1
                    queue.append(neighbour)
        for node, hops in seen.items():
            result[source, node] = min(hops, clip)
    return result


# ---------------------------------------------------------------- collaborative edges
def test_collaborative_adjacency_hand_computed():
    # items at positions 0..4; 0, 3, 4 share a vector, 1 and 2 are close (cosine .8)
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [1.0, 0.0]])
    adjacency = collaborative_adjacency(vectors.unsqueeze(0), k=2)[0]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],  # only itself precedes it
            [1, 1, 0, 0, 0],  # itself and the only other predecessor
            [0, 1, 1, 0, 0],  # itself, then 1 (cosine .8) over 0 (.6)
            [1, 0, 0, 1, 0],  # itself, then 0 (cosine 1)
            [1, 0, 0, 0, 1],  # itself, then 0 and 3 tie at cosine 1: the earlier one wins
        ],
        dtype=torch.bool,
    )
    assert torch.equal(adjacency, expected)
    # k=3 adds the next most similar predecessor of each row
    wider = collaborative_adjacency(vectors.unsqueeze(0), k=3)[0]
    assert wider[2].tolist() == [True, True, True, False, False]
    assert wider[4].tolist() == [True, False, False, True, True]


def test_collaborative_edges_point_only_to_predecessors():
    generator = torch.Generator().manual_seed(3)
    vectors = torch.nn.functional.normalize(torch.randn(5, 9, 4, generator=generator), dim=-1)
    vectors[1, 6:] = 0.0  # padding-like zero vectors keep their self-edge
    for k in (1, 3, 20):
        adjacency = collaborative_adjacency(vectors, k)
        assert not adjacency.triu(diagonal=1).any()
        assert adjacency.diagonal(dim1=1, dim2=2).all()
        expected_degree = torch.clamp(torch.arange(1, 10), max=k)
        assert torch.equal(adjacency.sum(-1), expected_degree.expand(5, -1))


# ---------------------------------------------------------------- spatial encoding
def test_shortest_paths_hand_computed_chain():
    # 3 -> 2 -> 1 -> 0 (each node's edge to its predecessor) plus self-edges
    adjacency = torch.eye(4, dtype=torch.bool)
    adjacency[1, 0] = adjacency[2, 1] = adjacency[3, 2] = True
    distance = shortest_path_lengths(adjacency.unsqueeze(0), clip=2)[0]
    expected = torch.tensor([[0, 2, 2, 2], [1, 0, 2, 2], [2, 1, 0, 2], [2, 2, 1, 0]])
    assert torch.equal(distance, expected)  # 3 -> 0 is 3 hops, clipped at 2; 0 reaches nothing


@pytest.mark.parametrize("clip", [1, 2, 3, 5])
def test_shortest_paths_equal_bfs_and_clip(clip):
    generator = torch.Generator().manual_seed(clip)
    vectors = torch.nn.functional.normalize(torch.randn(4, 10, 3, generator=generator), dim=-1)
    adjacency = collaborative_adjacency(vectors, k=2)
    distance = shortest_path_lengths(adjacency, clip)
    assert distance.max() <= clip
    for graph, got in zip(adjacency.numpy(), distance.numpy()):
        np.testing.assert_array_equal(got, bfs_distances(graph, clip))


def test_spatial_clip_bounds_the_bias_table():
    model = make_model(graph_mode="se", spatial_clip=2)
    assert model.spatial_bias.shape == (3, 2)


def test_spatial_clip_sets_the_graph_heads_bias_it_claims():
    # phi starts at zero (so a first Adam step moves every entry alike): give it distinct values
    sequences, _ = random_batch()
    biases = {}
    for clip in (1, 3):
        model = make_model(graph_mode="se", spatial_clip=clip)
        with torch.no_grad():
            model.spatial_bias.copy_(torch.arange(float(clip + 1)).unsqueeze(1).expand(-1, 2))
            (biases[clip],) = model.attention_biases(sequences)
    adjacency = collaborative_adjacency(model.svd_item_factors[sequences], model.knn_k)
    causal = torch.ones(MAX_LEN, MAX_LEN, dtype=torch.bool).tril()
    for clip, bias in biases.items():
        expected = shortest_path_lengths(adjacency, clip).float().masked_fill(~causal, float("-inf"))
        assert torch.equal(bias[:, 2], expected) and torch.equal(bias[:, 3], expected)  # phi(s) = s here
    assert not torch.equal(biases[1], biases[3])


# ---------------------------------------------------------------- dataset building blocks
def test_binary_user_item_matrix_hand_computed():
    users = np.array([1, 1, 2])
    lists = np.array([[3, 0, 0], [3, 4, 0], [4, 4, 0]])  # user 2 consumed item 4 twice
    targets = np.array([4, 2, 1])
    matrix = binary_user_item_matrix(users, lists, targets, n_users=3, n_items=5).toarray()
    expected = np.zeros((3, 5))
    expected[1, [2, 3, 4]] = 1
    expected[2, [1, 4]] = 1
    np.testing.assert_array_equal(matrix, expected)


def test_svd_item_factors_hand_computed():
    # items 1, 2 are bought by the same users, item 3 by another; item 0 is padding
    matrix = sp.csr_matrix(
        np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=float)
    )
    factors = svd_item_factors(matrix, rank=1).numpy()
    assert factors.shape == (4, 1)
    assert np.allclose(factors[[0, 3]], 0.0)  # padding and an item outside the top factor
    assert np.isclose(abs(factors[1, 0]), 1.0) and np.isclose(factors[1, 0], factors[2, 0])
    # rank is capped at min(shape) - 1 (an ARPACK limit)
    capped = svd_item_factors(matrix, rank=50)
    assert capped.shape == (4, 3)
    cosine = capped @ capped.t()
    assert torch.isclose(cosine[1, 2], torch.tensor(1.0), atol=1e-5)
    assert torch.isclose(cosine[1, 3], torch.tensor(0.0), atol=1e-5)


def _numpy_svd_cosines(dense, rank):
    """Item-item cosines of the best rank-``rank`` approximation, from numpy's full SVD."""
    _, singular_values, vt = np.linalg.svd(dense, full_matrices=False)
    items = vt[:rank].T * singular_values[:rank]
    norms = np.linalg.norm(items, axis=1, keepdims=True)
    items = np.divide(items, norms, out=np.zeros_like(items), where=norms > 1e-12)
    return items @ items.T


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_svd_item_factors_equal_numpys_svd_of_the_same_matrix(rank):
    # a random binary matrix with distinct singular values: the rank-r subspace is unique
    dense = (np.random.default_rng(rank).random((30, 12)) < 0.3).astype(float)
    dense[:, 0] = 0.0  # padding column
    factors = svd_item_factors(sp.csr_matrix(dense), rank).numpy()
    assert factors.shape == (12, rank)
    np.testing.assert_allclose(factors @ factors.T, _numpy_svd_cosines(dense, rank), atol=1e-5)
    assert np.allclose(factors[0], 0.0)


def test_svd_item_factors_recover_a_planted_low_rank_matrix():
    # users of group g consume exactly the items of group g: rank 3, item cosines 1 inside a
    # group and 0 across, which any rank-3 factorisation must reproduce
    groups = np.array([0, 0, 1, 1, 1, 2, 2])
    user_groups = np.repeat([0, 1, 2], [5, 4, 6])
    dense = np.zeros((len(user_groups), len(groups) + 1))
    dense[:, 1:] = user_groups[:, None] == groups[None, :]
    factors = svd_item_factors(sp.csr_matrix(dense), rank=3).numpy()
    expected = (groups[:, None] == groups[None, :]).astype(float)
    np.testing.assert_allclose(factors[1:] @ factors[1:].T, expected, atol=1e-5)


def test_tiled_window_mask_hand_computed():
    users = np.array([7, 7, 7, 7, 7, 3, 3, 9])
    # user 7 has 5 examples: keep its last and the one 3 before it; user 3: its last; user 9: it
    assert tiled_window_mask(users, window=3).tolist() == [False, True, False, False, True, False, True, True]
    assert tiled_window_mask(users, window=1).all()


# ---------------------------------------------------------------- model
def random_batch(batch=5, seed=1):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([MAX_LEN, 1, 4, 6, 3])[:batch]
    sequences = torch.randint(1, N_ITEMS, (batch, MAX_LEN), generator=generator)
    sequences[torch.arange(MAX_LEN) >= lengths[:, None]] = 0
    return sequences, lengths


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_later_items_never_change_earlier_outputs(overrides):
    model = make_model(**overrides)
    sequences, _ = random_batch()
    with torch.no_grad():
        reference = model(sequences)
        for cut in (2, 5):
            changed = sequences.clone()
            changed[0, cut:] = (changed[0, cut:] % (N_ITEMS - 1)) + 1  # other items after `cut`
            output = model(changed)
            assert torch.allclose(output[0, :cut], reference[0, :cut], atol=1e-5)
            assert not torch.allclose(output[0, cut:], reference[0, cut:], atol=1e-5)


@pytest.mark.parametrize("overrides", SWITCHES[:10], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_padding_invariance(overrides):
    model = make_model(**overrides)
    sequences, lengths = random_batch()
    short = sequences[1:, :6]  # rows 1.. have at most 6 items: drop trailing padding columns
    with torch.no_grad():
        full = model(sequences)[1:]
        trimmed = model(short)
        single = model(sequences[2:3])  # batch composition does not matter either
    real = (short > 0).unsqueeze(-1)
    assert torch.allclose(full[:, :6] * real, trimmed * real, atol=1e-5)
    assert torch.allclose(full[1], single[0], atol=1e-5)
    # the scores read at the last real position agree as well
    interaction = {"item_id_list": short, "item_length": lengths[1:], "item_id": torch.ones(4, dtype=torch.long)}
    wide = {"item_id_list": sequences[1:], "item_length": lengths[1:], "item_id": torch.ones(4, dtype=torch.long)}
    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(interaction), model.full_sort_predict(wide), atol=1e-5)


def test_one_fused_attention_call_per_block_with_per_head_bias(monkeypatch):
    model = make_model(graph_mode="se")
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, **kwargs):
        calls.append(attn_mask.shape)
        return original(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(hugt_module.F, "scaled_dot_product_attention", spy)
    sequences, _ = random_batch()
    with torch.no_grad():
        model(sequences)
    assert calls == [torch.Size([5, 4, MAX_LEN, MAX_LEN])] * 2


def test_attention_bias_per_head_kind():
    model = make_model(graph_mode="mp")
    sequences, _ = random_batch()
    with torch.no_grad():
        (bias,) = model.attention_biases(sequences)
    adjacency = collaborative_adjacency(model.svd_item_factors[sequences], model.knn_k)
    causal = torch.ones(MAX_LEN, MAX_LEN, dtype=torch.bool).tril()
    assert torch.equal(torch.isfinite(bias[:, 0]), causal.expand(5, -1, -1))  # sequence heads
    assert torch.equal(torch.isfinite(bias[:, 2]), adjacency)  # MP graph heads: edges only
    assert torch.equal(bias[:, 2], bias[:, 3])


def test_position_targets_hand_computed():
    model = make_model()
    sequences = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])
    targets = model._position_targets(sequences, torch.tensor([3, 4]), torch.tensor([9, 10]))
    assert targets.tolist() == [[6, 7, 9, 0], [6, 7, 8, 10]]


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_loss_and_predictions(overrides):
    model = make_model(**overrides).train()
    sequences, lengths = random_batch()
    interaction = {
        "item_id_list": sequences,
        "item_length": lengths,
        "item_id": torch.tensor([1, 2, 3, 4, 5]),
    }
    loss = model.calculate_loss(interaction)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert model.item_embedding.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
        assert scores.shape == (5, N_ITEMS) and torch.isfinite(scores).all()
        assert torch.allclose(model.predict(interaction), scores[torch.arange(5), interaction["item_id"]], atol=1e-5)


@pytest.mark.parametrize(
    "key, value",
    [
        ("graph_mode", "gnn"),
        ("position_encoding", "rope"),
        ("head_arrangement", "parallel"),
        ("train_positions", "first"),
        ("knn_k", 0),
        ("spatial_clip", -1),
        ("n_graph_heads", 5),
        ("n_heads", 3),  # 16 is not divisible by 3
        ("loss_type", "BPR"),
        ("loss_candidates", 2.5),
    ],
)
def test_bad_config_values_name_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        HUGT(DictConfig(BASE_CONFIG, **{key: value}), fake_dataset())


def test_no_sequence_heads_only_when_asked_for():
    # n_heads lowered to the yaml's n_graph_heads silently removed every sequence head (issue 12)
    with pytest.raises(ValueError, match="no sequence heads; set graph_only: True"):
        HUGT(DictConfig(BASE_CONFIG, n_graph_heads=4), fake_dataset())
    with pytest.raises(ValueError, match="graph_only: True needs n_graph_heads == n_heads"):
        HUGT(DictConfig(BASE_CONFIG, graph_only=True), fake_dataset())
    with pytest.raises(ValueError, match="graph_only must be True or False"):
        HUGT(DictConfig(BASE_CONFIG, graph_only="yes"), fake_dataset())
    model = HUGT(DictConfig(BASE_CONFIG, n_graph_heads=4, graph_only=True), fake_dataset())
    assert model.stage_layouts == [(0, 4)]
    # staged arrangements have graph-only stages by definition: nothing to ask for
    staged = HUGT(DictConfig(BASE_CONFIG, n_graph_heads=4, head_arrangement="graph_then_sequence"), fake_dataset())
    assert staged.stage_layouts == [(0, 4), (4, 0)]


def test_no_sequence_heads_is_one_line_and_exit_2_on_the_command_line():
    import subprocess
    import sys

    from conftest import REPO_ROOT

    command = [
        sys.executable, os.path.join(REPO_ROOT, "run_recbole_ext.py"), "--model=HUGT", "--dataset=synthetic",
        "--n_heads=2", "--n_graph_heads=2", "--hidden_size=8", "--epochs=1", "--state=ERROR",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("recbole-ext: error: n_graph_heads (2) equals n_heads (2)"), lines[-3:]


def test_last_position_loss_needs_every_prefix():
    with pytest.raises(ValueError, match="train_windows"):
        HUGT(DictConfig(BASE_CONFIG, train_positions="last", train_windows="tiled"), fake_dataset())
    HUGT(DictConfig(BASE_CONFIG, train_positions="last", train_windows="prefixes"), fake_dataset())


def test_graph_heads_need_svd_factors():
    dataset = SimpleNamespace(num=lambda field: N_ITEMS)
    with pytest.raises(ValueError, match="svd_item_factors"):
        HUGT(DictConfig(BASE_CONFIG), dataset)
    HUGT(DictConfig(BASE_CONFIG, n_graph_heads=0), dataset)  # SASRec-Ours needs none
