r"""
MAGNN
################################################

Reference:
    Chen Ma, Liheng Ma, Yingxue Zhang, Jianing Sun, Xue Liu, Mark Coates.
    "Memory Augmented Graph Neural Networks for Sequential Recommendation." In AAAI 2020.

The score of item j for user u with short-term window L and earlier history H is (Eq. 6)

    r_uj = (p_u + p^C + W_r^T mean_{i in L} e_i) . q_j

* short term (Eq. 1): h_i = tanh(W1 [sum_k A_ik e_k ; e_i]) over the co-occurrence graph A built
  from the training split (:mod:`recbole_ext.data.dataset.multi_target`), averaged over L;
* long term (Eqs. 3-4): multi-dimensional attention (h rows, softmax over the history positions,
  padding masked) over E[H] + sinusoidal positions gives the query z. The encoding is scaled to
  the item embeddings (``position_scale``): the Transformer adds its unit-amplitude encoding to
  embeddings of unit scale, whereas ours start at std 1/d, and a raw encoding would make z a
  function of the history length alone. A key-value memory of m slots shared by all users gives
  p^H = z + o. An empty history gives z = 0 (then p^H is the
  memory's answer to the zero query, the mean of its values);
* fusion (Eq. 5): the gate g = sigmoid(Wg1 s + Wg2 p^H + Wg3 p_u), p^C = g*s + (1-g)*p^H;
* E (input) and Q (output) are separate item tables, P holds the users.

``variant`` selects the ablations of the paper's Table 3 (MF, MF+S with Eq. 2, MF+S+H fused by the
gate, by concatenation or by a GRU, and the full model with the bilinear co-occurrence term).
Losses: ``BPR`` over the ``|T|`` targets with one sampled negative each (paper) or ``CE`` over
all items for each of the ``|T|`` targets.
"""

import math

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_ext.data.dataloader.multi_target import window_and_history
from recbole_ext.data.dataset.multi_target import (
    HISTORY_FIELD,
    NEGATIVES_FIELD,
    TARGETS_FIELD,
    WINDOW_FIELD,
)

# variant -> (short term, long term, fusion, co-occurrence term)
VARIANTS = {
    "mf": (False, False, None, False),
    "mf_s": (True, False, None, False),
    "mf_s_h_gate": (True, True, "gate", False),
    "mf_s_h_concat": (True, True, "concat", False),
    "mf_s_h_gru": (True, True, "gru", False),
    "full": (True, True, "gate", True),
}
NEIGHBOUR_SCOPES = ("global", "window")


def sinusoidal_positions(positions, dim):
    """Transformer sinusoidal encoding of (float) positions: [..] -> [.., dim]."""
    frequencies = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) * (-math.log(10000.0) / dim)
    )
    angles = positions.unsqueeze(-1).float() * frequencies
    encoding = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)
    return encoding[..., :dim]


def masked_mean(values, mask):
    """Mean of ``values`` [B, N, d] over the positions where ``mask`` [B, N] is True; 0 if none."""
    weights = mask.unsqueeze(-1).to(values.dtype)
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class MultiDimensionalAttention(nn.Module):
    """Eq. 3: ``h`` attention rows over the history positions, averaged into one query vector."""

    def __init__(self, dim, n_heads):
        super().__init__()
        self.item_projection = nn.Linear(dim, dim, bias=False)  # W_a^(1)
        self.user_projection = nn.Linear(dim, dim, bias=False)  # W_a^(2)
        self.score = nn.Linear(dim, n_heads, bias=False)  # W_a^(3)

    def forward(self, history, history_mask, user):
        # history: [B, N, d] (embeddings + positions), history_mask: [B, N], user: [B, d]
        hidden = torch.tanh(self.item_projection(history) + self.user_projection(user).unsqueeze(1))
        logits = self.score(hidden).transpose(1, 2)  # [B, h, N]
        # softmax over positions with padding masked; a finite fill keeps gradients finite, and
        # zeroing afterwards gives a row without any history all-zero weights (z = 0)
        mask = history_mask.unsqueeze(1)
        weights = torch.softmax(logits.masked_fill(~mask, -1e9), dim=-1) * mask
        return torch.tanh(weights @ history).mean(dim=1)  # Z = tanh(S H^T), z = avg over h rows


class KeyValueMemory(nn.Module):
    """Eq. 4: memory shared by all users; ``p^H = z + sum_i softmax(z . k_i) v_i``."""

    def __init__(self, dim, n_slots):
        super().__init__()
        self.keys = nn.Parameter(torch.empty(n_slots, dim))
        self.values = nn.Parameter(torch.empty(n_slots, dim))

    def forward(self, query):
        attention = torch.softmax(query @ self.keys.t(), dim=-1)
        return query + attention @ self.values


class MAGNN(SequentialRecommender):
    r"""MA-GNN: short-term item-graph GNN, shared long-term memory, gated fusion and a bilinear
    item co-occurrence term, scored against a separate output item table."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._validate(config)
        self.embedding_size = config["embedding_size"]
        self.window_length = config["window_length"]
        self.history_length = config["history_length"]
        self.loss_type = config["loss_type"]
        self.neighbour_scope = config["neighbour_scope"]
        # None: the item embeddings' init std, the Transformer's 1:1 ratio of token to position scale
        position_scale = config["position_scale"]
        self.position_scale = 1.0 / self.embedding_size if position_scale is None else float(position_scale)
        self.use_short_term, self.use_long_term, self.fusion, self.use_cooccurrence = VARIANTS[config["variant"]]
        self.n_users = dataset.user_num
        dim = self.embedding_size

        self.user_embedding = nn.Embedding(self.n_users, dim)  # P
        if self.use_short_term or self.use_cooccurrence:  # plain MF never reads the inputs
            self.input_item_embedding = nn.Embedding(self.n_items, dim, padding_idx=0)  # E
        self.output_item_embedding = nn.Embedding(self.n_items, dim, padding_idx=0)  # Q

        if self.use_short_term:
            self.graph_layer = nn.Linear(2 * dim, dim, bias=False)  # W^(1) of Eq. 1
            # the graph is data, not a parameter: rebuilt from the training split with the dataset
            self.register_buffer("neighbours", dataset.magnn_neighbours.clone(), persistent=False)
            self.register_buffer("neighbour_weights", dataset.magnn_neighbour_weights.clone(), persistent=False)
            self.register_buffer("pair_keys", dataset.magnn_pair_keys.clone(), persistent=False)
            self.register_buffer("pair_weights", dataset.magnn_pair_weights.clone(), persistent=False)
        if self.use_short_term and not self.use_long_term:
            self.short_term_layer = nn.Linear(2 * dim, dim, bias=False)  # W^(2) of Eq. 2
        if self.use_long_term:
            self.attention = MultiDimensionalAttention(dim, config["attention_dimensions"])
            self.memory = KeyValueMemory(dim, config["memory_slots"])
        if self.fusion == "gate":
            self.gate_short = nn.Linear(dim, dim, bias=False)  # W_g^(1)
            self.gate_long = nn.Linear(dim, dim, bias=False)  # W_g^(2)
            self.gate_user = nn.Linear(dim, dim, bias=False)  # W_g^(3)
        elif self.fusion == "concat":
            self.concat_layer = nn.Linear(2 * dim, dim, bias=False)
        elif self.fusion == "gru":
            self.fusion_gru = nn.GRUCell(dim, dim)  # input: short term, hidden state: long term
        if self.use_cooccurrence:
            self.cooccurrence = nn.Linear(dim, dim, bias=False)  # W_r of Eq. 6
        self.apply(self._init_weights)

    @staticmethod
    def _validate(config):
        if config["variant"] not in VARIANTS:
            raise ValueError(f"MAGNN: 'variant' must be one of {list(VARIANTS)}, got {config['variant']!r}")
        if config["loss_type"] not in ("BPR", "CE"):
            raise ValueError(f"MAGNN: 'loss_type' must be 'BPR' or 'CE', got {config['loss_type']!r}")
        if config["neighbour_scope"] not in NEIGHBOUR_SCOPES:
            raise ValueError(
                f"MAGNN: 'neighbour_scope' must be one of {NEIGHBOUR_SCOPES}, got {config['neighbour_scope']!r}"
            )
        scale = config["position_scale"]
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0):
            raise ValueError(f"MAGNN: 'position_scale' must be None or a number >= 0, got {scale!r}")
        for key in ("embedding_size", "attention_dimensions", "memory_slots", "window_length"):
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MAGNN: '{key}' must be a positive integer, got {value!r}")

    def _init_weights(self, module):
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0 / self.embedding_size)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
        elif isinstance(module, KeyValueMemory):
            nn.init.normal_(module.keys, std=1.0 / self.embedding_size)
            nn.init.normal_(module.values, std=1.0 / self.embedding_size)

    # ------------------------------------------------------------ modules
    def _inputs(self, interaction):
        if WINDOW_FIELD in interaction.interaction:
            return interaction[WINDOW_FIELD], interaction[HISTORY_FIELD]
        # without the batch transform (e.g. a stock dataloader): the same split of the prefix
        return window_and_history(
            interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], self.window_length, self.history_length
        )

    def short_term_interest(self, window, window_embedding):
        """Eq. 1 averaged over the window: mean_i tanh(W1 [sum_k A_ik e_k ; e_i])."""
        if self.neighbour_scope == "global":
            neighbours = self.input_item_embedding(self.neighbours[window])  # [B, L, m, d]
            aggregated = (self.neighbour_weights[window].unsqueeze(-1) * neighbours).sum(2)
        else:  # neighbours restricted to the other items of the same window
            keys = window.unsqueeze(2) * self.n_items + window.unsqueeze(1)  # [B, L, L]
            index = torch.searchsorted(self.pair_keys, keys).clamp(max=max(len(self.pair_keys) - 1, 0))
            found = (self.pair_keys[index] == keys) if len(self.pair_keys) else torch.zeros_like(keys, dtype=torch.bool)
            present = (window > 0).unsqueeze(2) & (window > 0).unsqueeze(1)
            weights = torch.where(found & present, self.pair_weights[index], torch.zeros((), device=window.device))
            aggregated = weights @ window_embedding
        hidden = torch.tanh(self.graph_layer(torch.cat([aggregated, window_embedding], dim=-1)))
        return masked_mean(hidden, window > 0)

    def long_term_interest(self, history, user_embedding):
        """Eqs. 3-4: attention query over E[H] + positions, then the shared memory."""
        history_mask = history > 0
        # position 1 is the item just before the window, counting backwards
        distance = torch.arange(history.size(1), 0, -1, device=history.device)
        positions = self.position_scale * sinusoidal_positions(distance, self.embedding_size)
        encoded = self.input_item_embedding(history) + positions
        query = self.attention(encoded, history_mask, user_embedding)
        return self.memory(query)

    def forward(self, user, window, history):
        """User representation u such that r_uj = u . q_j."""
        user_embedding = self.user_embedding(user)
        representation = user_embedding
        if self.use_short_term:
            window_embedding = self.input_item_embedding(window)
            short_term = self.short_term_interest(window, window_embedding)
            if not self.use_long_term:  # MF+S: Eq. 2
                representation = representation + torch.tanh(
                    self.short_term_layer(torch.cat([short_term, user_embedding], dim=-1))
                )
            else:
                long_term = self.long_term_interest(history, user_embedding)
                if self.fusion == "gate":
                    gate = torch.sigmoid(
                        self.gate_short(short_term) + self.gate_long(long_term) + self.gate_user(user_embedding)
                    )
                    combined = gate * short_term + (1 - gate) * long_term
                elif self.fusion == "concat":
                    combined = torch.tanh(self.concat_layer(torch.cat([short_term, long_term], dim=-1)))
                else:
                    combined = self.fusion_gru(short_term, long_term)
                representation = representation + combined
        if self.use_cooccurrence:
            # mean_i e_i^T W_r q_j  ==  (W_r^T mean_i e_i) . q_j
            window_mean = masked_mean(self.input_item_embedding(window), window > 0)
            representation = representation + window_mean @ self.cooccurrence.weight
        return representation

    def _representation(self, interaction):
        window, history = self._inputs(interaction)
        return self.forward(interaction[self.USER_ID], window, history)

    # ------------------------------------------------------------ RecBole API
    def calculate_loss(self, interaction):
        representation = self._representation(interaction)
        if TARGETS_FIELD in interaction.interaction:
            targets = interaction[TARGETS_FIELD]
        else:  # plain next-item batch
            targets = interaction[self.POS_ITEM_ID].unsqueeze(1)
        valid = (targets > 0).float()
        if self.loss_type == "BPR":
            negatives = interaction[NEGATIVES_FIELD] if NEGATIVES_FIELD in interaction.interaction else None
            if negatives is None:
                negatives = interaction[self.NEG_ITEM_ID].unsqueeze(1).expand_as(targets)
            positive_scores = (representation.unsqueeze(1) * self.output_item_embedding(targets)).sum(-1)
            negative_scores = (representation.unsqueeze(1) * self.output_item_embedding(negatives)).sum(-1)
            losses = -F.logsigmoid(positive_scores - negative_scores)
        else:
            log_probabilities = torch.log_softmax(representation @ self.output_item_embedding.weight.t(), dim=-1)
            losses = -log_probabilities.gather(1, targets)
        return (losses * valid).sum() / valid.sum().clamp(min=1.0)

    def predict(self, interaction):
        representation = self._representation(interaction)
        return (representation * self.output_item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        return self._representation(interaction) @ self.output_item_embedding.weight.t()
