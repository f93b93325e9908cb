r"""
EMBSR
################################################

Reference:
    Jiahao Yuan, Wendi Ji, Dell Zhang, Jinwei Pan, Xiaoling Wang.
    "Micro-Behavior Encoding for Session-based Recommendation." ICDE 2022.
    (Paper text: shared/papers/embsr.txt; reference code: github.com/SamHaoYuan/EMBSR.)

The session is a sequence of micro-behaviours (item, operation). Consecutive micro-behaviours on one
item form a macro item with its operation run. The model has two parts:

* sequential patterns: a GRU encodes every operation run; a gated GNN runs over the session's
  multigraph (one ordered edge per macro transition), whose messages carry
  ``[neighbour embedding; operation-run state]``, with a star node (gate + attention update) and a
  highway network (Eqs. 1-11);
* dyadic relational patterns: self-attention over the micro-behaviours in which the star node is
  the query and every key/value carries the embedding of the (star op, op_j) pair (Eqs. 12-17).

A fusion gate mixes the star's attention output with the last micro-behaviour (Eq. 18), and items
are scored by ``w_k * cos(m, v_i)`` (Eq. 19). Batch inputs (multigraph, micro-behaviour sequence,
dyadic ids) come from :class:`recbole_ext.data.dataloader.multigraph.MultigraphTransform`.

Switches (``properties/model/EMBSR.yaml``) give the paper's variants; ``star_op`` chooses between the
leak-free learned "next operation" (default) and the paper's use of the target's own operation;
``reproduce_code`` gives the authors' code's behaviour where it departs from the paper.
One departure from the paper is on by default (``recent_interest: last_micro`` gives the paper's
model, as the EMBSR recipes set), and one is offered off (both leak-free):

* ``mask_last_item`` keeps the last input item out of the candidates: within a session the target
  never is that item (consecutive micro-behaviours on one item form one macro item), yet cosine
  scoring of a representation built from that item's embedding ranks it high. Off by default: the
  rule would lift any model (SASRec too), so a comparison must give it to all or none;
* ``recent_interest: op_linear`` (default) maps x_t by a learned matrix of its operation, x_t + W[o_t] x_t.
  The paper's x_t = h_t + O[o_t] is additive in the item and the operation, so the same item
  cannot point to different successors for different operations; and the last macro item's run
  never enters the GNN (the last node has no out-edge). ``run_film`` is a variant conditioned on
  the GRU state of the whole last run.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from recbole.model.abstract_recommender import SequentialRecommender

# Named variants of the paper (Sec. V-C..F) as switch presets: (sequence_encoder, op_run_gru, attention, fusion)
VARIANTS = {
    "EMBSR": ("sgnn", True, "dyadic", "gate"),
    "EMBSR-NS": ("sgnn", True, "none", "gate"),
    "EMBSR-NG": ("none", False, "dyadic", "gate"),
    "EMBSR-NF": ("sgnn", True, "dyadic", "mlp"),
    "SGNN-Self": ("sgnn", False, "plain", "gate"),
    "SGNN-Seq-Self": ("sgnn", True, "plain", "gate"),
    "RNN-Self": ("rnn", False, "plain", "gate"),
    "SGNN-Abs-Self": ("sgnn", False, "absolute", "gate"),
    "SGNN-Dyadic": ("sgnn", False, "dyadic", "gate"),
}
SEQUENCE_ENCODERS = ("sgnn", "rnn", "none")
ATTENTIONS = ("dyadic", "absolute", "plain", "none")
FUSIONS = ("gate", "mlp", "fixed")
RECENT_INTERESTS = ("last_micro", "run_film", "op_linear")


def _choice(config, key, choices):
    value = config[key]
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {value!r}")
    return value


def _gather_rows(values, index):
    """``values[b, index[b, j]]`` for ``values`` ``[B, N, d]`` and ``index`` ``[B, M]``."""
    return torch.gather(values, 1, index.unsqueeze(-1).expand(-1, -1, values.size(-1)))


class EMBSR(SequentialRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # load parameters
        self.hidden_size = config["embedding_size"]
        self.step = config["step"]
        self.dropout_prob = config["dropout_prob"]
        self.scale_weight = config["scale_weight"]
        self.init_std = config["init_std"]
        self.reproduce_code = bool(config["reproduce_code"])
        self.mask_last_item = bool(config["mask_last_item"])
        self.loss_type = config["loss_type"]
        if self.loss_type != "CE":
            raise ValueError(f"loss_type must be 'CE' for EMBSR (the paper's loss), got {self.loss_type!r}")
        self._load_switches(config)
        if not isinstance(self.step, int) or self.step < 1:
            raise ValueError(f"step must be a positive integer (GNN propagation steps), got {self.step!r}")

        op_field = config["OPERATION_FIELD"]
        if not op_field:
            raise ValueError("OPERATION_FIELD is not set: EMBSR needs a micro-behaviour dataset")
        self.num_op_values = dataset.num(op_field)  # real ops 1..n-1; id n is the learned "next operation"
        max_run = dataset.field2seqlen[op_field]
        max_micro = self.max_seq_length * max_run
        d = self.hidden_size

        # define layers
        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.op_embedding = nn.Embedding(self.num_op_values + 1, d, padding_idx=0)
        self.position_embedding = nn.Embedding(max_micro + 2, d)  # micro j -> j, star -> length + 1
        self.pair_embedding = nn.Embedding(self.num_op_values**2 + 1, d, padding_idx=0)

        if self.sequence_encoder == "sgnn":
            message_size = 2 * d if self.op_run_gru else d
            if self.op_run_gru:
                self.op_run_gru_layer = nn.GRU(d, d, batch_first=True)
            self.in_message = nn.Linear(message_size, d)
            self.out_message = nn.Linear(message_size, d)
            self.node_update = nn.GRUCell(2 * d, d)
            self.star_gate_query = nn.Linear(d, d, bias=False)
            self.star_gate_key = nn.Linear(d, d, bias=False)
            self.star_attention_key = nn.Linear(d, d, bias=False)
            self.star_attention_query = nn.Linear(d, d, bias=False)
            self.highway = nn.Linear(2 * d, d)
        elif self.sequence_encoder == "rnn":
            self.micro_gru = nn.GRU(2 * d, d, batch_first=True)

        if self.attention != "none":
            self.attention_query = nn.Linear(d, d)
            self.ffn_in = nn.Linear(d, d)
            self.ffn_out = nn.Linear(d, d)
            self.attention_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(self.dropout_prob)

        if self.recent_interest == "run_film":
            if not hasattr(self, "op_run_gru_layer"):
                self.op_run_gru_layer = nn.GRU(d, d, batch_first=True)
            self.film_scale = nn.Linear(d, d)
            self.film_shift = nn.Linear(d, d)
        elif self.recent_interest == "op_linear":
            # one d x d map per operation id (padding and the "next" id included, never read for
            # them); drawn N(0, init_std) below like every parameter
            self.op_maps = nn.Parameter(torch.empty(self.num_op_values + 1, d, d))

        if self.fusion == "gate":
            self.fusion_gate = nn.Linear(2 * d, d)
        elif self.fusion == "mlp":
            self.fusion_mlp = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, d))

        self.loss_fct = nn.CrossEntropyLoss()

        # parameters initialization
        self._init_parameters()

    def _load_switches(self, config):
        variant = config["variant"]
        if variant is not None:
            if variant not in VARIANTS:
                raise ValueError(f"variant must be one of {sorted(VARIANTS)} or null, got {variant!r}")
            self.sequence_encoder, self.op_run_gru, self.attention, self.fusion = VARIANTS[variant]
        else:
            self.sequence_encoder = _choice(config, "sequence_encoder", SEQUENCE_ENCODERS)
            self.op_run_gru = bool(config["op_run_gru"])
            self.attention = _choice(config, "attention", ATTENTIONS)
            self.fusion = _choice(config, "fusion", FUSIONS)
        self.fusion_beta = config["fusion_beta"]
        # the variants without operations (attention: plain) keep the paper's operation-free x_t
        self.recent_interest = _choice(config, "recent_interest", RECENT_INTERESTS)
        if self.attention == "plain":
            self.recent_interest = "last_micro"
        if self.fusion == "fixed" and not (isinstance(self.fusion_beta, (int, float)) and 0 <= self.fusion_beta <= 1):
            raise ValueError(f"fusion_beta must be a number in [0, 1] with fusion: fixed, got {self.fusion_beta!r}")

    def _init_parameters(self):
        # The paper (following MKM-SR) and its code draw every parameter from N(0, init_std). The code
        # also draws the LayerNorm gains and the padding rows; by default they start at their
        # neutral values (gain 1, bias 0, zero padding rows) unless reproduce_code is set.
        for parameter in self.parameters():
            nn.init.normal_(parameter, 0.0, self.init_std)
        if not self.reproduce_code:
            if self.attention != "none":
                nn.init.ones_(self.attention_norm.weight)
                nn.init.zeros_(self.attention_norm.bias)
            with torch.no_grad():
                for table in (self.item_embedding, self.op_embedding, self.pair_embedding):
                    table.weight[0].zero_()

    # ------------------------------------------------------------------ sequential patterns
    def _encode_operation_runs(self, op_runs, run_length):
        """Last GRU state over each macro item's operation run: one packed GRU call per batch."""
        batch_size, max_len, _ = op_runs.shape
        states = op_runs.new_zeros(batch_size, max_len, self.hidden_size, dtype=torch.float)
        has_run = run_length > 0
        if has_run.any():
            runs = self.op_embedding(op_runs[has_run])
            packed = pack_padded_sequence(runs, run_length[has_run].cpu(), batch_first=True, enforce_sorted=False)
            _, last_state = self.op_run_gru_layer(packed)
            states[has_run] = last_state[0]
        return states

    def _masked_mean(self, values, mask, count):
        return (values * mask.unsqueeze(-1)).sum(1) / count.clamp(min=1).unsqueeze(-1)

    def _star_gnn(self, node_embeddings, node_mask, num_nodes, alias, run_states, item_length):
        """Multigraph gated GNN with a star node and a highway network (Eqs. 2, 5-11)."""
        batch_size, num_slots, d = node_embeddings.shape
        scale = math.sqrt(d)
        initial = node_embeddings
        if self.reproduce_code:  # the code averages over all node slots (padding rows included)
            star = initial.sum(1) / num_nodes.clamp(min=1).unsqueeze(-1)
        else:
            star = self._masked_mean(initial, node_mask, num_nodes)
        source, target = alias[:, :-1], alias[:, 1:]
        edge_mask = (torch.arange(alias.size(1) - 1, device=alias.device).unsqueeze(0) < (item_length - 1).unsqueeze(1))
        edge_mask = edge_mask.unsqueeze(-1).float()
        source_index = source.unsqueeze(-1).expand(-1, -1, d)
        target_index = target.unsqueeze(-1).expand(-1, -1, d)
        hidden = initial
        for _ in range(self.step):
            # the code always sends layer-0 embeddings; the paper sends the current layer's
            sender = initial if self.reproduce_code else hidden
            source_part, target_part = _gather_rows(sender, source), _gather_rows(sender, target)
            if self.op_run_gru:
                source_part = torch.cat([source_part, run_states[:, :-1]], -1)
                target_part = torch.cat([target_part, run_states[:, 1:]], -1)
            # in-edge u->v brings [e_u; run of u]; out-edge u->v brings [e_v; run of v] to u (Eq. 5);
            # the code sends u's own [e_u; run of u] along its out-edges
            out_part = source_part if self.reproduce_code else target_part
            if self.reproduce_code:  # the code adds each bias once per node slot, edges or not
                in_messages = F.linear(source_part, self.in_message.weight) * edge_mask
                out_messages = F.linear(out_part, self.out_message.weight) * edge_mask
            else:
                in_messages = self.in_message(source_part) * edge_mask
                out_messages = self.out_message(out_part) * edge_mask
            aggregated_in = hidden.new_zeros(batch_size, num_slots, d).scatter_add_(1, target_index, in_messages)
            aggregated_out = hidden.new_zeros(batch_size, num_slots, d).scatter_add_(1, source_index, out_messages)
            if self.reproduce_code:
                aggregated_in = aggregated_in + self.in_message.bias
                aggregated_out = aggregated_out + self.out_message.bias
            updated = self.node_update(
                torch.cat([aggregated_in, aggregated_out], -1).view(-1, 2 * d), hidden.reshape(-1, d)
            ).view(batch_size, num_slots, d)
            # star -> satellite gate (Eq. 9, unbounded as in the paper), then star update (Eq. 10)
            gate = (self.star_gate_query(updated) * self.star_gate_key(star).unsqueeze(1)).sum(-1, keepdim=True) / scale
            hidden = (1 - gate) * updated + gate * star.unsqueeze(1)
            scores = (self.star_attention_key(hidden) * self.star_attention_query(star).unsqueeze(1)).sum(-1) / scale
            if not self.reproduce_code:
                scores = scores.masked_fill(~node_mask, float("-inf"))
            star = (torch.softmax(scores, -1).unsqueeze(-1) * hidden).sum(1)
        highway_gate = torch.sigmoid(self.highway(torch.cat([initial, hidden], -1)))
        return highway_gate * initial + (1 - highway_gate) * hidden, star

    # ------------------------------------------------------------------ dyadic relational patterns
    def _star_attention(self, star_input, micro_inputs, micro_mask, micro_length, star_pairs):
        """Operation-aware self-attention, star row only (Eqs. 14-17): the rows of the other
        micro-behaviours never reach the output, so computing just this one is exact."""
        batch_size, max_micro, d = micro_inputs.shape
        positions = torch.arange(1, max_micro + 1, device=micro_inputs.device).unsqueeze(0)
        micro_keys = micro_inputs + self.position_embedding(positions)
        star_key = star_input + self.position_embedding(micro_length + 1)
        keys = torch.cat([star_key.unsqueeze(1), micro_keys], 1)
        if self.attention == "dyadic":
            keys = keys + self.pair_embedding(star_pairs)
        query = self.attention_query(star_input)
        if self.reproduce_code:
            query = self.dropout(F.relu(query))
        scores = (keys * query.unsqueeze(1)).sum(-1) / math.sqrt(d)
        key_mask = torch.cat([micro_mask.new_ones(batch_size, 1), micro_mask], 1)
        weights = torch.softmax(scores.masked_fill(~key_mask, float("-inf")), -1)
        output = (weights.unsqueeze(-1) * keys).sum(1)
        return self.attention_norm(output + self.dropout(self.ffn_out(F.relu(self.ffn_in(output)))))

    # ------------------------------------------------------------------ session representation
    def _condition_on_last_run(self, recent_interest, interaction, item_length, used_len):
        """recent_interest 'run_film': x_t = (1 + W_g g_t) * x_t + W_b g_t with g_t the GRU state of
        the last macro item's whole operation run. The paper's x_t = h_t + O[o_t] is additive in
        the item and its last operation, so it cannot send one item to different successors for
        different runs; the multiplicative term can (and the last run never enters the GNN)."""
        last = (item_length - 1).clamp(min=0).unsqueeze(1)
        op_runs = interaction["mg_op_runs"][:, :used_len]
        last_run = torch.gather(op_runs, 1, last.unsqueeze(-1).expand(-1, -1, op_runs.size(-1)))
        last_length = torch.gather(interaction["mg_run_length"][:, :used_len], 1, last)
        run_state = self._encode_operation_runs(last_run, last_length).squeeze(1)
        return (1 + self.film_scale(run_state)) * recent_interest + self.film_shift(run_state)

    def _fuse(self, global_preference, recent_interest):
        if self.fusion == "gate":
            beta = torch.sigmoid(self.fusion_gate(torch.cat([global_preference, recent_interest], -1)))
        elif self.fusion == "fixed":
            beta = self.fusion_beta
        else:
            return self.fusion_mlp(torch.cat([global_preference, recent_interest], -1))
        return beta * global_preference + (1 - beta) * recent_interest

    def forward(self, interaction):
        item_length = interaction[self.ITEM_SEQ_LEN]
        num_nodes = interaction["mg_num_nodes"]
        micro_length = interaction["mg_micro_length"]
        # trim the fixed-size padding of the transform to what this batch uses
        used_len, used_nodes, used_micro = int(item_length.max()), int(num_nodes.max()), int(micro_length.max())
        item_seq = interaction[self.ITEM_SEQ][:, :used_len]
        alias = interaction["mg_alias"][:, :used_len]
        node_items = interaction["mg_node_items"][:, :used_nodes]
        micro_macro = interaction["mg_micro_macro"][:, :used_micro]
        micro_op = interaction["mg_micro_op"][:, :used_micro]
        star_pairs = interaction["mg_star_pairs"][:, : used_micro + 1]
        node_mask = torch.arange(used_nodes, device=item_seq.device).unsqueeze(0) < num_nodes.unsqueeze(1)
        micro_mask = torch.arange(used_micro, device=item_seq.device).unsqueeze(0) < micro_length.unsqueeze(1)

        if self.sequence_encoder == "rnn":
            # RNN-Self: a GRU over [item; op] of every micro-behaviour replaces the GNN
            micro_items = torch.gather(item_seq, 1, micro_macro)
            inputs = torch.cat([self.item_embedding(micro_items), self.op_embedding(micro_op)], -1)
            packed = pack_padded_sequence(inputs, micro_length.cpu(), batch_first=True, enforce_sorted=False)
            states, _ = self.micro_gru(packed)
            micro_repr = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=used_micro)[0]
            star = self._masked_mean(micro_repr, micro_mask, micro_length)
        else:
            node_embeddings = self.item_embedding(node_items)
            if self.sequence_encoder == "sgnn":
                if self.op_run_gru:
                    run_states = self._encode_operation_runs(
                        interaction["mg_op_runs"][:, :used_len], interaction["mg_run_length"][:, :used_len]
                    )
                else:
                    run_states = None
                node_repr, star = self._star_gnn(node_embeddings, node_mask, num_nodes, alias, run_states, item_length)
            else:  # EMBSR-NG: no GNN, the star is the mean of the session's items (Eq. 2)
                node_repr = node_embeddings
                star = self._masked_mean(node_embeddings, node_mask, num_nodes)
            micro_repr = _gather_rows(node_repr, torch.gather(alias, 1, micro_macro))

        star_input = star
        micro_inputs = micro_repr
        # x_i = e_v + e_o (Eq. 12), x_s = e_s + e_o(t+1) (Eq. 13); only the 'plain' variants have no operations
        if self.attention != "plain":
            micro_inputs = micro_repr + self.op_embedding(micro_op)
            star_input = star + self.op_embedding(interaction["mg_star_op"])
        recent_interest = _gather_rows(micro_inputs, (micro_length - 1).unsqueeze(1)).squeeze(1)
        if self.recent_interest == "run_film":
            recent_interest = self._condition_on_last_run(recent_interest, interaction, item_length, used_len)
        elif self.recent_interest == "op_linear":  # x_t + W[o_t] x_t
            last_op = torch.gather(micro_op, 1, (micro_length - 1).unsqueeze(1)).squeeze(1)
            # the map is picked by a one-hot product, not by indexing op_maps: the gradient of an
            # index with repeats accumulates in thread order on CPU, so a seed would not fix it
            pick = F.one_hot(last_op, self.op_maps.size(0)).to(recent_interest.dtype)
            recent_interest = recent_interest + torch.einsum("bk,kde,be->bd", pick, self.op_maps, recent_interest)
        if self.attention == "none":  # EMBSR-NS: the star node is the global preference
            global_preference = star
        else:
            global_preference = self._star_attention(star_input, micro_inputs, micro_mask, micro_length, star_pairs)
        return self._fuse(global_preference, recent_interest)

    def _last_items(self, interaction):
        item_length = interaction[self.ITEM_SEQ_LEN]
        return torch.gather(interaction[self.ITEM_SEQ], 1, (item_length - 1).clamp(min=0).unsqueeze(1)).squeeze(1)

    def _scores(self, session_repr, interaction, items=None, targets=None):
        session_repr = self.scale_weight * F.normalize(session_repr, dim=-1)
        if items is not None:
            scores = (session_repr * F.normalize(self.item_embedding(items), dim=-1)).sum(-1)
            if self.mask_last_item:
                scores = scores.masked_fill(items == self._last_items(interaction), float("-inf"))
            return scores
        logits = session_repr @ F.normalize(self.item_embedding.weight, dim=-1).t()
        # item 0 is padding, never a candidate (the code scores items 1..n only)
        logits = torch.cat([torch.full_like(logits[:, :1], float("-inf")), logits[:, 1:]], 1)
        if self.mask_last_item:
            # consecutive micro-behaviours on one item are one macro item, so within a session the
            # target is never the last input item; this leak-free mask keeps it out of the candidates.
            # In training an example whose target repeats it (across a session boundary) is left
            # unmasked, so that its loss stays finite.
            last = self._last_items(interaction)
            masked = torch.full_like(logits[:, :1], float("-inf"))
            if targets is not None:
                masked = torch.where((targets == last).unsqueeze(1), logits.gather(1, last.unsqueeze(1)), masked)
            logits = logits.scatter(1, last.unsqueeze(1), masked)
        return logits

    def calculate_loss(self, interaction):
        targets = interaction[self.POS_ITEM_ID]
        logits = self._scores(self.forward(interaction), interaction, targets=targets)
        return self.loss_fct(logits, targets)

    def predict(self, interaction):
        return self._scores(self.forward(interaction), interaction, interaction[self.ITEM_ID])

    def full_sort_predict(self, interaction):
        return self._scores(self.forward(interaction), interaction)
