r"""
DGSR
################################################

Reference:
    Mengqi Zhang, Shu Wu, Xueli Yu, Qiang Liu, Liang Wang. "Dynamic Graph Neural Networks for
    Sequential Recommendation." IEEE Transactions on Knowledge and Data Engineering, 2022.

Each example (user u, prediction time t) is answered on its own sub-graph of the time-stamped
user-item graph (sampled by :class:`recbole_ext.data.dataloader.subgraph_sampler.SubgraphSampler`).
``n_layers`` Dynamic Graph Attention layers update every user and item node of the sub-graph from
its in-neighbours (Eqs. 1-10): a long-term ("global") attention whose keys and values carry
relative-order embeddings, a short-term ("local") summary of the neighbours in time order, and
an update ``tanh(W [global || local || previous state])``. The readout concatenates u's states
over the layers and scores every item by ``(W_P h_u) . e_i`` (Eqs. 11-12), trained with
cross-entropy over all items.

Switches (``properties/model/DGSR.yaml``): ``propagation`` (dgsr / gat / gcn: DGSR-GAT and
DGSR-GCN), ``aggregation`` (global_local / global / local: DGSR-Global and DGSR-Local),
``local_mode`` (gru as Eq. 6 / last_attention as the authors' code), ``readout_with_h0`` (Eq. 11
includes h^(0); the code leaves it out), ``n_layers`` (0 is DGSR-0: user and last-item
embeddings), ``subgraph_order``, ``max_neighbors``, ``dgsr_graph_source``.
"""

import math

import torch
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.loss import BPRLoss

PROPAGATIONS = ("dgsr", "gat", "gcn")
AGGREGATIONS = ("global_local", "global", "local")
LOCAL_MODES = ("gru", "last_attention")


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


def _gather_rows(table, index):
    """``table`` [B, N, d], ``index`` [B, R, k] -> [B, R, k, d]."""
    batch = torch.arange(table.size(0), device=table.device).view(-1, 1, 1)
    return table[batch, index]


def _masked_softmax(scores, valid):
    # rows without any neighbour (frontier nodes, padding) get all-zero weights: zero aggregation
    scores = scores.masked_fill(~valid, -1e9)
    return torch.softmax(scores, dim=-1) * valid.any(dim=-1, keepdim=True)


class NeighbourAggregator(nn.Module):
    """One direction of a DGAN layer (items -> user, or users -> item)."""

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
            self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.num_parts = int(self.use_global) + int(self.use_local)

    def long_term(self, query, neighbours, order, valid):
        if self.propagation == "dgsr":  # Eqs. 1-2 and 5
            safe_order = order.clamp(min=0)
            keys = neighbours + self.order_key(safe_order)
            values = neighbours + self.order_value(safe_order)
            scores = (keys * query.unsqueeze(-2)).sum(-1) * self.scale
        elif self.propagation == "gat":
            values = neighbours
            scores = nn.functional.leaky_relu(self.gat_query(query) + self.gat_key(neighbours).squeeze(-1), 0.2)
        else:  # gcn: every neighbour counts the same
            values = neighbours
            scores = torch.zeros_like(order, dtype=neighbours.dtype)
        weights = self.attn_dropout(_masked_softmax(scores, valid))
        return (weights.unsqueeze(-1) * values).sum(-2)

    def short_term(self, neighbours, raw_neighbours, order, valid):
        if self.local_mode == "last_attention":
            # the authors' code: attention keyed by the most recent neighbour (r = 0)
            last = (neighbours * (order == 0).unsqueeze(-1)).sum(-2)
            scores = (neighbours * last.unsqueeze(-2)).sum(-1) * self.scale
            weights = self.attn_dropout(_masked_softmax(scores, valid))
            return (weights.unsqueeze(-1) * neighbours).sum(-2)
        # Eq. 6: a GRU over the neighbours' previous states in time order (oldest first);
        # sort by the stored relative order so the padded layout does not matter
        lengths = valid.sum(-1)
        chronological = torch.argsort(torch.where(valid, -order, order.size(-1) + 1), dim=-1, stable=True)
        sequences = torch.gather(raw_neighbours, -2, chronological.unsqueeze(-1).expand_as(raw_neighbours))
        flat_sequences = sequences.reshape(-1, order.size(-1), sequences.size(-1))
        flat_lengths = lengths.reshape(-1)
        out = flat_sequences.new_zeros(flat_sequences.size(0), flat_sequences.size(-1))
        has_neighbours = flat_lengths > 0
        if bool(has_neighbours.any()):
            # run over the padded steps and read each row's state after its last real neighbour:
            # the GRU is causal, so trailing padding never affects that state
            outputs, _ = self.gru(flat_sequences[has_neighbours])
            last = (flat_lengths[has_neighbours] - 1).view(-1, 1, 1).expand(-1, 1, outputs.size(-1))
            out[has_neighbours] = outputs.gather(1, last).squeeze(1)
        return out.view(*lengths.shape, -1)

    def forward(self, query, neighbours, raw_neighbours, order):
        valid = order >= 0
        parts = []
        if self.use_global:
            parts.append(self.long_term(query, neighbours, order, valid))
        if self.use_local:
            parts.append(self.short_term(neighbours, raw_neighbours, order, valid))
        return torch.cat(parts, dim=-1)


class DGANLayer(nn.Module):
    """Dynamic graph attention layer: updates all user and item nodes of the padded sub-graphs."""

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
    def _update(linear, messages, states):
        """tanh(W [messages || state]); nodes past the message rows (leaves, padding) aggregate zeros."""
        hidden = states.size(-1)
        out = nn.functional.linear(states, linear.weight[:, -hidden:])
        rows = messages.size(1)
        message_part = nn.functional.linear(messages, linear.weight[:, :-hidden])
        out = torch.cat([out[:, :rows] + message_part, out[:, rows:]], dim=1)
        return torch.tanh(out)

    def forward(self, user_states, item_states, graph):
        user_x = self.user_encoder(self.dropout(user_states))
        item_x = self.item_encoder(self.dropout(item_states))
        user_index, user_order = graph["dgsr_user_nbr_index"], graph["dgsr_user_nbr_order"]
        item_index, item_order = graph["dgsr_item_nbr_index"], graph["dgsr_item_nbr_order"]
        user_messages = self.items_to_user(
            user_x[:, : user_index.size(1)], _gather_rows(item_x, user_index), _gather_rows(item_states, user_index), user_order
        )
        item_messages = self.users_to_item(
            item_x[:, : item_index.size(1)], _gather_rows(user_x, item_index), _gather_rows(user_states, item_index), item_order
        )
        new_users = self._update(self.user_update, user_messages, user_states)
        new_items = self._update(self.item_update, item_messages, item_states)
        return new_users, new_items


class DGSR(SequentialRecommender):
    r"""DGSR: dynamic graph attention over per-example time-stamped sub-graphs."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.hidden_size = _positive_int(config, "embedding_size", 1)
        self.n_layers = _positive_int(config, "n_layers", 0)
        self.max_neighbors = _positive_int(config, "max_neighbors", 1)
        _positive_int(config, "subgraph_order", 1)
        propagation = _choice(config, "propagation", PROPAGATIONS)
        aggregation = _choice(config, "aggregation", AGGREGATIONS)
        local_mode = _choice(config, "local_mode", LOCAL_MODES)
        self.readout_with_h0 = config["readout_with_h0"]
        if not isinstance(self.readout_with_h0, bool):
            raise ValueError(f"readout_with_h0 must be True or False, got {self.readout_with_h0!r}")
        self.loss_type = _choice(config, "loss_type", ("CE", "BPR"))
        self.n_users = dataset.user_num
        self.uid_field = config["USER_ID_FIELD"]
        self.time_field = config["TIME_FIELD"]

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
            readout_parts = self.n_layers + int(self.readout_with_h0)
        self.prediction = nn.Linear(readout_parts * self.hidden_size, self.hidden_size, bias=False)  # W_P
        self.loss_fct = nn.CrossEntropyLoss() if self.loss_type == "CE" else BPRLoss()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.xavier_normal_(module.weight)

    def forward(self, interaction):
        """The user's readout vector ``W_P h_u`` for each example, [B, d]."""
        user_nodes = interaction["dgsr_user_nodes"]
        user_states = self.user_embedding(user_nodes)
        if self.n_layers == 0:
            seq_len = interaction[self.ITEM_SEQ_LEN]
            last_item = self.gather_indexes(self.item_embedding(interaction[self.ITEM_SEQ]), seq_len - 1)
            return self.prediction(torch.cat([user_states[:, 0], last_item], dim=-1))
        item_states = self.item_embedding(interaction["dgsr_item_nodes"])
        readout = [user_states[:, 0]] if self.readout_with_h0 else []
        for layer in self.layers:
            user_states, item_states = layer(user_states, item_states, interaction)
            readout.append(user_states[:, 0])  # the example's user is user node 0
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
