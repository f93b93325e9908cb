"""Config layering: RecBole's files < package yaml (in RecBole's order) < config files <
config_dict < command line; data_path defaults; anomaly detection switch."""

import os
import sys

import pytest
import torch

from recbole_ext import paths
from recbole_ext.config import Config


@pytest.fixture
def package_properties(tmp_path, monkeypatch):
    """A throw-away properties/ folder standing in for the package's own."""
    root = tmp_path / "properties"
    (root / "model").mkdir(parents=True)
    (root / "dataset").mkdir()
    (root / "overall.yaml").write_text("detect_anomaly: False\nvalidate_atomic: True\n")
    # RecBole's SASRec.yaml says hidden_size 64, inner_size 256, dropout 0.5
    (root / "model" / "SASRec.yaml").write_text("hidden_size: 24\ninner_size: 48\nn_layers: 3\n")
    # RecBole's ml-100k.yaml says ... ; the package dataset yaml comes after the model yaml
    (root / "dataset" / "ml-100k.yaml").write_text("inner_size: 96\nMAX_ITEM_LIST_LENGTH: 7\n")
    monkeypatch.setattr(paths, "PROPERTIES_DIR", str(root))
    return root


def make(config_file_list=None, config_dict=None, read_command_line=False):
    return Config(
        "SASRec", "ml-100k", config_file_list=config_file_list,
        config_dict=dict({"use_gpu": False}, **(config_dict or {})), read_command_line=read_command_line,
    )


def test_package_model_yaml_beats_recbole_model_yaml(package_properties):
    config = make()
    assert config["hidden_size"] == 24  # RecBole's own SASRec.yaml has 64
    assert config["n_layers"] == 3
    assert config["loss_type"] == "CE"  # untouched RecBole key survives


def test_package_dataset_yaml_comes_after_package_model_yaml(package_properties):
    config = make()
    assert config["inner_size"] == 96
    assert config["MAX_ITEM_LIST_LENGTH"] == 7
    assert "MAX_ITEM_LIST_LENGTH" in config.parameters["Dataset"]


def test_quick_start_yaml_still_applies_last_among_internal_files(package_properties):
    config = make()
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["repeatable"] is True


def test_external_layers_beat_package_yaml_in_recbole_order(package_properties, tmp_path, monkeypatch):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("hidden_size: 40\ninner_size: 41\nMAX_ITEM_LIST_LENGTH: 9\n")
    config = make(config_file_list=[str(config_file)], config_dict={"inner_size": 42, "MAX_ITEM_LIST_LENGTH": 11})
    assert config["hidden_size"] == 40  # file > package yaml
    assert config["inner_size"] == 42  # config_dict > file
    monkeypatch.setattr(sys, "argv", ["run_recbole_ext.py", "--MAX_ITEM_LIST_LENGTH=13", "--hidden_size=44"])
    config = make(
        config_file_list=[str(config_file)], config_dict={"inner_size": 42, "MAX_ITEM_LIST_LENGTH": 11},
        read_command_line=True,
    )
    assert config["MAX_ITEM_LIST_LENGTH"] == 13  # command line > config_dict
    assert config["hidden_size"] == 44  # command line > package yaml


def test_data_path_defaults_to_dataset_atomic_and_ml100k_to_recbole_copy():
    config = Config("SASRec", "synthetic", config_dict={"use_gpu": False}, read_command_line=False)
    assert os.path.normpath(config["data_path"]) == os.path.join(paths.DATASET_ATOMIC_DIR, "synthetic")
    config = Config("SASRec", "ml-100k", config_dict={"use_gpu": False}, read_command_line=False)
    assert os.path.isfile(os.path.join(config["data_path"], "ml-100k.inter"))
    assert "recbole" in config["data_path"] and "dataset_example" in config["data_path"]
    config = Config("SASRec", "synthetic", config_dict={"use_gpu": False, "data_path": "/x/y"}, read_command_line=False)
    assert config["data_path"] == "/x/y/synthetic"


def test_anomaly_detection_is_off_unless_asked_for():
    import recbole.model.sequential_recommender  # noqa: F401  (would turn it on at import)

    Config("SASRec", "ml-100k", config_dict={"use_gpu": False}, read_command_line=False)
    assert not torch.is_anomaly_enabled()
    Config("SASRec", "ml-100k", config_dict={"use_gpu": False, "detect_anomaly": True}, read_command_line=False)
    assert torch.is_anomaly_enabled()
    Config("SASRec", "ml-100k", config_dict={"use_gpu": False}, read_command_line=False)
    assert not torch.is_anomaly_enabled()


def test_ce_without_explicit_negatives_needs_no_extra_key():
    config = Config("SASRec", "ml-100k", config_dict={"use_gpu": False}, read_command_line=False)
    assert config["train_neg_sample_args"]["distribution"] == "none"
    with pytest.raises(ValueError, match="should be None when the loss_type is CE"):
        Config(
            "SASRec", "ml-100k", read_command_line=False,
            config_dict={"use_gpu": False, "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}},
        )


def test_valid_metric_that_is_not_computed_fails_before_training():
    with pytest.raises(ValueError, match="valid_metric 'MRR@10' is not computed"):
        Config("SASRec", "ml-100k", config_dict={"use_gpu": False, "metrics": ["Hit"]}, read_command_line=False)
    with pytest.raises(ValueError, match="topk"):
        Config("SASRec", "ml-100k", config_dict={"use_gpu": False, "topk": [5]}, read_command_line=False)
