"""QuerySeqRec: building blocks on hand-computed cases, the dataset plugin against SASRec's
examples and a brute-force reference, leakage, augmentation statistics, sampled softmax,
padding invariance, reproducibility, one-epoch runs of every switch."""

import copy
import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recbole_ext.data.dataloader.query_augmentation import (
    QueryGraphAugmentation,
    draw_uniform_excluding,
)
from recbole_ext.data.dataset.query_dataset import (
    EVENT_CONTEXT_FIELD,
    EVENT_ITEM_FIELD,
    EVENT_LENGTH_FIELD,
    EVENT_QUERY_FIELD,
    EVENT_TYPE_FIELD,
    ITEM_CONTEXT_FIELD,
    TARGET_CONTEXT_FIELD,
    build_query_item_graph,
    encode_queries,
    interleave_events,
    top_alpha_links,
)
from tests.conftest import tiny_config_dict


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data_path(tmp_path_factory):
    """A small ``synthetic`` dataset (same generator and schema as the shipped one)."""
    from recbole_ext.data.synthetic import SyntheticConfig, generate, write_atomic

    root = tmp_path_factory.mktemp("query_data")
    data = generate(SyntheticConfig(users=80, items=60, intents=4, seed=7))
    # Dense ranks of the times keep their order and ties but are exact in RecBole's float32
    # time tensors, so the brute-force reference below can read times from the examples.
    _, ranks = np.unique(np.concatenate([data.inter["timestamp"], data.query["timestamp"]]),
                         return_inverse=True)
    data.inter["timestamp"] = ranks[: len(data.inter)].astype(float)
    data.query["timestamp"] = ranks[len(data.inter):].astype(float)
    write_atomic(data, str(root / "synthetic"))
    return str(root)


def make_config(model, data_path, **overrides):
    from recbole_ext.config import Config

    config_dict = tiny_config_dict(data_path=data_path, **overrides)
    return Config(model=model, dataset="synthetic", config_dict=config_dict)


@pytest.fixture(scope="module")
def query_dataset(tiny_data_path):
    from recbole_ext.data import create_dataset

    config = make_config("QuerySeqRec", tiny_data_path, MAX_ITEM_LIST_LENGTH=50,
                         MAX_EVENT_LIST_LENGTH=200)
    dataset = create_dataset(config)
    splits = dataset.build()
    return config, dataset, splits


def run_query_model(tiny_data_path, **overrides):
    from recbole_ext.quick_start import run_single

    config_dict = tiny_config_dict(data_path=tiny_data_path, **overrides)
    return run_single("QuerySeqRec", "synthetic", config_dict=config_dict, saved=False,
                      read_command_line=False)


# --------------------------------------------------------------------------------------------
# building blocks, hand-computed
# --------------------------------------------------------------------------------------------


def test_encode_queries_distinct_bags_truncated():
    ids, words, tokens = encode_queries(["a b", "b a c d e f", "", "a b"], max_query_words=3)
    assert list(tokens) == ["[PAD]", "a", "b", "c"]
    assert ids.tolist() == [1, 2, 0, 1]  # same text, same id; no words -> 0
    assert words.tolist() == [[0, 0, 0], [1, 2, 0], [2, 1, 3]]


def test_interleave_hand_case():
    # one user: clicks i5@2, i6@4, i7@6, i8@8; queries q1@1, q2@4 (same time as i6), q3@8
    item_uid, item_time, item_id = [1, 1, 1, 1], np.array([2.0, 4, 6, 8]), [5, 6, 7, 8]
    target_row = np.array([1, 2, 3])
    window_start = np.array([0, 0, 1])  # the last example's window dropped i5 (length 2)
    out = interleave_events(item_uid, item_time, item_id, window_start, target_row,
                            np.array([1, 1, 1]), np.array([1.0, 4, 8]), np.array([1, 2, 3]),
                            max_events=4)
    # target i6@4: q2@4 is at the target time -> not input
    # target i7@6: q1 i5 q2 i6 (a query precedes a click at the same time)
    # target i8@8: i5 dropped with everything before it; q3@8 is at the target time
    assert out["event_type"].tolist() == [[2, 1, 0, 0], [2, 1, 2, 1], [2, 1, 1, 0]]
    assert out["event_item"].tolist() == [[0, 5, 0, 0], [0, 5, 0, 6], [0, 6, 7, 0]]
    assert out["event_query"].tolist() == [[1, 0, 0, 0], [1, 0, 2, 0], [2, 0, 0, 0]]
    assert out["event_context"].tolist() == [[1, 1, 0, 0], [1, 1, 2, 2], [2, 2, 2, 0]]
    assert out["event_length"].tolist() == [2, 4, 3]
    assert out["item_context"].tolist() == [[1, 0], [1, 2], [2, 2]]
    assert out["target_context"].tolist() == [1, 2, 2]
    # at most 3 events: the most recent ones are kept
    short = interleave_events(item_uid, item_time, item_id, window_start, target_row,
                              np.array([1, 1, 1]), np.array([1.0, 4, 8]), np.array([1, 2, 3]),
                              max_events=3)
    assert short["event_type"][1].tolist() == [1, 2, 1]
    assert short["event_item"][1].tolist() == [5, 0, 6]


def test_last_event_split_hand_case():
    """The reusable split of the results page: which examples end with a query, and the group
    means of a per-example metric."""
    from recbole_ext.data.dataset.query_dataset import (last_event_is_query, split_by_last_event,
                                                        trailing_query)

    batch = {EVENT_TYPE_FIELD: torch.tensor([[2, 1, 2, 0], [2, 1, 1, 0], [1, 2, 2, 1], [0, 0, 0, 0]]),
             EVENT_QUERY_FIELD: torch.tensor([[4, 0, 7, 0], [4, 0, 0, 0], [0, 3, 5, 0], [0, 0, 0, 0]]),
             EVENT_LENGTH_FIELD: torch.tensor([3, 3, 3, 0])}
    assert trailing_query(batch).tolist() == [7, 0, 5, 0]
    assert last_event_is_query(batch).tolist() == [True, False, True, False]
    split = split_by_last_event(torch.tensor([1.0, 0.5, 0.0, 0.25]), last_event_is_query(batch))
    assert split == {"all": 0.4375, "query_ended": 0.5, "item_ended": 0.375, "query_share": 0.5}
    with pytest.raises(ValueError, match="differ"):
        split_by_last_event(torch.ones(3), last_event_is_query(batch))


def test_top_alpha_links_keeps_ceil_alpha_degree_by_count():
    node = np.array([1, 1, 1, 2])
    other = np.array([7, 8, 9, 7])
    count = np.array([1, 5, 3, 2])
    kept_node, kept_other = top_alpha_links(node, other, count, alpha=0.5, n_nodes=3)
    # node 1: ceil(1.5) = 2 links, the two most frequent (8, then 9); node 2: ceil(0.5) = 1
    assert list(zip(kept_node.tolist(), kept_other.tolist())) == [(1, 8), (1, 9), (2, 7)]


def test_graph_csr_and_two_hop_similarity():
    # clicks (item, latest query): (1,q1) x2, (2,q1), (3,q2), (1,q2); item 4 without a query
    graph = build_query_item_graph(np.array([1, 1, 2, 3, 1, 4]), np.array([1, 1, 1, 2, 2, 0]),
                                   n_items=5, n_queries=2, alpha=1.0)

    def neighbours(name, node):
        ptr, idx = graph[f"{name}_ptr"], graph[f"{name}_idx"]
        return idx[ptr[node]:ptr[node + 1]].tolist()

    assert neighbours("item2query", 1) == [1, 2]
    assert neighbours("query2item", 1) == [1, 2]
    assert neighbours("query2item", 2) == [1, 3]
    assert neighbours("item2query", 4) == []
    assert neighbours("item_sim", 1) == [2, 3]  # items sharing a query with item 1
    assert neighbours("item_sim", 2) == [1]
    assert neighbours("query_sim", 1) == [2]
    assert graph["item_nodes"].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="graph_alpha"):
        build_query_item_graph(np.array([1]), np.array([1]), 2, 1, alpha=0.0)


# --------------------------------------------------------------------------------------------
# dataset plugin
# --------------------------------------------------------------------------------------------


def test_targets_and_split_equal_sasrec(tiny_data_path, query_dataset):
    from recbole_ext.data import create_dataset

    _, dataset, splits = query_dataset
    sasrec = create_dataset(make_config("SASRec", tiny_data_path, MAX_ITEM_LIST_LENGTH=50))
    sasrec_splits = sasrec.build()
    for ours, theirs in zip(splits, sasrec_splits):
        for field in ("user_id", "item_id", "item_id_list", "item_length", "timestamp"):
            assert torch.equal(ours.inter_feat[field], theirs.inter_feat[field]), field


def test_events_match_bruteforce_reference_and_never_leak(tiny_data_path, query_dataset):
    """Rebuild each example's heterogeneous input from the raw .query file by a plain loop:
    items of the window plus the user's queries strictly before the target time, a query before
    a click at the same time. Examples with a full window are skipped (truncation is covered by
    the hand case)."""
    config, dataset, _ = query_dataset
    raw = pd.read_csv(os.path.join(tiny_data_path, "synthetic", "synthetic.query"), sep="\t",
                      dtype=str)
    raw.columns = [c.split(":")[0] for c in raw.columns]
    raw["timestamp"] = raw["timestamp"].astype(float)
    uid_map = dataset.field2token_id["user_id"]
    raw["uid"] = raw["user_id"].map(uid_map)
    by_user = {uid: group.sort_values("timestamp", kind="stable")
               for uid, group in raw.groupby("uid")}
    words = dataset.word_tokens

    feat = dataset.inter_feat
    # the item events are the example's input items (item_id_list), in order, for every example
    is_item = feat[EVENT_TYPE_FIELD] == 1
    assert torch.equal(is_item.sum(1), feat["item_length"])
    for n in range(len(feat)):
        assert torch.equal(feat[EVENT_ITEM_FIELD][n][is_item[n]],
                           feat["item_id_list"][n][: int(feat["item_length"][n])])
    assert (feat["item_length"] == 50).any()  # truncated windows are covered too
    checked = 0
    for n in range(0, len(feat), 3):
        length = int(feat["item_length"][n])
        if length >= 50:
            continue
        target_time = float(feat["timestamp"][n])
        events = [(float(t), 1, ("item", int(i))) for t, i in
                  zip(feat["timestamp_list"][n][:length].tolist(),
                      feat["item_id_list"][n][:length].tolist())]
        user_queries = by_user.get(int(feat["user_id"][n]))
        if user_queries is not None:
            for t, text in zip(user_queries["timestamp"], user_queries["query"]):
                if t < target_time:
                    events.append((t, 0, ("query", " ".join(text.split()[:5]))))
        events.sort(key=lambda e: (e[0], e[1]))
        expected = [e[2] for e in events]
        got = []
        for pos in range(int(feat[EVENT_LENGTH_FIELD][n])):
            kind = int(feat[EVENT_TYPE_FIELD][n, pos])
            if kind == 1:
                got.append(("item", int(feat[EVENT_ITEM_FIELD][n, pos])))
            else:
                bag = dataset.query_words[feat[EVENT_QUERY_FIELD][n, pos]].tolist()
                got.append(("query", " ".join(words[w] for w in bag if w)))
        assert got == expected, n
        assert int(feat[EVENT_TYPE_FIELD][n, len(got):].abs().sum()) == 0
        checked += 1
    assert checked > 200


def test_graph_holds_training_links_only(query_dataset):
    _, dataset, (train, valid, test) = query_dataset

    def links(feats):
        pairs = set()
        for feat in feats:
            for item, ctx in zip(feat["item_id"].tolist(), feat[TARGET_CONTEXT_FIELD].tolist()):
                if ctx:
                    pairs.add((item, ctx))
            first = feat["item_length"] == 1
            for item, ctx in zip(feat["item_id_list"][first, 0].tolist(),
                                 feat[ITEM_CONTEXT_FIELD][first, 0].tolist()):
                if ctx:
                    pairs.add((item, ctx))
        return pairs

    graph = dataset.query_item_graph
    ptr, idx = graph["item2query_ptr"], graph["item2query_idx"]
    in_graph = {(item, int(q)) for item in range(len(ptr) - 1)
                for q in idx[ptr[item]:ptr[item + 1]]}
    train_links = links([train.inter_feat])
    assert in_graph == train_links
    all_links = links([train.inter_feat, valid.inter_feat, test.inter_feat])
    assert all_links - train_links  # evaluation targets would add links: they are not there
    # the copies handed to the model share the same graph
    assert train.query_item_graph is graph and test.query_item_graph is graph


def test_missing_query_file_is_one_clear_error(tmp_path, tiny_data_path):
    import shutil

    from recbole_ext.data import create_dataset

    folder = tmp_path / "data" / "synthetic"
    shutil.copytree(os.path.join(tiny_data_path, "synthetic"), folder)
    os.remove(folder / "synthetic.query")
    with pytest.raises(ValueError, match=r"needs the query file .*synthetic\.query"):
        create_dataset(make_config("QuerySeqRec", str(tmp_path / "data")))


# --------------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------------


class _FakeDataset:
    pass


def _augmenter(graph, phase="train", **config):
    values = {"augmentation": "graph", "replacement_form": "rho", "beta_item": 0.25,
              "beta_query": 0.25, "rho": 1.5, "graph_mix": 0.2, "use_queries": True,
              "query_fusion": "heterogeneous"}
    values.update(config)
    dataset = _FakeDataset()
    dataset.query_item_graph = graph
    return QueryGraphAugmentation(values, dataset, phase)


def _toy_graph():
    # items 1..20, queries 1..6; item 1 shares query 1 with items 2, 3 only
    items = [1, 2, 3] + list(range(4, 21))
    queries = [1, 1, 1] + [2 + (i % 5) for i in range(4, 21)]
    return build_query_item_graph(np.array(items), np.array(queries), n_items=21, n_queries=6,
                                  alpha=1.0)


def _toy_batch(batch=4000, length=10):
    from recbole.data.interaction import Interaction

    torch.manual_seed(0)
    types = torch.where(torch.arange(length) % 3 == 0, 2, 1).repeat(batch, 1)
    types[:, 8:] = 0
    items = torch.where(types == 1, torch.randint(1, 21, (batch, length)), 0)
    queries = torch.where(types == 2, torch.randint(1, 7, (batch, length)), 0)
    return Interaction({
        EVENT_ITEM_FIELD: items, EVENT_QUERY_FIELD: queries, EVENT_TYPE_FIELD: types,
        EVENT_CONTEXT_FIELD: torch.where(types == 2, queries, 1),
        EVENT_LENGTH_FIELD: torch.full((batch,), 8), "item_id": torch.randint(1, 21, (batch,)),
    })


@pytest.mark.parametrize("setting", [{}, {"augmentation": "uniform"},
                                     {"replacement_form": "mixture"}])
def test_augmentation_rates_match_beta_and_labels_untouched(setting):
    batch = _toy_batch()
    before = {k: batch[k].clone() for k in batch.interaction}
    torch.manual_seed(1)
    out = _augmenter(_toy_graph(), beta_item=0.3, beta_query=0.1, **setting)(None, batch)
    assert out[EVENT_TYPE_FIELD].size(1) == 8  # trailing all-padding columns are trimmed
    before = {k: v[:, :8] if k in (EVENT_ITEM_FIELD, EVENT_QUERY_FIELD, EVENT_TYPE_FIELD,
                                   EVENT_CONTEXT_FIELD) else v for k, v in before.items()}
    assert torch.equal(out["item_id"], before["item_id"])
    assert torch.equal(out[EVENT_TYPE_FIELD], before[EVENT_TYPE_FIELD])
    items, queries = before[EVENT_TYPE_FIELD] == 1, before[EVENT_TYPE_FIELD] == 2
    item_rate = (out[EVENT_ITEM_FIELD] != before[EVENT_ITEM_FIELD])[items].float().mean()
    query_rate = (out[EVENT_QUERY_FIELD] != before[EVENT_QUERY_FIELD])[queries].float().mean()
    tolerance = 0.02
    if setting.get("replacement_form") == "mixture":
        # a pool draw may return the node itself (as in the authors' code): rate <= beta
        assert 0.3 * 0.8 - tolerance < item_rate < 0.3 + tolerance
    else:
        assert abs(item_rate - 0.3) < tolerance
        assert abs(query_rate - 0.1) < tolerance
    assert (out[EVENT_ITEM_FIELD][~items] == 0).all() and (out[EVENT_QUERY_FIELD][~queries]
                                                             == 0).all()


def test_augmentation_is_identity_outside_training_and_without_queries():
    before = _toy_batch(batch=50)[EVENT_ITEM_FIELD]
    for augmenter, width in ((_augmenter(_toy_graph(), phase="valid"), 10),
                             (_augmenter(_toy_graph(), augmentation="none"), 8),
                             (_augmenter(_toy_graph(), use_queries=False), 10),
                             (_augmenter(_toy_graph(), query_fusion="early"), 10)):
        out = augmenter(None, _toy_batch(batch=50))[EVENT_ITEM_FIELD]
        assert torch.equal(out, before[:, :width])


def test_only_the_training_loader_augments_and_mixture_is_the_default(tiny_data_path):
    """Through the real pipeline: the yaml default is the authors' mixture form, and the valid
    and test loaders never augment."""
    from recbole_ext.data import create_dataset, data_preparation

    config = make_config("QuerySeqRec", tiny_data_path, train_neg_sample_args=None)
    loaders = data_preparation(config, create_dataset(config))
    assert [loader.transform.active for loader in loaders] == [True, False, False]
    assert loaders[0].transform.form == "mixture"
    batch = next(iter(loaders[1]))[0]
    raw = loaders[1]._dataset.inter_feat[torch.arange(len(batch))]
    assert torch.equal(batch[EVENT_ITEM_FIELD], raw[EVENT_ITEM_FIELD])


LABEL_SAFE_SETTINGS = [{"replacement_form": "mixture", "graph_mix": 1.0},
                       {"replacement_form": "rho", "rho": 1e6}, {"augmentation": "uniform"}]


def _train_examples(query_dataset):
    _, _, (train, _, _) = query_dataset
    return train.inter_feat[torch.arange(len(train.inter_feat))]


def test_item_pools_hold_the_target_above_chance(query_dataset):
    """Why the labels must be excluded: the last input item's pool query2item[context query]
    holds the example's own training target far above chance."""
    _, dataset, _ = query_dataset
    batch = _train_examples(query_dataset)
    graph = dataset.query_item_graph
    last = batch[EVENT_LENGTH_FIELD] - 1
    is_item = batch[EVENT_TYPE_FIELD].gather(1, last.unsqueeze(1)).squeeze(1) == 1
    context = batch[EVENT_CONTEXT_FIELD].gather(1, last.unsqueeze(1)).squeeze(1)[is_item]
    target = batch["item_id"][is_item]
    ptr, idx = graph["query2item_ptr"], graph["query2item_idx"]
    holds = [int(t) in set(idx[ptr[c]:ptr[c + 1]].tolist()) for c, t in zip(context, target)]
    degree = (ptr[context + 1] - ptr[context]).double()
    assert np.mean(holds) > 3 * float((degree / len(graph["item_nodes"])).mean())


@pytest.mark.parametrize("positions", ["last", "all"])
@pytest.mark.parametrize("setting", LABEL_SAFE_SETTINGS, ids=lambda s: next(iter(s.values())))
def test_replaced_items_are_never_a_label(query_dataset, positions, setting):
    """Every input item replaced: none is the example's target, and with train_positions all
    none is the label of its own or of a later position (an item after it)."""
    _, dataset, _ = query_dataset
    batch = _train_examples(query_dataset)
    original, target = batch[EVENT_ITEM_FIELD].clone(), batch["item_id"].clone()
    torch.manual_seed(4)
    out = _augmenter(dataset.query_item_graph, beta_item=1.0, beta_query=0.0,
                     train_positions=positions, **setting)(None, batch)
    items = out[EVENT_ITEM_FIELD]
    is_item = out[EVENT_TYPE_FIELD] == 1
    original = original[:, :items.size(1)]
    assert (items != original)[is_item].float().mean() > 0.5  # replaced
    assert not ((items == target.unsqueeze(1)) & is_item).any()
    if positions == "all":
        later = torch.arange(items.size(1)).view(1, 1, -1) > torch.arange(items.size(1)).view(1, -1, 1)
        hits = (items.unsqueeze(2) == original.unsqueeze(1)) & later & (original.unsqueeze(1) > 0)
        assert not (hits.any(2) & is_item).any()


def test_all_positions_query_replacement_never_reads_the_next_item(query_dataset):
    """With train_positions all, the item after a query is the label of the query's position:
    changing every item after position 3 leaves the replaced queries up to position 3 unchanged
    (same random numbers)."""
    _, dataset, _ = query_dataset
    batch = _train_examples(query_dataset)
    keep = batch[EVENT_LENGTH_FIELD] > 6
    batch = batch[keep]
    changed = copy.deepcopy(batch)
    late_item = (torch.arange(changed[EVENT_ITEM_FIELD].size(1)) > 3) & (changed[EVENT_TYPE_FIELD] == 1)
    n_items = int(dataset.item_num)
    changed[EVENT_ITEM_FIELD] = torch.where(late_item, changed[EVENT_ITEM_FIELD] % (n_items - 1) + 1,
                                            changed[EVENT_ITEM_FIELD])
    outputs = []
    for data in (batch, changed):
        torch.manual_seed(6)
        outputs.append(_augmenter(dataset.query_item_graph, beta_item=0.0, beta_query=1.0,
                                  replacement_form="mixture", graph_mix=1.0,
                                  train_positions="all")(None, copy.deepcopy(data)))
    queries_early = outputs[0][EVENT_TYPE_FIELD][:, :4] == 2
    assert queries_early.sum() > 50
    assert torch.equal(outputs[0][EVENT_QUERY_FIELD][:, :4], outputs[1][EVENT_QUERY_FIELD][:, :4])


def test_draw_excluding_is_uniform_over_the_rest():
    from recbole_ext.data.dataloader.query_augmentation import draw_excluding, segment_keys

    # node 1's list [2, 5, 7, 9], node 2's [3]; exclude 5 and 9 (and 4, absent, and padding 0)
    ptr, idx = torch.tensor([0, 0, 4, 5]), torch.tensor([2, 5, 7, 9, 3])
    keys, stride = segment_keys(ptr, idx)
    nodes = torch.tensor([1] * 30000 + [2])
    excluded = torch.tensor([[5, 9, 4, 0]] * 30000 + [[3, 0, 0, 0]])
    draws, has = draw_excluding(keys, ptr[nodes], ptr[nodes + 1] - ptr[nodes], nodes * stride,
                                excluded, torch.rand(len(nodes)))
    counts = torch.bincount(draws[:-1], minlength=10)
    assert set(torch.nonzero(counts).flatten().tolist()) == {2, 7}
    assert abs(counts[2] / 30000 - 0.5) < 0.02
    assert has[:-1].all() and not has[-1] and draws[-1] == 0  # node 2: nothing but excluded


def _replacement_counts(graph, current, **config):
    augmenter = _augmenter(graph, **config)
    torch.manual_seed(3)
    draws = augmenter._replace(
        torch.full((200000,), current), torch.full((200000,), 1), graph["item_nodes"],
        "item_sim", "query2item", torch.zeros(200000, 1, dtype=torch.long))
    return torch.bincount(draws, minlength=21).double()


def test_rho_makes_similar_items_rho_times_as_likely():
    graph = _toy_graph()
    counts = _replacement_counts(graph, 1, rho=2.0)
    assert counts[1] == 0 and counts[0] == 0  # never itself, never padding
    similar = counts[[2, 3]].mean()
    dissimilar = counts[4:].mean()
    assert abs(similar / dissimilar - 2.0) < 0.1
    # with rho = 1 the graph form is uniform
    uniform = _replacement_counts(graph, 1, rho=1.0)
    assert abs(uniform[[2, 3]].mean() / uniform[4:].mean() - 1.0) < 0.08


def test_uniform_replacement_draws_every_other_node_equally():
    counts = _replacement_counts(_toy_graph(), 1, augmentation="uniform")[2:]
    expected = counts.sum() / len(counts)
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 45.0  # 18 degrees of freedom: p < 1e-3 threshold is ~42.3 .. 45


def test_mixture_form_draws_pool_with_weight_g():
    # item 5's context query 1 has pool {1, 2, 3}; g = 0.5
    graph = _toy_graph()
    counts = _replacement_counts(graph, 5, replacement_form="mixture", graph_mix=0.5)
    pool_share = counts[[1, 2, 3]].sum() / counts.sum()
    expected = 0.5 + 0.5 * 3 / 19  # pool, or a uniform draw among the 19 other graph items
    assert abs(pool_share - expected) < 0.01


def test_draw_uniform_excluding_never_returns_current():
    universe = torch.tensor([2, 4, 6, 8])
    current = torch.tensor([2, 4, 6, 8, 5] * 100)
    draws = draw_uniform_excluding(universe, current, torch.rand(500))
    assert (draws != current).all()
    assert set(draws.tolist()) <= set(universe.tolist())


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------


def _model(query_dataset, **overrides):
    from recbole_ext.config import Config
    from recbole_ext.model.sequential_recommender.queryseqrec import QuerySeqRec

    config, dataset, (train, _, _) = query_dataset
    values = dict(config.final_config_dict)
    values.update(overrides)
    torch.manual_seed(0)
    model = QuerySeqRec(_DictConfig(values), train)
    return model, train


class _DictConfig(dict):
    def __getitem__(self, key):
        return self.get(key)


def _batch(train, size=64):
    return train.inter_feat[torch.arange(size)]


def test_sampled_softmax_with_all_items_equals_full_softmax(query_dataset):
    model, train = _model(query_dataset, softmax_samples=100000)
    batch = _batch(train)
    hidden, labels = model.training_states(batch)
    full = model.full_softmax_loss(hidden, labels)
    sampled = model.sampled_softmax_loss(hidden, labels)
    assert torch.allclose(full, sampled, atol=1e-6)
    # a real sample gives a different (smaller-candidate) loss, finite, with either proposal
    for sampler, logq in (("uniform", False), ("popularity", True)):
        small, _ = _model(query_dataset, softmax_samples=8, softmax_sampler=sampler,
                          logq_correction=logq)
        loss = small.sampled_softmax_loss(hidden, labels)
        assert torch.isfinite(loss) and not torch.allclose(loss, full)


SWITCH_MODELS = [
    {}, {"use_queries": False}, {"query_fusion": "early"}, {"query_fusion": "late"},
    {"query_fusion": "nova"}, {"backbone": "gru", "query_fusion": "heterogeneous"}, {"backbone": "fpmc", "query_fusion": "heterogeneous"},
    {"transformer_block": "authors"}, {"transformer_block": "authors", "query_fusion": "late"},
    {"backbone": "ssept", "query_fusion": "heterogeneous"}, {"query_fusion": "heterogeneous"},
]


@pytest.mark.parametrize("switch", SWITCH_MODELS, ids=lambda s: "-".join(map(str, s.values()))
                         or "default")
def test_padding_never_changes_outputs(query_dataset, switch):
    model, train = _model(query_dataset, **switch)
    model.eval()
    batch = _batch(train)
    with torch.no_grad():
        reference = model.full_sort_predict(batch)
        noisy = _batch(train)
        pad = noisy[EVENT_TYPE_FIELD] == 0
        noisy[EVENT_ITEM_FIELD] = torch.where(pad, torch.randint_like(pad, 1, 20, dtype=torch.long),
                                              noisy[EVENT_ITEM_FIELD])
        item_pad = noisy["item_id_list"] == 0
        noisy["item_id_list"] = torch.where(item_pad, 7, noisy["item_id_list"])
        noisy[ITEM_CONTEXT_FIELD] = torch.where(item_pad, 1, noisy[ITEM_CONTEXT_FIELD])
        assert torch.allclose(model.full_sort_predict(noisy), reference, atol=1e-5)


@pytest.mark.parametrize("switch", SWITCH_MODELS, ids=lambda s: "-".join(map(str, s.values()))
                         or "default")
def test_every_encoder_path_has_one_output_contract(query_dataset, switch):
    """``forward`` returns ``(hidden [B, L, D'], last [B])`` on every path, D' the width of the
    output table, and the state at ``last`` is what scores the items."""
    model, train = _model(query_dataset, **switch)
    model.eval()
    batch = _batch(train, 32)
    with torch.no_grad():
        hidden, last = model.forward(batch)
        assert hidden.dim() == 3 and hidden.size(0) == 32 and last.shape == (32,)
        assert hidden.size(2) == model.item_table().size(1)
        assert (last >= 0).all() and (last < hidden.size(1)).all()
        state = hidden[torch.arange(32), last]
        assert torch.equal(model.full_sort_predict(batch), state @ model.item_table().t())


QUERY_READERS = [s for s in SWITCH_MODELS if s.get("use_queries", True)]


@pytest.mark.parametrize("switch", QUERY_READERS, ids=lambda s: "-".join(map(str, s.values()))
                         or "default")
def test_every_fusion_reads_the_query_before_the_target(query_dataset, switch):
    """The query issued after the last input item (just before the target) changes the scores
    of every fusion and backbone (early and NOVA attach queries to the item they precede, so
    this one needs its own slot); the other examples' scores do not move."""
    from recbole_ext.data.dataset.query_dataset import last_event_is_query

    model, train = _model(query_dataset, **switch)
    model.eval()
    with torch.no_grad():  # weights far from the tiny initialisation, so every path is visible
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    batch = _batch(train, 200)
    ended = last_event_is_query(batch)
    assert 10 < int(ended.sum()) < 190
    changed = _batch(train, 200)
    last = (changed[EVENT_LENGTH_FIELD] - 1).unsqueeze(1)
    other = changed[EVENT_QUERY_FIELD].gather(1, last) % (model.query_words.size(0) - 1) + 1
    changed[EVENT_QUERY_FIELD] = changed[EVENT_QUERY_FIELD].scatter(
        1, last, torch.where(ended.unsqueeze(1), other, changed[EVENT_QUERY_FIELD].gather(1, last)))
    with torch.no_grad():
        before, after = model.full_sort_predict(batch), model.full_sort_predict(changed)
    moved = ~torch.isclose(before, after, atol=1e-6).all(1)
    assert moved[ended].all()
    assert not moved[~ended].any()


def test_gated_fusion_mixes_the_paper_model_and_the_item_history(query_dataset):
    """``query_fusion: gated`` with the paper model's weights and SASRec's weights in its item
    stream: with the gate shut (bias -> -inf) its scores are SASRec's, with the gate open
    (bias -> +inf) the heterogeneous model's; it starts near the item stream."""
    from recbole.model.sequential_recommender import SASRec

    config, _, (train, _, _) = query_dataset
    paper, _ = _model(query_dataset, query_fusion="heterogeneous")
    gated, _ = _model(query_dataset, query_fusion="gated", training_schedule="joint")
    assert torch.sigmoid(gated.history_gate_layer.bias).max() < 0.2
    torch.manual_seed(1)
    sasrec = SASRec(_DictConfig(dict(config.final_config_dict)), train)
    weights = dict(paper.state_dict())
    for name, value in sasrec.state_dict().items():
        if name.startswith("trm_encoder."):
            weights["item_stream_encoder." + name[len("trm_encoder."):]] = value
        elif name.startswith("position_embedding."):
            weights["item_stream_" + name] = value
        elif name.startswith("LayerNorm."):
            weights["item_stream_" + name] = value
    weights["item_embedding.weight"] = sasrec.item_embedding.weight
    paper.item_embedding.weight.data.copy_(sasrec.item_embedding.weight.data)
    missing = gated.load_state_dict(weights, strict=False).missing_keys
    assert sorted(missing) == ["history_gate_layer.bias", "history_gate_layer.weight"]
    paper.eval(), gated.eval(), sasrec.eval()
    batch = _batch(train, 100)
    with torch.no_grad():
        default = gated.full_sort_predict(batch)
        gated.history_gate_layer.bias.fill_(-1e4)
        assert torch.allclose(gated.full_sort_predict(batch), sasrec.full_sort_predict(batch), atol=1e-5)
        gated.history_gate_layer.bias.fill_(1e4)
        assert torch.allclose(gated.full_sort_predict(batch), paper.full_sort_predict(batch), atol=1e-5)
        assert not torch.allclose(default, paper.full_sort_predict(batch), atol=1e-4)


def _ce(model, hidden, labels):
    logits = hidden @ model.item_embedding.weight.t()
    logits[:, 0] = float("-inf")
    return torch.nn.functional.cross_entropy(logits, labels)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_gated_stream_losses_add_each_stream_trained_on_its_own(query_dataset, positions):
    """Deep supervision: with the same weights and batch (no dropout), the loss with
    ``item_stream_loss_weight`` w1 and ``query_stream_loss_weight`` w2 is the plain gated loss
    plus w1 times the item stream's SASRec loss (its state after the last input item, and at
    ``all`` every item_id_list position, against the next item) plus w2 times the heterogeneous
    stream's own loss; with the gate open it equals w2's stream, shut w1's."""
    from recbole_ext.data.dataset.query_dataset import EVENT_LENGTH_FIELD

    base, train = _model(query_dataset, query_fusion="gated", training_schedule="joint", train_positions=positions)
    deep, _ = _model(query_dataset, query_fusion="gated", training_schedule="joint", train_positions=positions,
                     item_stream_loss_weight=0.5, query_stream_loss_weight=2.0)
    deep.load_state_dict(base.state_dict())
    base.eval(), deep.eval()
    batch = _batch(train, 64)
    with torch.no_grad():
        plain = base.calculate_loss(batch)
        items = base.item_history_states(batch)
        length, target = batch["item_length"], batch["item_id"]
        if positions == "last":
            item_term = _ce(base, base.gather_indexes(items, length - 1), target)
            events, _ = base._forward_transformer(batch)
            event_term = _ce(base, base.gather_indexes(events, batch[EVENT_LENGTH_FIELD] - 1), target)
        else:
            labels = torch.nn.functional.pad(batch["item_id_list"][:, 1:], (0, 1))
            labels[torch.arange(64), length - 1] = target
            item_term = _ce(base, items[labels > 0], labels[labels > 0])
            base.history_gate_layer.bias.fill_(1e4)  # gate open: the gated states are the events'
            event_term = base.calculate_loss(batch)
            base.history_gate_layer.bias.fill_(-2.0)
        assert torch.allclose(deep.calculate_loss(batch), plain + 0.5 * item_term + 2.0 * event_term,
                              atol=1e-5)
        assert not torch.allclose(item_term, event_term)


def _gradients(model, batch):
    model.zero_grad()
    model.calculate_loss(batch).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_item_stream_isolation_keeps_the_query_loss_off_the_item_side(query_dataset):
    """``item_stream_isolation``: the item stream's encoder (stream) and also the item table
    (table) get the gradient of the item stream's own loss only, the same as with the gated
    loss removed; without isolation the gated loss reaches them (the control)."""
    batch = None
    results = {}
    for isolation in ("none", "stream", "table"):
        model, train = _model(query_dataset, query_fusion="gated", training_schedule="joint", item_stream_loss_weight=1.0,
                              item_stream_isolation=isolation)
        model.eval()
        batch = _batch(train, 64) if batch is None else batch
        full = _gradients(model, batch)
        model.calculate_loss = lambda b, m=model: _ce(
            m, *m.item_stream_training_states(b, m.item_history_states(b)))
        alone = _gradients(model, batch)
        results[isolation] = full, alone
    for isolation, (full, alone) in results.items():
        encoder = [n for n in alone if n.startswith("item_stream_encoder.")]
        assert encoder
        same_encoder = all(torch.allclose(full[n], alone[n], atol=1e-7) for n in encoder)
        same_table = torch.allclose(full["item_embedding.weight"], alone["item_embedding.weight"],
                                    atol=1e-7)
        assert same_encoder == (isolation != "none")
        assert same_table == (isolation == "table")
        assert full["history_gate_layer.weight"].abs().sum() > 0  # the query side still learns


def test_stream_dropout_shuts_the_gate_of_some_examples_in_training_only(query_dataset):
    """``stream_dropout`` p: same seed, same weights and batch: training states differ from
    p = 0 and the dropped examples' states are the item stream's (p = 1: all of them); the
    evaluation scores are unchanged."""
    from recbole_ext.data.dataset.query_dataset import EVENT_LENGTH_FIELD

    base, train = _model(query_dataset, query_fusion="gated", training_schedule="joint", hidden_dropout_prob=0.0,
                         attn_dropout_prob=0.0)
    batch = _batch(train, 64)
    states = {}
    for p in (0.0, 0.5, 1.0):
        model, _ = _model(query_dataset, query_fusion="gated", training_schedule="joint", hidden_dropout_prob=0.0,
                          attn_dropout_prob=0.0, stream_dropout=p)
        model.load_state_dict(base.state_dict())
        torch.manual_seed(3)
        model.train()
        with torch.no_grad():
            hidden, last = model.forward(batch)
            states[p] = model.gather_indexes(hidden, last)
            items = model.item_history_states(batch)
            model.eval()
            scores = model.full_sort_predict(batch)
        assert torch.allclose(scores, _eval_scores(base, batch))
    history = base.gather_indexes(items, batch["item_length"] - 1)
    assert torch.allclose(states[1.0], history, atol=1e-6)
    dropped = torch.isclose(states[0.5], history, atol=1e-6).all(1)
    assert 0 < int(dropped.sum()) < 64
    assert torch.allclose(states[0.5][~dropped], states[0.0][~dropped], atol=1e-6)
    assert not torch.isclose(states[0.0], history, atol=1e-6).all(1).any()
    assert batch[EVENT_LENGTH_FIELD].min() > 0


def _eval_scores(model, batch):
    model.eval()
    with torch.no_grad():
        return model.full_sort_predict(batch)


def test_ssept_reads_the_user_and_sse_changes_training_only(query_dataset):
    """SSE-PT reads the user (the transformer backbone does not); its stochastic shared
    embeddings change the training loss (same seed) and nothing at evaluation."""
    ssept, train = _model(query_dataset, backbone="ssept", query_fusion="heterogeneous")
    plain, _ = _model(query_dataset)
    batch = _batch(train, 64)
    other_users = _batch(train, 64)
    other_users["user_id"] = other_users["user_id"].flip(0)
    ssept.eval(), plain.eval()
    with torch.no_grad():
        assert not torch.allclose(ssept.full_sort_predict(batch), ssept.full_sort_predict(other_users))
        assert torch.equal(plain.full_sort_predict(batch), plain.full_sort_predict(other_users))
    for key in ("sse_user_prob", "sse_item_prob"):
        sse, _ = _model(query_dataset, backbone="ssept", query_fusion="heterogeneous", **{key: 0.5})
        sse.load_state_dict(ssept.state_dict())
        sse.eval(), ssept.eval()
        with torch.no_grad():
            assert torch.equal(sse.full_sort_predict(batch), ssept.full_sort_predict(batch))
        losses = []
        for model in (ssept, sse):
            model.train()
            torch.manual_seed(3)
            losses.append(model.calculate_loss(_batch(train, 64)))
        assert not torch.allclose(losses[0], losses[1]), key
        with pytest.raises(ValueError, match=key):
            _model(query_dataset, backbone="ssept", query_fusion="heterogeneous", **{key: 1.5})


def test_xavier_initialisation_switch(query_dataset):
    """``initialization: xavier`` (the authors'): Xavier-uniform weights (bound
    sqrt(6 / (fan_in + fan_out))), zero padding rows; the default keeps SASRec's N(0, 0.02)."""
    xavier, _ = _model(query_dataset, initialization="xavier")
    default, _ = _model(query_dataset)
    weight = xavier.item_embedding.weight
    bound = (6.0 / sum(weight.shape)) ** 0.5
    assert weight.abs().max() <= bound and weight[1:].abs().max() > 0.9 * bound
    assert (weight[0] == 0).all() and (xavier.word_embedding.weight[0] == 0).all()
    assert abs(float(default.item_embedding.weight[1:].detach().std()) - 0.02) < 0.002
    linear = xavier.trm_encoder.layer[0].multi_head_attention.query.weight
    assert linear.abs().max() <= (6.0 / sum(linear.shape)) ** 0.5
    assert not torch.allclose(linear, default.trm_encoder.layer[0].multi_head_attention.query.weight)


def test_without_queries_reads_item_list_only(query_dataset):
    model, train = _model(query_dataset, use_queries=False)
    model.eval()
    batch = _batch(train)
    with torch.no_grad():
        reference = model.full_sort_predict(batch)
        for field in (EVENT_ITEM_FIELD, EVENT_QUERY_FIELD, EVENT_TYPE_FIELD):
            batch[field] = torch.zeros_like(batch[field])
        assert torch.equal(model.full_sort_predict(batch), reference)
    assert not hasattr(model, "word_embedding") and not hasattr(model, "type_embedding")


def test_all_positions_labels_survive_augmentation(query_dataset):
    """Augmentation replaces input events only: the labels of the inner positions
    (``train_positions: all``) are the items before replacement."""
    _, dataset, _ = query_dataset
    model, train = _model(query_dataset, train_positions="all")
    model.eval()
    _, clean_labels = model.training_states(_batch(train, 32))
    torch.manual_seed(5)
    augmented = _augmenter(dataset.query_item_graph, beta_item=1.0, beta_query=1.0)(
        None, _batch(train, 32))
    assert (augmented[EVENT_ITEM_FIELD] != _batch(train, 32)[EVENT_ITEM_FIELD][
        :, :augmented[EVENT_ITEM_FIELD].size(1)]).any()  # inputs were replaced
    _, labels = model.training_states(augmented)
    assert torch.equal(labels, clean_labels)


def test_authors_block_hand_computed():
    """One block of the authors' code: LN on the attention query only, no residual around the
    attention, FFN output plus twice its input, final LN."""
    from recbole_ext.model.sequential_recommender.queryseqrec import AuthorsTransformerEncoder

    torch.manual_seed(0)
    encoder = AuthorsTransformerEncoder(1, 1, 4, 6, 0.1, 0.1, 1e-12).eval()
    for parameter in encoder.parameters():  # non-trivial LayerNorm gains and biases too
        parameter.data.normal_()
    x = torch.randn(2, 3, 4)
    causal = torch.where(torch.tril(torch.ones(3, 3, dtype=torch.bool)), 0.0, -10000.0)
    with torch.no_grad():
        got = encoder(x, causal.view(1, 1, 3, 3))[-1]

        def norm(module, value):
            return F.layer_norm(value, (4,), module.weight, module.bias, 1e-12)

        query = encoder.query[0](norm(encoder.attention_norm[0], x))
        key, value = encoder.key_value[0](x).chunk(2, dim=-1)
        weights = torch.softmax(query @ key.transpose(1, 2) / 2.0 + causal, dim=-1)
        normed = norm(encoder.ffn_norm[0], encoder.out[0](weights @ value))
        first, second = encoder.ffn[0][0], encoder.ffn[0][3]
        expected = norm(encoder.final_norm, second(torch.relu(first(normed))) + 2 * normed)
    assert torch.allclose(got, expected, atol=1e-5)


def test_all_positions_labels_are_next_items(query_dataset):
    model, train = _model(query_dataset, train_positions="all")
    batch = _batch(train, 32)
    _, labels = model.training_states(batch)
    expected = []
    for n in range(32):
        types = batch[EVENT_TYPE_FIELD][n].tolist()
        items = batch[EVENT_ITEM_FIELD][n].tolist()
        length = int(batch[EVENT_LENGTH_FIELD][n])
        for t in range(length - 1):
            if types[t + 1] == 1:
                expected.append(items[t + 1])
        expected.append(int(batch["item_id"][n]))
    assert labels.tolist() == expected


@pytest.mark.parametrize("bad", [{"query_fusion": "bogus"}, {"backbone": "lstm"},
                                 {"softmax_samples": 1}, {"train_positions": "every"},
                                 {"query_fusion": "late", "backbone": "gru"},
                                 {"transformer_block": "post-ln"},
                                 {"transformer_block": "authors", "backbone": "gru"},
                                 {"transformer_block": "authors", "query_fusion": "nova"},
                                 {"initialization": "kaiming"},
                                 {"query_fusion": "early", "backbone": "ssept"},
                                 {"query_fusion": "gated", "backbone": "gru"},
                                 {"item_stream_loss_weight": -1.0}, {"query_stream_loss_weight": -1.0},
                                 {"stream_dropout": 1.5}, {"item_stream_isolation": "all"},
                                 {"item_stream_isolation": "table", "item_stream_loss_weight": 0.0}])
def test_bad_config_values_name_the_key(query_dataset, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        _model(query_dataset, **bad)


def test_bad_augmentation_values_name_the_key():
    for key, value in (("augmentation", "mixup"), ("rho", 0.5), ("beta_item", 1.5),
                       ("replacement_form", "x")):
        with pytest.raises(ValueError, match=key):
            _augmenter(_toy_graph(), **{key: value})


# --------------------------------------------------------------------------------------------
# end-to-end runs
# --------------------------------------------------------------------------------------------

RUN_SWITCHES = [
    {},
    {"augmentation": "none"},
    {"augmentation": "uniform"},
    {"replacement_form": "rho", "graph_alpha": 0.5},
    {"transformer_block": "authors"},
    {"transformer_block": "authors", "train_positions": "all"},
    {"use_queries": False},
    {"query_fusion": "early", "augmentation": "none"},
    {"query_fusion": "late", "augmentation": "none"},
    {"query_fusion": "nova", "augmentation": "none"},
    {"backbone": "gru", "query_fusion": "heterogeneous"},
    {"backbone": "fpmc", "query_fusion": "heterogeneous"},
    {"train_positions": "all"},
    {"softmax_samples": 20, "softmax_sampler": "popularity", "logq_correction": True},
    {"loss_type": "BPR", "train_neg_sample_args": {"distribution": "uniform",
                                                   "sample_num": 1}},
    {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO",
                   "mode": "uni100", "group_by": "user"}},
    {"query_fusion": "heterogeneous"},
    {"backbone": "ssept", "query_fusion": "heterogeneous"},
    {"backbone": "ssept", "query_fusion": "heterogeneous", "sse_user_prob": 0.5, "sse_item_prob": 0.2},
    {"initialization": "xavier"},
    {"clip_grad_norm": {"max_norm": 0.01}},
    {"min_word_count": 10 ** 6},  # every word below it (no word of this data is rare at 3)
    {"word_dropout": 0.2},
]


def _outcome(record):
    return record["test_result"], record["best_valid_result"]


@pytest.fixture(scope="module")
def default_run(tiny_data_path):
    return run_query_model(tiny_data_path, train_neg_sample_args=None)


@pytest.fixture(scope="module")
def joint_run(tiny_data_path):
    return run_query_model(tiny_data_path, train_neg_sample_args=None, training_schedule="joint")


@pytest.mark.parametrize("switch", [s for s in RUN_SWITCHES if s and s != {"use_queries": False}],
                         ids=lambda s: "-".join(str(v) for v in s.values()
                                                if not isinstance(v, dict)) or next(iter(s)))
def test_one_epoch_runs_for_every_switch_and_each_changes_the_model(tiny_data_path, joint_run,
                                                                    switch):
    """Same seed, same data, one epoch: every switch gives other validation and test results
    than the defaults (a switch that is silently ignored would give the same). Trained in one
    stage (joint): the default's stage 2 keeps its start when one epoch does not improve it,
    and would then hide what a switch of the query side does."""
    overrides = {"train_neg_sample_args": None, "training_schedule": "joint"}
    overrides.update(switch)
    record = run_query_model(tiny_data_path, **overrides)
    assert record["epochs_trained"] == 1
    assert _outcome(record) != _outcome(joint_run)


def test_the_default_trains_two_stages_and_differs_from_joint(default_run, joint_run):
    assert default_run["stage_epochs"] == [1, 1] and "stage_epochs" not in joint_run
    assert _outcome(default_run) != _outcome(joint_run)


def test_without_queries_run_changes_the_model(tiny_data_path, default_run):
    """``use_queries: False`` is a different model from the default (its equality with SASRec is
    shown with shared weights in ``test_without_queries_is_sasrec_given_the_same_weights``)."""
    ablation = run_query_model(tiny_data_path, train_neg_sample_args=None, use_queries=False)
    assert _outcome(ablation) != _outcome(default_run)


def test_same_seed_same_metrics(tiny_data_path, default_run):
    again = run_query_model(tiny_data_path, train_neg_sample_args=None)
    assert _outcome(again) == _outcome(default_run)
    other_seed = run_query_model(tiny_data_path, train_neg_sample_args=None, seed=2021)
    assert _outcome(other_seed) != _outcome(default_run)  # the control: the seed matters


def test_without_queries_is_sasrec_given_the_same_weights(query_dataset):
    """``use_queries: False`` is SASRec: with SASRec's weights loaded (the parameter names are
    the same), the scores are SASRec's."""
    from recbole.model.sequential_recommender import SASRec

    config, _, (train, _, _) = query_dataset
    model, _ = _model(query_dataset, use_queries=False)
    torch.manual_seed(1)
    sasrec = SASRec(_DictConfig(dict(config.final_config_dict)), train)
    model.load_state_dict(sasrec.state_dict())
    model.eval(), sasrec.eval()
    batch = _batch(train)
    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(batch), sasrec.full_sort_predict(batch),
                              atol=1e-6)
        assert torch.allclose(model.predict(batch), sasrec.predict(batch), atol=1e-6)


def _write_raw_diginetica(folder, sessions=120, items=30, seed=0):
    """Raw DIGINETICA-format files (``;``-separated, the CIKM Cup headers): each session starts
    with a search whose first token names a group of items, then views items of that group."""
    rng = np.random.default_rng(seed)
    views, queries = [], []
    for session in range(1, sessions + 1):
        group = int(rng.integers(0, 5))
        queries.append(f"{session};{session};NA;0;100;2016-05-09;{900 + group},{950 + session % 7};"
                       f"0;;FALSE")
        for step in range(int(rng.integers(3, 7))):
            item = 100 + group * (items // 5) + int(rng.integers(0, items // 5))
            views.append(f"{session};NA;{item};{1000 * (step + 1)};2016-05-09")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train-item-views.csv"), "w") as f:
        f.write("sessionId;userId;itemId;timeframe;eventdate\n" + "\n".join(views) + "\n")
    with open(os.path.join(folder, "train-queries.csv"), "w") as f:
        f.write("queryId;sessionId;userId;timeframe;duration;eventdate;searchstring.tokens;"
                "categoryId;items;is.test\n" + "\n".join(queries) + "\n")


def test_converted_diginetica_fixture_runs_and_its_queries_matter(tmp_path):
    """The converter's output (sessions are the users: ``session_id``) runs end to end for the
    default and two other paths, and each differs from the query-free model on it."""
    from recbole_ext.data.convert.__main__ import main as convert_main
    from recbole_ext.quick_start import run_single

    _write_raw_diginetica(str(tmp_path / "raw"))
    assert convert_main(["diginetica", "--input", str(tmp_path / "raw"), "--output",
                         str(tmp_path / "atomic" / "diginetica"), "--min-item-count", "1"]) == 0
    overrides = {"data_path": str(tmp_path / "atomic"), "USER_ID_FIELD": "session_id",
                 "TIME_FIELD": "timestamp", "load_col": {"inter": ["session_id", "item_id",
                                                                    "timestamp"]},
                 "OPERATION_FIELD": None, "SESSION_FIELD": None, "train_neg_sample_args": None}
    outcomes = []
    for switch in ({"use_queries": False}, {}, {"query_fusion": "nova", "augmentation": "none"},
                   {"backbone": "fpmc", "train_positions": "all", "query_fusion": "heterogeneous"}):
        record = run_single("QuerySeqRec", "diginetica",
                            config_dict=tiny_config_dict(**overrides, **switch), saved=False,
                            read_command_line=False)
        assert record.get("stage_epochs", [1]) in ([1], [1, 1])  # one epoch (per stage)
        outcomes.append(_outcome(record))
    assert all(outcome != outcomes[0] for outcome in outcomes[1:])


def test_transform_trims_event_padding_without_changing_scores(query_dataset):
    config, dataset, (train, _, _) = query_dataset
    model, _ = _model(query_dataset)
    model.eval()
    batch = _batch(train, 16)
    width = int(batch[EVENT_LENGTH_FIELD].max())
    assert batch[EVENT_TYPE_FIELD].size(1) > width
    with torch.no_grad():
        reference = model.full_sort_predict(batch)
        trimmed = _augmenter(dataset.query_item_graph, augmentation="none")(None,
                                                                           _batch(train, 16))
        assert trimmed[EVENT_TYPE_FIELD].size(1) == width
        assert torch.allclose(model.full_sort_predict(trimmed), reference, atol=1e-5)


# --------------------------------------------------------------------------------------------
# rare-word regularisation (min_word_count, word_dropout)
# --------------------------------------------------------------------------------------------


def test_training_query_events_hand_case():
    """Each example owns the queries after its last input item; the user's first example also
    those before its first item (types: 1 item, 2 query, 0 padding)."""
    from recbole_ext.data.dataset.query_dataset import training_query_events

    types = torch.tensor([[2, 2, 1, 2, 0], [2, 1, 2, 1, 2], [1, 2, 1, 0, 0], [2, 1, 2, 1, 2]])
    first = torch.tensor([True, False, False, True])
    owned = training_query_events({EVENT_TYPE_FIELD: types}, first)
    assert owned.long().tolist() == [[1, 1, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0],
                                     [1, 0, 0, 0, 1]]


def _raw_queries(tiny_data_path, dataset):
    raw = pd.read_csv(os.path.join(tiny_data_path, "synthetic", "synthetic.query"), sep="\t",
                      dtype=str)
    raw.columns = [c.split(":")[0] for c in raw.columns]
    raw["timestamp"] = raw["timestamp"].astype(float)
    raw["uid"] = raw["user_id"].map(dataset.field2token_id["user_id"])
    return raw


def _word_counts(raw, dataset, keep):
    index = {token: w for w, token in enumerate(dataset.word_tokens)}
    counts = np.zeros(dataset.num_words, dtype=np.int64)
    for text in raw["query"][keep]:
        for token in text.split()[: dataset.max_query_words]:
            counts[index[token]] += 1
    return counts


def test_training_word_counts_ignore_validation_and_test_queries(tiny_data_path, query_dataset):
    """``train_word_counts`` equals a plain count over the raw .query file of each user's
    queries issued strictly before the user's last training target, i.e. every query of the
    training inputs once and none of the queries only validation or test inputs hold (those
    between the last training target and the test target); the control: counting every query
    gives other counts."""
    _, dataset, (train, valid, test) = query_dataset
    raw = _raw_queries(tiny_data_path, dataset)
    feat = train.inter_feat
    last_train = pd.Series(feat["timestamp"].numpy()).groupby(feat["user_id"].numpy()).max()
    cutoff = raw["uid"].map(last_train).to_numpy()
    before = raw["timestamp"].to_numpy() < cutoff  # users without training examples: NaN, False
    expected = _word_counts(raw, dataset, before)
    assert torch.equal(dataset.train_word_counts, torch.from_numpy(expected))
    assert torch.equal(train.train_word_counts, dataset.train_word_counts)
    held_out = _word_counts(raw, dataset, ~before)
    assert held_out.sum() > 0  # the evaluation inputs do hold queries, not counted
    assert not np.array_equal(_word_counts(raw, dataset, np.ones(len(raw), bool)), expected)


def _word_model(query_dataset, base, **overrides):
    """A model with ``overrides`` and ``base``'s weights (the OOV row, if any, kept as drawn)."""
    model, train = _model(query_dataset, **overrides)
    weights = dict(base.state_dict())
    table = model.word_embedding.weight.detach().clone()
    table[: base.word_embedding.num_embeddings] = weights["word_embedding.weight"]
    weights["word_embedding.weight"] = table
    model.load_state_dict(weights)
    return model, train


def test_min_word_count_maps_rare_training_words_to_one_oov_word(query_dataset):
    """``min_word_count`` k: exactly the words seen fewer than k times in training map to one
    extra OOV row; with the same weights a query of common words is represented as before, one
    holding a rare word is not, and the scores of examples reading such a query change."""
    _, dataset, (train, _, _) = query_dataset
    base, _ = _model(query_dataset, query_fusion="heterogeneous")
    counts = dataset.train_word_counts
    k = int(counts[1:].float().median()) + 1
    model, _ = _word_model(query_dataset, base, query_fusion="heterogeneous", min_word_count=k)
    assert model.word_embedding.num_embeddings == dataset.num_words + 1
    rare = counts < k
    rare[0] = False
    assert 0 < int(rare.sum()) < dataset.num_words - 1
    assert torch.equal(model.word_remap == model.oov_word, rare)
    assert torch.equal(model.word_remap[~rare], torch.arange(dataset.num_words)[~rare])
    queries = torch.arange(1, dataset.num_queries)
    has_rare = rare[dataset.query_words[queries]].any(1)
    model.eval(), base.eval()
    with torch.no_grad():
        same = torch.isclose(model.query_representation(queries),
                             base.query_representation(queries), atol=1e-6).all(1)
        assert torch.equal(same, ~has_rare)
        only_rare = (rare[dataset.query_words[queries]] | (dataset.query_words[queries] == 0)).all(1)
        assert only_rare.any()
        oov = model.word_embedding.weight[model.oov_word]
        assert torch.allclose(model.query_representation(queries[only_rare]),
                              oov.expand(int(only_rare.sum()), -1), atol=1e-6)
        batch = _batch(train, 128)
        events = batch[EVENT_QUERY_FIELD]
        reads_rare = (rare[dataset.query_words[events]].any(-1) & (events > 0)).any(1)
        # the same computation on the same inputs is bit-identical; a far query moves little
        moved = (model.full_sort_predict(batch) != base.full_sort_predict(batch)).any(1)
        assert reads_rare.any() and torch.equal(moved, reads_rare)


def test_word_dropout_replaces_words_in_training_only(query_dataset):
    """``word_dropout`` p: in training each word is replaced by the OOV word at rate p (padding
    never), redrawn each call; evaluation reads every word, so with the same weights the
    evaluation scores are those of the model without it while the training loss differs."""
    _, dataset, (train, _, _) = query_dataset
    base, _ = _model(query_dataset, query_fusion="heterogeneous", hidden_dropout_prob=0.0,
                     attn_dropout_prob=0.0)
    model, _ = _word_model(query_dataset, base, query_fusion="heterogeneous",
                           hidden_dropout_prob=0.0, attn_dropout_prob=0.0, word_dropout=0.3)
    assert torch.equal(model.word_remap, torch.arange(dataset.num_words))  # no rare-word map
    queries = torch.arange(1, dataset.num_queries).repeat(20)
    words = dataset.query_words[queries]
    model.train()
    torch.manual_seed(5)
    drawn = model.query_words_of(queries)
    assert torch.equal(drawn == 0, words == 0)
    rate = float((drawn == model.oov_word).sum()) / float((words > 0).sum())
    assert abs(rate - 0.3) < 0.02
    assert torch.equal(drawn[drawn != model.oov_word], words[drawn != model.oov_word])
    assert not torch.equal(model.query_words_of(queries), drawn)  # redrawn
    batch = _batch(train, 64)
    base.train()
    torch.manual_seed(5)
    assert not torch.allclose(model.calculate_loss(batch), base.calculate_loss(batch))
    model.eval()
    assert torch.equal(model.query_words_of(queries), words)
    assert torch.allclose(_eval_scores(model, batch), _eval_scores(base, batch), atol=1e-6)


def test_rare_word_switches_off_are_the_model_without_them(query_dataset):
    """Both switches at 0 (the yaml's values), and a ``min_word_count`` no training word falls
    below, build exactly the model without the keys: same parameters (no OOV row, no remap),
    same scores; one word below it (the control) adds the OOV row."""
    _, dataset, (train, _, _) = query_dataset
    without, _ = _model(query_dataset, min_word_count=None, word_dropout=None)
    lowest = int(dataset.train_word_counts[1:].min())
    batch = _batch(train, 64)
    for switches in ({"min_word_count": 0, "word_dropout": 0.0}, {"min_word_count": lowest}):
        off, _ = _model(query_dataset, **switches)
        assert off.word_embedding.num_embeddings == dataset.num_words
        assert not hasattr(off, "word_remap")
        assert without.state_dict().keys() == off.state_dict().keys()
        for name, value in without.state_dict().items():
            assert torch.equal(value, off.state_dict()[name]), name
        assert torch.equal(_eval_scores(off, batch), _eval_scores(without, batch))
    on, _ = _model(query_dataset, min_word_count=lowest + 1)
    assert on.word_embedding.num_embeddings == dataset.num_words + 1


@pytest.mark.parametrize("bad", [{"min_word_count": -1}, {"min_word_count": 2.5},
                                 {"word_dropout": 1.0}, {"word_dropout": -0.1}])
def test_bad_rare_word_values_name_the_key(query_dataset, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        _model(query_dataset, **bad)


def test_without_queries_ignores_the_rare_word_switches_and_is_sasrec(query_dataset):
    """``use_queries: False`` with both switches on is still SASRec given SASRec's weights."""
    from recbole.model.sequential_recommender import SASRec

    config, _, (train, _, _) = query_dataset
    model, _ = _model(query_dataset, use_queries=False, min_word_count=3, word_dropout=0.2)
    torch.manual_seed(1)
    sasrec = SASRec(_DictConfig(dict(config.final_config_dict)), train)
    model.load_state_dict(sasrec.state_dict())
    batch = _batch(train)
    assert torch.allclose(_eval_scores(model, batch), _eval_scores(sasrec, batch), atol=1e-6)
