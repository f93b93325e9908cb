"""DGSR's sub-graph sampling (Algorithm 1 of the paper) as a batch transform, vectorised over the batch.

Reference: Zhang et al., "Dynamic Graph Neural Networks for Sequential Recommendation", TKDE 2022,
Section 4.2.

For an example (user u, prediction time t) the sub-graph is grown breadth-first from u. One rule
for every node: an expanded node keeps its n most recent edges **strictly before t**
(:func:`neighbour_window`: n = ``max_neighbors``, or ``MAX_ITEM_LIST_LENGTH`` when unset). u's
edges are its own prefix (``item_id_list``/``timestamp_list``, exactly what sequential baselines
see), every other node's come from the dataset plugin's time-sorted CSR indexes. With
``time_window: user`` (the authors') edges older than the oldest item of u's own window are left
out too; ``neighbour_cap`` bounds how many newly reached users are expanded per hop (the most
recently active ones; the rest stay as leaves). A node reached at hop h is expanded only while
``h < min(n_layers, 2 * subgraph_order - 1)``:

- ``subgraph_order`` m bounds the radius to 2m-1 hops (the user's items, then m-1 rounds of
  "users of those items, items of those users"), as the authors' ``k_hop``;
- beyond ``n_layers`` hops nothing is expanded, and this is exact: after L layers, u's state
  depends on a node at hop h only through that node's state at layer L-h, so in-edges of nodes at
  hop >= L never reach u (nodes at hop L are still included, for their layer-0 embeddings).

Nodes are deduplicated per example (a node keeps its first, shortest hop). The result is a set of
padded tensors with one row per example (so RecBole can slice, repeat and concatenate it):

- ``dgsr_user_nodes`` [B, U], ``dgsr_item_nodes`` [B, I]: global ids, 0 = padding, sorted by hop
  (the example's user is user node 0, expanded nodes come before leaves);
- ``dgsr_user_hop`` [B, U], ``dgsr_item_hop`` [B, I]: each node's hop (its distance to the user
  along message edges), -1 = padding; the model prunes with it;
- ``dgsr_user_nbr_index`` / ``dgsr_user_nbr_order`` [B, Ue, k]: for the first Ue user nodes,
  local indices into ``dgsr_item_nodes`` of their in-neighbours and the relative order r
  (0 = most recent edge, -1 = padding); entries are oldest first;
- ``dgsr_item_nbr_index`` / ``dgsr_item_nbr_order`` [B, Ie, k]: the same for item nodes.

No Python loop over examples or nodes: one loop over hop levels (at most ``n_layers``), each a
handful of ``searchsorted``/``unique``/scatter calls over the whole batch.
"""

import torch

from recbole.data.interaction import Interaction

from recbole_ext.data.dataset.dynamic_graph import EXAMPLE_FIELD


def expanded_levels(n_layers, subgraph_order):
    """How many hop levels (0, 1, ...) get their in-edges."""
    return max(1, min(int(n_layers), 2 * int(subgraph_order) - 1))


def fixed_sizes(levels, max_neighbors, num_users, num_items):
    """Batch-independent paddings (U, I, Ue, Ie): every example then has the same trailing shapes.

    Hop h holds at most ``max_neighbors ** h`` nodes; users sit at even hops, items at odd ones.
    ``num_users``/``num_items`` count RecBole's padding id 0, hence the ``- 1``.
    """
    hop_cap = [max_neighbors**h for h in range(levels + 1)]
    users = min(num_users - 1, sum(hop_cap[0::2]))
    items = min(num_items - 1, sum(hop_cap[1::2]))
    expanded_users = min(num_users - 1, sum(hop_cap[0:levels:2]))
    expanded_items = min(num_items - 1, sum(hop_cap[1:levels:2])) if levels > 1 else 0
    return users, items, expanded_users, max(expanded_items, 1)


def _csr_window(csr, nodes, query_rank, k, lower_rank=None):
    """The <= k most recent edges of each node strictly before its query time (oldest first),
    and, with ``lower_rank``, not before that time rank (the time window).

    Returns edge positions [F, k] (0 where padded), a validity mask and the relative order
    r = (number of kept edges) - o, i.e. 0 for the most recent edge.
    """
    offsets = torch.arange(k)
    if csr.num_edges == 0 or nodes.numel() == 0:
        empty = torch.zeros(nodes.numel(), k, dtype=torch.long)
        return empty, empty.bool(), empty - 1
    hi = torch.searchsorted(csr.keys, nodes * csr.stride + query_rank)
    lo = torch.maximum(csr.indptr[nodes], hi - k)
    if lower_rank is not None:
        lo = torch.maximum(lo, torch.searchsorted(csr.keys, nodes * csr.stride + lower_rank))
    valid = offsets < (hi - lo).unsqueeze(1)
    positions = torch.where(valid, lo.unsqueeze(1) + offsets, 0)
    rel_order = torch.where(valid, hi.unsqueeze(1) - 1 - positions, -1)
    return positions, valid, rel_order


def _prefix_window(seq_items, seq_times, seq_len, k):
    """The user's own <= k most recent prefix items (oldest first), same layout as _csr_window."""
    batch = seq_items.size(0)
    offsets = torch.arange(k)
    lo = (seq_len - k).clamp(min=0)
    valid = offsets < (seq_len - lo).unsqueeze(1)
    positions = torch.where(valid, lo.unsqueeze(1) + offsets, 0).clamp(max=max(seq_items.size(1) - 1, 0))
    rows = torch.arange(batch).unsqueeze(1)
    nbr = torch.where(valid, seq_items[rows, positions], 0)
    times = torch.where(valid, seq_times[rows, positions].double(), 0.0)
    rel_order = torch.where(valid, seq_len.unsqueeze(1) - 1 - (lo.unsqueeze(1) + offsets), -1)
    return nbr, times, valid, rel_order


class _NodeSet:
    """The (example, node) pairs of one node type, deduplicated, with the hop of first arrival.

    ``capped`` marks nodes left out of the expansion by the ``neighbour_cap``: they stay in the
    sub-graph as leaves (with the edges that reached them) and are laid out after the expanded
    nodes of their hop.
    """

    def __init__(self, num_ids):
        self.base = num_ids + 1
        self.keys = torch.empty(0, dtype=torch.long)  # sorted example * base + id
        self.hops = torch.empty(0, dtype=torch.long)
        self.capped = torch.empty(0, dtype=torch.bool)

    def new_pairs(self, examples, ids):
        """The distinct pairs among (examples, ids) that are not registered yet, as sorted keys."""
        candidates = torch.unique(examples * self.base + ids)
        return candidates[~torch.isin(candidates, self.keys)]

    def add(self, examples, ids, hop, capped_keys=None):
        """Register new pairs; returns the (examples, ids) to expand next (new and not capped)."""
        new = self.new_pairs(examples, ids)
        capped = torch.zeros_like(new, dtype=torch.bool) if capped_keys is None else torch.isin(new, capped_keys)
        keys = torch.cat([self.keys, new])
        order = torch.argsort(keys)
        self.keys = keys[order]
        self.hops = torch.cat([self.hops, torch.full_like(new, hop)])[order]
        self.capped = torch.cat([self.capped, capped])[order]
        expand = new[~capped]
        return expand // self.base, expand % self.base

    def local_layout(self, batch, levels):
        """Local index of every pair (sorted by example, hop, capped, id) and the per-example counts."""
        examples, ids = self.keys // self.base, self.keys % self.base
        rank = 2 * self.hops + self.capped.long()
        layout = torch.argsort((examples * (2 * levels + 4) + rank) * self.base + ids)
        counts = torch.bincount(examples, minlength=batch)
        starts = torch.cumsum(counts, 0) - counts
        local = torch.empty_like(self.keys)
        local[layout] = torch.arange(self.keys.numel()) - starts[examples[layout]]
        return local, counts

    def lookup(self, local, examples, ids):
        """Local index of given pairs (which must be present)."""
        if self.keys.numel() == 0:
            return torch.zeros_like(ids)
        position = torch.searchsorted(self.keys, examples * self.base + ids)
        return local[position.clamp(max=max(self.keys.numel() - 1, 0))]


def _scatter_nodes(node_set, local, counts, batch, width):
    """Node ids [B, width] (0 = padding) and their hops (-1 = padding)."""
    out = torch.zeros(batch, max(width, 1), dtype=torch.long)
    hops = torch.full((batch, max(width, 1)), -1, dtype=torch.long)
    examples, ids = node_set.keys // node_set.base, node_set.keys % node_set.base
    out[examples, local] = ids
    hops[examples, local] = node_set.hops
    return out, hops


def _capped_out(node_set, examples, ids, times, cap):
    """Keys of the newly reached nodes beyond the ``cap`` most recent per example.

    A node's recency is its latest edge into the sub-graph (all edges are before the prediction
    time); ties go to the smaller id.
    """
    new = node_set.new_pairs(examples, ids)
    if new.numel() == 0:
        return new
    keys = examples * node_set.base + ids
    is_new = torch.isin(keys, new)
    keys, times = keys[is_new], times[is_new]
    slot = torch.searchsorted(new, keys)
    latest = torch.full((new.numel(),), float("-inf"), dtype=torch.float64)
    latest = latest.scatter_reduce(0, slot, times.double(), reduce="amax")
    owner = new // node_set.base
    # by example, then newest first, then id (the keys are sorted by example and id already)
    time_rank = torch.unique(latest, return_inverse=True)[1]
    order = torch.argsort(owner * (new.numel() + 1) + (time_rank.max() - time_rank), stable=True)
    counts = torch.bincount(owner, minlength=int(owner.max()) + 1)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel()) - starts[owner[order]]
    return new[rank >= cap]


def _scatter_rows(rows, node_set, local, batch, width, k, other_set, other_local, with_times):
    index = torch.zeros(batch, max(width, 1), k, dtype=torch.long)
    order = torch.full((batch, max(width, 1), k), -1, dtype=torch.long)
    times = torch.zeros(batch, max(width, 1), k, dtype=torch.float64) if with_times else None
    if rows:
        examples = torch.cat([r[0] for r in rows])
        nodes = torch.cat([r[1] for r in rows])
        nbr = torch.cat([r[2] for r in rows])
        valid = torch.cat([r[3] for r in rows])
        rel = torch.cat([r[4] for r in rows])
        row_local = node_set.lookup(local, examples, nodes)
        # only the real neighbours are looked up (most slots of item rows are padding)
        nbr_local = torch.zeros_like(nbr)
        nbr_local[valid] = other_set.lookup(other_local, examples.unsqueeze(1).expand_as(nbr)[valid], nbr[valid])
        index[examples, row_local] = nbr_local
        order[examples, row_local] = rel
        if with_times:
            times[examples, row_local] = torch.where(valid, torch.cat([r[5] for r in rows]), 0.0)
    return index, order, times


def sample_subgraphs(
    user_csr,
    item_csr,
    edge_time_values,
    user_ids,
    seq_items,
    seq_times,
    seq_len,
    pred_time,
    num_users,
    num_items,
    max_neighbors,
    levels,
    pad_to=None,
    return_times=False,
    neighbour_cap=0,
    time_window="all",
):
    """Sub-graphs of a batch of examples; see the module docstring for the layout.

    ``pad_to`` = (U, I, Ue, Ie) pads to fixed widths instead of the batch maximum;
    ``return_times`` adds ``dgsr_user_nbr_time``/``dgsr_item_nbr_time`` (edge timestamps, for tests);
    ``neighbour_cap`` (0: none) expands at most that many newly reached users per example and hop;
    ``time_window`` 'user' keeps only edges not older than the oldest item of the user's own
    window, 'all' every edge before the prediction time.
    """
    batch = user_ids.numel()
    k = int(max_neighbors)
    examples = torch.arange(batch)
    # number of distinct graph times < t: edge rank < query rank  <=>  edge time < t
    query_rank = torch.searchsorted(edge_time_values, pred_time.double().contiguous())
    users, items = _NodeSet(num_users), _NodeSet(num_items)
    users.add(examples, user_ids, 0)
    user_rows, item_rows = [], []

    nbr, nbr_times, valid, rel = _prefix_window(seq_items, seq_times, seq_len, k)
    user_rows.append((examples, user_ids, nbr, valid, rel, nbr_times))
    lower_rank = None
    if time_window == "user":
        # the oldest item of the user's own window (entries are oldest first) opens the window
        lower_rank = torch.searchsorted(edge_time_values, nbr_times[:, 0].contiguous())
    frontier = items.add(examples.unsqueeze(1).expand_as(nbr)[valid], nbr[valid], 1)
    for hop in range(1, levels):
        frontier_examples, frontier_nodes = frontier
        if frontier_nodes.numel() == 0:
            break
        # items sit at odd hops and look up their users, users at even hops their items
        csr, this_set, other_set, rows = (
            (item_csr, items, users, item_rows) if hop % 2 == 1 else (user_csr, users, items, user_rows)
        )
        window_lower = None if lower_rank is None else lower_rank[frontier_examples]
        positions, valid, rel = _csr_window(csr, frontier_nodes, query_rank[frontier_examples], k, window_lower)
        nbr = torch.where(valid, csr.neighbors[positions], 0)
        nbr_times = torch.where(valid, csr.times[positions], 0.0)
        rows.append((frontier_examples, frontier_nodes, nbr, valid, rel, nbr_times))
        reached_examples, reached = frontier_examples.unsqueeze(1).expand_as(nbr)[valid], nbr[valid]
        capped = None
        if neighbour_cap and hop % 2 == 1 and hop + 1 < levels:
            # newly reached users that would be expanded: keep the neighbour_cap most recent
            capped = _capped_out(other_set, reached_examples, reached, nbr_times[valid], neighbour_cap)
        frontier = other_set.add(reached_examples, reached, hop + 1, capped)

    user_local, user_counts = users.local_layout(batch, levels)
    item_local, item_counts = items.local_layout(batch, levels)
    if pad_to is None:
        pad_to = (
            int(user_counts.max()) if batch else 0,
            int(item_counts.max()) if batch else 0,
            _max_count(users, levels, batch),
            _max_count(items, levels, batch),
        )
    width_users, width_items, width_expanded_users, width_expanded_items = pad_to
    user_nbr_index, user_nbr_order, user_nbr_time = _scatter_rows(
        user_rows, users, user_local, batch, width_expanded_users, k, items, item_local, return_times
    )
    item_nbr_index, item_nbr_order, item_nbr_time = _scatter_rows(
        item_rows, items, item_local, batch, width_expanded_items, k, users, user_local, return_times
    )
    user_nodes, user_hops = _scatter_nodes(users, user_local, user_counts, batch, width_users)
    item_nodes, item_hops = _scatter_nodes(items, item_local, item_counts, batch, width_items)
    out = {
        "dgsr_user_nodes": user_nodes,
        "dgsr_item_nodes": item_nodes,
        "dgsr_user_hop": user_hops,
        "dgsr_item_hop": item_hops,
        "dgsr_user_nbr_index": user_nbr_index,
        "dgsr_user_nbr_order": user_nbr_order,
        "dgsr_item_nbr_index": item_nbr_index,
        "dgsr_item_nbr_order": item_nbr_order,
    }
    if return_times:
        out["dgsr_user_nbr_time"] = user_nbr_time
        out["dgsr_item_nbr_time"] = item_nbr_time
    return out


def _max_count(node_set, levels, batch):
    """Largest number of expanded nodes (hop < levels) of one type in one example."""
    expanded = (node_set.hops < levels) & ~node_set.capped
    if not bool(expanded.any()):
        return 0
    return int(torch.bincount(node_set.keys[expanded] // node_set.base, minlength=batch).max())


SUBGRAPH_FIELDS = (
    "dgsr_user_nodes", "dgsr_item_nodes", "dgsr_user_hop", "dgsr_item_hop",
    "dgsr_user_nbr_index", "dgsr_user_nbr_order", "dgsr_item_nbr_index", "dgsr_item_nbr_order",
)
# padding value of each field; the widths (U, I, Ue, Ie) index ``_WIDTH_OF``
_FILL = {"dgsr_user_hop": -1, "dgsr_item_hop": -1, "dgsr_user_nbr_order": -1, "dgsr_item_nbr_order": -1}
_WIDTH_OF = {"dgsr_user_nodes": 0, "dgsr_user_hop": 0, "dgsr_item_nodes": 1, "dgsr_item_hop": 1,
             "dgsr_user_nbr_index": 2, "dgsr_user_nbr_order": 2, "dgsr_item_nbr_index": 3, "dgsr_item_nbr_order": 3}


def subgraph_widths(fields):
    """The (U, I, Ue, Ie) a batch of sub-graphs needs: nodes are left-aligned, rows end at the last
    row holding an edge."""

    def last_row(order):
        holds = (order >= 0).any(-1)
        return int((holds * torch.arange(1, holds.size(1) + 1)).max()) if holds.numel() else 0

    return (
        int((fields["dgsr_user_hop"] >= 0).sum(1).max()) if len(fields["dgsr_user_hop"]) else 0,
        int((fields["dgsr_item_hop"] >= 0).sum(1).max()) if len(fields["dgsr_item_hop"]) else 0,
        last_row(fields["dgsr_user_nbr_order"]),
        last_row(fields["dgsr_item_nbr_order"]),
    )


def repad(fields, widths):
    """``fields`` cut or padded to ``widths`` (U, I, Ue, Ie); cutting only removes padding."""
    out = {}
    for name in SUBGRAPH_FIELDS:
        value = fields[name]
        width = max(int(widths[_WIDTH_OF[name]]), 1)
        if value.size(1) >= width:
            out[name] = value[:, :width]
        else:
            shape = (value.size(0), width, *value.shape[2:])
            wide = torch.full(shape, _FILL.get(name, 0), dtype=value.dtype)
            wide[:, : value.size(1)] = value
            out[name] = wide
    return out


class SubgraphCache:
    """An evaluation split's sub-graphs, computed once and reused by every evaluation.

    Evaluation sub-graphs are deterministic (no sampling randomness): each example's is computed
    once, in chunks, when the loader is built, and kept (int32, padded to the split's widest
    sub-graph) as long as the cache stays within ``bound_mb`` MiB; examples past the bound are
    sampled again at each call. ``widths`` are the split's maxima (the fixed widths of sampled
    evaluation).
    """

    def __init__(self, sample, split_interactions, bound_mb, chunk=1024):
        examples = split_interactions[EXAMPLE_FIELD]
        self.position = torch.full((int(examples.max()) + 1 if len(examples) else 1,), -1, dtype=torch.long)
        bound = int(bound_mb * 2**20)
        kept, kept_examples, kept_bytes = [], [], 0
        widths = (0, 0, 0, 0)
        for begin in range(0, len(examples), chunk):
            fields = sample(split_interactions[torch.arange(begin, min(begin + chunk, len(examples)))], None)
            widths = tuple(max(a, b) for a, b in zip(widths, subgraph_widths(fields)))
            per_example = sum(fields[name][0].numel() * 4 for name in SUBGRAPH_FIELDS)
            fit = min(len(fields[SUBGRAPH_FIELDS[0]]), (bound - kept_bytes) // per_example)
            if fit > 0:  # the examples that still fit (at this chunk's widths; re-checked below)
                kept.append({name: value[:fit] for name, value in fields.items()})
                kept_examples.append(examples[begin : begin + fit])
                kept_bytes += fit * per_example
        self.widths = widths
        self.fields = {name: torch.empty((0,), dtype=torch.int32) for name in SUBGRAPH_FIELDS}
        if kept:
            padded = [repad(fields, widths) for fields in kept]
            per_example = sum(padded[0][name][0].numel() * 4 for name in SUBGRAPH_FIELDS)
            keep = min(sum(len(e) for e in kept_examples), bound // max(per_example, 1))
            for name in SUBGRAPH_FIELDS:
                self.fields[name] = torch.cat([p[name] for p in padded])[:keep].to(torch.int32)
            self.position[torch.cat(kept_examples)[:keep]] = torch.arange(keep)
        self.size = len(self.fields[SUBGRAPH_FIELDS[0]])

    @property
    def nbytes(self):
        return sum(value.numel() * value.element_size() for value in self.fields.values())

    def lookup(self, interaction, sample):
        """Sub-graph fields of ``interaction``'s examples at the split's widths; misses are sampled."""
        examples = interaction[EXAMPLE_FIELD]
        position = self.position[examples.clamp(max=self.position.numel() - 1)]
        hit = position >= 0
        if bool(hit.all()):
            return {name: value[position].long() for name, value in self.fields.items()}
        missed = repad(sample(interaction[torch.nonzero(~hit, as_tuple=True)[0]], self.widths), self.widths)
        out = {}
        for name in SUBGRAPH_FIELDS:
            value = missed[name].new_empty((len(examples), *missed[name].shape[1:]))
            value[~hit] = missed[name]
            if bool(hit.any()):
                value[hit] = self.fields[name][position[hit]].long()
            out[name] = value
        return out


def _config_int(config, key, minimum):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


TIME_WINDOWS = ("user", "all")


def neighbour_window(config):
    """The one neighbourhood size n: every node, the example's user included, keeps its n most
    recent edges before the prediction time.

    ``max_neighbors`` when set, else ``MAX_ITEM_LIST_LENGTH`` (the prefix every sequential model
    reads). The user's own edges are its prefix, so n may not exceed ``MAX_ITEM_LIST_LENGTH``.
    """
    length = config["MAX_ITEM_LIST_LENGTH"]
    if config["max_neighbors"] is None:
        return length
    value = _config_int(config, "max_neighbors", 1)
    if value > length:
        raise ValueError(
            f"max_neighbors ({value}) must not exceed MAX_ITEM_LIST_LENGTH ({length}): the user's own "
            "window is its prefix; leave max_neighbors unset (~) to use MAX_ITEM_LIST_LENGTH for every node"
        )
    return value


def neighbourhood_switches(config):
    """(neighbour_cap, time_window), validated."""
    cap = config["neighbour_cap"]
    cap = 0 if cap is None else cap
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ValueError(f"neighbour_cap must be an integer >= 0 (0: no cap), got {cap!r}")
    window = config["time_window"] or "all"
    if window not in TIME_WINDOWS:
        raise ValueError(f"time_window must be one of {TIME_WINDOWS}, got {window!r}")
    return cap, window


class SubgraphSampler:
    """Batch transform: adds each example's sub-graph (the ``dgsr_*`` fields of the module docstring)."""

    def __init__(self, config, dataset, phase):
        for attribute in ("user_csr", "item_csr", "edge_time_values"):
            if not hasattr(dataset, attribute):
                raise ValueError(
                    f"SubgraphSampler needs a DynamicGraphDataset after build() (missing {attribute}); "
                    "run DGSR through recbole_ext's create_dataset/data_preparation"
                )
        self.user_csr, self.item_csr = dataset.user_csr, dataset.item_csr
        self.edge_time_values = dataset.edge_time_values
        self.num_users, self.num_items = dataset.user_num, dataset.item_num
        self.uid_field, self.time_field = dataset.uid_field, dataset.time_field
        self.item_list_field = dataset.item_id_list_field
        self.time_list_field = getattr(dataset, f"{dataset.time_field}_list_field")
        self.length_field = dataset.item_list_length_field
        self.max_neighbors = neighbour_window(config)
        self.neighbour_cap, self.time_window = neighbourhood_switches(config)
        self.levels = expanded_levels(_config_int(config, "n_layers", 0), _config_int(config, "subgraph_order", 1))
        self.pad_to = None
        self.cache = None
        mode = config["eval_args"]["mode"]
        mode = mode.get(phase, "full") if isinstance(mode, dict) else mode
        bound_mb = config["eval_subgraph_cache_mb"]
        bound_mb = 0 if bound_mb is None else bound_mb
        if isinstance(bound_mb, bool) or not isinstance(bound_mb, (int, float)) or bound_mb < 0:
            raise ValueError(f"eval_subgraph_cache_mb must be a number >= 0 (MiB), got {bound_mb!r}")
        splits = getattr(dataset, "dgsr_splits", None)
        if phase != "train" and splits is not None and bound_mb > 0:
            split = splits[1 if phase == "valid" else 2]
            self.cache = SubgraphCache(self._sample, split.inter_feat, bound_mb)
        if phase != "train" and not str(mode).startswith("full"):
            # sampled evaluation concatenates single-user transforms: widths must not vary
            self.pad_to = (
                self.cache.widths if self.cache is not None
                else fixed_sizes(self.levels, self.max_neighbors, self.num_users, self.num_items)
            )

    def __call__(self, dataset, interaction):
        if self.cache is not None and EXAMPLE_FIELD in interaction:
            fields = self.cache.lookup(interaction, self._sample)
            fields = repad(fields, self.pad_to or subgraph_widths(fields))
        else:
            fields = self._sample(interaction, self.pad_to)
        interaction.update(Interaction(fields))
        return interaction

    def _sample(self, interaction, pad_to):
        return sample_subgraphs(
            self.user_csr,
            self.item_csr,
            self.edge_time_values,
            interaction[self.uid_field],
            interaction[self.item_list_field],
            interaction[self.time_list_field],
            interaction[self.length_field],
            interaction[self.time_field],
            self.num_users,
            self.num_items,
            self.max_neighbors,
            self.levels,
            pad_to=pad_to,
            neighbour_cap=self.neighbour_cap,
            time_window=self.time_window,
        )
