"""HUGDataset: SVD factors from the training split only, split copies, tiled training windows."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbole_ext.config import Config
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.data.dataset.hug_dataset import svd_item_factors
from recbole_ext.registry import get_model, get_trainer

N_USERS, EVENTS_PER_USER, N_ITEMS = 8, 9, 14
HISTORY = 3  # MAX_ITEM_LIST_LENGTH


def write_inter(folder, items):
    """``items[u]``: the item ids (1-based tokens) of user u+1, in time order."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user, sequence in enumerate(items, start=1):
        lines += [f"{user}\t{item}\t{1000 * user + t}" for t, item in enumerate(sequence)]
    (folder / "tinyhug.inter").write_text("\n".join(lines) + "\n")


def base_items():
    rng = np.random.default_rng(0)
    return rng.integers(1, N_ITEMS + 1, size=(N_USERS, EVENTS_PER_USER)).tolist()


def build(tmp_path, items, name="a", **overrides):
    write_inter(tmp_path / name / "tinyhug", items)
    config_dict = {
        "data_path": str(tmp_path / name),
        "MAX_ITEM_LIST_LENGTH": HISTORY,
        "svd_rank": 4,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "hidden_size": 8,
        "inner_size": 16,
        "n_heads": 2,
        "n_graph_heads": 1,
        "state": "WARNING",
        "validate_atomic": False,
        "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    }
    config_dict.update(overrides)
    config = Config("HUGT", "tinyhug", config_dict=config_dict, read_command_line=False)
    dataset = create_dataset(config)
    return config, dataset, data_preparation(config, dataset)


def cosine_by_token(dataset, tokens):
    """Item-item cosine of the factors, indexed by raw item tokens (ids differ between datasets)."""
    token_to_id = {token: index for index, token in enumerate(dataset.field2id_token[dataset.iid_field])}
    factors = dataset.svd_item_factors[[token_to_id[token] for token in tokens]]
    return factors @ factors.t()


def common_tokens(*datasets):
    return sorted(set.intersection(*(set(d.field2id_token[d.iid_field][1:]) for d in datasets)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return build(tmp_path_factory.mktemp("hug"), base_items())


def test_factors_come_from_the_training_split_only(reference):
    config, dataset, (train, valid, test) = reference
    # by hand: every interaction but each user's last two (LS: valid and test targets)
    token_to_id = {token: index for index, token in enumerate(dataset.field2id_token[dataset.iid_field])}
    rows, cols = [], []
    for user, sequence in enumerate(base_items()):
        for item in sequence[:-2]:
            rows.append(user)
            cols.append(token_to_id[str(item)])
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(N_USERS, dataset.item_num))
    matrix.data[:] = 1.0
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    expected = svd_item_factors(matrix, 4)
    assert torch.allclose(dataset.svd_item_factors @ dataset.svd_item_factors.t(), expected @ expected.t(), atol=1e-5)


def test_changing_evaluation_interactions_leaves_factors_unchanged(reference, tmp_path):
    _, dataset, _ = reference
    items = base_items()
    changed = [sequence[:-2] + [(sequence[-2] % N_ITEMS) + 1, (sequence[-1] + 3) % N_ITEMS + 1] for sequence in items]
    _, other, _ = build(tmp_path, changed, name="eval_changed")
    tokens = common_tokens(dataset, other)
    assert torch.allclose(cosine_by_token(dataset, tokens), cosine_by_token(other, tokens), atol=1e-5)
    # control: changing a training interaction does change them
    changed_train = [list(sequence) for sequence in items]
    changed_train[0][2] = (changed_train[0][2] % N_ITEMS) + 1
    changed_train[1][3] = (changed_train[1][3] % N_ITEMS) + 1
    _, moved, _ = build(tmp_path, changed_train, name="train_changed")
    tokens = common_tokens(dataset, moved)
    assert not torch.allclose(cosine_by_token(dataset, tokens), cosine_by_token(moved, tokens), atol=1e-3)


def test_split_copies_carry_the_factors_and_the_model_reads_them(reference):
    config, dataset, (train, valid, test) = reference
    assert dataset.svd_item_factors.shape == (dataset.item_num, 4)
    for loader in (train, valid, test):
        assert loader._dataset.svd_item_factors is dataset.svd_item_factors
    model = get_model("HUGT")(config, train._dataset)
    assert torch.equal(model.svd_item_factors, dataset.svd_item_factors)


def test_tiled_windows_cover_each_training_target_once(reference, tmp_path):
    config, dataset, (train, valid, test) = reference
    assert config["train_windows"] == "tiled"
    _, _, (train_all, valid_all, test_all) = build(tmp_path, base_items(), name="prefixes", train_windows="prefixes")
    # evaluation examples are RecBole's either way
    for a, b in ((valid, valid_all), (test, test_all)):
        for field in ("user_id", "item_id", "item_id_list"):
            assert torch.equal(a.dataset.inter_feat[field], b.dataset.inter_feat[field])
    # the prefixes cover the same (user, target) pairs; tiled ones each exactly once
    feat = train.dataset.inter_feat
    model = get_model("HUGT")(config, train._dataset)
    targets = model._position_targets(feat["item_id_list"], feat["item_length"], feat["item_id"])
    tiled_pairs = sorted(
        (int(u), int(position_from_end), int(t))
        for u, row, length in zip(feat["user_id"], targets, feat["item_length"])
        for position_from_end, t in enumerate(row[:length].flip(0).tolist())
    )
    all_feat = train_all.dataset.inter_feat
    # per user, the prefix examples' targets in time order are the user's training targets
    for user in range(1, N_USERS + 1):
        user_targets = all_feat["item_id"][all_feat["user_id"] == user].tolist()
        covered = [t for u, _, t in tiled_pairs if u == user]
        assert sorted(covered) == sorted(user_targets)
    assert len(tiled_pairs) == len(all_feat)  # exactly once: no target is counted twice
    assert len(feat) == sum(-(-(EVENTS_PER_USER - 3) // HISTORY) for _ in range(N_USERS))


def test_bad_dataset_config_names_the_key(tmp_path):
    with pytest.raises(ValueError, match="train_windows"):
        build(tmp_path, base_items(), name="bad1", train_windows="sliding")
    with pytest.raises(ValueError, match="svd_rank"):
        build(tmp_path, base_items(), name="bad2", svd_rank=0)


def test_sampled_evaluation_uses_predict(tmp_path):
    # RecBole's uniN evaluation scores candidates with HUGT.predict, and its metrics are those
    # of predict's scores: each user's block is its positive, then its 5 negatives
    eval_args = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "uni5"}
    config, _, (train, valid, test) = build(
        tmp_path, base_items(), name="uni", eval_args=eval_args, epochs=1, checkpoint_dir=str(tmp_path),
        metrics=["Hit", "MRR"], topk=[1, 3], valid_metric="MRR@3",
    )
    model = get_model("HUGT")(config, train._dataset)
    predicted = []
    predict = model.predict
    model.predict = lambda interaction: predicted.append(predict(interaction)) or predicted[-1]
    trainer = get_trainer(config["MODEL_TYPE"], "HUGT")(config, model)
    trainer.fit(train, valid, saved=False, show_progress=False)
    predicted.clear()
    result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    blocks = torch.cat(predicted).view(-1, 6)
    assert len(blocks) == N_USERS
    # the positive's rank among its distinct candidates: RecBole scatters the scores into a
    # (user, item) matrix, so a negative drawn twice counts once
    rank = torch.tensor([1 + len(torch.unique(row[1:][row[1:] > row[0]])) for row in blocks])
    assert result["hit@1"] == pytest.approx(float((rank <= 1).float().mean()), abs=1e-4)
    assert result["hit@3"] == pytest.approx(float((rank <= 3).float().mean()), abs=1e-4)
    assert result["mrr@3"] == pytest.approx(float(((rank <= 3) / rank).mean()), abs=1e-4)
    assert 0 < result["hit@3"] < 1  # not a constant: the candidates are ranked
