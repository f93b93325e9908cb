"""No code runs from a data, cache or checkpoint file (issue 14, items 1-2).

Every payload below writes a marker file when unpickled (or evaluated); each test first shows
that the payload is live (a control that unpickles it directly), then that the package's entry
points never let the marker appear.
"""

import os
import pickle

import numpy as np
import pytest
import torch

from conftest import run_tiny, tiny_config_dict
from recbole_ext.config import Config
from recbole_ext.data import cache, create_dataset, data_preparation
from recbole_ext.quick_start import load_data_and_model


class Payload:
    """Unpickling this creates ``marker`` (stands for any code an attacker wants to run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path, marker):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(Payload(marker), f)
    return str(path)


def assert_payload_is_live(path, marker):
    with open(path, "rb") as f:
        pickle.load(f).close()
    assert marker.exists()
    marker.unlink()


def make_config(model="SASRec", **overrides):
    return Config(model, "synthetic", config_dict=tiny_config_dict(**overrides), read_command_line=False)


def test_planted_recbole_caches_never_run_on_a_plain_run(tmp_path):
    marker = tmp_path / "MARKER"
    dataset_pickle = plant(tmp_path / "saved" / "synthetic-ExtSequentialDataset.pth", marker)
    loader_pickle = plant(tmp_path / "saved" / "synthetic-for-SASRec-dataloader.pth", marker)
    plant(tmp_path / "saved" / "synthetic-SequentialDataset.pth", marker)
    assert_payload_is_live(dataset_pickle, marker)
    run_tiny("SASRec")  # save_dataset off, as in `run_recbole_ext.py --model=SASRec --dataset=synthetic`
    run_tiny("SASRec", save_dataset=True, save_dataloaders=True)  # caching asked for: still never a pickle
    assert not marker.exists()
    assert os.path.exists(loader_pickle)


def test_cache_paths_given_in_the_config_are_never_unpickled(tmp_path):
    marker = tmp_path / "MARKER"
    dataset_pickle = plant(tmp_path / "elsewhere" / "dataset.pth", marker)
    loader_pickle = plant(tmp_path / "elsewhere" / "loaders.pth", marker)
    for model in ("SASRec", "BPR", "HUGT"):  # plugin, stock non-sequential, stock sequential
        config = make_config(
            model, save_dataset=True, dataset_save_path=dataset_pickle, dataloaders_save_path=loader_pickle
        )
        data_preparation(config, create_dataset(config))
    assert not marker.exists()


def test_a_pickle_planted_under_the_safe_cache_name_is_refused_and_rebuilt(tmp_path):
    marker = tmp_path / "MARKER"
    config = make_config(save_dataset=True)
    dataset = create_dataset(config)
    path = cache.cache_file(config, type(dataset), cache.cache_key(config, type(dataset)))
    plant(path, marker)
    rebuilt = create_dataset(make_config(save_dataset=True))
    assert not marker.exists() and len(rebuilt.inter_feat) == len(dataset.inter_feat)
    # an npz that holds a pickled object array next to a valid-looking header
    header = np.frombuffer(b'{"format": "recbole_ext-dataset/1", "key": "%s", "attributes": '
                           b'{"x": {"t": "nd", "k": "a0"}}}' % cache.cache_key(config, type(dataset)).encode(), np.uint8)
    np.savez(path[: -len(".npz")], header=header, a0=np.array([Payload(marker)], dtype=object))
    rebuilt = create_dataset(make_config(save_dataset=True))
    assert not marker.exists() and len(rebuilt.inter_feat) == len(dataset.inter_feat)


def test_checkpoint_never_follows_its_stored_paths_nor_evaluates_its_strings(tmp_path):
    marker = tmp_path / "MARKER"
    record = run_tiny("SASRec", saved=True, checkpoint_dir=str(tmp_path / "ckpt"))
    checkpoint = torch.load(record["checkpoint"], weights_only=True)
    dataset_pickle = plant(tmp_path / "evil" / "dataset.pth", marker)
    loader_pickle = plant(tmp_path / "evil" / "loaders.pth", marker)
    plant(tmp_path / "evil" / "synthetic-ExtSequentialDataset.pth", marker)
    checkpoint["config"]["external"].update(
        dataset_save_path=dataset_pickle, dataloaders_save_path=loader_pickle, save_dataset=True,
        save_dataloaders=True, checkpoint_dir=str(tmp_path / "evil"),
        note="__import__('builtins').open(%r, 'w')" % str(marker),  # RecBole evals string values
    )
    planted = tmp_path / "planted.pth"
    torch.save(checkpoint, planted)
    config, model, *_ = load_data_and_model(str(planted))
    assert not marker.exists()
    assert config["checkpoint_dir"] != str(tmp_path / "evil") and not config["save_dataset"]
    assert config["note"].startswith("__import__")  # kept as the text it is


def test_recbole_eval_of_config_strings_is_replaced(tmp_path):
    marker = tmp_path / "MARKER"
    code = "__import__('builtins').open(%r, 'w')" % str(marker)
    from recbole.config import Config as RecBoleConfig

    RecBoleConfig._convert_config_dict(None, {"x": code})  # control: RecBole's eval runs it
    assert marker.exists()
    marker.unlink()
    config = make_config(note=code, MAX_ITEM_LIST_LENGTH="10", topk="[5, 10]")
    assert not marker.exists()
    assert config["MAX_ITEM_LIST_LENGTH"] == 10 and config["topk"] == [5, 10] and config["note"] == code


def test_stock_recbole_checkpoint_still_needs_explicit_trust(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "stock.pth"
    torch.save({"config": Payload(marker), "state_dict": {}}, path)
    with pytest.raises(ValueError, match=r"load_data_and_model\(path, trust_pickle=True\)"):
        load_data_and_model(str(path))
    assert not marker.exists()
