"""Registry-aware ``create_dataset`` and ``data_preparation``.

Stock models get RecBole's behaviour (sequential ones through :class:`ExtSequentialDataset`,
identical unless the dataset declares micro-behaviours); extension models get the dataset plugin,
batch transform or data preparation their registry line names.
"""

import importlib

from recbole.data import data_preparation as recbole_data_preparation
from recbole.utils import ModelType

from recbole_ext import registry
from recbole_ext.data import cache
from recbole_ext.data.cache import dataset_content_digest  # noqa: F401  (the public name)


def recbole_dataset_class(config):
    """The class RecBole's ``create_dataset`` would build (its per-model ``<Model>Dataset``, else
    the one of the model type); only the choice is repeated here, so that RecBole's function,
    which unpickles any cache file it finds, is never called."""
    module = importlib.import_module("recbole.data.dataset")
    if hasattr(module, config["model"] + "Dataset"):
        return getattr(module, config["model"] + "Dataset")
    by_type = {ModelType.SEQUENTIAL: "SequentialDataset", ModelType.KNOWLEDGE: "KnowledgeBasedDataset"}
    return getattr(module, by_type.get(config["MODEL_TYPE"], "Dataset"))


def create_dataset(config):
    """The dataset of ``config`` (split by its ``eval_protocol``); with ``save_dataset: True`` it is
    cached in the safe, keyed format of :mod:`recbole_ext.data.cache` (and only then read from a cache)."""
    from recbole_ext.data import protocol

    dataset_class = protocol.dataset_class(config, registry.get_dataset_class(config)) or recbole_dataset_class(config)
    if config["save_dataset"]:
        cached = cache.load(config, dataset_class)
        if cached is not None:
            return cached
    dataset = dataset_class(config)
    if config["save_dataset"]:
        cache.save(config, dataset)
    return dataset


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
