"""
HUGT
################################################

Reference:
    Zeren Shui, Ge Liu, Anoop Deoras, George Karypis. "Sequence-Graph Duality: Unifying User
    Modeling with Self-Attention for Sequential Recommendation." NeurIPS 2022 Workshop on
    Graph Learning Frontiers (Heterogeneous User Graph Transformer, HUGT).

No public code exists; choices the paper leaves open follow ``shared/MODEL_NOTES.md`` section 2.

A SASRec-style transformer whose heads are split into *sequence heads* (causal attention plus a
learnable positional term) and *graph heads* working on the user's collaborative graph: each item
is linked to its ``knn_k`` most similar predecessors (itself included), by cosine over the SVD item
factors of :class:`~recbole_ext.data.dataset.hug_dataset.HUGDataset`. Graph heads either attend
along those edges only (``graph_mode: mp``) or causally everywhere with a learned bias of the
clipped shortest-path length over the directed predecessor edges (``graph_mode: se``). All head
kinds are one additive bias ``[B, heads, L, L]`` and one fused attention call per block.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender

from recbole_ext.model.layers import init_like_sasrec

GRAPH_MODES = ("mp", "se")
POSITION_ENCODINGS = ("tupe", "distance", "absolute", "none")
HEAD_ARRANGEMENTS = ("concurrent", "graph_then_sequence", "sequence_then_graph")
TRAIN_POSITIONS = ("all", "last")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def collaborative_adjacency(item_factors, k):
    """Directed kNN-predecessor edges of each sequence position.

    Args:
        item_factors (torch.Tensor): ``[B, L, r]`` L2-normalised item vectors of the sequence.
        k (int): neighbours per position, the position itself included.

    Returns:
        torch.BoolTensor: ``[B, L, L]``, ``[b, i, j]`` true iff ``j <= i`` is among the ``k``
        predecessors of ``i`` most similar to it. ``i`` itself is always one of them (its cosine
        is 1, forced so for items without factors); ties go to the earlier position, so the
        edges of a position never depend on later positions or on trailing padding.
    """
    length = item_factors.size(1)
    causal = torch.ones(length, length, dtype=torch.bool, device=item_factors.device).tril()
    similarity = torch.bmm(item_factors, item_factors.transpose(1, 2))
    similarity = similarity.masked_fill(~causal, float("-inf"))
    similarity.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    k = min(k, length)
    ranked_values, ranked_columns = torch.sort(similarity, dim=-1, descending=True, stable=True)
    selected = ranked_values[..., :k] > float("-inf")  # fewer than k predecessors near the start
    adjacency = torch.zeros_like(similarity, dtype=torch.bool)
    return adjacency.scatter_(-1, ranked_columns[..., :k], selected)


def shortest_path_lengths(adjacency, clip):
    """Shortest directed path lengths along ``adjacency``, clipped at ``clip``.

    ``adjacency`` ``[B, L, L]`` must contain the diagonal (self-edges), as
    :func:`collaborative_adjacency` gives. A boolean matrix-power BFS: ``reach`` holds the pairs
    joined by a path of at most ``h`` hops, and each hop count below ``clip`` that does not yet
    reach a pair adds one to its distance. Unreachable pairs and paths of ``clip`` or more hops
    get ``clip``; the diagonal gets 0. On predecessor edges every path from ``i`` to ``j`` stays
    inside ``[j, i]``, so no distance depends on later items.
    """
    hop = adjacency.float()
    reach = hop
    distance = torch.full(adjacency.shape, clip, dtype=torch.long, device=adjacency.device)
    for hops in range(1, clip):
        distance -= reach.long()
        if hops + 1 < clip:
            reach = torch.bmm(reach, hop).clamp_(max=1.0)
    distance.diagonal(dim1=1, dim2=2).zero_()
    return distance


class BiasedSelfAttentionBlock(nn.Module):
    """One SASRec block (pmixer's layout) whose heads take a per-head additive bias.

    ``q = LN(x); x = q + MHA(q, x, x); x = LN(x); x = x + FFN(x)``; padded positions are zeroed.
    """

    def __init__(self, hidden_size, n_heads, inner_size, hidden_dropout, attn_dropout, act, eps):
        super().__init__()
        self.n_heads = n_heads
        self.head_size = hidden_size // n_heads
        self.attn_dropout = attn_dropout
        self.attention_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key_value = nn.Linear(hidden_size, 2 * hidden_size)
        self.attention_output = nn.Linear(hidden_size, hidden_size)
        self.attention_dropout_layer = nn.Dropout(hidden_dropout)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, inner_size),
            ACTIVATIONS[act](),
            nn.Dropout(hidden_dropout),
            nn.Linear(inner_size, hidden_size),
            nn.Dropout(hidden_dropout),
        )

    def _split_heads(self, x):
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_size).transpose(1, 2)

    def forward(self, x, attention_bias, nonpad):
        normed = self.attention_norm(x)
        key, value = self.key_value(x).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(
            self._split_heads(self.query(normed)),
            self._split_heads(key),
            self._split_heads(value),
            attn_mask=attention_bias,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        attended = attended.transpose(1, 2).reshape(x.shape)
        x = normed + self.attention_dropout_layer(self.attention_output(attended))
        x = self.feed_forward_norm(x)
        x = x + self.feed_forward(x)
        return x * nonpad


class HUGT(SequentialRecommender):
    r"""Heterogeneous User Graph Transformer: sequence heads and collaborative-graph heads.

    ``forward`` returns the hidden state of every position; the loss is cross-entropy over all
    items (or ``loss_candidates`` sampled ones) at every non-pad position (``train_positions:
    all``, the paper) or at the last one (``last``, RecBole style). Output logits use the item
    embedding table (tied) plus an item bias.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # load parameters info
        self.n_layers = self._positive_int(config, "n_layers")
        self.n_heads = self._positive_int(config, "n_heads")
        self.n_graph_heads = self._non_negative_int(config, "n_graph_heads")
        if self.n_graph_heads > self.n_heads:
            raise ValueError(f"n_graph_heads ({self.n_graph_heads}) must not exceed n_heads ({self.n_heads})")
        self.n_seq_heads = self.n_heads - self.n_graph_heads
        self.graph_only = self._flag(config, "graph_only")
        self.head_arrangement = self._choice(config, "head_arrangement", HEAD_ARRANGEMENTS)
        if self.head_arrangement == "concurrent" and self.graph_only != (self.n_seq_heads == 0):
            # no sequence heads means no head sees positions: easy to get by accident (n_heads
            # lowered below the yaml's n_graph_heads), so it must be asked for by name
            raise ValueError(
                f"n_graph_heads ({self.n_graph_heads}) equals n_heads ({self.n_heads}): HUGT would have "
                "no sequence heads; set graph_only: True to mean it, or lower n_graph_heads"
                if not self.graph_only
                else f"graph_only: True needs n_graph_heads == n_heads, got {self.n_graph_heads} of {self.n_heads}"
            )
        self.hidden_size = self._positive_int(config, "hidden_size")
        self.inner_size = self._positive_int(config, "inner_size")
        self.hidden_dropout_prob = config["hidden_dropout_prob"]
        self.attn_dropout_prob = config["attn_dropout_prob"]
        self.hidden_act = self._choice(config, "hidden_act", tuple(ACTIVATIONS))
        self.layer_norm_eps = config["layer_norm_eps"]
        self.initializer_range = config["initializer_range"]
        self.graph_mode = self._choice(config, "graph_mode", GRAPH_MODES)
        self.knn_k = self._positive_int(config, "knn_k")
        self.spatial_clip = self._positive_int(config, "spatial_clip")
        self.position_encoding = self._choice(config, "position_encoding", POSITION_ENCODINGS)
        self.train_positions = self._choice(config, "train_positions", TRAIN_POSITIONS)
        self.loss_candidates = self._non_negative_int(config, "loss_candidates")
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.train_positions == "last" and config["train_windows"] == "tiled":
            raise ValueError(
                "train_positions: 'last' with train_windows: 'tiled' would train on every "
                "MAX_ITEM_LIST_LENGTH-th target only; set train_windows: 'prefixes'"
            )
        if config["loss_type"] != "CE":
            raise ValueError(
                f"loss_type must be 'CE' for HUGT (the paper's loss), got {config['loss_type']!r}"
            )

        # Each stage is (n_layers blocks, sequence heads, graph heads); staged arrangements are
        # the paper's G-S / S-G ablation: a whole graph-only HUGT then a sequence-only one.
        if self.head_arrangement == "concurrent":
            self.stage_layouts = [(self.n_seq_heads, self.n_graph_heads)]
        else:
            graph_only, sequence_only = (0, self.n_heads), (self.n_heads, 0)
            self.stage_layouts = (
                [graph_only, sequence_only]
                if self.head_arrangement == "graph_then_sequence"
                else [sequence_only, graph_only]
            )
        self.max_seq_heads = max(layout[0] for layout in self.stage_layouts)
        self.max_graph_heads = max(layout[1] for layout in self.stage_layouts)
        self.head_size = self.hidden_size // self.n_heads

        # define layers and loss
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))
        self.embedding_dropout = nn.Dropout(self.hidden_dropout_prob)
        if self.position_encoding in ("tupe", "absolute"):
            self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        if self.position_encoding == "tupe" and self.max_seq_heads:
            # psi(i, j) = (U_q p_i) . (U_k p_j) / sqrt(d_h), per sequence head, shared by blocks
            self.position_query = nn.Linear(self.hidden_size, self.max_seq_heads * self.head_size, bias=False)
            self.position_key = nn.Linear(self.hidden_size, self.max_seq_heads * self.head_size, bias=False)
        if self.position_encoding == "distance" and self.max_seq_heads:
            self.distance_bias = nn.Parameter(torch.zeros(self.max_seq_length, self.max_seq_heads))
        if self.graph_mode == "se" and self.max_graph_heads:
            # phi(s) per graph head and clipped distance s in 0..S, shared by blocks (Graphormer)
            self.spatial_bias = nn.Parameter(torch.zeros(self.spatial_clip + 1, self.max_graph_heads))
        self.stages = nn.ModuleList(
            nn.ModuleList(
                BiasedSelfAttentionBlock(
                    self.hidden_size,
                    self.n_heads,
                    self.inner_size,
                    self.hidden_dropout_prob,
                    self.attn_dropout_prob,
                    self.hidden_act,
                    self.layer_norm_eps,
                )
                for _ in range(self.n_layers)
            )
            for _ in self.stage_layouts
        )
        self.final_norm = nn.LayerNorm(self.hidden_size, eps=self.layer_norm_eps)
        self.loss_fct = nn.CrossEntropyLoss()

        # parameters initialization
        init_like_sasrec(self)

        # SVD item factors of the training split (fixed, not trained)
        if self.max_graph_heads:
            factors = getattr(dataset, "svd_item_factors", None)
            if factors is None:
                raise ValueError(
                    "HUGT with n_graph_heads > 0 needs dataset.svd_item_factors: build the "
                    "dataset with recbole_ext's create_dataset (HUGDataset plugin), or set n_graph_heads: 0"
                )
            if factors.size(0) != self.n_items:
                raise ValueError(
                    f"svd_item_factors has {factors.size(0)} rows but the dataset has {self.n_items} items"
                )
            self.register_buffer("svd_item_factors", factors.float().clone())

    # ------------------------------------------------------------------ config checks
    @staticmethod
    def _choice(config, key, choices):
        value = config[key]
        if value not in choices:
            raise ValueError(f"{key} must be one of {choices}, got {value!r}")
        return value

    @staticmethod
    def _flag(config, key):
        value = config[key]
        if value is None:
            return False
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be True or False, got {value!r}")
        return value

    @staticmethod
    def _non_negative_int(config, key):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        return value

    @classmethod
    def _positive_int(cls, config, key):
        value = cls._non_negative_int(config, key)
        if value == 0:
            raise ValueError(f"{key} must be a positive integer, got 0")
        return value

    # ------------------------------------------------------------------ attention biases
    def _sequence_head_bias(self, n_heads, length, device):
        """``[n_heads, L, L]``: positional term of the sequence heads, -inf above the diagonal."""
        causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        if self.position_encoding == "tupe":
            positions = self.position_embedding.weight[:length]
            query = self.position_query(positions).view(length, -1, self.head_size)[:, :n_heads]
            key = self.position_key(positions).view(length, -1, self.head_size)[:, :n_heads]
            positional = torch.einsum("ihd,jhd->hij", query, key) / math.sqrt(self.head_size)
        elif self.position_encoding == "distance":
            offsets = torch.arange(length, device=device)
            offsets = (offsets[:, None] - offsets[None, :]).clamp(min=0)
            positional = self.distance_bias[offsets, :n_heads].permute(2, 0, 1)
        else:
            positional = torch.zeros(n_heads, length, length, device=device)
        return positional.masked_fill(~causal, float("-inf"))

    def _graph_head_bias(self, n_heads, adjacency, distance):
        """``[B, n_heads, L, L]``: MP masks to the collaborative edges; SE adds phi(distance)."""
        if self.graph_mode == "mp":
            bias = torch.zeros(adjacency.shape, device=adjacency.device)
            bias = bias.masked_fill(~adjacency, float("-inf")).unsqueeze(1)
            return bias.expand(-1, n_heads, -1, -1)
        length = distance.size(-1)
        causal = torch.ones(length, length, dtype=torch.bool, device=distance.device).tril()
        bias = self.spatial_bias[distance, :n_heads].permute(0, 3, 1, 2)
        return bias.masked_fill(~causal, float("-inf"))

    def attention_biases(self, item_seq):
        """One additive bias ``[B, heads, L, L]`` per stage: sequence heads first, then graph heads."""
        batch, length = item_seq.shape
        adjacency = distance = None
        if self.max_graph_heads:
            adjacency = collaborative_adjacency(self.svd_item_factors[item_seq], self.knn_k)
            if self.graph_mode == "se":
                distance = shortest_path_lengths(adjacency, self.spatial_clip)
        biases = []
        for n_seq, n_graph in self.stage_layouts:
            parts = []
            if n_seq:
                sequence_bias = self._sequence_head_bias(n_seq, length, item_seq.device)
                parts.append(sequence_bias.expand(batch, -1, -1, -1))
            if n_graph:
                parts.append(self._graph_head_bias(n_graph, adjacency, distance))
            biases.append(torch.cat(parts, dim=1))
        return biases

    # ------------------------------------------------------------------ model
    def forward(self, item_seq, item_seq_len=None):
        """Hidden states ``[B, L, d]`` of every position (``item_seq_len`` is not needed)."""
        nonpad = (item_seq > 0).unsqueeze(-1).float()
        x = self.item_embedding(item_seq)
        if self.position_encoding == "absolute":
            x = x + self.position_embedding.weight[: item_seq.size(1)]
        x = self.embedding_dropout(x) * nonpad
        for blocks, bias in zip(self.stages, self.attention_biases(item_seq)):
            for block in blocks:
                x = block(x, bias, nonpad)
        return self.final_norm(x)

    def _last_hidden(self, interaction):
        hidden = self.forward(interaction[self.ITEM_SEQ])
        return self.gather_indexes(hidden, interaction[self.ITEM_SEQ_LEN] - 1)

    def _position_targets(self, item_seq, item_seq_len, pos_items):
        """``[B, L]`` next item of each position (the example's target at its last), 0 at padding."""
        targets = torch.cat([item_seq[:, 1:], torch.zeros_like(item_seq[:, :1])], dim=1)
        return targets.scatter(1, (item_seq_len - 1).unsqueeze(1), pos_items.unsqueeze(1))

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        if self.train_positions == "all":
            hidden = self.forward(item_seq)
            targets = self._position_targets(item_seq, item_seq_len, pos_items)
            trained = targets > 0
            hidden, targets = hidden[trained], targets[trained]
        else:
            hidden = self._last_hidden(interaction)
            targets = pos_items
        if self.loss_candidates:
            return self._sampled_candidate_loss(hidden, targets)
        logits = hidden @ self.item_embedding.weight.t() + self.item_bias
        logits[:, 0] = float("-inf")  # padding is never a candidate
        return self.loss_fct(logits, targets)

    def _sampled_candidate_loss(self, hidden, targets):
        """CE over the positive plus ``loss_candidates`` uniformly drawn items shared by the batch."""
        negatives = torch.randint(1, self.n_items, (self.loss_candidates,), device=hidden.device)
        positive_logits = (hidden * self.item_embedding(targets)).sum(-1) + self.item_bias[targets]
        negative_logits = hidden @ self.item_embedding(negatives).t() + self.item_bias[negatives]
        # a drawn item that is the position's own target is not a negative
        accidental_hits = negatives.unsqueeze(0) == targets.unsqueeze(1)
        negative_logits = negative_logits.masked_fill(accidental_hits, float("-inf"))
        logits = torch.cat([positive_logits.unsqueeze(1), negative_logits], dim=1)
        return self.loss_fct(logits, torch.zeros_like(targets))

    def predict(self, interaction):
        test_item = interaction[self.ITEM_ID]
        hidden = self._last_hidden(interaction)
        return (hidden * self.item_embedding(test_item)).sum(-1) + self.item_bias[test_item]

    def full_sort_predict(self, interaction):
        hidden = self._last_hidden(interaction)
        return hidden @ self.item_embedding.weight.t() + self.item_bias
