"""Dataset plugin of MA-GNN (Ma et al., "Memory Augmented Graph Neural Networks for Sequential
Recommendation", AAAI 2020).

Adds, on top of RecBole's ``SequentialDataset``:

* the users' **training sequences** in CSR form (``magnn_seq_items`` / ``magnn_seq_offsets``), from
  which the batch transform reads the ``|T|`` targets that follow an example's window and the items
  excluded from negative sampling;
* the **item co-occurrence graph** of the paper ("Item Graph Construction"): every item is linked to
  the next ``cooccurrence_span`` items of each training sequence, the pair counts are summed over
  users, self pairs dropped, and the rows normalised. It is kept as a top-m neighbour table (for the
  literal Eq. 1, neighbours from the whole graph) and as sorted ``row * n_items + col`` keys (for
  looking up the weight of any pair, used by the window-only neighbour option).

The training part of a user's sequence is what the training split holds, under any
``eval_protocol`` (:mod:`recbole_ext.data.protocol`: RecBole's split under ``next_item``, the
first part of each user's sequence under ``magnn``/``paper``, ``hugt`` and ``dgsr``); an example's
extra targets never reach past it.

Every structure is computed from the training part only.
"""

import numpy as np
import scipy.sparse as sp
import torch
from recbole.data.interaction import Interaction

from recbole_ext.data.dataset.base import ExtSequentialDataset

# Fields added to the examples (by build() or by the batch transform).
TARGET_POSITION_FIELD = "magnn_target_position"  # index of the example's first target in the user's sequence
WINDOW_FIELD = "magnn_window"  # [B, |L|] short-term window, right-aligned, 0 = padding
HISTORY_FIELD = "magnn_history"  # [B, history cap] earlier items, right-aligned, 0 = padding
TARGETS_FIELD = "magnn_targets"  # [B, |T|] targets, 0 = none (past the training part)
NEGATIVES_FIELD = "magnn_negatives"  # [B, |T|] one sampled negative per target


def _require_int(config, key, minimum):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"MAGNN: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def validate_magnn_config(config):
    """Check the keys the data side of MA-GNN reads; one ValueError naming the key."""
    for key, minimum in (
        ("window_length", 1), ("target_length", 1), ("history_length", 0),
        ("cooccurrence_span", 1), ("graph_neighbours", 1),
    ):
        _require_int(config, key, minimum)
    if not isinstance(config["graph_symmetric"], bool):
        raise ValueError(f"MAGNN: 'graph_symmetric' must be True or False, got {config['graph_symmetric']!r}")


def build_cooccurrence_graph(seq_items, seq_offsets, seq_lengths, n_items, span=3, symmetric=True):
    """Row-normalised item co-occurrence matrix (scipy CSR, ``n_items x n_items``).

    ``seq_items[seq_offsets[u] : seq_offsets[u] + seq_lengths[u]]`` is the part of user ``u``'s
    sequence that may be counted. Each item is paired with each of the next ``span`` items;
    with ``symmetric`` both directions are counted. Self pairs and padding (item 0) are dropped.
    """
    seq_items = np.asarray(seq_items, dtype=np.int64)
    seq_offsets = np.asarray(seq_offsets, dtype=np.int64)
    seq_lengths = np.asarray(seq_lengths, dtype=np.int64)
    n_users = len(seq_lengths)
    # per flat position: owning user and position inside the user's sequence
    owner = np.repeat(np.arange(n_users), np.diff(seq_offsets))
    position = np.arange(len(seq_items)) - seq_offsets[owner]
    countable = position < seq_lengths[owner]
    rows, cols = [], []
    for step in range(1, span + 1):  # loop over the span (3), never over users or items
        if step >= len(seq_items):
            break
        same_user = (owner[:-step] == owner[step:]) & countable[:-step] & countable[step:]
        rows.append(seq_items[:-step][same_user])
        cols.append(seq_items[step:][same_user])
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    if symmetric:
        rows, cols = np.concatenate([rows, cols]), np.concatenate([cols, rows])
    keep = (rows != cols) & (rows > 0) & (cols > 0)
    counts = sp.coo_matrix(
        (np.ones(keep.sum()), (rows[keep], cols[keep])), shape=(n_items, n_items)
    ).tocsr()  # duplicates are summed
    counts.sort_indices()
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    inverse = np.divide(1.0, row_sums, out=np.zeros_like(row_sums), where=row_sums > 0)
    return sp.diags(inverse) @ counts


def top_neighbour_table(graph, m):
    """The ``m`` heaviest neighbours of every row of a CSR graph: (items [I, m], weights [I, m]).

    Ties are broken by the smaller item id; missing entries are item 0 with weight 0. Weights keep
    the row normalisation of the full graph (they sum to less than 1 where a row is truncated).
    """
    graph = graph.tocsr()
    n_rows = graph.shape[0]
    row_of = np.repeat(np.arange(n_rows), np.diff(graph.indptr))
    order = np.lexsort((graph.indices, -graph.data, row_of))
    rank = np.arange(len(order)) - graph.indptr[row_of[order]]
    kept, kept_rank = order[rank < m], rank[rank < m]
    items = np.zeros((n_rows, m), dtype=np.int64)
    weights = np.zeros((n_rows, m), dtype=np.float32)
    items[row_of[kept], kept_rank] = graph.indices[kept]
    weights[row_of[kept], kept_rank] = graph.data[kept]
    return torch.from_numpy(items), torch.from_numpy(weights)


def graph_pair_keys(graph):
    """Sorted ``row * n_cols + col`` keys and their weights, for exact lookup of any pair."""
    graph = graph.tocsr()
    graph.sort_indices()
    row_of = np.repeat(np.arange(graph.shape[0], dtype=np.int64), np.diff(graph.indptr))
    keys = row_of * graph.shape[1] + graph.indices.astype(np.int64)
    return torch.from_numpy(keys), torch.from_numpy(graph.data.astype(np.float32))


def sorted_user_item_keys(seq_items, seq_offsets, seq_lengths, n_items):
    """Sorted unique ``user * n_items + item`` keys of the counted part of each user's sequence."""
    seq_offsets = np.asarray(seq_offsets, dtype=np.int64)
    owner = np.repeat(np.arange(len(seq_lengths)), np.diff(seq_offsets))
    position = np.arange(len(seq_items)) - seq_offsets[owner]
    countable = position < np.asarray(seq_lengths)[owner]
    keys = owner[countable] * n_items + np.asarray(seq_items, dtype=np.int64)[countable]
    return np.unique(keys)


class MultiTargetDataset(ExtSequentialDataset):
    """``SequentialDataset`` with MA-GNN's training sequences, multi-target positions and item graph."""

    def __init__(self, config):
        validate_magnn_config(config)
        super().__init__(config)

    # ------------------------------------------------------------------ build
    def build(self):
        datasets = super().build()  # the split of config['eval_protocol']
        self._build_training_sequences(datasets[0])
        self._build_graph()
        shared = {name: getattr(self, name) for name in vars(self) if name.startswith("magnn_")}
        for dataset in datasets:  # the splits are shallow copies made before these existed
            for name, value in shared.items():
                setattr(dataset, name, value)
        return datasets

    def _set_sequences(self, seq_items, seq_lengths, train_lengths):
        """Store the per-user sequences (CSR) and how much of each belongs to the training part."""
        self.magnn_seq_items = torch.as_tensor(seq_items, dtype=torch.long)
        self.magnn_seq_offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(seq_lengths)]), dtype=torch.long)
        self.magnn_train_lengths = torch.as_tensor(train_lengths, dtype=torch.long)
        self.magnn_train_keys = torch.from_numpy(
            sorted_user_item_keys(seq_items, self.magnn_seq_offsets.numpy(), train_lengths, self.item_num)
        )

    def _build_training_sequences(self, train):
        """Training sequences from RecBole's training examples, and each example's target position.

        A user's training part is the prefix of the user's first training example followed by the
        targets of all training examples, in time order (RecBole's ordered splits and the
        protocols but ``embsr`` keep every user's training examples contiguous from the start).
        """
        feat = train.inter_feat
        users = feat[self.uid_field].numpy()
        order = np.argsort(users, kind="stable")
        users = users[order]
        targets = feat[self.iid_field].numpy()[order]
        prefixes = feat[self.item_id_list_field]  # only the users' first rows are read
        lengths = feat[self.item_list_length_field].numpy()[order]
        n_rows = len(users)
        first_of_user = np.ones(n_rows, dtype=bool)
        first_of_user[1:] = users[1:] != users[:-1]
        # each example contributes its target; a user's first example also its prefix before it
        emitted_per_row = 1 + np.where(first_of_user, lengths, 0)
        row_start = np.cumsum(emitted_per_row) - emitted_per_row
        target_flat = row_start + emitted_per_row - 1
        seq_items = np.zeros(int(emitted_per_row.sum()), dtype=np.int64)
        seq_items[target_flat] = targets
        first_rows = np.flatnonzero(first_of_user)
        first_prefixes = prefixes[torch.from_numpy(order[first_rows])].numpy()
        columns = np.arange(first_prefixes.shape[1])
        in_prefix = columns[None, :] < lengths[first_rows, None]
        prefix_flat = row_start[first_rows, None] + columns[None, :]
        seq_items[prefix_flat[in_prefix]] = first_prefixes[in_prefix]
        seq_lengths = np.bincount(users, weights=emitted_per_row, minlength=self.user_num).astype(np.int64)
        # position of each example's target inside its user's sequence
        user_start = np.concatenate([[0], np.cumsum(seq_lengths)])[users]
        position = np.empty(n_rows, dtype=np.int64)
        position[order] = target_flat - user_start
        self._set_sequences(seq_items, seq_lengths, seq_lengths)
        train.inter_feat.update(Interaction({TARGET_POSITION_FIELD: torch.from_numpy(position)}))

    def _build_graph(self):
        graph = build_cooccurrence_graph(
            self.magnn_seq_items.numpy(), self.magnn_seq_offsets.numpy(), self.magnn_train_lengths.numpy(),
            self.item_num, self.config["cooccurrence_span"], self.config["graph_symmetric"],
        )
        self.magnn_graph = graph
        self.magnn_neighbours, self.magnn_neighbour_weights = top_neighbour_table(graph, self.config["graph_neighbours"])
        self.magnn_pair_keys, self.magnn_pair_weights = graph_pair_keys(graph)
