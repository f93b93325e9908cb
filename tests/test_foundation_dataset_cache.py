"""The dataset cache (save_dataset): safe format, read only when asked for, keyed by the content
of the atomic files and the config keys that shape the dataset; a stale cache is never served."""

import os
import shutil

import numpy as np

from conftest import run_tiny, tiny_config_dict
from recbole_ext import paths
from recbole_ext.config import Config
from recbole_ext.data import cache, create_dataset, dataset_content_digest


def make_config(model="HUGT", data_path=None, **overrides):
    config_dict = tiny_config_dict(**dict({"save_dataset": True}, **overrides))
    if data_path:
        config_dict["data_path"] = str(data_path)
    return Config(model, "synthetic", config_dict=config_dict, read_command_line=False)


def copy_synthetic(tmp_path):
    shutil.copytree(os.path.join(paths.DATASET_ATOMIC_DIR, "synthetic"), tmp_path / "data" / "synthetic")
    return tmp_path / "data"


def frames_equal(a, b):
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if x.dtype == object:
            assert all(np.array_equal(p, q) and p.dtype == q.dtype for p, q in zip(x, y))
        else:
            assert x.dtype == y.dtype and np.array_equal(x, y)


def test_cache_roundtrip_is_exact_and_keyed_on_plugin_keys():
    dataset = create_dataset(make_config(svd_rank=8))
    cached = cache.load(make_config(svd_rank=8), type(dataset))
    assert cached is not None and type(cached) is type(dataset)
    frames_equal(dataset.inter_feat, cached.inter_feat)
    assert {k: list(v) for k, v in dataset.field2id_token.items()} == {k: list(v) for k, v in cached.field2id_token.items()}
    assert dataset.field2type == cached.field2type and dataset.field2seqlen == cached.field2seqlen
    assert cache.load(make_config(svd_rank=4), type(dataset)) is None  # a plugin key (model yaml)
    assert cache.load(make_config(svd_rank=8, MAX_ITEM_LIST_LENGTH=7), type(dataset)) is None  # RecBole's


def test_a_run_from_the_cache_gives_the_same_results():
    first = run_tiny("SASRec", save_dataset=True)
    files = os.listdir("saved")
    assert any(f.endswith(".npz") for f in files)
    second = run_tiny("SASRec", save_dataset=True)
    assert second["test_result"] == first["test_result"]


def test_changed_atomic_file_is_never_served_from_the_stale_cache(tmp_path):
    data = copy_synthetic(tmp_path)
    full = create_dataset(make_config("SASRec", data))
    inter = data / "synthetic" / "synthetic.inter"
    lines = inter.read_text().splitlines(keepends=True)
    digest_before = dataset_content_digest(make_config("SASRec", data))
    inter.write_text("".join(lines[: len(lines) // 2]))
    assert dataset_content_digest(make_config("SASRec", data)) != digest_before
    halved = create_dataset(make_config("SASRec", data))
    assert len(halved.inter_feat) < len(full.inter_feat)
    # same size, one changed byte: still a different key
    inter.write_text("".join(lines))
    text = inter.read_text()
    inter.write_text(text[:-3] + ("1" if text[-3] != "1" else "2") + text[-2:])
    assert dataset_content_digest(make_config("SASRec", data)) != digest_before


def test_cache_is_read_only_when_the_run_asks_for_it(tmp_path, monkeypatch):
    create_dataset(make_config("SASRec"))  # writes the cache
    calls = []
    monkeypatch.setattr(cache, "load", lambda *a: calls.append(a))
    create_dataset(make_config("SASRec", save_dataset=False))
    assert calls == []
    create_dataset(make_config("SASRec"))
    assert len(calls) == 1


def test_unsupported_attribute_is_not_cached_never_pickled():
    config = make_config("SASRec")
    dataset = create_dataset(config)
    dataset.odd = object()
    for f in os.listdir("saved"):
        os.remove(os.path.join("saved", f))
    assert cache.save(config, dataset) is None and os.listdir("saved") == []
