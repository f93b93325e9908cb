"""eval_protocol: the same examples, split and candidates for every model, and no leakage."""

import math
import pickle

import numpy as np
import pytest
import torch
from conftest import run_tiny, tiny_config_dict

from recbole_ext.compare import targets_digest
from recbole_ext.config import Config
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.data import protocol as protocols
from recbole_ext.data.dataset.base import ExtSequentialDataset

EVAL = {"metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10"}
SPLIT_PROTOCOLS = ("magnn", "hugt", "dgsr", "embsr")


def build(model, protocol, **overrides):
    config = Config(model, "synthetic", config_dict=tiny_config_dict(eval_protocol=protocol, **EVAL, **overrides),
                    read_command_line=False)
    dataset = create_dataset(config)
    return config, dataset, data_preparation(config, dataset)


def event_keys(users, items, times):
    return sorted(zip(np.asarray(users).tolist(), np.asarray(items).tolist(), np.asarray(times, dtype=np.float64).tolist()))


def held_out_events(dataset, protocol):
    """(user, position) of every event that the protocol evaluates (valid or test)."""
    events = dataset.protocol_events
    lengths = np.bincount(events["user"], minlength=dataset.user_num)
    user, position = events["user"], events["position"]
    if protocol == "magnn":
        train_len, _, _ = protocols.magnn_split_lengths(lengths, 0.2, 0.1)
        mask = position >= train_len[user]
    elif protocol == "hugt":
        mask = position >= np.maximum(np.floor(lengths * 0.9 + 1e-9), 1)[user]
    elif protocol == "dgsr":
        mask = position >= lengths[user] - 2
    else:  # embsr: every event of a validation or test session
        feat = dataset.inter_feat
        eval_rows = np.concatenate([dataset.protocol_rows["valid"], dataset.protocol_rows["test"]])
        sessions = set(zip(feat["user_id"][eval_rows].tolist(), feat["session_id"][eval_rows].tolist()))
        mask = np.array([(u, s) in sessions for u, s in zip(user.tolist(), events["session"].tolist())])
    return set(zip(user[mask].tolist(), position[mask].tolist()))


def example_events(dataset, phase, inputs=True):
    """(user, position) of the targets (and inputs) of a phase's examples."""
    rows = dataset.protocol_rows[phase]
    feat = dataset.inter_feat
    users = feat["user_id"][rows].numpy()
    target = feat[protocols.POSITION_FIELD][rows].numpy()
    keys = set(zip(users.tolist(), target.tolist()))
    if inputs:
        length = feat["item_length"][rows].numpy()
        offsets = np.arange(1, length.max() + 1)[None, :]
        real = offsets <= length[:, None]
        positions = (target[:, None] - offsets)[real]
        keys |= set(zip(np.broadcast_to(users[:, None], real.shape)[real].tolist(), positions.tolist()))
    return keys


@pytest.fixture(scope="module")
def sasrec_builds():
    return {protocol: build("SASRec", protocol) for protocol in ("next_item",) + SPLIT_PROTOCOLS}


# ------------------------------------------------------------------------ next_item: unchanged
def test_next_item_is_recboles_own_split_bit_for_bit(sasrec_builds):
    from recbole.data import data_preparation as recbole_data_preparation

    config, dataset, loaders = sasrec_builds["next_item"]
    assert type(dataset) is ExtSequentialDataset  # the protocol layer does not even touch the class
    reference = recbole_data_preparation(config, ExtSequentialDataset(config))
    for ours, theirs in zip(loaders, reference):
        assert type(ours) is type(theirs)
        a, b = ours._dataset.inter_feat, theirs._dataset.inter_feat
        assert sorted(a.columns) == sorted(b.columns)
        for field in a.columns:
            assert torch.equal(a[field], b[field]), field


def test_dgsr_examples_are_leave_one_out(sasrec_builds):
    """dgsr's examples are exactly RecBole's LS split (only the candidates differ)."""
    _, _, ours = sasrec_builds["dgsr"]
    _, _, reference = sasrec_builds["next_item"]  # the package default: LS valid_and_test
    for a, b in zip(ours, reference):
        a, b = a._dataset.inter_feat, b._dataset.inter_feat
        order_a = np.lexsort((a["item_length"].numpy(), a["user_id"].numpy()))
        order_b = np.lexsort((b["item_length"].numpy(), b["user_id"].numpy()))
        for field in ("user_id", "item_id", "item_id_list", "timestamp"):
            assert torch.equal(a[field][order_a], b[field][order_b]), field


# ------------------------------------------------------------------------ same examples for every model
@pytest.mark.parametrize("protocol, models", [
    ("magnn", ["MAGNN", "QuerySeqRec"]), ("hugt", ["HUGT", "GRU4Rec"]),
    ("dgsr", ["DGSR", "QuerySeqRec"]), ("embsr", ["EMBSR", "GRU4Rec"]),
])
def test_targets_and_candidates_identical_across_models(sasrec_builds, protocol, models):
    _, sasrec_data, sasrec_loaders = sasrec_builds[protocol]
    expected = targets_digest(*sasrec_loaders[1:])
    assert expected != targets_digest(*sasrec_builds["next_item"][2][1:]) or protocol == "dgsr"
    for model in models:
        _, dataset, loaders = build(model, protocol)
        assert targets_digest(*loaders[1:]) == expected, model
        if protocol == "dgsr":  # the negatives too, compared as tokens (ids depend on the plugin)
            for ours, theirs in zip(loaders[1:], sasrec_loaders[1:]):
                assert protocols.candidates_digest(ours) == protocols.candidates_digest(theirs) is not None, model
        else:
            assert protocols.candidates_digest(loaders[2]) is None


def test_paper_is_magnn(sasrec_builds):
    _, _, loaders = build("MAGNN", "paper")
    assert targets_digest(*loaders[1:]) == targets_digest(*sasrec_builds["magnn"][2][1:])


# ------------------------------------------------------------------------ no leakage
@pytest.mark.parametrize("protocol", SPLIT_PROTOCOLS)
def test_no_training_input_or_target_is_an_evaluated_event(sasrec_builds, protocol):
    _, dataset, _ = sasrec_builds[protocol]
    held_out = held_out_events(dataset, protocol)
    assert held_out
    assert not example_events(dataset, "train") & held_out
    # and every evaluated target is a held-out event
    for phase in ("valid", "test"):
        assert example_events(dataset, phase, inputs=False) <= held_out


@pytest.mark.parametrize("protocol", SPLIT_PROTOCOLS)
def test_dgsr_graph_is_built_from_the_protocols_training_part(protocol):
    _, dataset, (train, _, _) = build("DGSR", protocol)
    csr = dataset.user_csr
    users = torch.repeat_interleave(torch.arange(len(csr.indptr) - 1), torch.diff(csr.indptr)).numpy()
    edges = event_keys(users, csr.neighbors.numpy(), csr.times.numpy())
    # exactly the training examples' events: their targets and the first item of each user
    feat = train._dataset.inter_feat
    first = feat["item_length"] == 1
    expected = event_keys(np.concatenate([feat["user_id"].numpy(), feat["user_id"][first].numpy()]),
                          np.concatenate([feat["item_id"].numpy(), feat["item_id_list"][first, 0].numpy()]),
                          np.concatenate([feat["timestamp"].numpy(), feat["timestamp_list"][first, 0].numpy()]))
    assert edges == expected
    next_item_edges = len(build("DGSR", "next_item")[1].user_csr.neighbors)  # dgsr is the default LS split
    assert len(edges) < next_item_edges if protocol != "dgsr" else len(edges) == next_item_edges


@pytest.mark.parametrize("protocol", ["magnn", "hugt"])
def test_magnn_and_hugt_structures_see_the_protocols_training_part(protocol):
    _, magnn, (train, _, _) = build("MAGNN", protocol)
    feat = train._dataset.inter_feat
    offsets = magnn.magnn_seq_offsets
    for user in feat["user_id"].unique()[:20].tolist():
        stored = magnn.magnn_seq_items[offsets[user]:offsets[user + 1]]
        rows = feat["user_id"] == user
        first = rows.nonzero()[feat["item_length"][rows].argmin()]
        expected = torch.cat([feat["item_id_list"][first, : feat["item_length"][first]].flatten(),
                              feat["item_id"][rows][feat["timestamp"][rows].argsort(stable=True)]])
        assert torch.equal(stored, expected)
    _, hugt, (hugt_train, _, _) = build("HUGT", protocol)
    np.testing.assert_allclose(hugt.svd_item_factors, hugt.compute_svd_item_factors(hugt_train._dataset), atol=1e-6)
    next_item = build("HUGT", "next_item")[1].svd_item_factors
    assert not np.allclose(np.abs(np.asarray(hugt.svd_item_factors)), np.abs(np.asarray(next_item)), atol=1e-3)


def test_query_graph_counts_only_training_targets():
    _, dataset, (train, _, _) = build("QuerySeqRec", "embsr")
    expected = torch.bincount(train._dataset.inter_feat["item_id"], minlength=dataset.item_num)
    assert torch.equal(dataset.train_item_counts, expected)
    assert len(train._dataset) < len(build("QuerySeqRec", "next_item")[2][0]._dataset) / 2


# ------------------------------------------------------------------------ each protocol's definition
def test_magnn_one_row_per_user_against_the_held_out_set(sasrec_builds):
    _, dataset, (_, valid, test) = sasrec_builds["magnn"]
    events = dataset.protocol_events
    lengths = np.bincount(events["user"], minlength=dataset.user_num)
    train_len, valid_len, _ = protocols.magnn_split_lengths(lengths, 0.2, 0.1)
    rows = protocols.eval_rows(test).inter_feat
    assert len(rows["user_id"].unique()) == len(rows)
    # the input is what precedes the held-out part (up to MAX_ITEM_LIST_LENGTH)
    user = int(rows["user_id"][0])
    sequence = events["item"][events["user"] == user]
    begin = train_len[user] + valid_len[user]
    assert rows["item_id_list"][0, : rows["item_length"][0]].tolist() == sequence[max(0, begin - 10):begin].tolist()
    batch, (masked_rows, masked_items), positive_u, positive_i = next(iter(test))
    assert set(positive_i[positive_u == 0].tolist()) == set(sequence[begin:]) - set(sequence[:begin])
    assert set(masked_items[masked_rows == 0].tolist()) == set(sequence[:begin])


def test_hugt_autoregressive_and_seeded_user_split(sasrec_builds):
    _, dataset, (train, valid, test) = sasrec_builds["hugt"]
    events = dataset.protocol_events
    valid_users = set(valid._dataset.inter_feat["user_id"].tolist())
    test_users = set(test._dataset.inter_feat["user_id"].tolist())
    assert not valid_users & test_users
    assert len(valid_users) == round(0.3 * (len(valid_users) + len(test_users)))
    feat = test._dataset.inter_feat
    user = int(feat["user_id"][0])
    sequence = events["item"][events["user"] == user]
    n_train = max(int(math.floor(len(sequence) * 0.9 + 1e-9)), 1)
    mine = feat["user_id"] == user
    assert mine.sum() == len(sequence) - n_train  # every held-out item is a target once
    for row in mine.nonzero().flatten().tolist():  # its input: the true items before it
        length = int(feat["item_length"][row])
        position = int(np.flatnonzero(events["time"][events["user"] == user] == float(feat["timestamp"][row]))[0])
        assert position >= n_train
        assert feat["item_id_list"][row, :length].tolist() == sequence[max(0, position - 10):position].tolist()
    same = build("SASRec", "hugt")[1]
    other = build("SASRec", "hugt", seed=7)[1]
    assert np.array_equal(same.protocol_rows["valid"], dataset.protocol_rows["valid"])
    assert not np.array_equal(other.protocol_rows["valid"], dataset.protocol_rows["valid"])


def test_dgsr_negatives_fixed_by_seed_and_never_interacted(sasrec_builds):
    config, dataset, (_, valid, test) = sasrec_builds["dgsr"]
    events = dataset.protocol_events
    negatives = dataset.protocol_eval["test"]["negatives"]
    rows = test._dataset.inter_feat
    assert negatives.shape == (len(rows), 100)
    for r in range(0, len(rows), 97):
        owned = set(events["item"][events["user"] == int(rows["user_id"][r])].tolist())
        assert len(set(negatives[r].tolist())) == 100 and not owned & set(negatives[r].tolist())
    # identical every epoch (the loader only reads them) and for a rebuild with the seed; another seed differs
    batch_a, batch_b = next(iter(test)), next(iter(test))
    assert torch.equal(batch_a[0]["item_id"], batch_b[0]["item_id"])
    assert torch.equal(build("SASRec", "dgsr")[1].protocol_eval["test"]["negatives"], negatives)
    other_seed = build("SASRec", "dgsr", seed=7)
    assert not torch.equal(other_seed[1].protocol_eval["test"]["negatives"], negatives)
    assert protocols.candidates_digest(other_seed[2][2]) != protocols.candidates_digest(test)
    # RecBole's sampled-evaluation layout: positives first, then one block per negative
    interaction, row_idx, positive_u, positive_i = batch_a
    n = len(positive_u)
    assert len(interaction) == 101 * n and torch.equal(interaction["item_id"][:n], positive_i)
    assert torch.equal(interaction["item_id"][n:2 * n], negatives[:n, 0])
    assert torch.equal(row_idx, torch.arange(n).repeat(101))


def test_dgsr_metrics_rank_the_target_among_its_negatives(sasrec_builds):
    from recbole.trainer import Trainer

    config, dataset, (_, _, test) = sasrec_builds["dgsr"]
    negatives = dataset.protocol_eval["test"]["negatives"]

    class ItemIdScores(torch.nn.Module):  # score = item id: the rank is fixed by the ids alone
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def predict(self, interaction):
            return interaction["item_id"].float()

    result = Trainer(config, ItemIdScores()).evaluate(test, load_best_model=False)
    targets = test._dataset.inter_feat["item_id"]
    rank = (negatives > targets.unsqueeze(1)).sum(1)  # 0-based
    assert result["recall@10"] == pytest.approx((rank < 10).float().mean().item(), abs=1e-4)
    ndcg = torch.where(rank < 10, 1 / torch.log2(rank.float() + 2), torch.zeros(()))
    assert result["ndcg@10"] == pytest.approx(ndcg.mean().item(), abs=1e-4)


def test_embsr_one_example_per_session_split_by_end_time(sasrec_builds):
    _, dataset, (train, valid, test) = sasrec_builds["embsr"]
    events = dataset.protocol_events
    ends = {}
    for u, s, t in zip(events["user"], events["session"], events["time"]):
        ends[(u, s)] = max(ends.get((u, s), -np.inf), t)
    parts = []
    for loader in (train, valid, test):
        feat = protocols.eval_rows(loader).inter_feat if loader is not train else loader._dataset.inter_feat
        keys = list(zip(feat["user_id"].tolist(), feat["session_id"].tolist()))
        assert len(set(keys)) == len(keys)  # one example per session
        for r in range(len(keys)):  # the input holds the session's earlier macro items only
            length = int(feat["item_length"][r])
            assert (feat["session_id_list"][r, :length] == feat["session_id"][r]).all()
        parts.append([ends[k] for k in keys])
    assert max(parts[0]) <= min(parts[1]) and max(parts[1]) <= min(parts[2])
    total = sum(map(len, parts))
    assert abs(len(parts[0]) - 0.7 * total) <= 1 and abs(len(parts[2]) - 0.2 * total) <= 1
    # the target is the last macro row of its session
    last_time = {}
    for u, s, t in zip(events["user"], events["session"], events["time"]):
        last_time[(u, s)] = t  # events are in time order
    feat = train._dataset.inter_feat
    for r in range(0, len(feat), 53):
        key = (int(feat["user_id"][r]), int(feat["session_id"][r]))
        assert float(feat["timestamp"][r]) == last_time[key]


# ------------------------------------------------------------------------ runs, errors, pickling
@pytest.fixture(scope="module")
def gru4rec_next_item():
    return run_tiny("GRU4Rec", eval_protocol="next_item", **EVAL)


@pytest.mark.parametrize("protocol", SPLIT_PROTOCOLS)
def test_stock_model_runs_unchanged_under_each_protocol(sasrec_builds, gru4rec_next_item, protocol):
    record = run_tiny("GRU4Rec", eval_protocol=protocol, **EVAL)
    assert record["targets_digest"] == targets_digest(*sasrec_builds[protocol][2][1:])
    assert record["test_result"] != gru4rec_next_item["test_result"]


@pytest.mark.parametrize("overrides, message", [
    ({"eval_protocol": "hgn"}, "eval_protocol"),
    ({"eval_protocol": "hugt", "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni100"}},
     "eval_args.mode"),
    ({"hugt_train_ratio": 1.0}, "hugt_train_ratio"),
    ({"dgsr_negatives": 0}, "dgsr_negatives"),
    ({"embsr_split_ratios": [0.7, 0.3, 0.3]}, "embsr_split_ratios"),
    ({"eval_protocol": "dgsr", "dgsr_negatives": 10 ** 6}, "dgsr_negatives"),
])
def test_bad_protocol_config_names_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        build("SASRec", overrides.pop("eval_protocol", "next_item"), **overrides)


def test_non_sequential_model_is_refused():
    with pytest.raises(ValueError, match="eval_protocol 'magnn'"):
        build("BPR", "magnn")


def test_protocol_dataset_pickles_by_name(sasrec_builds):
    _, dataset, _ = build("HUGT", "hugt")
    assert type(dataset).__name__ == "HUGDatasetUnderProtocol"
    assert type(pickle.loads(pickle.dumps(dataset))) is type(dataset)
    assert protocols.__getattr__("HUGDatasetUnderProtocol") is type(dataset)
