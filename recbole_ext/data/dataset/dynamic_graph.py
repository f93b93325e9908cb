"""Dataset plugin of DGSR: the time-stamped user-item graph as two time-sorted CSR indexes.

Reference: Mengqi Zhang, Shu Wu, Xueli Yu, Qiang Liu, Liang Wang. "Dynamic Graph Neural Networks
for Sequential Recommendation." IEEE TKDE 2022 (Section 4.1, dynamic graph construction).

Every interaction is the paper's quintuple (u, i, t, o_u^i, o_i^u): ``o_u^i`` is the 1-based
position of item i among the items of u in time order, ``o_i^u`` the position of u among the users
of i. Ties in time are broken deterministically by the order of the events in RecBole's
(user, time)-sorted log, which is also the order of the user's own prefix.

Examples, targets and split are exactly those of RecBole's ``SequentialDataset``; each split's
examples are numbered (``dgsr_example``) so that the sampler can cache evaluation sub-graphs. The graph is
built once, in :meth:`DynamicGraphDataset.build`:

- ``dgsr_graph_source: strict`` (default): from the interactions of the **training split** only,
  so no edge of the validation or test split is ever message structure;
- ``dgsr_graph_source: full_log``: from the whole log (the paper's setting, where other users'
  validation/test interactions before the prediction time are message structure). The sampler
  still keeps only edges strictly before each example's prediction time.
"""

from dataclasses import dataclass

import numpy as np
import torch

from recbole.data.interaction import Interaction

from recbole_ext.data.dataset.base import ExtSequentialDataset

GRAPH_SOURCES = ("strict", "full_log")
EXAMPLE_FIELD = "dgsr_example"  # row number of an example inside its split (keys the evaluation cache)


@dataclass
class TimeSortedCSR:
    """Neighbours of every node sorted by (time, tie order).

    ``keys[e] = node * stride + time_rank[e]`` is globally sorted, so one ``searchsorted`` finds,
    for any (node, time) pair, where that node's edges strictly before the time end.
    """

    indptr: torch.Tensor  # [num_nodes + 1] long
    neighbors: torch.Tensor  # [E] long, the other end of each edge
    times: torch.Tensor  # [E] float64
    orders: torch.Tensor  # [E] long, 1-based position of the edge in its node's list (o)
    keys: torch.Tensor  # [E] long
    stride: int

    @property
    def num_edges(self):
        return int(self.neighbors.numel())


def build_time_sorted_csr(src, dst, time_rank, times, tie, num_nodes, stride):
    """CSR of ``src -> dst`` edges sorted by (src, time, tie); all inputs are 1-d numpy arrays."""
    order = np.lexsort((tie, time_rank, src))
    src, dst, time_rank, times = src[order], dst[order], time_rank[order], times[order]
    counts = np.bincount(src, minlength=num_nodes)
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    # position of each edge inside its node's segment, 1-based as the paper counts orders
    orders = np.arange(len(src), dtype=np.int64) - indptr[src] + 1
    return TimeSortedCSR(
        indptr=torch.from_numpy(indptr),
        neighbors=torch.from_numpy(dst.astype(np.int64)),
        times=torch.from_numpy(times.astype(np.float64)),
        orders=torch.from_numpy(orders),
        keys=torch.from_numpy(src.astype(np.int64) * stride + time_rank.astype(np.int64)),
        stride=stride,
    )


def events_of_examples(inter_feat, uid_field, iid_field, time_field, item_list_field, time_list_field, length_field):
    """The interactions covered by a set of RecBole examples, in the log's deterministic order.

    The targets of the examples, plus each user's first interaction (which is never a target:
    it is item 0 of the user's length-1 example). Returns numpy arrays (user, item, time, tie)
    where ``tie`` ranks events by (user, position in the user's log).
    """
    users = inter_feat[uid_field].numpy()
    items = inter_feat[iid_field].numpy()
    times = inter_feat[time_field].numpy().astype(np.float64)
    first = (inter_feat[length_field] == 1).numpy()
    # a stable sort by user keeps each user's examples in log order
    row_rank = np.empty(len(users), dtype=np.int64)
    row_rank[np.argsort(users, kind="stable")] = np.arange(len(users))
    first_users = users[first]
    first_items = inter_feat[item_list_field][:, 0].numpy()[first]
    first_times = inter_feat[time_list_field][:, 0].numpy().astype(np.float64)[first]
    all_users = np.concatenate([users, first_users])
    all_items = np.concatenate([items, first_items])
    all_times = np.concatenate([times, first_times])
    # the first item goes just before the target of its length-1 example
    position = np.concatenate([2 * row_rank + 1, 2 * row_rank[first]])
    tie = np.empty(len(position), dtype=np.int64)
    tie[np.lexsort((position, all_users))] = np.arange(len(position))
    return all_users.astype(np.int64), all_items.astype(np.int64), all_times, tie


def build_dynamic_graph(users, items, times, tie, num_users, num_items):
    """Both CSR indexes (user -> items, item -> users) and the sorted distinct edge times."""
    time_values = np.unique(times)
    time_rank = np.searchsorted(time_values, times)
    stride = len(time_values) + 1  # a query rank can equal len(time_values)
    user_csr = build_time_sorted_csr(users, items, time_rank, times, tie, num_users, stride)
    item_csr = build_time_sorted_csr(items, users, time_rank, times, tie, num_items, stride)
    return user_csr, item_csr, torch.from_numpy(time_values)


class DynamicGraphDataset(ExtSequentialDataset):
    """RecBole's sequential examples plus ``user_csr``, ``item_csr`` and ``edge_time_values``."""

    def _load_inter_feat(self, token, dataset_path):
        """Times are shifted to start at 0 before RecBole stores them as float32: epoch seconds
        (~1.7e9) in float32 are multiples of 128 s, so events minutes apart would tie and the
        strict ``< t`` filter would drop a user's own latest edges from its items' windows (the
        shift keeps whole seconds exact over 194 days; order, examples and split are unchanged)."""
        super()._load_inter_feat(token, dataset_path)
        time_field = self.config["TIME_FIELD"]
        if time_field in self.inter_feat and len(self.inter_feat):
            times = self.inter_feat[time_field].to_numpy(dtype=np.float64)
            self.inter_feat[time_field] = times - np.floor(times.min())

    def build(self):
        source = self.config["dgsr_graph_source"] or "strict"
        if source not in GRAPH_SOURCES:
            raise ValueError(f"dgsr_graph_source must be one of {GRAPH_SOURCES}, got {source!r}")
        datasets = super().build()
        graph_examples = datasets[0].inter_feat if source == "strict" else self.inter_feat
        users, items, times, tie = events_of_examples(
            graph_examples,
            self.uid_field,
            self.iid_field,
            self.time_field,
            self.item_id_list_field,
            getattr(self, f"{self.time_field}_list_field"),
            self.item_list_length_field,
        )
        self.user_csr, self.item_csr, self.edge_time_values = build_dynamic_graph(
            users, items, times, tie, self.user_num, self.item_num
        )
        self.graph_source = source
        for split in datasets:
            split.inter_feat.update(Interaction({EXAMPLE_FIELD: torch.arange(len(split.inter_feat))}))
        self.dgsr_splits = datasets  # the sampler caches the evaluation splits' sub-graphs
        return datasets
