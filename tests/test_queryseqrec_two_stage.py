"""QuerySeqRec ``training_schedule: two_stage`` (issue 16): the item side trained as SASRec
first, then the query side on the frozen item side, starting exactly at the stage-1 model; and
``joint`` (the default) unchanged."""

import copy

import pytest
import torch

from recbole_ext import registry
from recbole_ext.data.dataset.query_dataset import EVENT_ITEM, EVENT_TYPE_FIELD
from recbole_ext.model.sequential_recommender.queryseqrec import ITEM_STAGE, QUERY_STAGE
from recbole_ext.trainer import StagedTrainer, with_safe_checkpoints
from tests.conftest import tiny_config_dict
from tests.test_queryseqrec import (  # noqa: F401  (module fixtures)
    _DictConfig,
    _batch,
    _ce,
    _model,
    make_config,
    query_dataset,
    tiny_data_path,
)


@pytest.fixture(scope="module")
def cut_dataset(tiny_data_path):  # noqa: F811
    """Short event windows: many examples hold fewer items in their events than in
    item_id_list, so the gate must align the latest event item with the last item."""
    from recbole_ext.data import create_dataset

    config = make_config("QuerySeqRec", tiny_data_path, MAX_ITEM_LIST_LENGTH=10,
                         MAX_EVENT_LIST_LENGTH=8)
    dataset = create_dataset(config)
    return config, dataset, dataset.build()


def _step(model, batch, params):
    optimizer = torch.optim.Adam(params, lr=0.05)
    model.train()
    optimizer.zero_grad()
    model.calculate_loss(batch).backward()
    optimizer.step()


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


ITEM_SIDE = ("item_embedding.", "item_stream_")


def test_the_schedules_are_the_gated_forms_and_joint_is_the_model_as_before(query_dataset):  # noqa: F811
    with pytest.raises(ValueError, match="training_schedule"):
        _model(query_dataset, query_fusion="gated", training_schedule="staged")
    # every other form trains in one stage, whatever the schedule says: the paper's model
    # is the same with any schedule (same parameters, same random draws)
    paper, _ = _model(query_dataset, query_fusion="heterogeneous")
    paper_joint, _ = _model(query_dataset, query_fusion="heterogeneous", training_schedule="joint")
    assert paper.training_stages() == (None,) and list(paper.state_dict()) == list(paper_joint.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(paper.state_dict().values(), paper_joint.state_dict().values()))
    default, train = _model(query_dataset, query_fusion="gated")
    joint, _ = _model(query_dataset, query_fusion="gated", training_schedule="joint")
    staged, _ = _model(query_dataset, query_fusion="gated", training_schedule="two_stage")
    # the default is two_stage_fine_tune with linked-item words; joint builds the parameters of
    # the default but the gate's output map, from the same random draws
    assert default.training_schedule == "two_stage_fine_tune" and default.stage_two_word_init == "linked_items"
    assert set(default.state_dict()) - set(joint.state_dict()) == {"history_gate_out.weight"}
    assert list(staged.state_dict()) == list(default.state_dict())
    shared = default.state_dict()
    assert all(torch.equal(value, shared[name]) for name, value in joint.state_dict().items())
    assert joint.training_stages() == (None,)
    assert default.training_stages() == staged.training_stages() == (ITEM_STAGE, QUERY_STAGE)


def test_joint_scores_are_the_gate_formula(query_dataset):  # noqa: F811
    """joint's prediction is exactly ``h_items + g * (h_t - h_items)``, the latest item's slot
    aligned with the last item of item_id_list."""
    model, train = _model(query_dataset, query_fusion="gated", training_schedule="joint")
    model.eval()
    batch = _batch(train, 100)
    with torch.no_grad():
        hidden, last = model._forward_transformer(batch)
        items = model.item_history_states(batch)
        slot = (batch[EVENT_TYPE_FIELD] == EVENT_ITEM).long().cumsum(1) - 1
        slot = slot + (batch[model.ITEM_SEQ_LEN] - 1 - slot[:, -1]).unsqueeze(1)
        history = items.gather(1, slot.clamp(0, items.size(1) - 1).unsqueeze(-1).expand_as(hidden))
        gate = torch.sigmoid(model.history_gate_layer(torch.cat([hidden, history], -1)))
        state = torch.where((slot >= 0).unsqueeze(-1), history + gate * (hidden - history), hidden)
        expected = model.gather_indexes(state, last) @ model.item_embedding.weight.t()
        assert torch.equal(model.full_sort_predict(batch), expected)


def test_stage_one_trains_the_item_side_as_sasrec_and_nothing_else(query_dataset):  # noqa: F811
    from recbole.model.sequential_recommender import SASRec

    config, _, (train, _, _) = query_dataset
    model, _ = _model(query_dataset, query_fusion="gated", training_schedule="two_stage")
    model.set_training_stage(ITEM_STAGE)
    batch = _batch(train, 100)
    # its loss is SASRec's with the same weights (padding item never a candidate)
    torch.manual_seed(1)
    sasrec = SASRec(_DictConfig(dict(config.final_config_dict)), train)
    weights = {"item_embedding.weight": model.item_embedding.weight}
    for name, value in model.state_dict().items():
        if name.startswith("item_stream_encoder."):
            weights["trm_encoder." + name[len("item_stream_encoder."):]] = value
        elif name.startswith(("item_stream_position_embedding.", "item_stream_LayerNorm.")):
            weights[name[len("item_stream_"):]] = value
    sasrec.load_state_dict(weights)
    model.eval(), sasrec.eval()
    with torch.no_grad():
        expected = _ce(model, sasrec.forward(batch[sasrec.ITEM_SEQ], batch[sasrec.ITEM_SEQ_LEN]),
                       batch[sasrec.POS_ITEM_ID])
        assert torch.allclose(model.calculate_loss(batch), expected, atol=1e-6)
        assert torch.allclose(model.full_sort_predict(batch), sasrec.full_sort_predict(batch),
                              atol=1e-5)
    before = _snapshot(model)
    _step(model, batch, model.stage_parameters(ITEM_STAGE))
    after = _snapshot(model)
    for name in before:
        if not name.startswith(ITEM_SIDE):
            assert torch.equal(before[name], after[name]), name
            assert not dict(model.named_parameters())[name].requires_grad
    for name in ("item_embedding.weight", "item_stream_encoder.layer.0.feed_forward.dense_1.weight"):
        assert not torch.equal(before[name], after[name]), name


def test_stage_two_starts_exactly_at_stage_one_and_trains_the_query_side_only(cut_dataset):
    config, _, (train, _, _) = cut_dataset
    model, _ = _model(cut_dataset, query_fusion="gated", training_schedule="two_stage")
    batch = _batch(train, 100)
    items_in_events = (batch[EVENT_TYPE_FIELD] == EVENT_ITEM).sum(1)
    assert (items_in_events < batch[model.ITEM_SEQ_LEN]).any()  # alignment is exercised
    model.set_training_stage(ITEM_STAGE)
    _step(model, batch, model.stage_parameters(ITEM_STAGE))
    model.eval()
    with torch.no_grad():
        stage_one = model.full_sort_predict(batch)
    model.set_training_stage(QUERY_STAGE)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(batch), stage_one)
    # the frozen item side: no gradient, no dropout even in training mode
    model.train()
    assert not model.item_stream_encoder.training and model.trm_encoder.training
    with torch.no_grad():
        assert torch.equal(model.item_history_states(batch),
                           model.train(False).item_history_states(batch))
    before = _snapshot(model)
    # the first step moves the gate's output map only (every other gradient is 0 at 0)
    for _ in range(2):
        _step(model, batch, model.stage_parameters(QUERY_STAGE))
    after = _snapshot(model)
    for name in before:
        if name.startswith(ITEM_SIDE):
            assert torch.equal(before[name], after[name]), name
            assert not dict(model.named_parameters())[name].requires_grad
    for name in ("history_gate_out.weight", "word_embedding.weight", "history_gate_layer.weight"):
        assert not torch.equal(before[name], after[name]), name
    model.eval()
    with torch.no_grad():
        assert not torch.equal(model.full_sort_predict(batch), stage_one)  # the control


def _fit(tiny_data_path, epochs=2, **overrides):  # noqa: F811
    from recbole.utils import init_seed

    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset, data_preparation

    values = tiny_config_dict(data_path=tiny_data_path, train_neg_sample_args=None, epochs=epochs,
                              query_fusion="gated", stopping_step=1, learning_rate=0.01,
                              **overrides)
    config = Config("QuerySeqRec", "synthetic", config_dict=values, read_command_line=False)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = registry.get_model("QuerySeqRec")(config, train._dataset)
    return config, model, (train, valid, test)


def test_joint_fit_is_recbole_trainer_fit(tiny_data_path):  # noqa: F811
    """The staged trainer with one stage is RecBole's Trainer.fit: same validation, same weights."""
    from recbole.trainer import Trainer

    results = []
    for trainer_class in (StagedTrainer, Trainer):
        config, model, (train, valid, _) = _fit(tiny_data_path, epochs=1, training_schedule="joint")
        trainer = with_safe_checkpoints(trainer_class)(config, model)
        score, _ = trainer.fit(train, valid, saved=False)
        results.append((score, copy.deepcopy(model.state_dict())))
    assert issubclass(registry.get_trainer(config["MODEL_TYPE"], "QuerySeqRec"), StagedTrainer)
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1].values(), results[1][1].values()))


@pytest.mark.parametrize("schedule", ["two_stage", "two_stage_fine_tune"])
def test_two_stage_fit_keeps_the_best_validation_checkpoint(tiny_data_path, schedule):  # noqa: F811
    config, model, (train, valid, test) = _fit(tiny_data_path, training_schedule=schedule)
    trainer = registry.get_trainer(config["MODEL_TYPE"], "QuerySeqRec")(config, model)
    scores, stages = [], []
    original = trainer._valid_epoch

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        scores.append(result[0])
        stages.append(model.training_stage)
        return result

    trainer._valid_epoch = recording
    best, _ = trainer.fit(train, valid, saved=True)
    assert trainer.stage_epochs[0] >= 1 and trainer.stage_epochs[1] >= 1
    assert len(trainer.stage_epochs) == 2 and len(trainer.train_epoch_seconds) == sum(trainer.stage_epochs)
    first = [s for s, st in zip(scores, stages) if st == ITEM_STAGE]
    second = [s for s, st in zip(scores, stages) if st == QUERY_STAGE]
    assert len(second) == trainer.stage_epochs[1] + 1  # the start, then one per epoch
    assert second[0] == max(first)  # stage 2 starts at the stage-1 best
    assert best == max(second) >= max(first)
    assert model.training_stage is None and all(p.requires_grad for p in model.parameters())
    # the checkpoint written at the end is the stage-2 best: a fresh model loaded from it
    # scores what fit reported, and what evaluate(load_best_model) tests
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    fresh = registry.get_model("QuerySeqRec")(config, train._dataset)
    fresh.load_state_dict(checkpoint["state_dict"])
    reloaded = with_safe_checkpoints(StagedTrainer)(config, fresh)
    assert reloaded._valid_epoch(valid)[0] == best
    assert checkpoint["best_valid_score"] == best
    tested = trainer.evaluate(test, load_best_model=True)
    assert reloaded.evaluate(test, load_best_model=False) == tested


def test_two_stage_runs_through_run_single(tiny_data_path):  # noqa: F811
    """The comparison and tuning path (quick_start.run_single) picks the staged trainer."""
    from recbole_ext.quick_start import run_single

    values = tiny_config_dict(data_path=tiny_data_path, train_neg_sample_args=None,
                              query_fusion="gated", training_schedule="two_stage")
    record = run_single("QuerySeqRec", "synthetic", config_dict=values, saved=False,
                        read_command_line=False)
    assert record["stage_epochs"] == [1, 1] and record["epochs_trained"] == 2
    joint = run_single("QuerySeqRec", "synthetic", config_dict=dict(values, training_schedule="joint"),
                       saved=False, read_command_line=False)
    assert "stage_epochs" not in joint
    assert joint["best_valid_result"] != record["best_valid_result"]


def test_the_gate_reads_the_item_stream_after_each_positions_own_latest_item(cut_dataset):
    """An event window cut shorter than item_id_list (fewer items): counted from the window's
    start, the last position would read the item stream after an older item and never see the
    latest one. Aligned, changing the latest item of item_id_list changes the last position's
    state in every example, and no position before the latest event item (causal)."""
    config, _, (train, _, _) = cut_dataset
    for schedule in ("joint", "two_stage"):
        model, _ = _model(cut_dataset, query_fusion="gated", training_schedule=schedule, gate_bias_init=0.0)
        model.eval()
        batch = _batch(train, 100)
        events_are_items = batch[EVENT_TYPE_FIELD] == EVENT_ITEM
        assert (events_are_items.sum(1) < batch[model.ITEM_SEQ_LEN]).any()  # the case is exercised
        changed = copy.deepcopy(batch)
        rows = torch.arange(len(batch[model.ITEM_SEQ]))
        latest_item = batch[model.ITEM_SEQ_LEN] - 1
        changed[model.ITEM_SEQ][rows, latest_item] = batch[model.ITEM_SEQ][rows, latest_item] % (model.n_items - 1) + 1
        with torch.no_grad():
            (before, last), (after, _) = model.forward_streams(batch)[:2], model.forward_streams(changed)[:2]
        at_last = (before[rows, last] != after[rows, last]).any(-1)
        assert at_last[events_are_items.any(1)].all(), schedule
        latest = events_are_items.long().cumsum(1) == events_are_items.sum(1, keepdim=True)
        earlier = torch.arange(latest.size(1)) < latest.long().argmax(1, keepdim=True)
        assert earlier.any() and torch.equal(before[earlier], after[earlier]), schedule


def test_two_stage_fine_tune_starts_at_stage_one_and_trains_every_parameter(cut_dataset):
    """two_stage_fine_tune: the same stage 1; stage 2 starts exactly at the stage-1 model, as
    two_stage does, but trains the item side too (gradient and dropout on)."""
    model, _ = _model(cut_dataset, query_fusion="gated", training_schedule="two_stage_fine_tune")
    frozen, _ = _model(cut_dataset, query_fusion="gated", training_schedule="two_stage")
    assert model.training_stages() == (ITEM_STAGE, QUERY_STAGE)
    assert list(model.state_dict()) == list(frozen.state_dict())
    config, _, (train, _, _) = cut_dataset
    batch = _batch(train, 100)
    model.set_training_stage(ITEM_STAGE)
    assert len(model.stage_parameters(ITEM_STAGE)) == len(frozen.stage_parameters(ITEM_STAGE))
    _step(model, batch, model.stage_parameters(ITEM_STAGE))
    model.eval()
    with torch.no_grad():
        stage_one = model.full_sort_predict(batch)
    model.set_training_stage(QUERY_STAGE)
    assert len(model.stage_parameters(QUERY_STAGE)) == len(list(model.parameters()))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(batch), stage_one)
    model.train()
    assert model.item_stream_encoder.training  # not frozen: its dropout is on
    before = _snapshot(model)
    for _ in range(2):
        _step(model, batch, model.stage_parameters(QUERY_STAGE))
    after = _snapshot(model)
    for name in ("item_embedding.weight", "item_stream_encoder.layer.0.feed_forward.dense_1.weight",
                 "history_gate_out.weight", "word_embedding.weight"):
        assert not torch.equal(before[name], after[name]), name


def test_only_the_frozen_two_stage_refuses_the_stream_losses(query_dataset):  # noqa: F811
    with pytest.raises(ValueError, match="item_stream_loss_weight"):
        _model(query_dataset, query_fusion="gated", training_schedule="two_stage", item_stream_loss_weight=1.0)
    model, _ = _model(query_dataset, query_fusion="gated", training_schedule="two_stage_fine_tune",
                      item_stream_loss_weight=1.0)
    assert model.item_stream_loss_weight == 1.0


def test_stage_two_word_init_sets_each_word_to_its_linked_items_mean(query_dataset):  # noqa: F811
    """``stage_two_word_init: linked_items``: at the start of stage 2 each word is the mean
    stage-1 item embedding over the training graph's links of its queries; words without links
    and the predictions are unchanged; ``random`` (the default) changes nothing."""
    config, _, (train, _, _) = query_dataset
    model, _ = _model(query_dataset, query_fusion="gated", training_schedule="two_stage_fine_tune",
                      stage_two_word_init="linked_items")
    batch = _batch(train, 100)
    model.set_training_stage(ITEM_STAGE)
    _step(model, batch, model.stage_parameters(ITEM_STAGE))
    model.eval()
    with torch.no_grad():
        stage_one = model.full_sort_predict(batch)
    words_before = model.word_embedding.weight.detach().clone()
    model.set_training_stage(QUERY_STAGE)
    model.begin_training_stage(QUERY_STAGE)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(batch), stage_one)
    # the reference, one link at a time
    graph = train.query_item_graph
    ptr, idx = graph["query2item_ptr"].tolist(), graph["query2item_idx"].tolist()
    sums, counts = {}, {}
    for query in range(len(ptr) - 1):
        for item in idx[ptr[query]:ptr[query + 1]]:
            for word in model.query_words[query].tolist():
                if word > 0:
                    sums[word] = sums.get(word, 0) + model.item_embedding.weight[item].detach()
                    counts[word] = counts.get(word, 0) + 1
    assert counts  # the case is exercised
    after = model.word_embedding.weight.detach()
    for word in range(1, len(after)):
        if word in counts:
            assert torch.allclose(after[word], sums[word] / counts[word], atol=1e-6), word
        else:
            assert torch.equal(after[word], words_before[word]), word
    plain, _ = _model(query_dataset, query_fusion="gated", training_schedule="two_stage_fine_tune",
                      stage_two_word_init="random")
    table = plain.word_embedding.weight.detach().clone()
    plain.set_training_stage(QUERY_STAGE)
    plain.begin_training_stage(QUERY_STAGE)
    assert torch.equal(plain.word_embedding.weight, table)
