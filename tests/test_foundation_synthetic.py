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


@pytest.mark.parametrize("name, args", [("synthetic", []), ("synthetic-weakq", synthetic.WEAKQ_ARGS)])
def test_shipped_copy_is_what_the_documented_command_generates(tmp_path, name, args):
    synthetic.main(args + ["--output", str(tmp_path / name)])
    for suffix in ("inter", "query", "item"):
        shipped = os.path.join(paths.DATASET_ATOMIC_DIR, name, f"{name}.{suffix}")
        regenerated = tmp_path / name / f"{name}.{suffix}"
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


def test_signal_first_operation_names_direct_items(small):
    """Only direct items (id a multiple of 4) start with another operation than ``view``: the
    target's first operation (EMBSR's ``star_op: target``) predicts the item."""
    macro = macro_events(small.inter)
    first = np.array([run[0] for run in macro.op])
    direct = macro.item_id.to_numpy() % SMALL.direct_item_every == 0
    assert (first[~direct] == "view").all()
    non_view = first != "view"
    assert direct[non_view].all() and non_view.sum() > 100
    # documented: the cart/buy and detail/comments patterns, 0.25 + 0.35 of direct items' clicks
    assert 0.5 < non_view[direct].mean() < 0.7, non_view[direct].mean()
    assert set(first[non_view]) == {"cart", "detail"}


def test_direct_starts_change_only_first_operations(small):
    """The rewrite comes from its own random stream: without it the same clicks, times, sessions
    and queries are generated, and every run keeps its successor slot."""
    plain = synthetic.generate(synthetic.SyntheticConfig(users=150, items=200, intents=8, seed=11,
                                                         direct_item_every=0))
    columns = ["user_id", "item_id", "timestamp", "session_id"]
    pd.testing.assert_frame_equal(small.inter[columns], plain.inter[columns])
    pd.testing.assert_frame_equal(small.query, plain.query)
    ours, theirs = macro_events(small.inter), macro_events(plain.inter)
    assert len(ours) == len(theirs)
    assert [synthetic.successor_slot(r) for r in ours.op] == [synthetic.successor_slot(r) for r in theirs.op]
    changed = (small.inter.op != plain.inter.op).to_numpy()
    assert changed.any() and (plain.inter.op[changed] == "view").all()
    assert set(plain.inter.op) == set(small.inter.op)  # no new operation token


def _session_reviews(data):
    """Share of clicks after a session's first that re-view an item seen earlier in the session."""
    macro = macro_events(data.inter)
    seen_before = macro.duplicated(["session_id", "item_id"]).to_numpy()
    later = macro.duplicated(["session_id"]).to_numpy()
    return seen_before[later].mean()


def _query_follow_ups(data):
    """For each query: its words, and the first click of the user after it."""
    macro = macro_events(data.inter).sort_values("timestamp", kind="stable")
    query = data.query.sort_values("timestamp", kind="stable")
    joined = pd.merge_asof(query, macro[["user_id", "timestamp", "item_id"]], on="timestamp", by="user_id",
                           direction="forward", allow_exact_matches=False)
    return joined.dropna(subset=["item_id"])


def _intent_named(joined, data):
    """Share of queries (with an intent word) whose first word has the intent of the next click."""
    first = joined["query"].str.split().str[0]
    has_intent = first.str.startswith("w")
    query_intent = first[has_intent].str[1:].str.split("_").str[0].astype(int)
    click_intent = data.item.set_index("item_id")["intent"][joined.item_id[has_intent].astype(int)].to_numpy()
    return (query_intent.to_numpy() == click_intent).mean()


KNOBS = dict(users=150, items=200, intents=8, seed=11)


def test_knob_repeats_within_a_session(small):
    base = _session_reviews(small)
    repeated = synthetic.generate(synthetic.SyntheticConfig(**KNOBS, p_repeat=0.3))
    share = _session_reviews(repeated)
    assert base < 0.1, base  # co-visit cycles alone (documented 3-6%)
    # documented ~25-29%: p_repeat = 0.3 where an earlier item exists (not at the second click)
    assert 0.24 < share < 0.35, share


def test_knob_zipf_vocabulary_has_many_rare_words(small):
    def words(data):
        return pd.Series(data.query["query"].str.split().sum()).value_counts()

    base = words(small)
    zipf = words(synthetic.generate(synthetic.SyntheticConfig(**KNOBS, query_synonyms=50)))
    assert len(base) <= SMALL.intents * SMALL.words_per_intent + SMALL.noise_words
    assert len(zipf) > 5 * len(base)
    rare = (zipf <= 3).mean()
    assert rare > 0.5, rare  # documented: most word types occur at most 3 times
    assert (base <= 3).mean() < 0.05


def test_knob_queries_name_the_next_click_with_a_probability(small):
    assert _intent_named(_query_follow_ups(small), small) > 0.95
    half = synthetic.generate(synthetic.SyntheticConfig(**KNOBS, p_query_names_next=0.5))
    share = _intent_named(_query_follow_ups(half), half)
    assert 0.45 < share < 0.65, share  # documented: 0.5 + 0.5 / intents


def test_knob_noise_queries(small):
    noisy = synthetic.generate(synthetic.SyntheticConfig(**KNOBS, p_noise_query=0.3))
    only_noise = noisy.query["query"].str.split().map(lambda ws: all(w.startswith("n") for w in ws))
    assert not small.query["query"].str.split().map(lambda ws: all(w.startswith("n") for w in ws)).any()
    clicks = len(macro_events(noisy.inter))
    assert 0.25 < only_noise.sum() / clicks < 0.35  # documented: one per click with p = 0.3
    # the other queries still name the next click (a noise query sits between some of them and
    # the click, so measure on the click after each intent query regardless of noise queries)
    intent_queries = noisy.query[~only_noise.to_numpy()]
    named = _intent_named(_query_follow_ups(synthetic.SyntheticData(noisy.inter, intent_queries, noisy.item,
                                                                    noisy.successors)), noisy)
    assert named > 0.95, named


def test_knobs_off_reproduce_the_defaults(small):
    off = synthetic.generate(synthetic.SyntheticConfig(**KNOBS, p_repeat=0.0, query_synonyms=1,
                                                       p_query_names_next=1.0, p_noise_query=0.0))
    pd.testing.assert_frame_equal(small.inter, off.inter)
    pd.testing.assert_frame_equal(small.query, off.query)
    with pytest.raises(ValueError, match="p_repeat"):
        synthetic.generate(synthetic.SyntheticConfig(**KNOBS, p_repeat=1.5))


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
