r"""
DGSR
################################################

Reference:
    Mengqi Zhang, Shu Wu, Xueli Yu, Qiang Liu, Liang Wang. "Dynamic Graph Neural Networks for
    Sequential Recommendation." IEEE Transactions on Knowledge and Data Engineering, 2022.

Each example (user u, prediction time t) is answered on its own sub-graph of the time-stamped
user-item graph (sampled by :class:`recbole_ext.data.dataloader.subgraph_sampler.SubgraphSampler`).
``n_layers`` Dynamic Graph Attention layers update the user and item nodes of the sub-graph from
their in-neighbours (Eqs. 1-10): a long-term ("global") attention whose keys and values carry
relative-order embeddings, a short-term ("local") summary of the neighbours in time order, and
an update ``tanh(W [global || local || previous state])``. The readout concatenates u's states
over the layers and scores every item by ``(W_P h_u) . e_i`` (Eqs. 11-12), trained with
cross-entropy over all items.

Cost (exact, issue 13): the padded sub-graph tensors become flat edge lists (segment softmax and
index_add_ from ``recbole_ext.model.layers``); layer l updates only the nodes within L - l hops of
u (no other node can still reach u); the GRU (``nn.GRU``'s recurrence and parameters) runs without
padding, over the rows still that long at each step, with its input projection computed once per
neighbour node, and at layer 1, where inputs are embeddings, once per distinct neighbour sequence
of the batch. Outputs and gradients equal the padded implementation (``tests/test_dgsr_exact.py``).
Nothing leaves the tensors' device.

Switches (``properties/model/DGSR.yaml``): ``propagation`` (dgsr / gat / gcn: DGSR-GAT and
DGSR-GCN, with GCN's symmetric degree normalisation), ``aggregation`` (global_local / global /
local: DGSR-Global and DGSR-Local), ``local_mode`` (gru as Eq. 6 / last_attention as the authors'
code), ``readout_with_h0`` (Eq. 11 includes h^(0); the code leaves it out), ``readout_last_item``
(none as Eq. 11 / embedding: the newest prefix item's embedding appended, as DGSR-0 reads it /
state: its state after layer L-1; the authors' ``--last_item`` appends its layer-L state),
``user_id_embedding`` (True as the paper: users start from an id embedding / False: from zeros,
known by their items only), ``n_layers`` (0 is DGSR-0: user and last-item embeddings, the user's
only with ``user_id_embedding``); the sampler's ``subgraph_order``, ``max_neighbors``,
``neighbour_cap``, ``time_window``, ``dgsr_graph_source`` and ``eval_subgraph_cache_mb``.
The defaults of ``readout_last_item`` (embedding) and ``user_id_embedding`` (False) are not the
paper's: they were chosen on validation on ``synthetic`` (figures in the yaml); the id embedding
memorises each user's training targets.
"""

import math

import torch
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.loss import BPRLoss

from recbole_ext.data.dataloader.subgraph_sampler import neighbour_window
from recbole_ext.model.layers import segment_softmax, segment_sum

PROPAGATIONS = ("dgsr", "gat", "gcn")
AGGREGATIONS = ("global_local", "global", "local")
LOCAL_MODES = ("gru", "last_attention")
LAST_ITEM_READOUTS = ("none", "embedding", "state")


def _choice(config, key, choices):
    value = config[key]
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {value!r}")
    return value


def _positive_int(config, key, minimum):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


class EdgeList:
    """One direction of the sub-graphs as a flat edge list, built once per batch from the padded rows.

    Edge e carries neighbour ``src[e]`` (an index into the other node type's compact states) into
    destination row ``dst[e]`` (an index into this type's compact states) with relative order
    ``order[e]`` (0 = most recent). Edges are sorted by destination, then oldest first, so each
    destination's neighbours are one contiguous, time-ordered run (what the GRU reads).
    """

    def __init__(self, nodes_width, other_width, index, order, node_map, other_map, hops):
        """``node_map``/``other_map``: padded flat position -> compact node index; ``hops``: compact."""
        batch, rows, k = order.shape
        b, row, col = torch.nonzero(order >= 0, as_tuple=True)
        dst = node_map[b * nodes_width + row]
        order_values = order[b, row, col]
        # oldest first inside a row: a larger relative order is older
        key = dst * (k + 1) + (k - order_values)
        perm = torch.argsort(key)
        self.dst, self.order = dst[perm], order_values[perm]
        self.src = other_map[b * other_width + index[b, row, col]][perm]
        self.dst_hop = hops[self.dst]
        # GCN's symmetric normalisation on this direction's message graph (DGL GraphConv
        # norm='both'): 1 / sqrt(out-degree of the source * in-degree of the destination),
        # degrees counted over the whole sub-graph, before hop pruning
        in_degree = torch.bincount(self.dst)[self.dst]
        out_degree = torch.bincount(self.src)[self.src]
        self.gcn_norm = torch.rsqrt((in_degree * out_degree).to(torch.get_default_dtype()))

    def select(self, max_hop, live, src_position):
        """The edges whose destination is within ``max_hop`` hops of the user (hop pruning).

        ``live`` (sorted flat indices) are exactly those destination rows; the returned edges'
        ``dst`` is renumbered to positions in ``live``, so messages are computed for live rows only,
        and ``src`` through ``src_position`` (flat index -> row of the other type's current states).
        """
        keep = self.dst_hop <= max_hop
        sub = EdgeList.__new__(EdgeList)
        sub.order, sub.src, sub.dst_hop = self.order[keep], src_position[self.src[keep]], self.dst_hop[keep]
        sub.gcn_norm = self.gcn_norm[keep]
        sub.dst = torch.searchsorted(live, self.dst[keep])
        return sub


class NeighbourAggregator(nn.Module):
    """One direction of a DGAN layer (items -> user, or users -> item), over an edge list."""

    def __init__(self, hidden_size, max_neighbors, propagation, aggregation, local_mode, attn_dropout):
        super().__init__()
        self.scale = 1.0 / math.sqrt(hidden_size)
        self.propagation, self.local_mode = propagation, local_mode
        self.use_global = aggregation in ("global_local", "global")
        self.use_local = aggregation in ("global_local", "local")
        if propagation == "dgsr":
            # relative order r in [0, max_neighbors): 0 is the most recent neighbour
            self.order_key = nn.Embedding(max_neighbors, hidden_size)
            self.order_value = nn.Embedding(max_neighbors, hidden_size)
        elif propagation == "gat":
            self.gat_query = nn.Linear(hidden_size, 1, bias=False)
            self.gat_key = nn.Linear(hidden_size, 1, bias=False)
        if self.use_local and local_mode == "gru":
            self.gru = nn.GRU(hidden_size, hidden_size)  # time-major input [steps, rows, d]
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.num_parts = int(self.use_global) + int(self.use_local)

    def long_term(self, query, neighbours, edges, num_rows):
        if self.propagation == "dgsr":  # Eqs. 1-2 and 5
            keys = neighbours + self.order_key(edges.order)
            values = neighbours + self.order_value(edges.order)
            scores = (keys * query[edges.dst]).sum(-1) * self.scale
            weights = segment_softmax(scores, edges.dst, num_rows)
        elif self.propagation == "gat":
            values = neighbours
            scores = nn.functional.leaky_relu(
                self.gat_query(query).squeeze(-1)[edges.dst] + self.gat_key(neighbours).squeeze(-1), 0.2
            )
            weights = segment_softmax(scores, edges.dst, num_rows)
        else:  # gcn: symmetric degree normalisation, D_in^-1/2 A D_out^-1/2
            values = neighbours
            weights = edges.gcn_norm.to(neighbours.dtype)
        weights = self.attn_dropout(weights)
        return segment_sum(weights.unsqueeze(-1) * values, edges.dst, num_rows)

    def short_term(self, neighbours, gru_table, gru_sources, edges, num_rows, distinct_table=False):
        if self.local_mode == "last_attention":
            # the authors' code: attention keyed by the most recent neighbour (r = 0)
            last = segment_sum(neighbours * (edges.order == 0).unsqueeze(-1).to(neighbours.dtype), edges.dst, num_rows)
            scores = (neighbours * last[edges.dst]).sum(-1) * self.scale
            weights = self.attn_dropout(segment_softmax(scores, edges.dst, num_rows))
            return segment_sum(weights.unsqueeze(-1) * neighbours, edges.dst, num_rows)
        return self._gru_last_states(gru_table, gru_sources, edges, num_rows, distinct_table)

    def _gru_last_states(self, table, sources, edges, num_rows, distinct_table=False):
        """Eq. 6: ``nn.GRU`` over each row's neighbours in time order (oldest first); its final state.

        Edge e's input is ``table[sources[e]]`` (the neighbour's previous state; the GRU reads it
        without dropout). The same recurrence as ``self.gru``, computed without padding: the input
        projection ``W_ih x + b_ih`` once per table row that some edge reads (not once per edge),
        then one step per position, over the rows still that long (rows sorted by length, so the
        active rows are a prefix and each row's final state is read when it ends).

        ``distinct_table``: ``table`` holds one row per node (layer 1: the embedding table, indexed by
        global ids), so rows with equal source sequences have equal final states, and each distinct sequence is run once (exact: the shared run's
        gradient is the sum of its copies').
        """
        hidden = self.gru.hidden_size
        if edges.dst.numel() == 0:
            return table.new_zeros(num_rows, hidden)
        device = edges.dst.device
        lengths = torch.bincount(edges.dst, minlength=num_rows)
        starts = torch.cumsum(lengths, 0) - lengths
        rows = torch.nonzero(lengths, as_tuple=True)[0]
        inverse = None
        if distinct_table:
            rows, inverse = _distinct_sequences(rows, lengths, starts, sources, edges.dst)
        run_lengths = lengths[rows]
        by_length = torch.argsort(run_lengths, descending=True, stable=True)
        rows, run_lengths = rows[by_length], run_lengths[by_length]
        # active[t]: rows at least t + 1 long (a prefix of the sorted rows)
        active = torch.bincount(run_lengths - 1).flip(0).cumsum(0).flip(0).tolist()
        run_starts = starts[rows]
        # the input projection of the table rows that are read, gathered per (step, active row)
        read = torch.zeros(table.size(0), dtype=torch.bool, device=device)
        read[sources] = True
        read_rows = torch.nonzero(read, as_tuple=True)[0]
        slot = torch.cumsum(read, 0) - 1
        gates_in = nn.functional.linear(table[read_rows], self.gru.weight_ih_l0, self.gru.bias_ih_l0)
        steps = torch.cat([run_starts[:count] + t for t, count in enumerate(active)])
        step_gates = torch.split(gates_in[slot[sources[steps]]], active)
        w_hh, b_hh = self.gru.weight_hh_l0, self.gru.bias_hh_l0
        finals, state = [], None
        for t, count in enumerate(active):
            gi = step_gates[t]
            # nn.GRU's cell; h_0 = 0, so the first step's hidden projection is the bias alone
            previous = None if state is None else state[:count]
            gh = b_hh.expand(count, -1) if previous is None else nn.functional.linear(previous, w_hh, b_hh)
            reset, update = torch.sigmoid(gi[:, : 2 * hidden] + gh[:, : 2 * hidden]).chunk(2, 1)
            candidate = torch.tanh(gi[:, 2 * hidden :] + reset * gh[:, 2 * hidden :])
            # h' = (1 - z) n + z h, computed as n + z (h - n) like nn.GRU
            state = candidate - update * candidate if previous is None else candidate + update * (previous - candidate)
            ends = active[t + 1] if t + 1 < len(active) else 0
            if ends < count:
                finals.append(state[ends:count])
        # the rows that ended at step t are positions [active[t + 1], active[t]) of the sorted rows
        final = torch.cat(finals[::-1]) if len(finals) > 1 else finals[0]
        if inverse is not None:
            position = torch.empty_like(by_length)
            position[by_length] = torch.arange(by_length.numel(), device=device)
            final, rows = final[position[inverse[0]]], inverse[1]
        return table.new_zeros(num_rows, hidden).index_copy(0, rows, final)

    def forward(self, query, neighbours, gru_table, gru_sources, edges, num_rows, distinct_table=False):
        parts = []
        if self.use_global:
            parts.append(self.long_term(query, neighbours, edges, num_rows))
        if self.use_local:
            parts.append(self.short_term(neighbours, gru_table, gru_sources, edges, num_rows, distinct_table))
        return torch.cat(parts, dim=-1)


_HASH_WEIGHTS = {}


def _distinct_sequences(rows, lengths, starts, sources, dst):
    """The rows with distinct source sequences: (representatives, (group of every row, rows)).

    ``rows`` (sorted) have edges; edge e is at position ``e - starts[dst[e]]`` of its row. A hash of
    each sequence (its length and sources) groups the rows; an exact comparison of every edge with
    the same position of its representative's row confirms the groups (on a collision, the
    sequences are compared whole with ``torch.unique(dim=0)``). Representatives are the first row
    of each group.
    """
    device = rows.device
    width = int(lengths.max())
    weights = _HASH_WEIGHTS.get((width, device))
    if weights is None:
        generator = torch.Generator().manual_seed(13)  # a private stream: the global RNG is untouched
        weights = torch.randint(1, 2**62, (width + 1,), generator=generator).to(device)
        _HASH_WEIGHTS[(width, device)] = weights
    position = torch.arange(dst.numel(), device=device) - starts[dst]
    # int64 arithmetic wraps around; the length enters through its own weight
    hashed = torch.zeros(lengths.numel(), dtype=torch.long, device=device).index_add_(0, dst, (sources + 1) * weights[position])
    hashed = hashed[rows] + lengths[rows] * weights[width]
    _, group = torch.unique(hashed, return_inverse=True)

    def representatives(group):
        count = int(group.max()) + 1
        index = torch.arange(group.numel(), device=device)
        return torch.full((count,), group.numel(), device=device).scatter_reduce(0, group, index, reduce="amin")

    first = representatives(group)
    row_of = torch.full((lengths.numel(),), -1, dtype=torch.long, device=device)
    row_of[rows] = torch.arange(rows.numel(), device=device)
    rep_row = rows[first[group]]  # each row's representative
    edge_rep = rep_row[row_of[dst]]
    same = bool((lengths[rep_row] == lengths[rows]).all()) and bool(
        (sources[starts[edge_rep] + position] == sources).all()
    )
    if not same:  # a hash collision: compare the padded sequences
        padded = torch.full((rows.numel(), width), -1, dtype=torch.long, device=device)
        padded[row_of[dst], position] = sources
        _, group = torch.unique(padded, dim=0, return_inverse=True)
        first = representatives(group)
    # group ids are positions in the representatives' list
    return rows[first], (group, rows)


def dropout_rows(dropout, states, rows, total):
    """``dropout(full)[rows]`` for a [total, d] tensor ``full`` whose rows ``rows`` are ``states``.

    The noise is drawn for all ``total`` rows, as ``nn.Dropout`` draws it (ATen's CPU dropout:
    ``bernoulli_(1 - p)`` on a tensor of the input's shape, divided by ``1 - p``), so the random
    stream and every kept row's mask are those of dropping out the full tensor; only the rows still
    read are multiplied. (On CUDA, ``nn.Dropout`` uses a fused kernel with its own stream.)
    """
    p = dropout.p
    if not dropout.training or p == 0 or total == 0:
        return states
    if p == 1:
        return states * 0.0
    noise = states.new_empty(total, states.size(-1)).bernoulli_(1 - p).div_(1 - p)
    return states * noise[rows]


class DGANLayer(nn.Module):
    """Dynamic graph attention layer: updates the live user and item rows of a batch of sub-graphs.

    States are flat [rows, d] tensors (example-major) of the rows still read (hop pruning: after
    layer l only rows within L - l hops can reach their example's user); ``live_users``/
    ``live_items`` index the rows this layer updates, and only those are returned.
    """

    def __init__(self, hidden_size, max_neighbors, propagation, aggregation, local_mode, hidden_dropout, attn_dropout):
        super().__init__()
        self.user_encoder = nn.Linear(hidden_size, hidden_size, bias=False)  # W_1
        self.item_encoder = nn.Linear(hidden_size, hidden_size, bias=False)  # W_2
        args = (hidden_size, max_neighbors, propagation, aggregation, local_mode, attn_dropout)
        self.items_to_user = NeighbourAggregator(*args)
        self.users_to_item = NeighbourAggregator(*args)
        parts = self.items_to_user.num_parts + 1
        self.user_update = nn.Linear(parts * hidden_size, hidden_size, bias=False)  # W_3, Eq. 7
        self.item_update = nn.Linear(parts * hidden_size, hidden_size, bias=False)  # W_4, Eq. 8
        self.dropout = nn.Dropout(hidden_dropout)

    @staticmethod
    def _update(linear, messages, states, live):
        """tanh(W [messages || state]) of the live rows (``messages`` [live, .]); rows without
        in-edges aggregate zeros."""
        return torch.tanh(linear(torch.cat([messages, states[live]], dim=-1)))

    def forward(self, user_states, item_states, user_edges, item_edges, live_users, live_items, rows, embeddings=None):
        """The live rows' new states (users, items).

        ``*_edges``: the live rows' in-edges, ``dst`` numbered by position in ``live_*``, ``src`` by
        row of the other type's states. ``rows`` = (user rows, user total, item rows, item total):
        the flat indices of the state rows among all nodes of the batch (dropout is drawn for all).
        ``embeddings`` (layer 1: the states are embeddings): (user table, user ids of the state rows,
        item table, item ids); the GRU then reads the tables by global id and runs each distinct
        neighbour sequence of the batch once.
        """
        user_rows, user_total, item_rows, item_total = rows
        user_x = self.user_encoder(dropout_rows(self.dropout, user_states, user_rows, user_total))
        item_x = self.item_encoder(dropout_rows(self.dropout, item_states, item_rows, item_total))
        if embeddings is None:
            user_gru = (item_states, user_edges.src, False)
            item_gru = (user_states, item_edges.src, False)
        else:
            user_table, user_ids, item_table, item_ids = embeddings
            user_gru = (item_table, item_ids[user_edges.src], True)
            item_gru = (user_table, user_ids[item_edges.src], True)
        user_messages = self.items_to_user(
            user_x[live_users], item_x[user_edges.src], *user_gru[:2], user_edges, live_users.numel(), user_gru[2]
        )
        new_users = self._update(self.user_update, user_messages, user_states, live_users)
        if live_items.numel() == 0:
            return new_users, item_states[:0]
        item_messages = self.users_to_item(
            item_x[live_items], user_x[item_edges.src], *item_gru[:2], item_edges, live_items.numel(), item_gru[2]
        )
        return new_users, self._update(self.item_update, item_messages, item_states, live_items)


class DGSR(SequentialRecommender):
    r"""DGSR: dynamic graph attention over per-example time-stamped sub-graphs."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.hidden_size = _positive_int(config, "embedding_size", 1)
        self.n_layers = _positive_int(config, "n_layers", 0)
        self.max_neighbors = neighbour_window(config)  # the size of the relative-order tables
        _positive_int(config, "subgraph_order", 1)
        propagation = _choice(config, "propagation", PROPAGATIONS)
        aggregation = _choice(config, "aggregation", AGGREGATIONS)
        local_mode = _choice(config, "local_mode", LOCAL_MODES)
        self.readout_with_h0 = config["readout_with_h0"]
        if not isinstance(self.readout_with_h0, bool):
            raise ValueError(f"readout_with_h0 must be True or False, got {self.readout_with_h0!r}")
        self.readout_last_item = _choice(config, "readout_last_item", LAST_ITEM_READOUTS)
        self.loss_type = _choice(config, "loss_type", ("CE", "BPR"))
        self.n_users = dataset.user_num
        self.uid_field = config["USER_ID_FIELD"]
        self.time_field = config["TIME_FIELD"]

        self.user_id_embedding = config["user_id_embedding"]
        if not isinstance(self.user_id_embedding, bool):
            raise ValueError(f"user_id_embedding must be True or False, got {self.user_id_embedding!r}")
        # without ids every user node starts from the zero vector: users are known by their items only
        self.user_embedding = None
        if self.user_id_embedding:
            self.user_embedding = nn.Embedding(self.n_users, self.hidden_size, padding_idx=0)
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.layers = nn.ModuleList(
            DGANLayer(
                self.hidden_size,
                self.max_neighbors,
                propagation,
                aggregation,
                local_mode,
                config["hidden_dropout_prob"],
                config["attn_dropout_prob"],
            )
            for _ in range(self.n_layers)
        )
        if self.n_layers == 0:
            readout_parts = 2  # DGSR-0: user embedding and last item embedding
        else:
            readout_parts = self.n_layers + int(self.readout_with_h0) + int(self.readout_last_item != "none")
        self.prediction = nn.Linear(readout_parts * self.hidden_size, self.hidden_size, bias=False)  # W_P
        self.loss_fct = nn.CrossEntropyLoss() if self.loss_type == "CE" else BPRLoss()
        # layer 1 reads embeddings: its GRU runs each distinct neighbour sequence of a batch once
        # (exact; not a yaml key, tests turn it off to compare)
        self.dedup_first_layer = True
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.xavier_normal_(module.weight)

    def _user_states(self, user_ids):
        """h^(0) of user nodes: their id embeddings, or zeros with ``user_id_embedding: False``."""
        if self.user_id_embedding:
            return self.user_embedding(user_ids)
        return self.item_embedding.weight.new_zeros(*user_ids.shape, self.hidden_size)

    def forward(self, interaction):
        """The user's readout vector ``W_P h_u`` for each example, [B, d]."""
        user_nodes = interaction["dgsr_user_nodes"]
        if self.n_layers == 0:
            user_states = self._user_states(user_nodes)
            seq_len = interaction[self.ITEM_SEQ_LEN]
            last_item = self.gather_indexes(self.item_embedding(interaction[self.ITEM_SEQ]), seq_len - 1)
            return self.prediction(torch.cat([user_states[:, 0], last_item], dim=-1))
        item_nodes = interaction["dgsr_item_nodes"]
        batch, width_users = user_nodes.shape
        width_items = item_nodes.size(1)
        # compact node states: the padding of the per-example node lists is dropped
        user_valid = interaction["dgsr_user_hop"].reshape(-1) >= 0
        item_valid = interaction["dgsr_item_hop"].reshape(-1) >= 0
        user_map, item_map = torch.cumsum(user_valid, 0) - 1, torch.cumsum(item_valid, 0) - 1
        flat_user_hops = interaction["dgsr_user_hop"].reshape(-1)[user_valid]
        flat_item_hops = interaction["dgsr_item_hop"].reshape(-1)[item_valid]
        user_edges = EdgeList(width_users, width_items, interaction["dgsr_user_nbr_index"],
                              interaction["dgsr_user_nbr_order"], user_map, item_map, flat_user_hops)
        item_edges = EdgeList(width_items, width_users, interaction["dgsr_item_nbr_index"],
                              interaction["dgsr_item_nbr_order"], item_map, user_map, flat_item_hops)
        user_ids, item_ids = user_nodes.reshape(-1)[user_valid], item_nodes.reshape(-1)[item_valid]
        user_states, item_states = self._user_states(user_ids), self.item_embedding(item_ids)
        if self.user_id_embedding:
            user_table, user_keys = self.user_embedding.weight, user_ids
        else:  # one zero row read by every user: equal inputs, so the GRU's distinct-sequence run stays exact
            user_table, user_keys = user_states.new_zeros(1, self.hidden_size), torch.zeros_like(user_ids)
        # the example's user is user node 0
        roots = user_map[torch.arange(batch, device=user_nodes.device) * width_users]
        readout = [user_states[roots]] if self.readout_with_h0 else []
        last_item = None
        if self.readout_last_item != "none":
            # the most recent item of u's prefix: the in-edge of user node 0 with relative order 0
            # (every example has one: the prefix is never empty)
            newest = (interaction["dgsr_user_nbr_order"][:, 0] == 0).long().argmax(1, keepdim=True)
            last_local = interaction["dgsr_user_nbr_index"][:, 0].gather(1, newest).squeeze(1)
            last_item = item_map[torch.arange(batch, device=user_nodes.device) * width_items + last_local]
            last_state = item_states[last_item]  # h^(0): its embedding
        totals = (user_ids.numel(), item_ids.numel())
        # the flat indices of the current state rows (all nodes before layer 1) and their positions
        user_rows = torch.arange(totals[0], device=user_nodes.device)
        item_rows = torch.arange(totals[1], device=user_nodes.device)
        user_position = user_rows.clone()
        item_position = item_rows.clone()
        for depth, layer in enumerate(self.layers, start=1):
            # hop pruning: after layer l only rows within L - l hops can still reach the user
            reach = self.n_layers - depth
            live_users = torch.nonzero(flat_user_hops <= reach, as_tuple=True)[0]
            live_items = torch.nonzero(flat_item_hops <= reach, as_tuple=True)[0]
            user_states, item_states = layer(
                user_states, item_states,
                user_edges.select(reach, live_users, item_position), item_edges.select(reach, live_items, user_position),
                user_position[live_users], item_position[live_items], (user_rows, totals[0], item_rows, totals[1]),
                (user_table, user_keys, self.item_embedding.weight, item_ids)
                if depth == 1 and self.dedup_first_layer else None,
            )
            # the next layer's states are this layer's live rows
            user_rows, item_rows = live_users, live_items
            user_position = torch.full_like(user_position, -1).index_copy_(
                0, live_users, torch.arange(live_users.numel(), device=live_users.device))
            item_position = torch.full_like(item_position, -1).index_copy_(
                0, live_items, torch.arange(live_items.numel(), device=live_items.device))
            readout.append(user_states[user_position[roots]])
            if self.readout_last_item == "state" and depth < self.n_layers:
                # the last item (hop 1) is updated by layers 1..L-1 (hop pruning); keep its newest state
                last_state = item_states[item_position[last_item]]
        if last_item is not None:
            readout.append(last_state)
        return self.prediction(torch.cat(readout, dim=-1))

    def calculate_loss(self, interaction):
        user_vector = self.forward(interaction)
        pos_items = interaction[self.POS_ITEM_ID]
        if self.loss_type == "BPR":
            pos_score = (user_vector * self.item_embedding(pos_items)).sum(-1)
            neg_score = (user_vector * self.item_embedding(interaction[self.NEG_ITEM_ID])).sum(-1)
            return self.loss_fct(pos_score, neg_score)
        logits = user_vector @ self.item_embedding.weight.t()
        return self.loss_fct(logits, pos_items)

    def _unique_examples(self, interaction):
        """Sampled evaluation repeats each example once per candidate; run the graph once per example."""
        item_seq = interaction[self.ITEM_SEQ]
        time_bits = interaction[self.time_field].double().view(torch.int64).unsqueeze(1)
        key = torch.cat([interaction[self.uid_field].unsqueeze(1), time_bits, item_seq], dim=1)
        _, inverse = torch.unique(key, dim=0, return_inverse=True)
        rows = torch.arange(inverse.numel(), device=inverse.device)
        first = torch.full((int(inverse.max()) + 1,), inverse.numel(), device=inverse.device)
        first = first.scatter_reduce(0, inverse, rows, reduce="amin")
        return first, inverse

    def predict(self, interaction):
        first, inverse = self._unique_examples(interaction)
        user_vector = self.forward(interaction[first])[inverse]
        return (user_vector * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        return self.forward(interaction) @ self.item_embedding.weight.t()
