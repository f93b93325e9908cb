"""Query-aware dataset plugin for QuerySeqRec (He et al., "Query-Aware Sequential
Recommendation", CIKM 2022).

The examples, targets and train/valid/test split are exactly RecBole's ``SequentialDataset``
ones (what SASRec sees on the same ``.inter`` file). This plugin only ADDS fields to each example:

- ``event_item_list`` / ``event_query_list`` / ``event_type_list`` / ``event_length``: the
  heterogeneous input sequence, i.e. the example's input items interleaved by time with the
  user's queries (distinct-query ids; word bags live in ``self.query_words``). Event type 0 is
  padding, 1 an item, 2 a query. Right-padded, at most ``MAX_EVENT_LIST_LENGTH`` events (the
  most recent ones are kept).
- ``event_context_query_list``: for each event, the latest query issued at or before it (the
  augmentation key of the authors' code); ``item_context_query_list``: the same for each slot of
  ``item_id_list`` (input of the early/NOVA fusion designs); ``target_context_query``: the latest
  query before the target (used only to build the query-item graph).

Time rules (documented choice): a query at the same time as an item click is placed before it
(the query led to the click); a query at exactly the target's time is NOT input, only queries
strictly before the target time are. When the item window is truncated at
``MAX_ITEM_LIST_LENGTH``, queries older than the first dropped item are dropped too, so the
heterogeneous sequence never has holes.

The query side file is ``<data_path>/<dataset>/<dataset>.query`` with the columns
``<USER_ID_FIELD>:token <TIME_FIELD>:float <QUERY_FIELD>:token_seq`` (``QUERY_FIELD`` defaults to
``query``; other columns are ignored).
"""

import os

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recbole.utils import FeatureSource, FeatureType

from recbole_ext.data.dataset.base import ExtSequentialDataset

EVENT_PAD, EVENT_ITEM, EVENT_QUERY = 0, 1, 2

EVENT_ITEM_FIELD = "event_item_list"
EVENT_QUERY_FIELD = "event_query_list"
EVENT_TYPE_FIELD = "event_type_list"
EVENT_LENGTH_FIELD = "event_length"
EVENT_CONTEXT_FIELD = "event_context_query_list"
ITEM_CONTEXT_FIELD = "item_context_query_list"
TARGET_CONTEXT_FIELD = "target_context_query"
# Written by the training augmentation: the item events before replacement, i.e. the labels of
# the positions trained by ``train_positions: all`` (labels are never replaced).
EVENT_ITEM_LABEL_FIELD = "event_item_label_list"


# --------------------------------------------------------------------------------------------
# Building blocks (pure numpy, vectorised; unit-tested on hand-computed cases)
# --------------------------------------------------------------------------------------------


def encode_queries(query_texts, max_query_words, separator=" "):
    """Word bags of distinct queries.

    Returns ``(query_ids, query_words, word_tokens)``: ``query_ids[r]`` is the distinct-query id
    (>= 1; 0 for a query with no words) of ``query_texts[r]``; ``query_words`` is an int64 array
    ``[n_queries + 1, max_query_words]`` of word ids (0 = padding, row 0 = no query);
    ``word_tokens[w]`` is the token of word id ``w`` (``word_tokens[0] = "[PAD]"``).
    Only the first ``max_query_words`` words of a query are kept.
    """
    texts = pd.Series(query_texts, dtype="object").fillna("").astype(str)
    words = texts.str.split(separator).map(lambda ws: [w for w in ws if w][:max_query_words])
    lengths = words.map(len).to_numpy()
    flat = [w for ws in words for w in ws]
    word_codes, word_uniques = pd.factorize(pd.Series(flat, dtype="object"), sort=True)
    bags = np.zeros((len(texts), max_query_words), dtype=np.int64)
    rows = np.repeat(np.arange(len(texts)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    bags[rows, cols] = word_codes + 1
    distinct, inverse = np.unique(bags, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    has_empty = bool((distinct[0] == 0).all()) if len(distinct) else False
    if has_empty:  # the all-padding bag (a query without words) becomes id 0
        query_ids = inverse
        query_words = distinct
    else:
        query_ids = inverse + 1
        query_words = np.vstack([np.zeros((1, max_query_words), dtype=np.int64), distinct])
    word_tokens = np.concatenate([["[PAD]"], np.asarray(word_uniques, dtype=object)])
    return query_ids.astype(np.int64), query_words, word_tokens


def interleave_events(item_uid, item_time, item_id, window_start, target_row,
                      query_uid, query_time, query_qid, max_events):
    """Interleave each example's input items with the user's queries by time.

    ``item_*``: every interaction, sorted by (user, time) (rows of the pre-augmentation
    inter_feat); example ``n`` has input rows ``window_start[n] .. target_row[n] - 1`` and
    target row ``target_row[n]``. ``query_*``: every query event, sorted by (user, time).

    Returns a dict of arrays: ``event_item``, ``event_query``, ``event_type``,
    ``event_context`` (``[N, max_events]``), ``event_length`` (``[N]``), ``item_context``
    (``[N, max_input_items]`` aligned with the input item slots) and ``target_context``
    (``[N]``).
    """
    n_examples = len(target_row)
    window_start = np.asarray(window_start, dtype=np.int64)
    target_row = np.asarray(target_row, dtype=np.int64)
    # Exact integer keys ordering (user, time) for items and queries together, so that the
    # per-user searches become one global searchsorted.
    _, time_rank = np.unique(np.concatenate([item_time, query_time]), return_inverse=True)
    time_rank = time_rank.reshape(-1).astype(np.int64)
    stride = int(time_rank.max()) + 2 if len(time_rank) else 2
    item_key = np.asarray(item_uid, dtype=np.int64) * stride + time_rank[: len(item_time)] + 1
    query_key = np.asarray(query_uid, dtype=np.int64) * stride + time_rank[len(item_time):] + 1
    example_uid = np.asarray(item_uid, dtype=np.int64)[target_row]

    user_query_start = np.searchsorted(query_key, example_uid * stride, side="left")
    query_end = np.searchsorted(query_key, item_key[target_row], side="left")  # strictly before
    truncated = window_start > 0
    truncated &= np.asarray(item_uid)[np.maximum(window_start - 1, 0)] == example_uid
    query_begin = user_query_start.copy()
    prev_key = item_key[np.maximum(window_start - 1, 0)]
    query_begin[truncated] = np.searchsorted(query_key, prev_key[truncated], side="right")
    query_begin = np.minimum(query_begin, query_end)

    n_items = target_row - window_start
    n_queries = query_end - query_begin
    n_events = n_items + n_queries
    shift = np.maximum(n_events - max_events, 0)

    def within_group(counts):
        return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)

    # Item events: position = slot j + number of window queries at or before its time.
    item_example = np.repeat(np.arange(n_examples), n_items)
    item_slot = within_group(n_items)
    item_row = window_start[item_example] + item_slot
    queries_upto = np.minimum(np.searchsorted(query_key, item_key[item_row], side="right"),
                              query_end[item_example])
    item_pos = item_slot + queries_upto - query_begin[item_example]
    context_row = queries_upto - 1
    has_context = context_row >= user_query_start[item_example]
    item_ctx = np.where(has_context, np.asarray(query_qid)[np.maximum(context_row, 0)], 0)

    # Query events: position = index i + number of window items strictly before its time.
    query_example = np.repeat(np.arange(n_examples), n_queries)
    query_index = within_group(n_queries)
    query_row = query_begin[query_example] + query_index
    items_before = np.searchsorted(item_key, query_key[query_row], side="left")
    items_before = np.clip(items_before - window_start[query_example], 0, n_items[query_example])
    query_pos = query_index + items_before
    query_ids = np.asarray(query_qid)[query_row]

    out = {
        name: np.zeros((n_examples, max_events), dtype=np.int64)
        for name in ("event_item", "event_query", "event_type", "event_context")
    }
    item_ids = np.asarray(item_id, dtype=np.int64)[item_row]
    no_ids = np.zeros_like
    # A query is its own context (the latest query at or before it).
    for example, pos, item_val, query_val, context, kind in (
        (item_example, item_pos, item_ids, no_ids(item_ids), item_ctx, EVENT_ITEM),
        (query_example, query_pos, no_ids(query_ids), query_ids, query_ids, EVENT_QUERY),
    ):
        pos = pos - shift[example]
        keep = pos >= 0
        example, pos = example[keep], pos[keep]
        out["event_type"][example, pos] = kind
        out["event_item"][example, pos] = item_val[keep]
        out["event_query"][example, pos] = query_val[keep]
        out["event_context"][example, pos] = context[keep]
    out["event_length"] = np.minimum(n_events, max_events)
    max_items = int(n_items.max()) if n_examples else 0
    out["item_context"] = np.zeros((n_examples, max_items), dtype=np.int64)
    out["item_context"][item_example, item_slot] = item_ctx
    target_ctx_row = query_end - 1
    out["target_context"] = np.where(target_ctx_row >= user_query_start,
                                     np.asarray(query_qid)[np.maximum(target_ctx_row, 0)], 0)
    return out


def trailing_query(interaction):
    """``[N]``: the query id of each example's last input event if that event is a query (the
    query issued after the last input item, just before the target), else 0."""
    length = interaction[EVENT_LENGTH_FIELD].long()
    last = (length - 1).clamp(min=0).unsqueeze(1)
    is_query = (interaction[EVENT_TYPE_FIELD].gather(1, last).squeeze(1) == EVENT_QUERY) & (length > 0)
    return torch.where(is_query, interaction[EVENT_QUERY_FIELD].gather(1, last).squeeze(1), 0)


def last_event_is_query(interaction):
    """``[N]`` bool: whether each example's last input event is a query (its target follows a
    query) rather than an item. Works on any batch or ``inter_feat`` of ``QueryAwareDataset``."""
    return trailing_query(interaction) > 0


def split_by_last_event(values, query_ended):
    """Means of per-example metric ``values`` ``[N]`` over all examples and over the two groups
    of :func:`last_event_is_query`: ``{"all", "query_ended", "item_ended", "query_share"}``
    (a group without examples gives nan). The examples must be in the same order as the mask."""
    values = torch.as_tensor(values, dtype=torch.double)
    mask = torch.as_tensor(query_ended, dtype=torch.bool)
    if values.shape != mask.shape:
        raise ValueError(f"values {tuple(values.shape)} and mask {tuple(mask.shape)} differ")

    def mean(selected):
        return float(selected.mean()) if len(selected) else float("nan")

    return {"all": mean(values), "query_ended": mean(values[mask]),
            "item_ended": mean(values[~mask]), "query_share": float(mask.double().mean())}


def training_query_events(interaction, first_example):
    """``[N, L]`` bool over ``event_query_list``: the query events that each training example
    holds and no earlier example of its user does, i.e. the queries after its last input item
    (issued between that item and the target), and for the user's first example
    (``first_example [N]`` bool) also those before its first item. Over a training split every
    query event issued before the user's last training target is marked exactly once (unless
    ``MAX_EVENT_LIST_LENGTH`` cut it off), and nothing later: those queries precede a
    validation or test target and are never a training input."""
    types = interaction[EVENT_TYPE_FIELD]
    positions = torch.arange(types.size(1), device=types.device).unsqueeze(0)
    is_item = types == EVENT_ITEM
    last_item = torch.where(is_item, positions, -1).max(1).values.unsqueeze(1)
    first_item = torch.where(is_item, positions, types.size(1)).min(1).values.unsqueeze(1)
    owned = (positions > last_item) | (first_example.unsqueeze(1) & (positions < first_item))
    return owned & (types == EVENT_QUERY)


def count_query_words(query_ids, query_words, n_words):
    """``[n_words]`` int64: how often each word id occurs in the queries ``query_ids`` (any
    shape; 0 = no query); the padding word 0 counts nothing."""
    words = query_words[query_ids.reshape(-1)].reshape(-1)
    return torch.bincount(words[words > 0], minlength=n_words)


def csr_from_pairs(src, dst, n_src):
    """CSR adjacency (``ptr [n_src + 1]``, ``idx``) of the pairs, neighbours sorted by id."""
    order = np.lexsort((dst, src))
    src, dst = np.asarray(src)[order], np.asarray(dst)[order]
    ptr = np.zeros(n_src + 1, dtype=np.int64)
    np.add.at(ptr, src + 1, 1)
    return np.cumsum(ptr), dst.astype(np.int64)


def top_alpha_links(node, other, count, alpha, n_nodes):
    """For each node keep its ``ceil(alpha * degree)`` links with the highest counts
    (ties: smaller neighbour id first). Returns the kept (node, other) pairs."""
    order = np.lexsort((other, -count, node))
    node, other = node[order], other[order]
    degree = np.bincount(node, minlength=n_nodes)
    keep_n = np.ceil(alpha * degree - 1e-9).astype(np.int64)
    rank = np.arange(len(node)) - np.repeat(np.cumsum(degree) - degree, degree)
    keep = rank < keep_n[node]
    return node[keep], other[keep]


def build_query_item_graph(items, context_queries, n_items, n_queries, alpha):
    """The query-item graph of the paper (Sec. 2.2): each clicked item linked to its latest
    preceding query (``context_queries``, 0 = none), top ``ceil(alpha |N(.)|)`` links per node
    ranked by co-occurrence count. Returns a dict of CSR arrays: ``item2query``,
    ``query2item`` (``*_ptr``, ``*_idx``) and the two-hop similarity ``item_sim``/``query_sim``
    (nodes sharing at least one neighbour, self excluded)."""
    if not 0 < alpha <= 1:
        raise ValueError(f"graph_alpha must be in (0, 1], got {alpha}")
    items, context_queries = np.asarray(items), np.asarray(context_queries)
    linked = (items > 0) & (context_queries > 0)
    pair = items[linked] * (n_queries + 1) + context_queries[linked]
    pair, count = np.unique(pair, return_counts=True)
    link_item, link_query = pair // (n_queries + 1), pair % (n_queries + 1)
    kept_i, kept_q = top_alpha_links(link_item, link_query, count, alpha, n_items)
    kept_q2, kept_i2 = top_alpha_links(link_query, link_item, count, alpha, n_queries + 1)
    graph = {}
    graph["item2query_ptr"], graph["item2query_idx"] = csr_from_pairs(kept_i, kept_q, n_items)
    graph["query2item_ptr"], graph["query2item_idx"] = csr_from_pairs(kept_q2, kept_i2,
                                                                      n_queries + 1)
    item_to_query = sp.csr_matrix((np.ones(len(kept_i)), (kept_i, kept_q)),
                                  shape=(n_items, n_queries + 1))
    query_to_item = sp.csr_matrix((np.ones(len(kept_q2)), (kept_q2, kept_i2)),
                                  shape=(n_queries + 1, n_items))
    for name, product, size in (("item_sim", item_to_query @ query_to_item, n_items),
                                ("query_sim", query_to_item @ item_to_query, n_queries + 1)):
        product = product.tocoo()
        off_diagonal = product.row != product.col
        graph[f"{name}_ptr"], graph[f"{name}_idx"] = csr_from_pairs(
            product.row[off_diagonal], product.col[off_diagonal], size)
    graph["item_nodes"] = np.unique(np.concatenate([kept_i, kept_i2])).astype(np.int64)
    graph["query_nodes"] = np.unique(np.concatenate([kept_q, kept_q2])).astype(np.int64)
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in graph.items()}


# --------------------------------------------------------------------------------------------
# The dataset plugin
# --------------------------------------------------------------------------------------------


class QueryAwareDataset(ExtSequentialDataset):
    """SASRec's examples plus the query-aware heterogeneous input fields (see module doc)."""

    def __init__(self, config):
        self.max_query_words = int(config["max_query_words"] or 5)
        if self.max_query_words < 1:
            raise ValueError(f"max_query_words must be >= 1, got {config['max_query_words']}")
        max_events = config["MAX_EVENT_LIST_LENGTH"]
        self.max_event_list_len = int(max_events) if max_events else 2 * config[
            "MAX_ITEM_LIST_LENGTH"]
        if self.max_event_list_len < 1:
            raise ValueError(f"MAX_EVENT_LIST_LENGTH must be >= 1, got {max_events}")
        super().__init__(config)
        # after RecBole's remapping (user tokens -> ids), before any split
        self._build_query_tables()

    # -- loading --------------------------------------------------------------------------
    def _query_file_path(self):
        return os.path.join(self.dataset_path, f"{self.dataset_name}.query")

    def _load_query_file(self):
        path = self._query_file_path()
        time_column, query_column = self.time_field, self.config["QUERY_FIELD"] or "query"
        if not os.path.isfile(path):
            raise ValueError(
                f"QuerySeqRec needs the query file {path} (columns {self.uid_field}:token "
                f"{time_column}:float {query_column}:token_seq); this dataset has none")
        separator = self.config["field_separator"] or "\t"
        frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False,
                            engine="python" if len(separator) > 1 else "c")
        columns = {c.split(":")[0]: c for c in frame.columns}
        for needed in (self.uid_field, time_column, query_column):
            if needed not in columns:
                raise ValueError(f"{path}: missing column '{needed}' (header has "
                                 f"{', '.join(frame.columns)})")
        users = frame[columns[self.uid_field]].to_numpy()
        times = pd.to_numeric(frame[columns[time_column]], errors="coerce").to_numpy()
        if np.isnan(times).any():
            raise ValueError(f"{path}: {int(np.isnan(times).sum())} rows with a non-numeric "
                             f"timestamp")
        return users, times, frame[columns[query_column]].to_numpy()

    def _build_query_tables(self):
        users, times, texts = self._load_query_file()
        token2id = self.field2token_id[self.uid_field]
        uid = pd.Series(users).map(token2id)
        known = uid.notna().to_numpy()
        if (~known).any():
            self.logger.info(f"{self._query_file_path()}: dropped {int((~known).sum())} of "
                             f"{len(known)} query rows of users unknown to the interactions")
        qids, self.query_words, self.word_tokens = encode_queries(
            texts[known], self.max_query_words, self.config["seq_separator"] or " ")
        uid, times = uid.to_numpy()[known].astype(np.int64), times[known]
        nonempty = qids > 0
        if (~nonempty).any():
            self.logger.info(f"dropped {int((~nonempty).sum())} queries without words")
        uid, times, qids = uid[nonempty], times[nonempty], qids[nonempty]
        order = np.lexsort((times, uid))
        self.query_event_uid, self.query_event_time = uid[order], times[order]
        self.query_event_qid = qids[order]
        self.num_queries = len(self.query_words)  # including the padding query 0
        self.num_words = len(self.word_tokens)  # including the padding word 0
        self.query_words = torch.from_numpy(self.query_words)

    # -- hooks into RecBole's pipeline ----------------------------------------------------
    def _normalize(self):
        # Query times are compared with the raw interaction times, so keep them before any
        # normalisation of the time field (rows are not reordered after this step).
        self._raw_inter_time = self.inter_feat[self.time_field].to_numpy(dtype=np.float64).copy()
        super()._normalize()

    def data_augmentation(self):
        self._check_field("uid_field", "time_field")
        # Same stable sort as SequentialDataset.data_augmentation, applied to the raw times.
        raw_time = torch.from_numpy(self._raw_inter_time)
        self.inter_feat["_raw_time"] = raw_time
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        item_uid = self.inter_feat[self.uid_field].numpy().astype(np.int64)
        # RecBole orders rows by the float32 time tensor (~2-minute resolution at epoch-second
        # scale), ties in file order; a running maximum keeps the raw times consistent with that
        # order when two clicks collapse to one float32 value out of file order.
        item_time = pd.Series(self.inter_feat["_raw_time"].numpy()).groupby(
            item_uid).cummax().to_numpy()
        item_id = self.inter_feat[self.iid_field].numpy().astype(np.int64)
        del self.inter_feat["_raw_time"]
        del self._raw_inter_time

        same_user = np.r_[False, item_uid[1:] == item_uid[:-1]]
        target_row = np.flatnonzero(same_user)
        first_row = np.maximum.accumulate(np.where(~same_user, np.arange(len(item_uid)), 0))
        window_start = np.maximum(first_row[target_row], target_row - self.max_item_list_len)

        super().data_augmentation()
        if len(self.inter_feat) != len(target_row):
            raise RuntimeError("QueryAwareDataset: example count differs from RecBole's")

        events = interleave_events(item_uid, item_time, item_id, window_start, target_row,
                                   self.query_event_uid, self.query_event_time,
                                   self.query_event_qid, self.max_event_list_len)
        item_context = np.zeros((len(target_row), self.max_item_list_len), dtype=np.int64)
        item_context[:, : events["item_context"].shape[1]] = events["item_context"]
        new_fields = {
            EVENT_ITEM_FIELD: events["event_item"],
            EVENT_QUERY_FIELD: events["event_query"],
            EVENT_TYPE_FIELD: events["event_type"],
            EVENT_CONTEXT_FIELD: events["event_context"],
            ITEM_CONTEXT_FIELD: item_context,
            EVENT_LENGTH_FIELD: events["event_length"],
            TARGET_CONTEXT_FIELD: events["target_context"],
        }
        for name, values in new_fields.items():
            length = values.shape[1] if values.ndim == 2 else 1
            ftype = FeatureType.TOKEN_SEQ if values.ndim == 2 else FeatureType.TOKEN
            self.set_field_property(name, ftype, FeatureSource.INTERACTION, length)
            self.inter_feat[name] = torch.from_numpy(values.astype(np.int64))

    def build(self):
        datasets = super().build()
        train = datasets[0].inter_feat
        items = torch.cat([train[self.iid_field],
                           train[self.item_id_list_field][:, 0]])
        contexts = torch.cat([train[TARGET_CONTEXT_FIELD], train[ITEM_CONTEXT_FIELD][:, 0]])
        # An example of length 1 starts at the user's first click, which is training input
        # but never a training target.
        first_click = torch.cat([torch.ones(len(train), dtype=torch.bool),
                                 train[self.item_list_length_field] == 1])
        alpha = self.config["graph_alpha"]
        alpha = 1.0 if alpha is None else float(alpha)
        self.query_item_graph = build_query_item_graph(
            items[first_click].numpy(), contexts[first_click].numpy(),
            self.item_num, self.num_queries - 1, alpha)
        self.train_item_counts = torch.bincount(train[self.iid_field], minlength=self.item_num)
        self.train_word_counts = self._train_word_counts(train)
        for dataset in datasets:
            dataset.query_item_graph = self.query_item_graph
            dataset.train_item_counts = self.train_item_counts
            dataset.train_word_counts = self.train_word_counts
        return datasets

    def _train_word_counts(self, train):
        """``[num_words]``: occurrences of each word in the query events of the training split
        (each event once, see :func:`training_query_events`); the queries of the validation and
        test inputs are never counted."""
        order = np.lexsort((train[self.time_field].numpy(),
                            train[self.item_list_length_field].numpy(),
                            train[self.uid_field].numpy()))
        users = train[self.uid_field].numpy()[order]
        first = np.zeros(len(train), dtype=bool)
        first[order[np.r_[True, users[1:] != users[:-1]]]] = True
        owned = training_query_events(train, torch.from_numpy(first))
        return count_query_words(train[EVENT_QUERY_FIELD][owned], self.query_words,
                                 self.num_words)
