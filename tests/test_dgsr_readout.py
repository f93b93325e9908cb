"""DGSR's readout switches on real sub-graphs of ``synthetic``: ``user_id_embedding: False`` (user
nodes start from zeros, so scores cannot depend on user ids, and the layer-1 GRU's
distinct-sequence run stays exact) and ``readout_last_item`` (the appended vector is the newest
prefix item's embedding, or its state after layer L-1)."""

import pytest
import torch
from torch import nn

# the small synthetic fixture and the (batch, model) builder of the exactness tests
from test_dgsr_exact import _batch_and_model as _exact_batch_and_model
from test_dgsr_exact import synthetic_prepared  # noqa: F401  (a pytest fixture)


def _batch_and_model(prepared, switches):
    switches = dict(switches)
    return _exact_batch_and_model(prepared, switches.pop("n_layers", 2), switches)


def _readout_input(model, batch):
    """The concatenated readout h (the input of W_P) of every example."""
    seen = []
    handle = model.prediction.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    try:
        with torch.no_grad():
            model.forward(batch)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("n_layers", [0, 1, 2])
def test_without_user_ids_scores_do_not_depend_on_user_ids(synthetic_prepared, n_layers):
    batch, model = _batch_and_model(synthetic_prepared, {"user_id_embedding": False, "n_layers": n_layers})
    assert model.user_embedding is None
    assert not any("user_embedding" in name for name, _ in model.named_parameters())
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
    # other user ids, same graph structure
    renamed = batch["dgsr_user_nodes"].clone()
    renamed[renamed > 0] = renamed[renamed > 0] % 7 + 1
    batch.update(type(batch)({"dgsr_user_nodes": renamed}))
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(batch), scores)
    # control: with ids the same renaming changes the scores
    id_batch, id_model = _batch_and_model(synthetic_prepared, {"n_layers": n_layers})
    with torch.no_grad():
        before = id_model.full_sort_predict(id_batch)
        id_batch.update(type(id_batch)({"dgsr_user_nodes": renamed}))
        assert not torch.allclose(id_model.full_sort_predict(id_batch), before)


def test_without_user_ids_the_distinct_sequence_gru_is_exact(synthetic_prepared):
    batch, model = _batch_and_model(synthetic_prepared, {"user_id_embedding": False, "n_layers": 2})
    model.train()

    def loss_and_grads():
        torch.manual_seed(3)
        model.zero_grad()
        vector = model.forward(batch)
        nn.functional.cross_entropy(vector @ model.item_embedding.weight.t(), batch[model.POS_ITEM_ID]).backward()
        return vector.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    out, grads = loss_and_grads()
    model.dedup_first_layer = False
    ref_out, ref_grads = loss_and_grads()
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_last_item_embedding_readout_is_the_newest_prefix_item(synthetic_prepared, n_layers):
    batch, model = _batch_and_model(synthetic_prepared, {"readout_last_item": "embedding", "n_layers": n_layers})
    d = model.hidden_size
    assert model.prediction.in_features == (n_layers + 2) * d  # h^(0..L) and the last item
    readout = _readout_input(model, batch)
    lengths = batch[model.ITEM_SEQ_LEN]
    last = batch[model.ITEM_SEQ][torch.arange(len(lengths)), lengths - 1]
    assert bool((lengths > 1).any()) and bool((batch[model.ITEM_SEQ][:, 0] != last).any())
    torch.testing.assert_close(readout[:, -d:], model.item_embedding(last).detach())


def test_last_item_state_readout(synthetic_prepared):
    # n_layers 1: layer L-1 = 0, the state is the embedding
    batch, model = _batch_and_model(synthetic_prepared, {"readout_last_item": "state", "n_layers": 1})
    _, reference = _batch_and_model(synthetic_prepared, {"readout_last_item": "embedding", "n_layers": 1})
    torch.testing.assert_close(_readout_input(model, batch), _readout_input(reference, batch))
    # n_layers 2: the last item's layer-1 state, a tanh output that is not its embedding
    batch, model = _batch_and_model(synthetic_prepared, {"readout_last_item": "state", "n_layers": 2})
    d = model.hidden_size
    state = _readout_input(model, batch)[:, -d:]
    lengths = batch[model.ITEM_SEQ_LEN]
    last = batch[model.ITEM_SEQ][torch.arange(len(lengths)), lengths - 1]
    assert state.abs().max() < 1
    assert not torch.allclose(state, model.item_embedding(last).detach())
    # examples ending on the same item with the same sub-graph around it share the state: check
    # the layer-1 item states directly
    captured = []
    handle = model.layers[0].register_forward_hook(lambda module, inputs, output: captured.append(output[1]))
    try:
        with torch.no_grad():
            model.forward(batch)
    finally:
        handle.remove()
    item_states = captured[0]
    matches = (state.unsqueeze(1) - item_states.unsqueeze(0)).abs().amax(-1) < 1e-6
    assert bool(matches.any(1).all())


@pytest.mark.parametrize("key,value", [("readout_last_item", "last"), ("user_id_embedding", "no")])
def test_bad_readout_values_name_the_key(synthetic_prepared, key, value):
    with pytest.raises(ValueError, match=key):
        _batch_and_model(synthetic_prepared, {key: value})
