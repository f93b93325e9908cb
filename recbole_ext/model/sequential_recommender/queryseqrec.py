r"""
QuerySeqRec
################################################

Reference:
    Zhankui He, Handong Zhao, Zhaowen Wang, Zhe Lin, Ajinkya Kale, Julian McAuley.
    "Query-Aware Sequential Recommendation." In CIKM 2022.

The user's queries are interleaved with the clicked items into one heterogeneous sequence
(``QueryAwareDataset``); items, queries (the mean of their word embeddings), event types and
positions share one embedding space and a Transformer encoder reads the sequence; items are
scored by inner product with the item table. The training dataloader augments the inputs by
query-item-graph replacement (``QueryGraphAugmentation``).

``query_fusion: gated`` (this package's design, not the paper's) runs two streams: the paper's
heterogeneous encoder, and SASRec's encoder over the item history alone (item_id_list, which the
augmentation never rewrites); a learned per-dimension gate at every position mixes the two,
initialised towards the item stream (``gate_bias_init``), so the model starts as SASRec and moves
towards the queries only where that lowers the training loss (``gate_towards_item_history``).
Why: at an item position SASRec's output starts from that item's own embedding, so with tied
output embeddings the "same or a similar item next" prior comes almost for free; at a query
position the heterogeneous output starts from a mean of word embeddings and the history must come
through attention, which little data, rare words or uninformative queries do not teach; and the
graph augmentation, which rewrites a quarter of the input items, blurs item-to-item transitions.
A gate on one shared encoder (between its query state and its latest item state) cannot undo
that, hence the separate clean stream (the cost: a second encoder, about 2x).

Switches of the gated form, all off by default (measured, see the yaml and
``benchmarks/bench_queryseqrec.py``): ``item_stream_loss_weight`` and
``query_stream_loss_weight`` add each stream's own next-item loss (deep supervision: the item
stream trained as SASRec is, the heterogeneous one as the paper's model); ``item_stream_isolation``
keeps the gated loss off the item stream's encoder (stream) and also off the item table (table:
the item side is then trained exactly as SASRec, the query side against a detached table);
``stream_dropout`` shuts the gate of each training example with a given probability. Diagnosis on
synthetic-weakq (validation): the item stream of a trained gated model, read alone, scores below
SASRec (0.184 against 0.211 NDCG@10, seed 2020), and the gated model early-stops sooner (14
epochs against 25): the heterogeneous stream overfits and the validation optimum of the mixture
comes before the item stream has converged (not through rare query words: see the rare-word
switches below). Isolating the item side repairs the item stream but starves the query side
(synthetic's gain falls from +19% to +5%).

``training_schedule: two_stage`` (issue 16; ``joint`` is the model above, unchanged)
trains the gated form in two stages, each one run of RecBole's ``Trainer.fit`` with its own
early stopping (``recbole_ext.trainer.StagedTrainer``): stage "items" trains the item side alone
exactly as SASRec (the item table and the item-stream encoder, the item stream's loss only;
``full_sort_predict`` is the item stream's) and keeps its best validation checkpoint; stage
"queries" reloads it, freezes the item side (no gradient; its dropout off, so the query side
learns on the item states it meets at evaluation) and trains the rest (word and type
embeddings, the heterogeneous encoder, the gate) on the full prediction
``h_items + W_o (g * (h_t - h_items))``, where ``W_o`` starts at zero (the latest event item is
aligned with the last item of item_id_list, as in joint): stage 2 starts exactly at the stage-1 model, and
its start is validated and kept as best before any update, so on validation the result is
never below the SASRec-trained item stream. Measured (3 seeds, QSR_WEAKQ.md's protocol, figures
in the yaml): level with SASRec on synthetic-weakq (all +0.4%, p=0.75; query-ended +1.3%,
p=0.73), where joint is -11.0% on query-ended (p=0.024); but on synthetic only +8.4% against
joint's +22.9%: against an item table frozen at SASRec's, the query side hardly learns what
the queries name (query-ended 0.078 against joint's 0.203). (A per-dimension scale in place of
``W_o`` did worse: synthetic +5.5%, weakq -2.2%.)

``training_schedule: two_stage_fine_tune`` (the default) runs the same stage 1, then trains every
parameter in stage 2 (the item side too, its dropout on), from the stage-1 model and with the
same validated start, so on validation it is still never below the SASRec-trained item stream.
``stage_two_word_init: linked_items`` (the default) starts stage 2's word table where the
queries point: each word becomes the mean stage-1 embedding of the items its queries lead to in
the training split's query-item graph (``begin_training_stage``; prediction unchanged, W_o is
still 0). Why: under Adam a weight moves about one learning rate per step, so words drawn at the
initial scale need many epochs to reach the trained item table's scale, and early stopping ends
stage 2 first; in joint training words and items grow together. Measured (QSR_WEAKQ.md, 3
seeds, test NDCG@10 against SASRec): synthetic +15.4% (p=2e-15; fine-tuning with random words
+12.6%, frozen item side with linked words +7.0%), synthetic-weakq all +1.0% (p=0.77),
query-ended +1.8% (p=0.66): level where joint is -7.3% (p=0.004) and -10.1% on query-ended
(p=0.029). The default was chosen
on VALIDATION by the worst case over the two datasets of the change against SASRec (the
robustness this form exists for): two_stage_fine_tune + linked_items +14.5% / +1.9% (worst
+1.9%), fine-tuning with random words +13.3% / +1.8%, two_stage +7.9% / +1.5%, joint +21.8% /
-4.8% (worst -4.8%; joint has the best mean, 0.2751 against 0.2715). Its price: query-ended
examples on synthetic reach 0.108 where joint reaches 0.203, so ``joint`` stays one switch away
for data whose queries are known to be informative.

Rare-word regularisation of the query representation (every fusion; off by default, issue 16):
``min_word_count`` k maps each word seen fewer than k times in the TRAINING split's queries to one
shared out-of-vocabulary word (an extra row of the word table); the counts
(``QueryAwareDataset.train_word_counts``) count each query event of the training inputs once, so
the queries only validation or test inputs hold are never counted. ``word_dropout`` p replaces
each query word by the OOV word with probability p in training (evaluation reads every word).
Both are one lookup in a remap tensor over word ids (``query_words_of``). Measured on
synthetic-weakq (3 seeds, see the yaml): they do not close the gap on query-ended examples
(k = 2, 4, 8: -6%, -14%, -14% against SASRec, the default without them -11%), and neither does
mapping every word (queries reduced to bare events: -14%), so rare words are not what the
heterogeneous stream overfits: the default keeps both off. On synthetic no word is rare
(each seen >= 26 times), and the model with k <= 26 is exactly the default.

Config switches (``properties/model/QuerySeqRec.yaml``) give the paper's variants:
``use_queries: False`` ("w/o Q": exactly SASRec's input and encoder), ``query_fusion``
(Table 4: heterogeneous, early, late as in FDSA, nova as in NOVA-BERT), ``backbone`` (Table 5:
transformer, gru as GRU4Rec, fpmc as FPMC, ssept as SSE-PT, each reading the heterogeneous
sequence), ``initialization`` (sasrec, or xavier as the authors' code),
``train_positions`` (last: RecBole style; all: every position followed by an item, the paper's
code), ``transformer_block`` (standard: RecBole's SASRec block; authors: the block of the authors'
released code) and ``softmax_samples`` (sampled softmax for large catalogues, Sec. 2.4).

Each encoder path is one method (``_forward_<path>``, see ``encoder_path``) with one output
contract: the states of every input position and the index of the one that scores the target.
The early and NOVA fusions attach each query to the item it precedes; the query issued after the
last input item (just before the target) gets a query-only slot of its own, so every fusion reads
it.
"""


import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import FeedForward, TransformerEncoder
from recbole.model.loss import BPRLoss

from recbole_ext.data.dataset.query_dataset import (
    EVENT_ITEM,
    EVENT_ITEM_FIELD,
    EVENT_ITEM_LABEL_FIELD,
    EVENT_LENGTH_FIELD,
    EVENT_QUERY,
    EVENT_QUERY_FIELD,
    EVENT_TYPE_FIELD,
    ITEM_CONTEXT_FIELD,
    trailing_query,
)
from recbole_ext.model.layers import init_like_sasrec

BACKBONES = ("transformer", "gru", "fpmc", "ssept")
INITIALIZATIONS = ("sasrec", "xavier")
FUSIONS = ("heterogeneous", "gated", "early", "late", "nova")
# fusions that read the heterogeneous event sequence (every backbone, every trained position)
EVENT_FUSIONS = ("heterogeneous", "gated")
TRAIN_POSITIONS = ("last", "all")
SAMPLERS = ("uniform", "popularity")
TRANSFORMER_BLOCKS = ("standard", "authors")
TRAINING_SCHEDULES = ("joint", "two_stage", "two_stage_fine_tune")
# how stage 2 of a two-stage schedule starts the word table (see begin_training_stage)
STAGE_TWO_WORD_INITS = ("random", "linked_items")
# the stages of training_schedule two_stage, in order (recbole_ext.trainer.StagedTrainer)
ITEM_STAGE, QUERY_STAGE = "items", "queries"


def _choice(config, key, default, choices):
    value = config[key]
    value = default if value is None else value
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(map(str, choices))}, got '{value}'")
    return value


def _value(config, key, default):
    value = config[key]
    return default if value is None else value


class NovaEncoder(nn.Module):
    """NOVA-BERT-style self-attention (Liu et al., AAAI 2021): side information (here the
    context query and the position) enters the queries and keys only, never the values, so the
    item representations are not polluted by it."""

    def __init__(self, n_layers, n_heads, hidden_size, inner_size, dropout, act, eps):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of n_heads "
                             f"({n_heads})")
        self.n_heads = n_heads
        self.dropout_prob = dropout
        self.qk = nn.ModuleList(nn.Linear(hidden_size, 2 * hidden_size) for _ in range(n_layers))
        self.value = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(n_layers))
        self.out = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(n_layers))
        self.norm = nn.ModuleList(nn.LayerNorm(hidden_size, eps=eps) for _ in range(n_layers))
        self.ffn = nn.ModuleList(FeedForward(hidden_size, inner_size, dropout, act, eps)
                                 for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x):
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, -1).transpose(1, 2)

    def forward(self, hidden, side, additive_mask):
        for qk, value, out, norm, ffn in zip(self.qk, self.value, self.out, self.norm, self.ffn):
            query, key = qk(hidden + side).chunk(2, dim=-1)
            attended = F.scaled_dot_product_attention(
                self._heads(query), self._heads(key), self._heads(value(hidden)),
                attn_mask=additive_mask,
                dropout_p=self.dropout_prob if self.training else 0.0)
            attended = attended.transpose(1, 2).reshape(hidden.shape)
            hidden = norm(self.dropout(out(attended)) + hidden)
            hidden = ffn(hidden)
        return hidden


class AuthorsTransformerEncoder(nn.Module):
    """The Transformer block of the authors' released code (MODEL_NOTES 1.2), which is not
    SASRec's: only the attention query is layer-normed (keys and values read the raw input),
    there is no residual around the attention, and the feed-forward output is added to twice its
    (layer-normed) input, because the feed-forward module adds its input and the caller adds it
    again. A final LayerNorm closes the stack. Same call signature as RecBole's
    ``TransformerEncoder``."""

    def __init__(self, n_layers, n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout,
                 eps):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of n_heads "
                             f"({n_heads})")
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        self.attention_norm = nn.ModuleList(nn.LayerNorm(hidden_size, eps=eps)
                                            for _ in range(n_layers))
        self.query = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(n_layers))
        self.key_value = nn.ModuleList(nn.Linear(hidden_size, 2 * hidden_size)
                                       for _ in range(n_layers))
        self.out = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(n_layers))
        self.ffn_norm = nn.ModuleList(nn.LayerNorm(hidden_size, eps=eps) for _ in range(n_layers))
        self.ffn = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden_size, inner_size), nn.ReLU(), nn.Dropout(hidden_dropout),
                          nn.Linear(inner_size, hidden_size), nn.Dropout(hidden_dropout))
            for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(hidden_size, eps=eps)

    def _heads(self, x):
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, -1).transpose(1, 2)

    def forward(self, hidden, attention_mask, output_all_encoded_layers=True):
        for attention_norm, query, key_value, out, ffn_norm, ffn in zip(
                self.attention_norm, self.query, self.key_value, self.out, self.ffn_norm,
                self.ffn):
            key, value = key_value(hidden).chunk(2, dim=-1)
            attended = F.scaled_dot_product_attention(
                self._heads(query(attention_norm(hidden))), self._heads(key),
                self._heads(value), attn_mask=attention_mask,
                dropout_p=self.attn_dropout if self.training else 0.0)
            normed = ffn_norm(out(attended.transpose(1, 2).reshape(hidden.shape)))
            hidden = ffn(normed) + 2 * normed
        return [self.final_norm(hidden)]


class QuerySeqRec(SequentialRecommender):
    r"""Query-aware sequential recommender (see module doc)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        self.n_layers = config["n_layers"]
        self.n_heads = config["n_heads"]
        self.hidden_size = config["hidden_size"]
        self.inner_size = config["inner_size"]
        self.hidden_dropout_prob = config["hidden_dropout_prob"]
        self.attn_dropout_prob = config["attn_dropout_prob"]
        self.hidden_act = config["hidden_act"]
        self.layer_norm_eps = config["layer_norm_eps"]
        self.initializer_range = config["initializer_range"]
        self.loss_type = _choice(config, "loss_type", "CE", ("CE", "BPR"))

        self.use_queries = bool(_value(config, "use_queries", True))
        self.backbone = _choice(config, "backbone", "transformer", BACKBONES)
        self.query_fusion = _choice(config, "query_fusion", "heterogeneous", FUSIONS)
        self.train_positions = _choice(config, "train_positions", "last", TRAIN_POSITIONS)
        self.softmax_samples = int(_value(config, "softmax_samples", 0))
        self.softmax_sampler = _choice(config, "softmax_sampler", "uniform", SAMPLERS)
        self.logq_correction = bool(_value(config, "logq_correction", False))
        self.transformer_block = _choice(config, "transformer_block", "standard",
                                         TRANSFORMER_BLOCKS)
        self.initialization = _choice(config, "initialization", "sasrec", INITIALIZATIONS)
        self.sse_user_prob = float(_value(config, "sse_user_prob", 0.0))
        self.sse_item_prob = float(_value(config, "sse_item_prob", 0.0))
        for key in ("sse_user_prob", "sse_item_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        if self.softmax_samples < 0 or self.softmax_samples == 1:
            raise ValueError(f"softmax_samples must be 0 (full softmax) or >= 2, got "
                             f"{self.softmax_samples}")
        # Only the heterogeneous sequence exists for every backbone and every position.
        self.reads_events = self.use_queries and self.query_fusion in EVENT_FUSIONS
        self.history_gate = self.use_queries and self.query_fusion == "gated"
        if self.use_queries and not self.reads_events and \
                self.backbone != "transformer":
            raise ValueError(f"query_fusion '{self.query_fusion}' is defined for backbone "
                             f"'transformer' only, got backbone '{self.backbone}'")
        if self.train_positions == "all" and self.use_queries and not self.reads_events:
            raise ValueError(f"train_positions 'all' needs query_fusion 'heterogeneous' or 'gated', got "
                             f"'{self.query_fusion}'")
        nova = self.use_queries and self.query_fusion == "nova"
        if self.transformer_block == "authors" and (self.backbone != "transformer" or nova):
            raise ValueError("transformer_block 'authors' needs backbone 'transformer' and a "
                             "query_fusion other than 'nova'")
        if self.history_gate and self.backbone != "transformer":
            raise ValueError(f"query_fusion 'gated' (the default) needs backbone 'transformer', "
                             f"got backbone '{self.backbone}'; Table 5's backbones read the "
                             f"paper's sequence: set query_fusion: heterogeneous")
        self.item_stream_loss_weight = float(_value(config, "item_stream_loss_weight", 0.0))
        self.stream_dropout = float(_value(config, "stream_dropout", 0.0))
        if self.item_stream_loss_weight < 0:
            raise ValueError(f"item_stream_loss_weight must be >= 0, got "
                             f"{self.item_stream_loss_weight}")
        self.query_stream_loss_weight = float(_value(config, "query_stream_loss_weight", 0.0))
        if self.query_stream_loss_weight < 0:
            raise ValueError(f"query_stream_loss_weight must be >= 0, got "
                             f"{self.query_stream_loss_weight}")
        # the item stream trained by its own loss only (needs that loss: w > 0)
        self.item_stream_isolation = _choice(config, "item_stream_isolation", "none",
                                             ("none", "stream", "table"))
        self.isolated = self.history_gate and self.item_stream_isolation == "table"
        if self.history_gate and self.item_stream_isolation != "none" and \
                self.item_stream_loss_weight <= 0:
            raise ValueError(f"item_stream_isolation '{self.item_stream_isolation}' needs "
                             f"item_stream_loss_weight > 0 (the item stream's only loss)")
        if not 0.0 <= self.stream_dropout <= 1.0:
            raise ValueError(f"stream_dropout must be in [0, 1], got {self.stream_dropout}")
        self.min_word_count = _value(config, "min_word_count", 0)
        if isinstance(self.min_word_count, bool) or not isinstance(self.min_word_count, int) \
                or self.min_word_count < 0:
            raise ValueError(f"min_word_count must be an integer >= 0, got "
                             f"{self.min_word_count!r}")
        self.word_dropout = float(_value(config, "word_dropout", 0.0))
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {self.word_dropout}")
        self.training_schedule = _choice(config, "training_schedule", "two_stage_fine_tune",
                                         TRAINING_SCHEDULES)
        # the schedules are the gated form's: every other form (the paper's heterogeneous
        # model, Table 4's fusions, use_queries False = SASRec) trains in one stage
        self.two_stage = self.training_schedule != "joint" and self.history_gate
        # two_stage_fine_tune: stage 2 trains every parameter, the item side included
        self.stage_two_trains_item_side = self.training_schedule == "two_stage_fine_tune"
        self.stage_two_word_init = _choice(config, "stage_two_word_init", "linked_items",
                                           STAGE_TWO_WORD_INITS)
        frozen_stage_two = self.two_stage and self.training_schedule == "two_stage"
        if frozen_stage_two and (self.item_stream_loss_weight or self.query_stream_loss_weight
                                 or self.item_stream_isolation != "none"):
            raise ValueError("training_schedule 'two_stage' trains each stream on its own: set "
                             "item_stream_loss_weight 0, query_stream_loss_weight 0 and "
                             "item_stream_isolation 'none'")
        # the stage whose loss and prediction the model computes (two_stage); None (a built or
        # loaded model, and after training): nothing frozen, the full prediction
        self.training_stage = None
        self.item_side_frozen = False
        if self.loss_type == "BPR" and (self.train_positions == "all" or self.softmax_samples):
            raise ValueError("loss_type BPR trains the last position against RecBole's sampled "
                             "negative; set train_positions: last and softmax_samples: 0")

        d = self.hidden_size
        self.uses_oov_word = False
        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        if self.use_queries:
            self.register_buffer("query_words", dataset.query_words.long(), persistent=False)
            # one shared out-of-vocabulary word (an extra row of the word table) for rare and
            # dropped words; absent when no word is rare and word_dropout is 0, so the model is
            # then exactly the one without the switches (same parameters, same random draws)
            self.oov_word = dataset.num_words
            remap = self._word_remap(dataset) if self.min_word_count > 0 else None
            self.uses_oov_word = self.word_dropout > 0 or (
                remap is not None and bool((remap == self.oov_word).any()))
            if self.uses_oov_word:
                self.register_buffer("word_remap", remap if remap is not None else
                                     torch.arange(dataset.num_words), persistent=False)
            self.word_embedding = nn.Embedding(dataset.num_words + int(self.uses_oov_word), d,
                                               padding_idx=0)
            self.type_embedding = nn.Embedding(3, d)
        # early and NOVA fusions read the item slots plus one slot for the trailing query
        self.reads_trailing_query = self.use_queries and self.query_fusion in ("early", "nova")
        self.max_positions = dataset.max_event_list_len if self.reads_events else \
            self.max_seq_length + int(self.reads_trailing_query)
        # SSE-PT concatenates a user embedding (of size d) to every input event
        self.encoder_width = 2 * d if self.backbone == "ssept" else d
        self.position_embedding = nn.Embedding(self.max_positions, self.encoder_width)
        # the authors' code feeds Dropout(embeddings + positions) to the blocks, without SASRec's
        # embedding LayerNorm
        self.LayerNorm = self._embedding_norm()
        self.dropout = nn.Dropout(self.hidden_dropout_prob)

        if self.backbone in ("transformer", "ssept"):
            fused = self.use_queries and self.query_fusion == "nova"
            if fused:
                self.nova_encoder = NovaEncoder(self.n_layers, self.n_heads, d, self.inner_size,
                                                self.hidden_dropout_prob, self.hidden_act,
                                                self.layer_norm_eps)
            else:
                self.trm_encoder = self._transformer()
            if self.use_queries and self.query_fusion == "late":
                # FDSA: a second encoder over the query sequence, outputs concatenated
                self.query_trm_encoder = self._transformer()
                self.query_position_embedding = nn.Embedding(dataset.max_event_list_len, d)
                self.query_LayerNorm = self._embedding_norm()
                self.concat_layer = nn.Linear(2 * d, d)
        elif self.backbone == "gru":
            self.gru_layers = nn.GRU(d, d, num_layers=self.n_layers, bias=False,
                                     batch_first=True)
            self.gru_dense = nn.Linear(d, d)
        if self.backbone == "ssept":
            self.user_embedding = nn.Embedding(dataset.num(self.USER_ID), d)
        elif self.backbone == "fpmc":  # user taste (UI.IU) plus a transition from the last event (IL.LI)
            # item_embedding is LI (items as successors); words share the transition space
            self.user_embedding = nn.Embedding(dataset.num(self.USER_ID), d)
            self.last_item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)  # IL
            self.user_item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)  # IU

        if self.history_gate:
            # the item-history stream: SASRec's encoder over the (never augmented) item_id_list
            self.item_stream_encoder = self._transformer()
            self.item_stream_position_embedding = nn.Embedding(self.max_seq_length, d)
            self.item_stream_LayerNorm = self._embedding_norm()
            self.history_gate_layer = nn.Linear(2 * d, d)

        if self.loss_type == "BPR":
            self.loss_fct = BPRLoss()
        self.register_buffer("sampling_weights", self._sampling_weights(dataset),
                             persistent=False)
        init_like_sasrec(self)
        if self.initialization == "xavier":
            self._init_xavier()
        if self.history_gate:  # sigmoid(bias): the gate starts towards the item state
            nn.init.constant_(self.history_gate_layer.bias,
                              float(_value(config, "gate_bias_init", -2.0)))
        if self.two_stage:
            # output map of the gated difference, zero: stage 2 starts exactly at the item stream
            # (a full d x d map, not a per-dimension scale: Adam moves each weight by about the
            # learning rate per step, so a scale would open the gate too slowly for early stopping)
            self.history_gate_out = nn.Linear(d, d, bias=False)
            nn.init.zeros_(self.history_gate_out.weight)
            if self.stage_two_word_init == "linked_items":
                # the training split's query -> item links (QueryAwareDataset.build)
                graph = dataset.query_item_graph
                self.register_buffer("query2item_ptr", graph["query2item_ptr"], persistent=False)
                self.register_buffer("query2item_idx", graph["query2item_idx"], persistent=False)

    # -- training stages (training_schedule two_stage; recbole_ext.trainer.StagedTrainer) ----
    def training_stages(self):
        """The stages the trainer runs in order, each with RecBole's own ``fit``: ``(None,)``
        for joint training; ``("items", "queries")`` for two_stage."""
        return (ITEM_STAGE, QUERY_STAGE) if self.two_stage else (None,)

    def begin_training_stage(self, stage):
        """Called by the trainer when ``stage`` starts, on the previous stage's best model.
        ``stage_two_word_init: linked_items``: at the start of stage "queries", each word's
        embedding becomes the mean stage-1 embedding of the items its queries lead to in the
        training split (the query-item graph's query -> item links; a link of a query of n
        words counts once per word); a word without links keeps its own. Predictions do not
        change (the gate's output map is still 0), so the stage still starts at stage 1. Why:
        under Adam a weight moves about one learning rate per step, so words drawn at the
        initial scale need many steps to reach the trained item table's scale and direction,
        and early stopping ends stage 2 before the queries name their items."""
        if stage != QUERY_STAGE or not self.two_stage or self.stage_two_word_init != "linked_items":
            return
        ptr, items = self.query2item_ptr, self.query2item_idx
        queries = torch.repeat_interleave(torch.arange(len(ptr) - 1, device=ptr.device),
                                          ptr[1:] - ptr[:-1])
        words = self.query_words[queries]
        if self.uses_oov_word:  # rare words as the model reads them (no dropout)
            words = self.word_remap[words]
        present = words > 0
        word_ids = words[present]
        linked = items.unsqueeze(1).expand_as(words)[present]
        table = self.word_embedding.weight
        with torch.no_grad():
            total = torch.zeros_like(table).index_add_(0, word_ids, self.item_embedding.weight[linked])
            count = torch.bincount(word_ids, minlength=len(table)).unsqueeze(1)
            has_links = count.squeeze(1) > 0
            table[has_links] = (total[has_links] / count[has_links]).to(table.dtype)

    def item_side_modules(self):
        """The item side of two_stage: the item table and the item-history stream."""
        return [self.item_embedding, self.item_stream_encoder,
                self.item_stream_position_embedding, self.item_stream_LayerNorm]

    def stage_parameters(self, stage):
        """The parameters ``stage`` trains: the item side (stage "items": the item table and
        the item-stream encoder, trained as SASRec), or every other parameter (stage "queries":
        word and type embeddings, the heterogeneous encoder, its positions and LayerNorm, the
        gate and its output map); None: all."""
        if stage is None:
            return list(self.parameters())
        item_side = {id(p) for module in self.item_side_modules() for p in module.parameters()}
        if stage == ITEM_STAGE:
            return [p for p in self.parameters() if id(p) in item_side]
        if stage == QUERY_STAGE:
            return [p for p in self.parameters()
                    if self.stage_two_trains_item_side or id(p) not in item_side]
        raise ValueError(f"training stage must be one of {ITEM_STAGE}, {QUERY_STAGE}, got {stage!r}")

    def set_training_stage(self, stage):
        """Switch to ``stage``: its loss and prediction (``calculate_loss``, ``full_sort_predict``:
        the item stream alone in "items", the full gated state in "queries"); the parameters of
        the other stage stop requiring gradients. In "queries" the item side is frozen: no
        gradient, and its dropout off (eval mode), so the query side learns on the item states
        it will see at evaluation. None: every parameter trainable, nothing frozen, the full
        prediction (the state of a built model, restored after training)."""
        trained = {id(p) for p in self.stage_parameters(stage)}
        for parameter in self.parameters():
            parameter.requires_grad_(id(parameter) in trained)
        self.training_stage = stage
        self.item_side_frozen = stage == QUERY_STAGE and not self.stage_two_trains_item_side
        return self.train(self.training)

    def train(self, mode=True):
        super().train(mode)
        if self.item_side_frozen:
            for module in self.item_side_modules():
                module.eval()
        return self

    # -- construction helpers ---------------------------------------------------------------
    def _embedding_norm(self):
        if self.transformer_block == "authors":
            return nn.Identity()
        return nn.LayerNorm(self.encoder_width, eps=self.layer_norm_eps)

    def _init_xavier(self):
        """The authors' initialisation (MODEL_NOTES 1.3): Xavier-uniform on every weight with
        two or more dimensions, embeddings included, padding rows zeroed; biases and LayerNorms
        keep SASRec's (zero, one)."""
        for module in self.modules():
            for name, parameter in module.named_parameters(recurse=False):
                if parameter.dim() >= 2:
                    nn.init.xavier_uniform_(parameter)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def _transformer(self):
        if self.transformer_block == "authors":
            return AuthorsTransformerEncoder(
                self.n_layers, self.n_heads, self.encoder_width, self.inner_size,
                self.hidden_dropout_prob, self.attn_dropout_prob, self.layer_norm_eps)
        return TransformerEncoder(
            n_layers=self.n_layers, n_heads=self.n_heads, hidden_size=self.encoder_width,
            inner_size=self.inner_size, hidden_dropout_prob=self.hidden_dropout_prob,
            attn_dropout_prob=self.attn_dropout_prob, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps)

    def _sampling_weights(self, dataset):
        """Unnormalised proposal of the sampled softmax over items 1..n_items-1."""
        if self.softmax_sampler == "popularity":
            counts = getattr(dataset, "train_item_counts", None)
            if counts is None:
                counts = torch.bincount(dataset.inter_feat[self.ITEM_ID], minlength=self.n_items)
            weights = counts.double().clone()
        else:
            weights = torch.ones(self.n_items, dtype=torch.double)
        weights[0] = 0.0
        if weights.sum() <= 0:
            weights[1:] = 1.0
        return weights

    def _word_remap(self, dataset):
        """``[num_words]``: each word id, or the OOV id where the word occurs fewer than
        ``min_word_count`` times in the training split's queries (``train_word_counts``, counted
        by ``QueryAwareDataset.build`` from training inputs only); padding stays 0."""
        counts = getattr(dataset, "train_word_counts", None)
        if counts is None:
            raise ValueError("min_word_count and word_dropout need the training word counts of "
                             "QueryAwareDataset.build (train_word_counts); this dataset has none")
        remap = torch.arange(dataset.num_words)
        remap[counts < self.min_word_count] = self.oov_word
        remap[0] = 0
        return remap

    # -- inputs -------------------------------------------------------------------------------
    def query_words_of(self, query_ids):
        """``[..., max_query_words]`` word ids of the queries: rare words (``min_word_count``)
        mapped to the OOV word, and in training each word replaced by it with probability
        ``word_dropout``; padding (0) stays."""
        words = self.query_words[query_ids]
        if not self.uses_oov_word:
            return words
        words = self.word_remap[words]
        if self.training and self.word_dropout > 0:
            drop = (torch.rand(words.shape, device=words.device) < self.word_dropout) & (words > 0)
            words = words.masked_fill(drop, self.oov_word)
        return words

    def query_representation(self, query_ids):
        """Mean of the query's word embeddings (zero for query id 0)."""
        words = self.query_words_of(query_ids)
        present = (words > 0).unsqueeze(-1).to(self.word_embedding.weight.dtype)
        total = (self.word_embedding(words) * present).sum(-2)
        return total / present.sum(-2).clamp(min=1.0)

    def sequence_inputs(self, interaction):
        """``(event_item, event_query, event_type, length)`` of the sequence the encoder reads:
        the heterogeneous events, or RecBole's item_id_list seen as item-only events."""
        if self.reads_events:
            return (interaction[EVENT_ITEM_FIELD], interaction[EVENT_QUERY_FIELD],
                    interaction[EVENT_TYPE_FIELD], interaction[EVENT_LENGTH_FIELD])
        if self.reads_trailing_query:
            return self.item_slots_with_trailing_query(interaction)
        items = interaction[self.ITEM_SEQ]
        return items, torch.zeros_like(items), (items > 0).long() * EVENT_ITEM, \
            interaction[self.ITEM_SEQ_LEN]

    def item_slots_with_trailing_query(self, interaction):
        """Inputs of the early and NOVA fusions: ``(items, context, types, length)``, the item
        slots with each item's context query, plus one query-only slot (item 0, type query) after
        the last item when the last input event is a query, so that the query issued just before
        the target is read too (it precedes no input item)."""
        items, length = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        slots = torch.arange(items.size(1) + 1, device=items.device).unsqueeze(0)
        real = slots < length.unsqueeze(1)
        items = F.pad(items, (0, 1)) * real
        context = F.pad(interaction[ITEM_CONTEXT_FIELD], (0, 1)) * real
        trailing = trailing_query(interaction)
        at_end = slots == length.unsqueeze(1)
        context = torch.where(at_end, trailing.unsqueeze(1), context)
        types = torch.where(real, EVENT_ITEM, torch.where(at_end & (trailing > 0).unsqueeze(1),
                                                          EVENT_QUERY, 0))
        return items, context, types, length + (trailing > 0).long()

    def embed_events(self, items, queries, types, item_table):
        emb = item_table(items) * (types == EVENT_ITEM).unsqueeze(-1)
        if self.use_queries:
            emb = emb + self.query_representation(queries) * (types == EVENT_QUERY).unsqueeze(-1)
        return emb

    def _positions(self, seq, table):
        if seq.size(1) > table.num_embeddings:
            raise ValueError(f"sequence of length {seq.size(1)} exceeds the position table "
                             f"({table.num_embeddings}); raise MAX_EVENT_LIST_LENGTH")
        return table(torch.arange(seq.size(1), device=seq.device)).unsqueeze(0)

    def _encode_transformer(self, emb, types, positions):
        hidden = self.dropout(self.LayerNorm(emb + positions))
        return self.trm_encoder(hidden, self.get_attention_mask(types),
                                output_all_encoded_layers=True)[-1]

    # -- forward --------------------------------------------------------------------------------
    # One method per encoder path. Each returns the same contract, ``(hidden, last)``: ``hidden``
    # ``[B, L, D']`` holds a state per input position (D' is the width of ``item_table()``:
    # 2 * hidden_size for fpmc) and ``last`` ``[B]`` the index of the position whose state scores
    # the example's target. Late fusion reduces the sequence to that one state (L = 1, last 0).
    def encoder_path(self):
        """Name of the encoder path this configuration runs (see ``forward``)."""
        if self.backbone != "transformer":
            return self.backbone
        if self.use_queries and self.query_fusion in ("early", "nova", "late"):
            return self.query_fusion
        return "transformer"

    def forward(self, interaction):
        """``(hidden [B, L, D'], last [B])``: the states of every input position and the index
        of the last one (see the contract above)."""
        hidden, last, _ = self.forward_streams(interaction)
        return hidden, last

    def forward_streams(self, interaction):
        """``(hidden, last, streams)``: ``forward``'s pair and, for ``query_fusion: gated``, the
        two streams' own states ``(item_states [B, L_items, D], event_states [B, L, D])`` (the
        item-history stream and the heterogeneous stream before the gate; None otherwise)."""
        hidden, last = getattr(self, f"_forward_{self.encoder_path()}")(interaction)
        if not self.history_gate:
            return hidden, last, None
        item_states = self.item_history_states(interaction)
        gated = self.gate_towards_item_history(hidden, interaction, item_states)
        return gated, last, (item_states, hidden)

    def item_history_states(self, interaction):
        """``[B, L_items, D]``: SASRec's states over item_id_list (the item history alone)."""
        items = interaction[self.ITEM_SEQ]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.item_side_frozen):
            hidden = self.item_embedding(items) + self._positions(
                items, self.item_stream_position_embedding)
            hidden = self.item_stream_LayerNorm(hidden)
            if not self.item_side_frozen:  # frozen (two_stage, stage 2): dropout off
                hidden = self.dropout(hidden)
            return self.item_stream_encoder(hidden, self.get_attention_mask(items),
                                            output_all_encoded_layers=True)[-1]

    def gate_towards_item_history(self, hidden, interaction, item_states=None):
        """``query_fusion: gated``: at each event position t, ``h_items + g * (h_t - h_items)``
        with ``g = sigmoid(W [h_t; h_items] + b)`` per dimension, where ``h_t`` is the
        heterogeneous state and ``h_items`` the item-history stream's state after the latest
        item at or before t. ``b`` starts at ``gate_bias_init`` (g near 0: the model starts as
        SASRec). Positions before any input item keep ``h_t``. In training, with
        ``stream_dropout`` p, each example's gate is shut (g = 0 at every position) with
        probability p, so that example trains the item stream alone, as SASRec."""
        if item_states is None:
            item_states = self.item_history_states(interaction)
        types = interaction[EVENT_TYPE_FIELD]
        slot = (types == EVENT_ITEM).long().cumsum(dim=1) - 1  # latest item's slot in the events
        # align the latest event item with the last item of item_id_list: an event window cut
        # shorter (MAX_EVENT_LIST_LENGTH) holds fewer items, and counted from its start each
        # position would read the item stream after an OLDER item (the last one never seeing the
        # latest); aligned, every position reads the state after its own latest item, and the
        # last one exactly the item stream's prediction state
        slot = slot + (interaction[self.ITEM_SEQ_LEN] - 1 - slot[:, -1]).unsqueeze(1)
        index = slot.clamp(min=0, max=item_states.size(1) - 1).unsqueeze(-1).expand_as(hidden)
        history = item_states.gather(1, index)
        if self.history_gate and self.item_stream_isolation != "none":
            history = history.detach()
        gate = torch.sigmoid(self.history_gate_layer(torch.cat([hidden, history], dim=-1)))
        if self.training and self.stream_dropout > 0:
            keep = torch.rand(len(hidden), 1, 1, device=hidden.device) >= self.stream_dropout
            gate = gate * keep.to(gate.dtype)
        if self.two_stage:
            gated = history + self.history_gate_out(gate * (hidden - history))
        else:
            gated = history + gate * (hidden - history)
        return torch.where((slot >= 0).unsqueeze(-1), gated, hidden)

    def _forward_transformer(self, interaction):
        """The heterogeneous sequence (the paper's model), or item_id_list for ``w/o Q``
        (SASRec), read by the Transformer encoder."""
        items, queries, types, length = self.sequence_inputs(interaction)
        positions = self._positions(items, self.position_embedding)
        emb = self.embed_events(items, queries, types, self._event_item_table())
        if self.use_queries:
            emb = emb + self.type_embedding(types)
        return self._encode_transformer(emb, types, positions), length - 1

    def _event_item_table(self):
        """The item lookup of the heterogeneous stream: the item table, detached from the query
        side's loss under ``item_stream_isolation``."""
        if not self.isolated:
            return self.item_embedding
        weight = self.item_embedding.weight.detach()
        return lambda ids: F.embedding(ids, weight, padding_idx=0)

    def _forward_ssept(self, interaction):
        """SSE-PT (Wu et al., RecSys 2020; Table 5's backbone): SASRec whose every input event
        is ``[event embedding; user embedding]``, with stochastic shared embeddings in training:
        the user is replaced by a uniformly drawn user with probability ``sse_user_prob``, each
        input item by a uniformly drawn item with probability ``sse_item_prob`` (draws
        independent of every label). SSE-PT scores ``h . [v_j; u]``; the user part is the same
        for every candidate, so it changes neither the ranking nor any softmax or BPR loss, and
        the state returned is the item part ``h[:, :, :d]`` (scored against ``item_table()``)."""
        items, queries, types, length = self.sequence_inputs(interaction)
        users = interaction[self.USER_ID]
        if self.training and self.sse_user_prob > 0:
            swap = torch.rand(users.shape, device=users.device) < self.sse_user_prob
            users = torch.where(swap, torch.randint_like(users, 1, self.user_embedding.num_embeddings),
                                users)
        if self.training and self.sse_item_prob > 0:
            swap = (types == EVENT_ITEM) & (torch.rand(items.shape, device=items.device)
                                            < self.sse_item_prob)
            items = torch.where(swap, torch.randint_like(items, 1, self.n_items), items)
        positions = self._positions(items, self.position_embedding)
        emb = self.embed_events(items, queries, types, self.item_embedding)
        if self.use_queries:
            emb = emb + self.type_embedding(types)
        user = self.user_embedding(users).unsqueeze(1) * (types > 0).unsqueeze(-1)
        hidden = self._encode_transformer(torch.cat([emb, user.expand_as(emb)], dim=-1), types,
                                          positions)
        return hidden[..., :self.hidden_size], length - 1

    def _forward_gru(self, interaction):
        """GRU4Rec-style backbone over the same sequence."""
        items, queries, types, length = self.sequence_inputs(interaction)
        emb = self.dropout(self.embed_events(items, queries, types, self.item_embedding))
        if self.use_queries:
            emb = emb + self.type_embedding(types)
        return self.gru_dense(self.gru_layers(emb)[0]), length - 1

    def _forward_fpmc(self, interaction):
        """FPMC-style backbone: ``[user; last event]`` at every position (scored against
        ``[IU; LI]``)."""
        items, queries, types, length = self.sequence_inputs(interaction)
        last = self.embed_events(items, queries, types, self.last_item_embedding)
        if self.use_queries:
            last = last + self.type_embedding(types)
        user = self.user_embedding(interaction[self.USER_ID]).unsqueeze(1)
        return torch.cat([user.expand_as(last), last], dim=-1), length - 1

    def _forward_early(self, interaction):
        """Early fusion: each item slot adds its context query (and the trailing query its own
        slot) before the encoder."""
        items, context, types, length = self.sequence_inputs(interaction)
        positions = self._positions(items, self.position_embedding)
        emb = self.item_embedding(items) + self.query_representation(context)
        return self._encode_transformer(emb, types, positions), length - 1

    def _forward_nova(self, interaction):
        """NOVA fusion: queries and positions enter the attention's queries and keys only."""
        items, context, types, length = self.sequence_inputs(interaction)
        positions = self._positions(items, self.position_embedding)
        context = self.query_representation(context)
        hidden = self.dropout(self.LayerNorm(self.item_embedding(items)))
        mask = self.get_attention_mask(types)
        return self.nova_encoder(hidden, positions + context, mask), length - 1

    def _forward_late(self, interaction):
        """Late fusion (FDSA): item encoder and query encoder, last states concatenated."""
        items, _, types, length = self.sequence_inputs(interaction)
        positions = self._positions(items, self.position_embedding)
        item_hidden = self._encode_transformer(self.item_embedding(items), types, positions)
        item_last = self.gather_indexes(item_hidden, length - 1)
        query_ids, query_len = self._query_sequence(interaction)
        query_types = (query_ids > 0).long()
        query_emb = self.query_representation(query_ids) + self._positions(
            query_ids, self.query_position_embedding)
        query_hidden = self.query_trm_encoder(
            self.dropout(self.query_LayerNorm(query_emb)), self.get_attention_mask(query_types),
            output_all_encoded_layers=True)[-1]
        query_last = self.gather_indexes(query_hidden, (query_len - 1).clamp(min=0))
        query_last = query_last * (query_len > 0).unsqueeze(-1)
        fused = self.concat_layer(torch.cat([item_last, query_last], dim=-1)).unsqueeze(1)
        return fused, torch.zeros_like(length)

    def _query_sequence(self, interaction):
        """The query events of the heterogeneous sequence, in order and left-aligned."""
        types, queries = interaction[EVENT_TYPE_FIELD], interaction[EVENT_QUERY_FIELD]
        is_query = types == EVENT_QUERY
        order = torch.sort((~is_query).long(), dim=1, stable=True).indices
        query_ids = queries.gather(1, order) * is_query.gather(1, order)
        return query_ids, is_query.sum(1)

    def seq_output(self, interaction):
        """The representation at the last input position ``[B, D']`` (two_stage's stage "items":
        the item stream's state after the last input item, SASRec's)."""
        if self.training_stage == ITEM_STAGE:
            return self.gather_indexes(self.item_history_states(interaction),
                                       interaction[self.ITEM_SEQ_LEN] - 1)
        hidden, last = self.forward(interaction)
        return self.gather_indexes(hidden, last)

    def item_table(self):
        """Output embeddings of all items ``[n_items, D]``."""
        if self.backbone == "fpmc":
            return torch.cat([self.user_item_embedding.weight, self.item_embedding.weight], -1)
        return self.item_embedding.weight

    # -- training -------------------------------------------------------------------------------
    def training_states(self, interaction):
        """``(hidden [M, D], labels [M])`` of the trained positions."""
        hidden, labels, _ = self._training_states(interaction)
        return hidden, labels

    def _training_states(self, interaction):
        """``training_states``' pair and, for gated, ``(item_states [B, L_items, D],
        event_states [M, D])``: the item stream's states and the heterogeneous stream's own
        states at the trained positions (None otherwise)."""
        target = interaction[self.POS_ITEM_ID]
        hidden, last, streams = self.forward_streams(interaction)
        if self.train_positions == "last":
            return self.gather_indexes(hidden, last), target, \
                streams and (streams[0], self.gather_indexes(streams[1], last))
        items, _, types, length = self.sequence_inputs(interaction)
        # Labels come from the events before augmentation: the transform replaces input items
        # and keeps the originals in EVENT_ITEM_LABEL_FIELD (labels are never replaced).
        if self.reads_events and EVENT_ITEM_LABEL_FIELD in interaction:
            items = interaction[EVENT_ITEM_LABEL_FIELD]
        # label of position t is the next event if it is an item; the last input position's
        # label is the example's target; positions followed by a query are not trained.
        labels = torch.zeros_like(items)
        labels[:, :-1] = torch.where(types[:, 1:] == EVENT_ITEM, items[:, 1:], 0)
        last = length - 1
        labels[torch.arange(len(items), device=items.device), last] = target
        keep = labels > 0
        return hidden[keep], labels[keep], streams and (streams[0], streams[1][keep])

    def item_stream_training_states(self, interaction, item_states):
        """``(hidden [M, D], labels [M])`` of the item-history stream alone, trained as SASRec
        (``train_positions`` last: its state after the last input item and the target; all:
        every item_id_list position followed by an item, and the target after the last)."""
        items, length = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        if self.train_positions == "last":
            return self.gather_indexes(item_states, length - 1), target
        labels = F.pad(items[:, 1:], (0, 1))
        labels[torch.arange(len(items), device=items.device), length - 1] = target
        keep = labels > 0
        return item_states[keep], labels[keep]

    def calculate_loss(self, interaction):
        """The loss of the trained positions; for ``query_fusion: gated`` (deep supervision)
        plus ``item_stream_loss_weight`` times the same loss of the item-history stream's own
        states (trained as SASRec is) and ``query_stream_loss_weight`` times that of the
        heterogeneous stream's own states (trained as the paper's model is). two_stage's stage
        "items": the item stream's own loss alone (SASRec's)."""
        if self.training_stage == ITEM_STAGE:
            item_hidden, item_labels = self.item_stream_training_states(
                interaction, self.item_history_states(interaction))
            return self._loss(item_hidden, item_labels, interaction, self.item_table())
        hidden, labels, streams = self._training_states(interaction)
        table = self.item_table()
        query_table = table.detach() if self.item_stream_isolation == "table" else table
        loss = self._loss(hidden, labels, interaction, query_table)
        if streams is None:
            return loss
        item_states, event_states = streams
        if self.item_stream_loss_weight > 0:
            item_hidden, item_labels = self.item_stream_training_states(interaction, item_states)
            loss = loss + self.item_stream_loss_weight * self._loss(item_hidden, item_labels,
                                                                     interaction, table)
        if self.query_stream_loss_weight > 0:
            loss = loss + self.query_stream_loss_weight * self._loss(event_states, labels,
                                                                     interaction, query_table)
        return loss

    def _loss(self, hidden, labels, interaction, table):
        if self.loss_type == "BPR":
            pos_score = (hidden * table[interaction[self.POS_ITEM_ID]]).sum(-1)
            neg_score = (hidden * table[interaction[self.NEG_ITEM_ID]]).sum(-1)
            return self.loss_fct(pos_score, neg_score)
        if self.softmax_samples:
            return self.sampled_softmax_loss(hidden, labels, table)
        return self.full_softmax_loss(hidden, labels, table)

    def full_softmax_loss(self, hidden, labels, table=None):
        logits = hidden @ (self.item_table() if table is None else table).t()
        logits[:, 0] = float("-inf")  # padding item is never a candidate
        return F.cross_entropy(logits, labels)

    def sampled_softmax_loss(self, hidden, labels, table=None):
        """Cross-entropy over the target and ``softmax_samples - 1`` negatives shared by the
        batch (drawn with replacement from the proposal); sampled copies of a row's own target
        are removed. With ``logq_correction`` every logit is reduced by log of its expected
        sample count, which makes the estimate of the full softmax unbiased in the limit."""
        table = self.item_table() if table is None else table
        n_negatives = self.softmax_samples - 1
        if n_negatives >= self.n_items - 1:  # every item is a candidate: the exact softmax
            negatives = torch.arange(1, self.n_items, device=hidden.device)
            log_q_neg = log_q_pos = None
        else:
            probabilities = self.sampling_weights / self.sampling_weights.sum()
            negatives = torch.multinomial(probabilities, n_negatives, replacement=True)
            if self.logq_correction:
                log_expected = torch.log(probabilities * n_negatives).to(hidden.dtype)
                log_q_neg, log_q_pos = log_expected[negatives], log_expected[labels]
            else:
                log_q_neg = log_q_pos = None
        pos_logits = (hidden * table[labels]).sum(-1, keepdim=True)
        neg_logits = hidden @ table[negatives].t()
        if log_q_neg is not None:
            pos_logits = pos_logits - log_q_pos.unsqueeze(-1)
            neg_logits = neg_logits - log_q_neg.unsqueeze(0)
        neg_logits = neg_logits.masked_fill(negatives.unsqueeze(0) == labels.unsqueeze(1),
                                            float("-inf"))
        logits = torch.cat([pos_logits, neg_logits], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(labels))

    # -- evaluation -----------------------------------------------------------------------------
    def predict(self, interaction):
        seq_output = self.seq_output(interaction)
        return (seq_output * self.item_table()[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        return self.seq_output(interaction) @ self.item_table().t()
