"""RecBole's dataset cache (save_dataset / dataset_save_path) works for plugin datasets and is not
reused when a plugin's own key (from the model's package yaml) changed."""

from recbole_ext.config import Config
from recbole_ext.data import _load_cached_dataset, _package_model_keys, create_dataset


def make_config(tmp_path, **overrides):
    config_dict = {"use_gpu": False, "state": "ERROR", "save_dataset": True, "checkpoint_dir": str(tmp_path)}
    config_dict.update(overrides)
    return Config("HUGT", "synthetic", config_dict=config_dict, read_command_line=False)


def test_plugin_dataset_cache_is_keyed_on_plugin_keys(tmp_path):
    assert "svd_rank" in _package_model_keys("HUGT")
    config = make_config(tmp_path, svd_rank=8)
    dataset = create_dataset(config)
    cached = _load_cached_dataset(make_config(tmp_path, svd_rank=8), type(dataset))
    assert cached is not None and len(cached.inter_feat) == len(dataset.inter_feat)
    assert _load_cached_dataset(make_config(tmp_path, svd_rank=4), type(dataset)) is None
