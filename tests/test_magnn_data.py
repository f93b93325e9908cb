"""MA-GNN data side: windows, history and targets, co-occurrence graph, leakage, paper protocol."""

import math

import numpy as np
import pytest
import torch

from recbole_ext.config import Config
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.data.dataloader.multi_target import sample_negatives, window_and_history
from recbole_ext.data.dataset.multi_target import (
    HISTORY_FIELD,
    NEGATIVES_FIELD,
    TARGET_POSITION_FIELD,
    TARGETS_FIELD,
    WINDOW_FIELD,
    build_cooccurrence_graph,
    top_neighbour_table,
)
from recbole_ext.data.protocol import expand_ranges

# user "u1": a1..a8 (a7 is its validation target and a8 its test target under leave-one-out);
# user "u2": b1..b4, with b1 shared with u1 to give the graph a cross-user pair.
HAND_SEQUENCES = {
    "u1": ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"],
    "u2": ["a1", "b2", "b3", "b4"],
}


def write_inter(folder, sequences, name="hand"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user_index, (user, items) in enumerate(sequences.items()):
        lines += [f"{user}\t{item}\t{1000 * user_index + t}" for t, item in enumerate(items)]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")


def build_hand(tmp_path, sequences=HAND_SEQUENCES, **overrides):
    write_inter(tmp_path / "hand", sequences)
    config_dict = {
        "data_path": str(tmp_path),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "MAX_ITEM_LIST_LENGTH": 10,
        "window_length": 2,
        "history_length": 3,
        "target_length": 3,
        "embedding_size": 8,
        "attention_dimensions": 2,
        "memory_slots": 2,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "state": "ERROR",
        "show_progress": False,
        "validate_atomic": False,
        "topk": [3],
        "metrics": ["Recall", "NDCG"],
        "valid_metric": "NDCG@3",
    }
    config_dict.update(overrides)
    config = Config("MAGNN", "hand", config_dict=config_dict, read_command_line=False)
    dataset = create_dataset(config)
    loaders = data_preparation(config, dataset)
    return config, dataset, loaders


def ids(dataset, tokens):
    return [int(dataset.token2id(dataset.iid_field, token)) for token in tokens]


def first_batch(loader):
    return next(iter(loader))


# ---------------------------------------------------------------- windows, history, targets
def test_window_and_history_of_right_padded_prefixes():
    item_seq = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 0], [8, 9, 0, 0, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0, 0, 0]])
    window, history = window_and_history(item_seq, torch.tensor([7, 2, 1]), 3, 2)
    assert window.tolist() == [[5, 6, 7], [0, 8, 9], [0, 0, 3]]
    assert history.tolist() == [[3, 4], [0, 0], [0, 0]]
    window, history = window_and_history(item_seq, torch.tensor([7, 2, 1]), 2, 10)
    assert history[0].tolist() == [0] * 5 + [1, 2, 3, 4, 5]


def test_hand_sequence_windows_history_and_targets(tmp_path):
    _, dataset, (train, _, _) = build_hand(tmp_path)
    batch = first_batch(train)  # shuffle is on: sort the rows by (user, position)
    users = batch[dataset.uid_field].tolist()
    positions = batch[TARGET_POSITION_FIELD].tolist()
    rows = sorted(range(len(users)), key=lambda r: (users[r], positions[r]))
    u1 = int(dataset.token2id(dataset.uid_field, "u1"))
    a = dict(zip(["pad"] + HAND_SEQUENCES["u1"], [0] + ids(dataset, HAND_SEQUENCES["u1"])))
    got = {
        positions[r]: (batch[WINDOW_FIELD][r].tolist(), batch[HISTORY_FIELD][r].tolist(), batch[TARGETS_FIELD][r].tolist())
        for r in rows if users[r] == u1
    }
    # u1's training part is a1..a6 (a7 valid, a8 test): examples with targets a2..a6
    assert sorted(got) == [1, 2, 3, 4, 5]
    name = lambda row: [[k for k, v in a.items() if v == item][0] for item in row]  # noqa: E731
    assert [name(part) for part in got[1]] == [["pad", "a1"], ["pad"] * 3, ["a2", "a3", "a4"]]
    assert [name(part) for part in got[4]] == [["a3", "a4"], ["pad", "a1", "a2"], ["a5", "a6", "pad"]]
    # the last training example: a7 and a8 are never targets
    assert [name(part) for part in got[5]] == [["a4", "a5"], ["a1", "a2", "a3"], ["a6", "pad", "pad"]]
    # the first target is RecBole's own target
    assert all(batch[TARGETS_FIELD][r, 0] == batch[dataset.iid_field][r] for r in rows)


def test_training_sequences_stop_at_the_training_split(tmp_path):
    _, dataset, _ = build_hand(tmp_path)
    offsets = dataset.magnn_seq_offsets
    for user, tokens in HAND_SEQUENCES.items():
        uid = int(dataset.token2id(dataset.uid_field, user))
        stored = dataset.magnn_seq_items[offsets[uid]:offsets[uid + 1]].tolist()
        assert stored == ids(dataset, tokens[:-2])


@pytest.mark.parametrize("split", [{"LS": "valid_and_test"}, {"RS": [0.5, 0.25, 0.25]}], ids=["LS", "RS"])
def test_extra_targets_never_reach_valid_or_test_targets(tmp_path, split):
    sequences = {"u1": [f"a{i}" for i in range(1, 13)], "u2": [f"b{i}" for i in range(1, 9)]}
    eval_args = {"split": split, "order": "TO", "group_by": "user", "mode": "full"}
    _, dataset, (train, valid, test) = build_hand(tmp_path, sequences, eval_args=eval_args)
    held_out = set(valid._dataset.inter_feat[dataset.iid_field].tolist()) | set(
        test._dataset.inter_feat[dataset.iid_field].tolist())
    assert held_out  # both users keep evaluation targets
    batch = first_batch(train)
    assert not held_out & set(batch[TARGETS_FIELD].flatten().tolist())
    assert not held_out & set(dataset.magnn_seq_items.tolist())
    # and the extra targets are the next training targets: every training target appears
    train_targets = set(train._dataset.inter_feat[dataset.iid_field].tolist())
    assert set(batch[TARGETS_FIELD].flatten().tolist()) - {0} == train_targets


def test_negatives_avoid_the_users_training_items(tmp_path):
    _, dataset, (train, _, _) = build_hand(tmp_path)
    batch = first_batch(train)
    assert batch[NEGATIVES_FIELD].shape == batch[TARGETS_FIELD].shape
    keys = set(dataset.magnn_train_keys.tolist())
    users = batch[dataset.uid_field].unsqueeze(1).expand_as(batch[NEGATIVES_FIELD])
    drawn = (users * dataset.item_num + batch[NEGATIVES_FIELD]).flatten().tolist()
    assert not keys & set(drawn)
    assert (batch[NEGATIVES_FIELD] > 0).all()


def test_sample_negatives_hand_case():
    # user 0 owns items 1..3 of 5 (ids 1..4 valid): only item 4 may be drawn
    keys = torch.tensor([1, 2, 3])
    negatives = sample_negatives(keys, torch.tensor([0, 0]), (2, 50), 5, torch.Generator().manual_seed(0), max_rounds=200)
    assert negatives.unique().tolist() == [4]


def test_expand_ranges():
    row, index = expand_ranges(torch.tensor([2, 5, 5]), torch.tensor([4, 5, 8]))
    assert row.tolist() == [0, 0, 2, 2, 2]
    assert index.tolist() == [2, 3, 5, 6, 7]


# ---------------------------------------------------------------- co-occurrence graph
def test_cooccurrence_counts_hand_example():
    # u1 = 1 2 3 4, u2 = 2 3 5 5 (the self pair 5-5 is dropped)
    items, offsets, lengths = [1, 2, 3, 4, 2, 3, 5, 5], [0, 4, 8], [4, 4]
    graph = build_cooccurrence_graph(items, offsets, lengths, 6, span=3).toarray()
    counts = np.zeros((6, 6))
    for i, j, c in [(1, 2, 1), (1, 3, 1), (1, 4, 1), (2, 3, 2), (2, 4, 1), (3, 4, 1), (2, 5, 2), (3, 5, 2)]:
        counts[i, j] = counts[j, i] = c
    expected = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    np.testing.assert_allclose(graph, expected)
    np.testing.assert_allclose(graph[2], [0, 1 / 6, 0, 2 / 6, 1 / 6, 2 / 6])
    # directed, span 1: only next-item transitions
    directed = build_cooccurrence_graph(items, offsets, lengths, 6, span=1, symmetric=False).toarray()
    assert directed[1].tolist() == [0, 0, 1, 0, 0, 0]
    assert directed[2].tolist() == [0, 0, 0, 1, 0, 0]  # 2 -> 3 twice, nothing else
    # only the counted part: u1 counts 1 2 3 (4 is held out), u2 counts nothing
    partial = build_cooccurrence_graph(items, offsets, [3, 0], 6, span=3).toarray()
    assert partial[:, 4].sum() == 0 and partial[:, 5].sum() == 0
    np.testing.assert_allclose(partial[1], [0, 0, 0.5, 0.5, 0, 0])


def test_top_neighbour_table_keeps_heaviest_with_small_id_ties():
    items, offsets, lengths = [1, 2, 3, 4, 2, 3, 5, 5], [0, 4, 8], [4, 4]
    graph = build_cooccurrence_graph(items, offsets, lengths, 6, span=3)
    neighbours, weights = top_neighbour_table(graph, 2)
    assert neighbours[2].tolist() == [3, 5]  # 2/6 each; 1 and 4 (1/6) dropped
    np.testing.assert_allclose(weights[2].numpy(), [2 / 6, 2 / 6], rtol=1e-6)
    assert neighbours[0].tolist() == [0, 0] and weights[0].tolist() == [0, 0]
    assert neighbours[4].tolist() == [1, 2]  # 1/3 each for 1, 2, 3: ties by id


def test_graph_holds_no_valid_or_test_transitions(tmp_path):
    # a7 and a8 appear only as u1's validation and test targets
    _, dataset, _ = build_hand(tmp_path)
    graph = dataset.magnn_graph.toarray()
    held_out = ids(dataset, ["a7", "a8"])
    assert graph[held_out].sum() == 0 and graph[:, held_out].sum() == 0
    a = ids(dataset, ["a1", "a2", "a4", "a5", "a6"])
    assert graph[a[0], a[1]] > 0 and graph[a[4], a[3]] > 0  # training pairs are there
    assert (dataset.magnn_neighbours[:, :, None] != torch.tensor(held_out)).all()


def test_paper_protocol_graph_and_windows_use_training_part_only(tmp_path):
    sequences = {"u1": [f"a{i}" for i in range(1, 13)], "u2": ["a1", "b2", "b3", "b4", "b5"]}
    _, dataset, (train, _, _) = build_hand(tmp_path, sequences, eval_protocol="paper", window_length=3)
    # u1: 12 items -> test ceil(2.4)=3 (a10..a12), valid ceil(0.9)=1 (a9), train a1..a8
    graph = dataset.magnn_graph.toarray()
    held_out = ids(dataset, ["a9", "a10", "a11", "a12", "b4", "b5"])  # u2: valid b4, test b5
    assert graph[held_out].sum() == 0 and graph[:, held_out].sum() == 0
    batch = first_batch(train)
    targets = batch[TARGETS_FIELD]
    assert not torch.isin(targets, torch.tensor(held_out)).any()
    u1 = int(dataset.token2id(dataset.uid_field, "u1"))
    rows = (batch[dataset.uid_field] == u1).nonzero().flatten()
    # every prefix example whose target lies in a1..a8 (the protocol's examples, as SASRec's)
    assert sorted(batch[TARGET_POSITION_FIELD][rows].tolist()) == [1, 2, 3, 4, 5, 6, 7]
    a = ids(dataset, sequences["u1"])
    last = rows[batch[TARGET_POSITION_FIELD][rows].argmax()]
    assert batch[WINDOW_FIELD][last].tolist() == a[4:7]
    assert batch[TARGETS_FIELD][last].tolist() == a[7:8] + [0, 0]  # the training part ends at a8
    # u2 has 3 training items (a1 b2 b3): examples with targets b2 and b3
    u2 = int(dataset.token2id(dataset.uid_field, "u2"))
    row = (batch[dataset.uid_field] == u2).nonzero().flatten()
    assert len(row) == 2
    first = row[batch[TARGET_POSITION_FIELD][row].argmin()]
    assert batch[WINDOW_FIELD][first].tolist() == [0, 0] + ids(dataset, ["a1"])
    assert batch[TARGETS_FIELD][first].tolist() == ids(dataset, ["b2", "b3"]) + [0]


def test_paper_final_fit_trains_on_validation_but_never_on_test(tmp_path):
    sequences = {"u1": [f"a{i}" for i in range(1, 13)], "u2": ["a1", "b2", "b3", "b4", "b5"]}
    _, dataset, (train, _, test) = build_hand(
        tmp_path, sequences, eval_protocol="paper", window_length=3, magnn_train_on_valid=True)
    graph = dataset.magnn_graph.toarray()
    valid_items, test_items = ids(dataset, ["a9", "b4"]), ids(dataset, ["a10", "a11", "a12", "b5"])
    assert graph[valid_items].sum() > 0
    assert graph[test_items].sum() == 0 and graph[:, test_items].sum() == 0
    targets = set(first_batch(train)[TARGETS_FIELD].flatten().tolist())
    assert set(valid_items) <= targets and not set(test_items) & targets
    _, (masked_rows, masked_items), positive_u, positive_i = next(iter(test))
    assert set(positive_i.tolist()) == set(test_items)


# ---------------------------------------------------------------- paper-protocol evaluation
class FixedScores(torch.nn.Module):
    """A stand-in model whose full ranking is one fixed score vector for every user."""

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.nn.Parameter(scores, requires_grad=False)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def full_sort_predict(self, interaction):
        return self.scores.unsqueeze(0).expand(len(interaction), -1).clone()


def test_paper_protocol_evaluator_hand_example(tmp_path):
    from recbole.trainer import Trainer

    # u1: train a1..a7, valid a8, test a9 a10 a3 (a3 repeats a training item: masked, not a target)
    sequences = {"u1": ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "a3"],
                 "u2": ["b1", "b2", "b3", "b4", "b5"]}
    config, dataset, (_, valid, test) = build_hand(tmp_path, sequences, eval_protocol="paper")
    # the best-scored items first: a1 (masked), x = b2 (not u1's), a9, a3 (masked), b3, a10
    order = ["a1", "b2", "a9", "a3", "b3", "a10", "b1", "b4", "b5", "a2", "a4", "a5", "a6", "a7", "a8"]
    scores = torch.zeros(dataset.item_num)
    scores[ids(dataset, order)] = torch.arange(len(order), 0, -1, dtype=torch.float)
    trainer = Trainer(config, FixedScores(scores))
    result = trainer.evaluate(test, load_best_model=False)
    # u1 (test set {a9, a10}; masked a1..a8): ranking b2, a9, b3 -> 1 hit of 2 in the top 3
    u1_recall, u1_ndcg = 1 / 2, (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    # u2: 5 items -> test ceil(1)=1 {b5}, valid ceil(0.4)=1 {b4}; masked b1..b4:
    # ranking a1, a9, a3 (u2 never saw them) -> no hit
    u2_recall, u2_ndcg = 0.0, 0.0
    assert result["recall@3"] == pytest.approx((u1_recall + u2_recall) / 2, abs=1e-4)
    assert result["ndcg@3"] == pytest.approx((u1_ndcg + u2_ndcg) / 2, abs=1e-4)
    # the test dataset holds exactly the (user, held-out item) target pairs
    feat = test._dataset.inter_feat
    pairs = set(zip(dataset.id2token(dataset.uid_field, feat[dataset.uid_field]).tolist(),
                    dataset.id2token(dataset.iid_field, feat[dataset.iid_field]).tolist()))
    assert pairs == {("u1", "a9"), ("u1", "a10"), ("u2", "b5")}
    # validation: u1 target {a8}, masked a1..a7; u2 {b4}, masked b1..b3
    interaction, (masked_rows, masked_items), positive_u, positive_i = next(iter(valid))
    u1 = int(dataset.token2id(dataset.uid_field, "u1"))
    row = interaction[dataset.uid_field].tolist().index(u1)
    assert sorted(masked_items[masked_rows == row].tolist()) == sorted(ids(dataset, sequences["u1"][:7]))
    assert positive_i[positive_u == row].tolist() == ids(dataset, ["a8"])
    assert interaction[WINDOW_FIELD][row].tolist() == ids(dataset, ["a6", "a7"])
    assert interaction[HISTORY_FIELD][row].tolist() == ids(dataset, ["a3", "a4", "a5"])


def test_paper_protocol_requires_full_ranking(tmp_path):
    with pytest.raises(ValueError, match="eval_args.mode"):
        build_hand(tmp_path, eval_protocol="paper",
                   eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni10"})


@pytest.mark.parametrize("key, value", [
    ("window_length", 0), ("target_length", "three"), ("eval_protocol", "hgn"), ("graph_symmetric", "yes"),
    ("magnn_test_ratio", 1.5), ("magnn_train_on_valid", "no"),
])
def test_bad_data_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        build_hand(tmp_path, **{key: value})
