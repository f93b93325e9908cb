"""MA-GNN model blocks against hand computations: Eqs. 1-6, masking, padding invariance."""

import math

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_ext.data.dataset.multi_target import HISTORY_FIELD, WINDOW_FIELD
from recbole_ext.model.sequential_recommender.magnn import (
    MAGNN,
    KeyValueMemory,
    MultiDimensionalAttention,
    sinusoidal_positions,
)
from test_magnn_data import build_hand


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    config, dataset, loaders = build_hand(tmp_path_factory.mktemp("magnn_model"))
    return config, dataset, loaders


def make_model(hand, **overrides):
    config, dataset, _ = hand
    defaults = {key: config[key] for key in overrides}
    for key, value in overrides.items():
        config[key] = value
    try:
        torch.manual_seed(0)
        model = MAGNN(config, dataset)
    finally:  # the module-scoped config is shared between tests
        for key, value in defaults.items():
            config[key] = value
    model.eval()
    return model


def batch(dataset, users, windows, histories):
    return Interaction({
        dataset.uid_field: torch.tensor(users),
        WINDOW_FIELD: torch.tensor(windows),
        HISTORY_FIELD: torch.tensor(histories),
    })


def test_sinusoidal_positions():
    encoding = sinusoidal_positions(torch.tensor([0, 1]), 4)
    assert encoding[0].tolist() == [0.0, 1.0, 0.0, 1.0]
    expected = [math.sin(1), math.cos(1), math.sin(1 / 100), math.cos(1 / 100)]
    assert encoding[1].tolist() == pytest.approx(expected, abs=1e-6)


def test_memory_attention_ignores_padded_history():
    torch.manual_seed(0)
    attention = MultiDimensionalAttention(4, 3)
    user = torch.randn(1, 4)
    items = torch.randn(1, 2, 4)
    garbage = torch.randn(1, 3, 4)  # whatever sits at padded positions
    padded = torch.cat([garbage, items], dim=1)
    mask = torch.tensor([[False, False, False, True, True]])
    query = attention(padded, mask, user)
    assert torch.allclose(query, attention(items, torch.ones(1, 2, dtype=torch.bool), user), atol=1e-6)
    # hand: Z = tanh(S H^T) with S the softmax over the two real positions, averaged over h rows
    logits = attention.score(torch.tanh(attention.item_projection(items) + attention.user_projection(user))).transpose(1, 2)
    expected = torch.tanh(torch.softmax(logits, -1) @ items).mean(1)
    assert torch.allclose(query, expected, atol=1e-6)


def test_empty_history_gives_zero_query_and_memory_mean():
    torch.manual_seed(0)
    attention, memory = MultiDimensionalAttention(4, 2), KeyValueMemory(4, 3)
    torch.nn.init.normal_(memory.keys)
    torch.nn.init.normal_(memory.values)
    query = attention(torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool), torch.randn(2, 4))
    assert query.abs().max() == 0
    # p^H = z + softmax(z K^T) V = mean of the values for z = 0
    assert torch.allclose(memory(query), memory.values.mean(0).expand(2, -1), atol=1e-6)
    # gradients stay finite through a fully padded history
    query.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in attention.parameters() if p.grad is not None)


def test_short_term_gnn_matches_eq1_by_hand(hand):
    _, dataset, _ = hand
    model = make_model(hand)
    window = torch.tensor([[0, 3, 5]])
    embedding = model.input_item_embedding.weight
    expected = []
    for item in (3, 5):
        aggregated = sum(
            dataset.magnn_neighbour_weights[item, k] * embedding[dataset.magnn_neighbours[item, k]]
            for k in range(dataset.magnn_neighbours.size(1))
        )
        expected.append(torch.tanh(model.graph_layer.weight @ torch.cat([aggregated, embedding[item]])))
    got = model.short_term_interest(window, model.input_item_embedding(window))
    assert torch.allclose(got[0], (expected[0] + expected[1]) / 2, atol=1e-6)


def test_window_scope_uses_only_pairs_inside_the_window(hand):
    _, dataset, _ = hand
    model = make_model(hand, neighbour_scope="window")
    graph = torch.tensor(dataset.magnn_graph.toarray(), dtype=torch.float32)
    items = [int(dataset.token2id(dataset.iid_field, t)) for t in ("a2", "a3", "a5")]
    window = torch.tensor([items])
    embedding = model.input_item_embedding.weight
    expected = torch.stack([
        torch.tanh(model.graph_layer.weight @ torch.cat([sum(graph[i, k] * embedding[k] for k in items), embedding[i]]))
        for i in items
    ]).mean(0)
    got = model.short_term_interest(window, model.input_item_embedding(window))
    assert graph[items[0], items[1]] > 0  # the hand window has real edges
    assert torch.allclose(got[0], expected, atol=1e-6)


def test_full_score_matches_eq6_by_hand(hand):
    _, dataset, _ = hand
    model = make_model(hand)
    interaction = batch(dataset, [1], [[2, 3]], [[0, 4, 5]])
    user = model.user_embedding.weight[1]
    window = torch.tensor([[2, 3]])
    short = model.short_term_interest(window, model.input_item_embedding(window))[0]
    long = model.long_term_interest(torch.tensor([[0, 4, 5]]), user.unsqueeze(0))[0]
    gate = torch.sigmoid(model.gate_short.weight @ short + model.gate_long.weight @ long + model.gate_user.weight @ user)
    combined = gate * short + (1 - gate) * long
    window_mean = model.input_item_embedding.weight[[2, 3]].mean(0)
    q = model.output_item_embedding.weight
    expected = q @ (user + combined) + q @ (window_mean @ model.cooccurrence.weight)  # e^T W_r q_j
    assert torch.allclose(model.full_sort_predict(interaction)[0], expected, atol=1e-5)


def test_mf_and_mf_s_variants(hand):
    _, dataset, _ = hand
    mf = make_model(hand, variant="mf")
    interaction = batch(dataset, [1, 2], [[2, 3], [0, 4]], [[0, 4, 5], [0, 0, 0]])
    expected = mf.user_embedding.weight[[1, 2]] @ mf.output_item_embedding.weight.t()
    assert torch.allclose(mf.full_sort_predict(interaction), expected, atol=1e-6)
    mf_s = make_model(hand, variant="mf_s")
    user = mf_s.user_embedding.weight[1]
    window = torch.tensor([[2, 3]])
    short = mf_s.short_term_interest(window, mf_s.input_item_embedding(window))[0]
    p_s = torch.tanh(mf_s.short_term_layer.weight @ torch.cat([short, user]))  # Eq. 2
    expected = mf_s.output_item_embedding.weight @ (user + p_s)
    assert torch.allclose(mf_s.full_sort_predict(interaction)[0], expected, atol=1e-6)


@pytest.mark.parametrize("variant", ["full", "mf_s_h_concat", "mf_s_h_gru"])
def test_padding_invariance(hand, variant):
    _, dataset, _ = hand
    model = make_model(hand, variant=variant)
    narrow = batch(dataset, [1, 2], [[2, 3], [0, 4]], [[4, 5], [0, 0]])
    wide = batch(dataset, [1, 2], [[0, 0, 2, 3], [0, 0, 0, 4]], [[0, 0, 0, 4, 5], [0, 0, 0, 0, 0]])
    assert torch.allclose(model.full_sort_predict(narrow), model.full_sort_predict(wide), atol=1e-6)


def test_predict_agrees_with_full_sort(hand):
    _, dataset, _ = hand
    model = make_model(hand)
    interaction = batch(dataset, [1, 2], [[2, 3], [0, 4]], [[0, 4, 5], [0, 0, 1]])
    interaction.update(Interaction({dataset.iid_field: torch.tensor([5, 7])}))
    full = model.full_sort_predict(interaction)
    assert torch.allclose(model.predict(interaction), full[[0, 1], [5, 7]], atol=1e-6)


def test_losses_ignore_missing_targets(hand):
    _, dataset, (train, _, _) = hand
    for loss_type in ("BPR", "CE"):
        model = make_model(hand, loss_type=loss_type)
        data = next(iter(train))
        loss = model.calculate_loss(data)
        assert torch.isfinite(loss) and loss > 0
        # a target of 0 (past the training part) must not change the loss
        targets = data["magnn_targets"].clone()
        targets[:, 1:] = 0
        data.update(Interaction({"magnn_targets": targets}))
        first_only = model.calculate_loss(data)
        data.update(Interaction({"magnn_targets": targets[:, :1]}))
        if loss_type == "BPR":
            data.update(Interaction({"magnn_negatives": data["magnn_negatives"][:, :1]}))
        assert torch.allclose(first_only, model.calculate_loss(data))


@pytest.mark.parametrize("key, value", [("variant", "mf+s"), ("neighbour_scope", "all"), ("loss_type", "TOP1")])
def test_bad_model_config_names_the_key(hand, key, value):
    with pytest.raises(ValueError, match=key):
        make_model(hand, **{key: value})


def test_history_of_width_zero_equals_fully_padded_history(hand):
    _, dataset, _ = hand
    model = make_model(hand)
    empty = batch(dataset, [1, 2], [[2, 3], [0, 4]], [[], []])
    empty.update(Interaction({HISTORY_FIELD: torch.zeros(2, 0, dtype=torch.long)}))
    padded = batch(dataset, [1, 2], [[2, 3], [0, 4]], [[0, 0, 0], [0, 0, 0]])
    assert torch.allclose(model.full_sort_predict(empty), model.full_sort_predict(padded), atol=1e-6)


@pytest.mark.parametrize("embedding_size", [8, 64])
def test_history_query_depends_on_items_not_only_on_positions(hand, embedding_size):
    # Regression: the unit-amplitude sinusoidal encoding added to item embeddings of init std 1/d
    # made the long-term query a function of the history length alone, and the long-term part
    # swamped the user and short-term parts (the full model fell below plain MF on `synthetic`).
    model = make_model(hand, embedding_size=embedding_size)
    user = model.user_embedding.weight[[1, 1]]
    same_length = model.long_term_interest(torch.tensor([[0, 2, 3, 4], [0, 5, 6, 7]]), user)
    item_effect = (same_length[0] - same_length[1]).norm()
    assert item_effect > 0.3 * same_length[0].norm()
    # the long-term part is on the scale of the user embedding, not a large constant offset
    assert same_length.norm(dim=1).max() < 5 * user.norm(dim=1).max()


def test_position_scale_one_gives_the_raw_encoding(hand):
    model = make_model(hand, position_scale=1.0)
    assert model.position_scale == 1.0
    assert make_model(hand).position_scale == pytest.approx(1.0 / model.embedding_size)
    with pytest.raises(ValueError, match="position_scale"):
        make_model(hand, position_scale=-1.0)


def test_default_weight_decay_matches_the_papers_strength(hand):
    # The paper's lambda = 1e-3 is Adam weight decay against a BPR loss summed over 4096 x 3 terms
    # (HGN's code); RecBole averages the loss, so 1e-3 here would be ~12000x stronger.
    config, _, _ = hand
    assert config["weight_decay"] <= 1e-3 / (4096 * 3)


@pytest.mark.parametrize("loss_type", ["BPR", "CE"])
def test_training_loss_scores_match_evaluation_scores(hand, loss_type):
    """calculate_loss, predict and full_sort_predict score the same (user, window, item) alike."""
    _, _, (train, valid, _) = hand
    model = make_model(hand, loss_type=loss_type)
    data = next(iter(train))
    targets = data["magnn_targets"]
    valid_targets = targets > 0
    # the first target is RecBole's next item
    assert torch.equal(targets[:, 0], data[model.POS_ITEM_ID])
    full = model.full_sort_predict(data)
    if loss_type == "CE":
        per_target = -torch.log_softmax(full, dim=-1).gather(1, targets)
    else:
        negatives = data["magnn_negatives"]
        per_target = -torch.nn.functional.logsigmoid(full.gather(1, targets) - full.gather(1, negatives))
        for column in range(targets.size(1)):  # predict() agrees with the full ranking
            data.update(Interaction({model.ITEM_ID: targets[:, column]}))
            assert torch.allclose(model.predict(data), full.gather(1, targets)[:, column], atol=1e-6)
    expected = per_target[valid_targets].mean()
    assert torch.allclose(model.calculate_loss(data), expected, atol=1e-5)
    # an evaluation row's window ends right before its target: the last item of the right-padded prefix
    eval_batch = next(iter(valid))[0]
    prefix, length = eval_batch[model.ITEM_SEQ], eval_batch[model.ITEM_SEQ_LEN]
    last = prefix.gather(1, (length - 1).unsqueeze(1)).squeeze(1)
    assert torch.equal(eval_batch["magnn_window"][:, -1], last)
