"""Checkpoints written through the package load safely (weights_only) and predict identically;
a checkpoint that needs full unpickling is refused unless the caller trusts it."""

import pytest
import torch

from conftest import run_tiny
from recbole_ext.compat import load_checkpoint
from recbole_ext.quick_start import load_data_and_model
from recbole_ext.registry import EXTENSION_MODELS


def full_sort_scores(model, test_data):
    model.eval()
    with torch.no_grad():
        interaction = next(iter(test_data))[0]
        return model.full_sort_predict(interaction.to(model.device))


@pytest.mark.parametrize("model_name", ["SASRec"] + sorted(EXTENSION_MODELS))
def test_checkpoint_roundtrip_restores_model_and_dataset_plugin(model_name, tmp_path):
    record = run_tiny(model_name, "synthetic", saved=True, checkpoint_dir=str(tmp_path / "saved"))
    path = record["checkpoint"]
    checkpoint = torch.load(path, weights_only=True)  # loads without unpickling code
    assert checkpoint["config"]["model"] == model_name

    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(path)
    assert type(model).__name__ == model_name
    if model_name in EXTENSION_MODELS and EXTENSION_MODELS[model_name].dataset:
        assert type(dataset).__name__ == EXTENSION_MODELS[model_name].dataset.rsplit(".", 1)[1]
    reloaded = {k: v for k, v in model.state_dict().items()}
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(reloaded[key], value)

    from recbole_ext import registry

    trainer = registry.get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    test_result = trainer.evaluate(test_data, load_best_model=False)
    assert {k: float(v) for k, v in test_result.items()} == record["test_result"]

    # a second load predicts the very same scores
    *_, test_again = load_data_and_model(path)
    model_again = load_data_and_model(path)[1]
    assert torch.equal(full_sort_scores(model, test_data), full_sort_scores(model_again, test_again))


class Opaque:
    """Stands for the Config object RecBole pickles into its checkpoints."""


def test_pickled_checkpoint_needs_explicit_trust(tmp_path):
    path = tmp_path / "recbole-style.pth"
    torch.save({"config": Opaque(), "state_dict": {}}, path)
    with pytest.raises(ValueError, match="trust_pickle=True"):
        load_checkpoint(str(path))
    assert isinstance(load_checkpoint(str(path), trust_pickle=True)["config"], Opaque)
