"""EMBSR on the embedded ``synthetic`` dataset: GNN reference, leakage, padding, switches, fairness."""

import copy
import math

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from conftest import first_batch, fixed_batch_scores, run_tiny, tiny_config_dict, tiny_loaders
from recbole_ext import registry
from recbole_ext.config import Config
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.data.dataloader.multigraph import MultigraphTransform
from recbole_ext.model.sequential_recommender.embsr import EMBSR, VARIANTS

EMBSR_TINY = dict(embedding_size=8, max_operation_run=4, train_batch_size=1024, eval_batch_size=1024)


def _config(model="EMBSR", **overrides):
    return Config(model, "synthetic", config_dict=tiny_config_dict(**{**EMBSR_TINY, **overrides}), read_command_line=False)


@pytest.fixture(scope="module")
def built():
    config = _config()
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    loaders = data_preparation(config, dataset)
    return config, dataset, loaders


def _model(built, **overrides):
    config, dataset, (train_data, _, _) = built
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        config[key] = value
    init_seed(config["seed"], config["reproducibility"])
    return EMBSR(config, train_data._dataset).eval(), config


def _raw_test_batch(built, size=64):
    """Test examples before any transform (a fresh copy each call)."""
    _, _, (_, _, test_data) = built
    return copy.deepcopy(test_data._dataset.inter_feat[torch.arange(size)])


def _transform(built, config, batch, phase="test"):
    return MultigraphTransform(config, built[1], phase)(built[1], batch)


# ---------------------------------------------------------------- GNN against a per-example reference
def _reference_star_gnn(model, items, runs):
    """Paper Eqs. 2-11 for one session, with explicit incidence matrices and per-edge loops."""
    d = model.hidden_size
    nodes = list(dict.fromkeys(items))
    node = {item: i for i, item in enumerate(nodes)}
    h0 = model.item_embedding.weight[nodes]
    run_states = []
    for run in runs:  # last GRU state of each operation run, one sequence at a time
        _, state = model.op_run_gru_layer(model.op_embedding(torch.tensor([run])))
        run_states.append(state[0, 0])
    n = len(items)
    a_in, a_out = torch.zeros(len(nodes), n - 1), torch.zeros(len(nodes), n - 1)
    for k in range(n - 1):  # edge k: v_k -> v_{k+1}
        a_in[node[items[k + 1]], k] = 1
        a_out[node[items[k]], k] = 1
    star, hidden = h0.mean(0), h0
    for _ in range(model.step):
        in_messages = torch.stack(
            [model.in_message(torch.cat([hidden[node[items[k]]], run_states[k]])) for k in range(n - 1)]
        ) if n > 1 else torch.zeros(0, d)
        out_messages = torch.stack(
            [model.out_message(torch.cat([hidden[node[items[k + 1]]], run_states[k + 1]])) for k in range(n - 1)]
        ) if n > 1 else torch.zeros(0, d)
        aggregated = torch.cat([a_in @ in_messages, a_out @ out_messages], 1)
        updated = model.node_update(aggregated, hidden)
        alpha = (model.star_gate_query(updated) @ model.star_gate_key(star)) / math.sqrt(d)
        hidden = (1 - alpha.unsqueeze(1)) * updated + alpha.unsqueeze(1) * star
        beta = torch.softmax(model.star_attention_key(hidden) @ model.star_attention_query(star) / math.sqrt(d), 0)
        star = beta @ hidden
    gate = torch.sigmoid(model.highway(torch.cat([h0, hidden], 1)))
    return gate * h0 + (1 - gate) * hidden, star


def _model_star_gnn(model, batch):
    length, num_nodes = batch["item_length"], batch["mg_num_nodes"]
    node_embeddings = model.item_embedding(batch["mg_node_items"])
    node_mask = torch.arange(node_embeddings.size(1)).unsqueeze(0) < num_nodes.unsqueeze(1)
    run_states = model._encode_operation_runs(batch["mg_op_runs"], batch["mg_run_length"])
    return model._star_gnn(node_embeddings, node_mask, num_nodes, batch["mg_alias"], run_states, length)


@pytest.mark.parametrize("step", [0, 2])
def test_vectorised_star_gnn_equals_reference(built, step):
    model, config = _model(built)
    model.step = step  # step 0: the star's initialisation (Eq. 2) and the highway alone
    batch = _transform(built, config, _raw_test_batch(built, 16))
    with torch.no_grad():
        node_repr, star = _model_star_gnn(model, batch)
        for b in range(16):
            n = int(batch["item_length"][b])
            items = batch["item_id_list"][b, :n].tolist()
            runs = [[op for op in run if op > 0] for run in batch["op_list"][b, :n].tolist()]
            expected_nodes, expected_star = _reference_star_gnn(model, items, runs)
            assert torch.allclose(node_repr[b, : len(expected_nodes)], expected_nodes, atol=1e-5)
            assert torch.allclose(star[b], expected_star, atol=1e-5)


# ---------------------------------------------------------------- leakage and padding
def _full_scores(model, config, built, batch):
    with torch.no_grad():
        return model.full_sort_predict(_transform(built, config, batch))


def test_leak_free_star_ignores_target_operation(built):
    model, config = _model(built)
    batch = _raw_test_batch(built)
    scores = _full_scores(model, config, built, batch)
    changed = _raw_test_batch(built)
    num_ops = built[1].num(config["OPERATION_FIELD"])
    for field in ("op", "op_first"):  # every trace of the target's own operations
        changed[field] = (changed[field] % (num_ops - 1)) + 1
    assert not torch.equal(changed["op_first"], batch["op_first"])
    assert torch.equal(_full_scores(model, config, built, changed), scores)
    # the same change does move the scores when the star reads the target's operation
    target_config = copy.deepcopy(config)
    target_config["star_op"] = "target"
    assert not torch.allclose(
        _full_scores(model, target_config, built, batch), _full_scores(model, target_config, built, changed)
    )


def _pad_lists(batch, extra):
    padded = copy.deepcopy(batch)
    for field in list(padded.columns):
        if field.endswith("_list"):
            values = padded[field]
            shape = (values.size(0), extra) + tuple(values.shape[2:])
            padded[field] = torch.cat([values, values.new_zeros(shape)], 1)
    return padded


def test_padding_and_batch_composition_invariance(built):
    model, config = _model(built)
    batch = _raw_test_batch(built)
    scores = _full_scores(model, config, built, batch)
    assert torch.allclose(_full_scores(model, config, built, _pad_lists(batch, 5)), scores, atol=1e-5)
    shortest = torch.argsort(batch["item_length"])[:3]  # alone, these need less padding than in the batch
    alone = _full_scores(model, config, built, batch[shortest])
    assert torch.allclose(alone, scores[shortest], atol=1e-5)


# ---------------------------------------------------------------- every switch changes the model
SWITCHES = [{"variant": name} for name in VARIANTS if name != "EMBSR"] + [
    {"sequence_encoder": "rnn"},
    {"op_run_gru": False},
    {"attention": "plain"},
    {"fusion": "mlp"},
    {"fusion": "fixed", "fusion_beta": 0.4},
    {"reproduce_code": True},
    {"recent_interest": "run_film"},
    {"recent_interest": "last_micro"},
    {"mask_last_item": True},
    {"step": 2},
    {"scale_weight": 6.0},
    {"init_std": 0.05},
    {"dropout_prob": 0.5},
    {"amsgrad": False},
    {"seed": 7},  # the different-seed control of every same-seed comparison here
]


@pytest.fixture(scope="module")
def fixed_batches(built):
    config, _, (train_data, _, test_data) = built
    init_seed(config["seed"], config["reproducibility"])
    train_batch, test_batch = first_batch(train_data), first_batch(test_data)
    return lambda steps=2, **overrides: fixed_batch_scores(
        config, train_data._dataset, train_batch, test_batch, steps=steps, **overrides
    )


def test_same_seed_same_batches_same_scores(fixed_batches):
    assert torch.equal(fixed_batches(), fixed_batches())
    # the named full model is the default switches
    assert torch.equal(fixed_batches(variant="EMBSR"), fixed_batches())


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_every_switch_changes_the_scores(fixed_batches, overrides):
    assert not torch.allclose(fixed_batches(**overrides), fixed_batches(), atol=1e-6)


def test_fixed_fusion_beta_is_the_weight_it_claims(built):
    # beta = 1 keeps the global preference alone, beta = 0 the recent interest alone
    model, _ = _model(built, fusion="fixed", fusion_beta=1.0)
    global_preference, recent = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.equal(model._fuse(global_preference, recent), global_preference)
    model.fusion_beta = 0.0
    assert torch.equal(model._fuse(global_preference, recent), recent)


def test_embsr_yaml_uses_amsgrad_as_the_paper(built):
    model, config = _model(built)
    trainer = registry.get_trainer(config["MODEL_TYPE"], "EMBSR")(config, model)
    assert config["amsgrad"] is True and trainer.optimizer.param_groups[0]["amsgrad"] is True


# ---------------------------------------------------------------- inputs bounded by micro-behaviours
def test_micro_behaviour_bound_holds_on_synthetic_and_changes_the_model(built):
    config, dataset, _ = built
    bounded_config = copy.deepcopy(config)
    bounded_config["input_bound"], bounded_config["max_micro_behaviours"] = "micro_behaviours", 6
    batch = _transform(built, config, _raw_test_batch(built, 256))
    bounded = _transform(built, bounded_config, _raw_test_batch(built, 256))
    assert int(bounded["mg_micro_length"].max()) <= 6
    cut = batch["mg_micro_length"] > 6
    assert cut.any()  # on synthetic the bound binds
    assert torch.equal(bounded["mg_micro_length"][cut], torch.full_like(bounded["mg_micro_length"][cut], 6))
    assert torch.equal(bounded["mg_micro_length"][~cut], batch["mg_micro_length"][~cut])
    assert torch.equal(bounded["item_id"], batch["item_id"])  # same targets
    model, _ = _model(built)
    with torch.no_grad():
        scores, bounded_scores = model.full_sort_predict(batch), model.full_sort_predict(bounded)
    assert torch.allclose(bounded_scores[~cut], scores[~cut], atol=1e-5)
    assert not torch.allclose(bounded_scores[cut], scores[cut], atol=1e-3)


def test_micro_behaviour_bound_through_the_loaders():
    _, _, (train_data, _, test_data) = tiny_loaders(
        "EMBSR", **EMBSR_TINY, input_bound="micro_behaviours", max_micro_behaviours=5
    )
    for loader in (train_data, test_data):
        lengths = first_batch(loader)["mg_micro_length"]
        assert 0 < int(lengths.max()) <= 5


def test_same_seed_same_metrics_with_sampled_evaluation():
    # uniN evaluation (the switch runs above use full ranking) goes through predict()
    sampled = {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni10", "group_by": "user"}
    first = run_tiny("EMBSR", **EMBSR_TINY, eval_args=sampled)
    second = run_tiny("EMBSR", **EMBSR_TINY, eval_args=sampled)
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    other_seed = run_tiny("EMBSR", **EMBSR_TINY, eval_args=sampled, seed=7)  # the different-seed control
    assert other_seed["test_result"] != first["test_result"]


# ---------------------------------------------------------------- fair baselines and the session protocol
def test_stock_model_gets_same_macro_examples_and_split(built):
    config = _config("SASRec")
    stock_loaders = data_preparation(config, create_dataset(config))
    for ours, stock in zip(built[2], stock_loaders):
        ours, stock = ours._dataset.inter_feat, stock._dataset.inter_feat
        assert len(ours) == len(stock)
        for field in ("user_id", "item_id", "item_id_list", "item_length", "op_list"):
            assert torch.equal(ours[field], stock[field]), field


def test_session_protocol_one_example_per_session(built):
    config = _config(example_selection="session")
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    examples = train_data._dataset.inter_feat
    sessions = examples["user_id"].numpy() * 100000 + examples["session_id"].numpy()
    assert len(np.unique(sessions)) == len(sessions)
    real = torch.arange(examples["item_id_list"].size(1)).unsqueeze(0) < examples["item_length"].unsqueeze(1)
    same_session = examples["session_id_list"] == examples["session_id"].unsqueeze(1)
    assert bool((same_session | ~real).all()) and bool((examples["item_length"] > 0).all())
    assert bool((examples["item_id_list"][~real] == 0).all())
    # each target is its session's last macro item: the latest target of that session among the
    # examples every macro item gives (the default selection, from the `built` fixture)
    last_target = {}
    for split in built[2]:
        every = split._dataset.inter_feat
        for user, session, time, item in zip(every["user_id"].tolist(), every["session_id"].tolist(),
                                             every["timestamp"].tolist(), every["item_id"].tolist()):
            if (user, session) not in last_target or time >= last_target[(user, session)][0]:
                last_target[(user, session)] = (time, item)
    for split in (train_data, valid_data, test_data):
        chosen = split._dataset.inter_feat
        for user, session, item in zip(chosen["user_id"].tolist(), chosen["session_id"].tolist(),
                                       chosen["item_id"].tolist()):
            assert last_target[(user, session)][1] == item
    # the model trains and scores on these examples: its scores move with one step
    train_batch, test_batch = first_batch(train_data), first_batch(test_data)
    before = fixed_batch_scores(config, train_data._dataset, train_batch, test_batch, steps=0)
    after = fixed_batch_scores(config, train_data._dataset, train_batch, test_batch, steps=1)
    assert before.shape == (len(test_batch), dataset.item_num) and not torch.allclose(before, after)


# ---------------------------------------------------------------- clear errors
@pytest.mark.parametrize(
    "key, value",
    [("variant", "EMBSR-XX"), ("attention", "full"), ("fusion", "sum"), ("loss_type", "BPR"),
     ("fusion_beta", 1.5), ("star_op", "oracle"), ("input_bound", "sessions"), ("max_micro_behaviours", 0)],
)
def test_bad_values_raise_one_clear_error(built, key, value):
    overrides = {key: value, **({"fusion": "fixed"} if key == "fusion_beta" else {})}
    if key == "max_micro_behaviours":
        overrides["input_bound"] = "micro_behaviours"
    with pytest.raises(ValueError, match=key):
        model, config = _model(built, **overrides)
        MultigraphTransform(config, built[1], "train")



def test_bad_example_selection_raises_before_loading():
    from recbole_ext.data.dataset.micro_behaviour import MicroBehaviourDataset

    with pytest.raises(ValueError, match="example_selection"):
        MicroBehaviourDataset(_config(example_selection="prefixes"))


# ---------------------------------------------------------------- recent_interest: run_film
def _batch(built, config, size=32):
    return _transform(built, config, _raw_test_batch(built, size))


def _op_id(built, token):
    return int(built[1].field2token_id["op"][token])


def _set_last_run(batch, run):
    """Give every example's last macro item the operation run ``run`` (ids), keeping the rest."""
    batch = copy.deepcopy(batch)
    last = batch["item_length"] - 1
    rows = torch.arange(len(last))
    op_list = batch["op_list"]
    op_list[rows, last] = 0
    op_list[rows, last, : len(run)] = torch.tensor(run)
    return batch


def test_run_film_reads_the_whole_last_run(built):
    # (view, cart) and (cart) end with the same operation: the paper's x_t = h_t + O[o_t] and the
    # micro-behaviours before the last one are all the recent interest sees of them, while
    # run_film's x_t also reads the GRU state of the whole run.
    view, cart = _op_id(built, "view"), _op_id(built, "cart")
    model, config = _model(built, recent_interest="run_film")
    a = _batch(built, config)
    x_a = _recent(model, _transform(built, config, _set_last_run(a, [view, cart])))
    x_b = _recent(model, _transform(built, config, _set_last_run(a, [cart])))
    assert not torch.allclose(x_a, x_b, atol=1e-6)
    paper, _ = _model(built, recent_interest="last_micro")
    x_a = _recent(paper, _transform(built, config, _set_last_run(a, [view, cart])))
    x_b = _recent(paper, _transform(built, config, _set_last_run(a, [cart])))
    assert torch.allclose(x_a, x_b, atol=1e-6)  # the paper's x_t does not see the run's earlier operations


def _recent(model, batch):
    captured = {}
    original = model._fuse

    def spy(global_preference, recent_interest):
        captured["x"] = recent_interest
        return original(global_preference, recent_interest)

    model._fuse = spy
    with torch.no_grad():
        model.forward(batch)
    model._fuse = original
    return captured["x"]


def test_run_film_is_the_formula(built):
    model, config = _model(built, recent_interest="run_film")
    paper, _ = _model(built, recent_interest="last_micro")
    paper.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("film_")})
    batch = _batch(built, config)
    x_paper, x_film = _recent(paper, batch), _recent(model, batch)
    last = batch["item_length"] - 1
    rows = torch.arange(len(last))
    runs, lengths = batch["mg_op_runs"][rows, last], batch["mg_run_length"][rows, last]
    with torch.no_grad():
        states = torch.stack(
            [model.op_run_gru_layer(model.op_embedding(runs[i, : lengths[i]]).unsqueeze(0))[1][0, 0] for i in rows]
        )
        expected = (1 + model.film_scale(states)) * x_paper + model.film_shift(states)
    assert torch.allclose(x_film, expected, atol=1e-5)


def test_run_film_is_ignored_without_operations(built):
    # SGNN-Self (attention: plain) has no operations anywhere; run_film leaves it as it is
    model, config = _model(built, variant="SGNN-Self", recent_interest="run_film")
    paper, _ = _model(built, variant="SGNN-Self", recent_interest="last_micro")
    assert not any(name.startswith("film_") for name, _ in model.named_parameters())
    batch = _batch(built, config)
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(batch), paper.full_sort_predict(batch))


def test_recent_interest_rejects_unknown_values(built):
    with pytest.raises(ValueError, match="recent_interest"):
        _model(built, recent_interest="mean")


# ---------------------------------------------------------------- mask_last_item
def test_mask_last_item_removes_only_the_last_input_item(built):
    masked, config = _model(built, mask_last_item=True)
    plain, _ = _model(built, mask_last_item=False)
    batch = _batch(built, config)
    last = torch.gather(batch["item_id_list"], 1, (batch["item_length"] - 1).unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        scores, reference = masked.full_sort_predict(batch), plain.full_sort_predict(batch)
        rows = torch.arange(len(last))
        assert torch.isinf(scores[rows, last]).all() and (scores[rows, last] < 0).all()
        keep = torch.ones_like(scores, dtype=torch.bool)
        keep[rows, last] = False
        assert torch.equal(scores[keep], reference[keep])
        # the sampled-candidate path agrees with the full ranking
        candidates = copy.deepcopy(batch)
        candidates["item_id"] = last
        assert torch.isinf(masked.predict(candidates)).all()
        candidates["item_id"] = (last % (scores.size(1) - 1)) + 1  # another item: scored as without the mask
        assert torch.allclose(masked.predict(candidates), plain.predict(candidates))


def test_mask_last_item_keeps_the_loss_finite_when_the_target_repeats_it(built):
    # a session can start with the item the previous one ended with: that target is left unmasked
    model, config = _model(built, mask_last_item=True)
    model.train()
    batch = _batch(built, config)
    batch["item_id"] = torch.gather(batch["item_id_list"], 1, (batch["item_length"] - 1).unsqueeze(1)).squeeze(1)
    loss = model.calculate_loss(batch)
    assert torch.isfinite(loss)
    loss.backward()


# ---------------------------------------------------------------- recent_interest: op_linear
def test_op_linear_maps_x_t_by_the_last_operation(built):
    # x_t + W[o_t] x_t: one learned d x d map per operation, chosen by the last micro-behaviour's op
    model, config = _model(built, recent_interest="op_linear")
    paper, _ = _model(built, recent_interest="last_micro")
    paper.load_state_dict({k: v for k, v in model.state_dict().items() if k != "op_maps"})
    batch = _batch(built, config)
    x_paper, x_mapped = _recent(paper, batch), _recent(model, batch)
    last_op = torch.gather(batch["mg_micro_op"], 1, (batch["mg_micro_length"] - 1).unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        expected = torch.stack([x + model.op_maps[o] @ x for x, o in zip(x_paper, last_op)])
    assert torch.allclose(x_mapped, expected, atol=1e-5)
    # two runs that end with the same operation get the same map, one that ends otherwise another
    view, cart, detail = _op_id(built, "view"), _op_id(built, "cart"), _op_id(built, "detail")
    x_cart = _recent(model, _transform(built, config, _set_last_run(batch, [view, cart])))
    x_detail = _recent(model, _transform(built, config, _set_last_run(batch, [view, detail])))
    x_cart_paper = _recent(paper, _transform(built, config, _set_last_run(batch, [view, cart])))
    x_detail_paper = _recent(paper, _transform(built, config, _set_last_run(batch, [view, detail])))
    assert not torch.allclose(x_cart - x_cart_paper, x_detail - x_detail_paper, atol=1e-6)


def test_op_linear_is_ignored_without_operations(built):
    model, config = _model(built, variant="SGNN-Self", recent_interest="op_linear")
    paper, _ = _model(built, variant="SGNN-Self", recent_interest="last_micro")
    assert not any(name == "op_maps" for name, _ in model.named_parameters())
    batch = _batch(built, config)
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(batch), paper.full_sort_predict(batch))
