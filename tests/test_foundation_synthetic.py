"""The embedded dataset: deterministic per seed, loads in RecBole, and each planted signal is
measurable in the written files."""

import os

import numpy as np
import pandas as pd
import pytest

from recbole_ext import paths
from recbole_ext.data import synthetic
from recbole_ext.data.dataset.base import merge_micro_behaviours

SMALL = synthetic.SyntheticConfig(users=150, items=200, intents=8, seed=11)


@pytest.fixture(scope="module")
def small():
    return synthetic.generate(SMALL)


def read_atomic(path):
    frame = pd.read_csv(path, sep="\t", dtype=str)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def test_deterministic_per_seed(small):
    again = synthetic.generate(SMALL)
    pd.testing.assert_frame_equal(small.inter, again.inter)
    pd.testing.assert_frame_equal(small.query, again.query)
    other = synthetic.generate(synthetic.SyntheticConfig(users=150, items=200, intents=8, seed=12))
    assert not small.inter.equals(other.inter)


def test_shipped_copy_is_what_the_documented_command_generates(tmp_path):
    synthetic.main(["--output", str(tmp_path / "synthetic")])
    for suffix in ("inter", "query", "item"):
        shipped = os.path.join(paths.DATASET_ATOMIC_DIR, "synthetic", f"synthetic.{suffix}")
        regenerated = tmp_path / "synthetic" / f"synthetic.{suffix}"
        with open(shipped, "rb") as a, open(regenerated, "rb") as b:
            assert a.read() == b.read(), suffix
    assert os.path.getsize(shipped) < 5 * 2**20


def macro_events(inter):
    macro, _ = merge_micro_behaviours(inter, "user_id", "item_id", "timestamp", "op", "session_id")
    return macro


def test_signal_query_words_name_the_next_click(small, tmp_path):
    """Share of clicks right after a query whose item has the intent of the query's words."""
    folder = synthetic.write_atomic(small, tmp_path / "synthetic")
    inter = read_atomic(os.path.join(folder, "synthetic.inter")).astype({"timestamp": float})
    query = read_atomic(os.path.join(folder, "synthetic.query")).astype({"timestamp": float})
    item = read_atomic(os.path.join(folder, "synthetic.item"))
    intent_of_item = dict(zip(item["item_id"], item["intent"]))
    macro = macro_events(inter).sort_values(["user_id", "timestamp"])
    matches = []
    for _, q in query.iterrows():
        later = macro[(macro.user_id == q.user_id) & (macro.timestamp > q.timestamp)]
        if len(later):
            query_intent = q["query"].split()[0][1:].split("_")[0]
            matches.append(intent_of_item[later.iloc[0]["item_id"]] == query_intent)
    share = np.mean(matches)
    assert share > 0.95, share  # documented: the first click after a query is of its intent


def transitions(data):
    macro = macro_events(data.inter)
    same_session = macro.session_id.to_numpy()[1:] == macro.session_id.to_numpy()[:-1]
    prev = macro.item_id.to_numpy()[:-1][same_session]
    nxt = macro.item_id.to_numpy()[1:][same_session]
    runs = [tuple(r) for r in macro.op.to_numpy()[:-1][same_session]]
    return prev, nxt, runs


def test_signal_global_covisit_graph(small):
    prev, nxt, _ = transitions(small)
    follows = (small.successors[prev] == nxt[:, None]).any(axis=1)
    chance = 3 / SMALL.items
    assert follows.mean() > 0.45, follows.mean()  # documented p_follow_covisit = 0.6 (minus switches)
    assert follows.mean() > 20 * chance


def test_signal_micro_behaviours_choose_the_successor(small):
    prev, nxt, runs = transitions(small)
    slot = np.array([synthetic.successor_slot(r) for r in runs])
    complement = small.successors[prev, 0] == nxt
    view_successor = small.successors[prev, 2] == nxt
    carted = slot == 0
    assert complement[carted].mean() > 0.45
    assert complement[~carted].mean() < 0.1
    assert view_successor[slot == 2].mean() > 0.45


def test_signal_users_keep_long_term_preferences(small):
    item_intent = (small.inter.item_id.to_numpy() - 1) // (SMALL.items // SMALL.intents)
    frame = pd.DataFrame({"user": small.inter.user_id, "intent": item_intent})
    top3 = frame.groupby("user")["intent"].agg(lambda s: s.value_counts().iloc[:3].sum() / len(s))
    assert top3.mean() > 0.75  # uniform intents would give about 3/8


def test_merge_micro_behaviours_hand_example():
    rows = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "u", "u", "v"],
            "item_id": ["a", "a", "b", "b", "b", "a"],
            "timestamp": [1.0, 2.0, 3.0, 5.0, 4.0, 1.0],
            "session_id": ["s1", "s1", "s1", "s2", "s1", "s3"],
            "op": ["view", "cart", "view", "view", "detail", "view"],
        }
    )
    macro, longest = merge_micro_behaviours(rows, "user_id", "item_id", "timestamp", "op", "session_id")
    assert macro.item_id.tolist() == ["a", "b", "b", "a"]
    assert [list(r) for r in macro.op] == [["view", "cart"], ["view", "detail"], ["view"], ["view"]]
    assert macro.timestamp.tolist() == [1.0, 3.0, 5.0, 1.0]  # first micro-behaviour's time
    assert longest == 2
    no_sessions, _ = merge_micro_behaviours(rows, "user_id", "item_id", "timestamp", "op")
    assert no_sessions.item_id.tolist() == ["a", "b", "a"]  # without sessions, b's runs join


def test_synthetic_loads_in_recbole_as_macro_sequences():
    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset

    config = Config("SASRec", "synthetic", config_dict={"use_gpu": False, "state": "ERROR"}, read_command_line=False)
    dataset = create_dataset(config)
    raw = pd.read_csv(os.path.join(paths.DATASET_ATOMIC_DIR, "synthetic", "synthetic.inter"), sep="\t")
    raw.columns = [c.split(":")[0] for c in raw.columns]
    expected = len(macro_events(raw.astype({"user_id": str, "item_id": str, "session_id": str})))
    users = raw.user_id.nunique()
    assert len(dataset.inter_feat) == expected  # merged before RecBole's processing
    train, valid, test = dataset.build()
    assert len(train) + len(valid) + len(test) == expected - users  # an example per event but the first
    assert len(test) == users and train.inter_feat["op_list"].dim() == 3
