"""Registry-aware ``create_dataset`` and ``data_preparation``.

Stock models get RecBole's behaviour (sequential ones through :class:`ExtSequentialDataset`,
identical unless the dataset declares micro-behaviours); extension models get the dataset plugin,
batch transform or data preparation their registry line names.
"""

import os
import pickle
from logging import getLogger

from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.utils import set_color
from recbole.utils.argument_list import dataset_arguments

from recbole_ext import registry


def create_dataset(config):
    from recbole_ext.data import protocol

    dataset_class = protocol.dataset_class(config, registry.get_dataset_class(config))
    if dataset_class is None:
        return recbole_create_dataset(config)
    cached = _load_cached_dataset(config, dataset_class)
    if cached is not None:
        return cached
    dataset = dataset_class(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


def _load_cached_dataset(config, dataset_class):
    """RecBole's ``dataset_save_path`` cache, for plugin classes too (same file name scheme)."""
    default_file = os.path.join(config["checkpoint_dir"], f'{config["dataset"]}-{dataset_class.__name__}.pth')
    file = config["dataset_save_path"] or default_file
    if not os.path.exists(file):
        return None
    with open(file, "rb") as f:
        dataset = pickle.load(f)
    if type(dataset) is not dataset_class:
        return None
    # a plugin's own keys (SVD rank, window scheme, ...) live in the model's package yaml
    for arg in dataset_arguments + ["seed", "repeatable"] + _package_model_keys(config["model"]):
        if config[arg] != dataset.config[arg]:
            return None
    getLogger().info(set_color("Load filtered dataset from", "pink") + f": [{file}]")
    return dataset


def _package_model_keys(model_name):
    import yaml

    from recbole_ext.paths import model_yaml

    if not os.path.isfile(model_yaml(model_name)):
        return []
    with open(model_yaml(model_name), encoding="utf-8") as f:
        return list((yaml.safe_load(f) or {}).keys())


class _ChainedTransform:
    """RecBole's configured transform (``transform`` key) first, then the plugin's."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, dataset, interaction):
        return self.second(dataset, self.first(dataset, interaction))


def install_transforms(config, dataset, loaders):
    transform_class = registry.get_transform_class(config["model"])
    if transform_class is None:
        return
    for phase, loader in zip(("train", "valid", "test"), loaders):
        plugin = transform_class(config, dataset, phase)
        loader.transform = _ChainedTransform(loader.transform, plugin) if config["transform"] else plugin


def data_preparation(config, dataset):
    from recbole_ext.data import protocol

    custom = registry.get_data_preparation(config["model"])
    if custom is not None:
        return custom(config, dataset)
    if protocol.protocol_of(config) != "next_item":  # eval_protocol: examples, split, candidates
        loaders = protocol.data_preparation(config, dataset)
    else:
        loaders = recbole_data_preparation(config, dataset)
    install_transforms(config, dataset, loaders)
    return loaders
