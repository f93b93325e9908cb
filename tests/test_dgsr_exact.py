"""DGSR's rewrite (issue 13) is exact: outputs and gradients of the current model equal those of a
frozen copy of the padded implementation it replaced (commit f78b7d6), for L = 1, 2, 3 and every
switch the rewrite kept; and a one-epoch run on ``synthetic`` gives the test NDCG@10 recorded
with the old code (same seed, dropout off so that no random draw depends on the tensor layout).
The cost work that followed (the unpadded GRU, the layer-1 GRU once per distinct neighbour sequence,
dropout of the rows still read) is exact in training too: same seed, same outputs and gradients.
"""

import math
import os

import pytest
import torch
from torch import nn

import recbole
from conftest import run_tiny, tiny_config_dict


# ---------------------------------------------------------------- frozen reference (do not edit)


def _gather_rows(table, index):
    """``table`` [B, N, d], ``index`` [B, R, k] -> [B, R, k, d]."""
    batch = torch.arange(table.size(0), device=table.device).view(-1, 1, 1)
    return table[batch, index]


def _masked_softmax(scores, valid):
    # rows without any neighbour (frontier nodes, padding) get all-zero weights: zero aggregation
    scores = scores.masked_fill(~valid, -1e9)
    return torch.softmax(scores, dim=-1) * valid.any(dim=-1, keepdim=True)


class RefNeighbourAggregator(nn.Module):
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


class RefDGANLayer(nn.Module):
    """Dynamic graph attention layer: updates all user and item nodes of the padded sub-graphs."""

    def __init__(self, hidden_size, max_neighbors, propagation, aggregation, local_mode, hidden_dropout, attn_dropout):
        super().__init__()
        self.user_encoder = nn.Linear(hidden_size, hidden_size, bias=False)  # W_1
        self.item_encoder = nn.Linear(hidden_size, hidden_size, bias=False)  # W_2
        args = (hidden_size, max_neighbors, propagation, aggregation, local_mode, attn_dropout)
        self.items_to_user = RefNeighbourAggregator(*args)
        self.users_to_item = RefNeighbourAggregator(*args)
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






def reference_user_vector(model, interaction, propagation, aggregation, local_mode, max_order):
    """The pre-rewrite ``DGSR.forward`` run with ``model``'s own parameter tensors (same names)."""
    user_states = model.user_embedding(interaction["dgsr_user_nodes"])
    item_states = model.item_embedding(interaction["dgsr_item_nodes"])
    readout = [user_states[:, 0]] if model.readout_with_h0 else []
    for layer in model.layers:
        ref = RefDGANLayer(model.hidden_size, max_order, propagation, aggregation, local_mode, 0.0, 0.0).eval()
        params = dict(layer.named_parameters())
        assert set(params) == set(dict(ref.named_parameters())), "the rewrite must keep the parameter names"
        fields = {k: interaction[k] for k in interaction.columns if k.startswith("dgsr_")}
        user_states, item_states = torch.func.functional_call(ref, params, (user_states, item_states, fields))
        readout.append(user_states[:, 0])
    return model.prediction(torch.cat(readout, dim=-1))


# ---------------------------------------------------------------- exactness against the reference

# the reference is the paper's readout: user id embeddings and no last-item term
PAPER_READOUT = dict(user_id_embedding=True, readout_last_item="none")
SYNTHETIC_SMALL = dict(user_inter_num_interval="[0,20]", embedding_size=8, max_neighbors=4, MAX_ITEM_LIST_LENGTH=10,
                       **PAPER_READOUT)


@pytest.fixture(scope="module")
def synthetic_prepared(tmp_path_factory):
    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset, data_preparation

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("dgsr_exact"))
    try:
        config = Config("DGSR", "synthetic", config_dict=tiny_config_dict(**SYNTHETIC_SMALL), read_command_line=False)
        dataset = create_dataset(config)
        train, _, _ = data_preparation(config, dataset)
        yield config, dataset, train
    finally:
        os.chdir(cwd)


def _batch_and_model(prepared, n_layers, switches, rows=48):
    from recbole_ext.data.dataloader.subgraph_sampler import SubgraphSampler
    from recbole_ext.registry import get_model

    config, dataset, train = prepared
    saved = {key: config[key] for key in ["n_layers", *switches]}
    try:
        config["n_layers"] = n_layers
        for key, value in switches.items():
            config[key] = value
        sampler = SubgraphSampler(config, dataset, "train")
        batch = sampler(train.dataset, train.dataset[torch.arange(rows)])
        torch.manual_seed(0)
        model = get_model("DGSR")(config, train.dataset).eval()
    finally:
        for key, value in saved.items():
            config[key] = value
    return batch, model


EXACT_SWITCHES = [
    {},
    {"max_neighbors": 10},  # GRU length buckets wider than one length (bounds 4, 8, 10)
    {"local_mode": "last_attention"},
    {"propagation": "gat", "aggregation": "global"},
    {"aggregation": "local", "readout_with_h0": False},
]


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("switches", EXACT_SWITCHES, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()) or "paper")
def test_outputs_and_gradients_equal_the_padded_reference(synthetic_prepared, n_layers, switches):
    batch, model = _batch_and_model(synthetic_prepared, n_layers, switches)
    settings = {"propagation": "dgsr", "aggregation": "global_local", "local_mode": "gru", **switches}
    max_order = switches.get("max_neighbors", synthetic_prepared[0]["max_neighbors"])
    targets = batch[model.POS_ITEM_ID]

    def loss_and_grads(user_vector):
        loss = nn.functional.cross_entropy(user_vector @ model.item_embedding.weight.t(), targets)
        model.zero_grad()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    got = model.forward(batch)
    expected = reference_user_vector(model, batch, settings["propagation"], settings["aggregation"],
                                     settings["local_mode"], max_order)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    got_loss, got_grads = loss_and_grads(model.forward(batch))
    ref_loss, ref_grads = loss_and_grads(reference_user_vector(
        model, batch, settings["propagation"], settings["aggregation"], settings["local_mode"], max_order))
    torch.testing.assert_close(got_loss, ref_loss)
    assert set(got_grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert any(float(g.abs().sum()) > 0 for n, g in ref_grads.items() if n.startswith("layers."))


# ---------------------------------------------------------------- metrics recorded with the old code

# test and best-validation NDCG@10 of the padded implementation (commit f78b7d6), recorded before the
# rewrite with exactly this run (3 epochs, seed 2020, dropout off: with dropout the attention
# weights' random masks are drawn over the edge list instead of the padded rows, a different stream;
# the sub-graph switches added later are set to the old sub-graphs)
PRE_REWRITE_NDCG = {1: (0.0138, 0.0105), 2: (0.0132, 0.0141), 3: (0.0185, 0.0165)}


@pytest.fixture
def float32_epoch_times(monkeypatch):
    """The recorded figures predate the dataset's shift of times to 0: they were computed on epoch
    seconds stored as float32 (steps of 128 s), so these runs load the times as they were then."""
    from recbole_ext.data.dataset.base import ExtSequentialDataset
    from recbole_ext.data.dataset.dynamic_graph import DynamicGraphDataset

    monkeypatch.setattr(DynamicGraphDataset, "_load_inter_feat", ExtSequentialDataset._load_inter_feat)


@pytest.mark.usefixtures("float32_epoch_times")
@pytest.mark.parametrize("n_layers", sorted(PRE_REWRITE_NDCG))
def test_same_seed_same_ndcg_as_the_padded_implementation(n_layers):
    record = run_tiny("DGSR", "synthetic", **{**SYNTHETIC_SMALL, "max_neighbors": 4}, n_layers=n_layers,
                      train_batch_size=512, eval_batch_size=4096, epochs=3, hidden_dropout_prob=0.0,
                      attn_dropout_prob=0.0, time_window="all", neighbour_cap=0,  # the old sub-graphs
                      learning_rate=0.01)  # the yaml value when the figures were recorded
    test_ndcg, valid_ndcg = PRE_REWRITE_NDCG[n_layers]
    assert record["test_result"]["ndcg@10"] == pytest.approx(test_ndcg, abs=2e-4)
    assert record["best_valid_result"]["ndcg@10"] == pytest.approx(valid_ndcg, abs=2e-4)


# ---------------------------------------------------------------- the cost work of issue 13 is exact


def _loss_and_grads(model, batch, seed):
    torch.manual_seed(seed)
    model.zero_grad()
    user_vector = model.forward(batch)
    loss = nn.functional.cross_entropy(user_vector @ model.item_embedding.weight.t(), batch[model.POS_ITEM_ID])
    loss.backward()
    return user_vector.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("n_layers", [2, 3])
def test_first_layer_runs_each_distinct_sequence_once_exactly_in_training(synthetic_prepared, monkeypatch, n_layers):
    """With dropout on (training), the layer-1 GRU run once per distinct neighbour sequence gives the
    outputs and gradients of running every row, for the same seed; a different seed differs."""
    import recbole_ext.model.sequential_recommender.dgsr as dgsr

    batch, model = _batch_and_model(synthetic_prepared, n_layers, {"hidden_dropout_prob": 0.3, "attn_dropout_prob": 0.3})
    model.train()
    merged = []
    original = dgsr._distinct_sequences

    def counting(rows, *args):
        representatives, groups = original(rows, *args)
        merged.append(rows.numel() - representatives.numel())
        return representatives, groups

    monkeypatch.setattr(dgsr, "_distinct_sequences", counting)
    out, grads = _loss_and_grads(model, batch, seed=3)
    assert merged and sum(merged) > 0, "the test batch must hold repeated neighbour sequences"
    model.dedup_first_layer = False
    ref_out, ref_grads = _loss_and_grads(model, batch, seed=3)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert set(grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    other_seed, _ = _loss_and_grads(model, batch, seed=4)
    assert not torch.allclose(other_seed, ref_out)


def test_distinct_sequences_survive_a_hash_collision(synthetic_prepared, monkeypatch):
    """Every sequence hashing alike (zero weights) falls back to comparing whole sequences: still exact."""
    import recbole_ext.model.sequential_recommender.dgsr as dgsr

    batch, model = _batch_and_model(synthetic_prepared, 3, {})

    class ZeroWeights(dict):
        def get(self, key, default=None):
            return torch.zeros(key[0] + 1, dtype=torch.long)

    groups = []
    original = dgsr._distinct_sequences

    def counting(rows, *args):
        representatives, grouping = original(rows, *args)
        groups.append(representatives.numel())
        return representatives, grouping

    with torch.no_grad():
        expected = reference_user_vector(model, batch, "dgsr", "global_local", "gru", synthetic_prepared[0]["max_neighbors"])
        monkeypatch.setattr(dgsr, "_HASH_WEIGHTS", ZeroWeights())
        monkeypatch.setattr(dgsr, "_distinct_sequences", counting)
        torch.testing.assert_close(model.forward(batch), expected, rtol=1e-5, atol=1e-6)
    # one hash for every sequence, yet several groups: the exact comparison decided
    assert groups and all(count > 1 for count in groups)


def test_dropout_of_kept_rows_is_nn_dropout_of_all_rows():
    """Layers drop out only the rows still read, with the masks and random stream of nn.Dropout on all rows."""
    from recbole_ext.model.sequential_recommender.dgsr import dropout_rows

    full = torch.randn(40, 6)
    rows = torch.tensor([1, 5, 6, 30, 39])
    dropout = nn.Dropout(0.3).train()
    torch.manual_seed(11)
    expected, expected_next = dropout(full)[rows], torch.rand(3)
    torch.manual_seed(11)
    got, got_next = dropout_rows(dropout, full[rows], rows, full.size(0)), torch.rand(3)
    assert torch.equal(got, expected) and torch.equal(got_next, expected_next)
    assert not torch.equal(got, full[rows])  # some entries were dropped
    assert torch.equal(dropout_rows(dropout.eval(), full[rows], rows, full.size(0)), full[rows])


# test and best-validation NDCG@10 of the code before the cost work (commit 385434b), with the yaml's
# dropout (0.3) on: the random stream is unchanged, so training is too
PRE_COST_WORK_NDCG = {2: (0.0055, 0.0206), 3: (0.0122, 0.0171)}


@pytest.mark.usefixtures("float32_epoch_times")
@pytest.mark.parametrize("n_layers", sorted(PRE_COST_WORK_NDCG))
def test_same_seed_same_ndcg_with_dropout_as_before_the_cost_work(n_layers):
    record = run_tiny("DGSR", "synthetic", user_inter_num_interval="[0,20]", embedding_size=16, n_layers=n_layers,
                      epochs=2, worker=0, **PAPER_READOUT)
    test_ndcg, valid_ndcg = PRE_COST_WORK_NDCG[n_layers]
    assert record["test_result"]["ndcg@10"] == pytest.approx(test_ndcg, abs=2e-4)
    assert record["best_valid_result"]["ndcg@10"] == pytest.approx(valid_ndcg, abs=2e-4)
