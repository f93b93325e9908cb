"""One registry for every entry point (run, tuning, comparison, loading a saved model).

An extension model is one :class:`ModelSpec` line in :data:`EXTENSION_MODELS`; every value is a
dotted path imported lazily, so a broken or heavy plugin costs nothing until it is used. A stock
RecBole name resolves to RecBole's own classes, unchanged.
"""

import importlib
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ModelSpec:
    model: str  # dotted path of the SequentialRecommender subclass
    dataset: Optional[str] = None  # dataset plugin; None: ExtSequentialDataset
    transform: Optional[str] = None  # batch transform installed on the dataloaders
    data_preparation: Optional[str] = None  # (config, dataset) -> (train, valid, test)
    trainer: Optional[str] = None  # Trainer subclass; None: RecBole's choice


_SEQ = "recbole_ext.model.sequential_recommender"

EXTENSION_MODELS = {
    "QuerySeqRec": ModelSpec(
        model=f"{_SEQ}.queryseqrec.QuerySeqRec",
        dataset="recbole_ext.data.dataset.query_dataset.QueryAwareDataset",
        transform="recbole_ext.data.dataloader.query_augmentation.QueryGraphAugmentation",
        trainer="recbole_ext.trainer.StagedTrainer",  # training_schedule two_stage
    ),
    "HUGT": ModelSpec(
        model=f"{_SEQ}.hugt.HUGT",
        dataset="recbole_ext.data.dataset.hug_dataset.HUGDataset",
    ),
    "EMBSR": ModelSpec(
        model=f"{_SEQ}.embsr.EMBSR",
        dataset="recbole_ext.data.dataset.micro_behaviour.MicroBehaviourDataset",
        transform="recbole_ext.data.dataloader.multigraph.MultigraphTransform",
    ),
    "MAGNN": ModelSpec(
        model=f"{_SEQ}.magnn.MAGNN",
        dataset="recbole_ext.data.dataset.multi_target.MultiTargetDataset",
        transform="recbole_ext.data.dataloader.multi_target.MultiTargetTransform",
    ),
    "DGSR": ModelSpec(
        model=f"{_SEQ}.dgsr.DGSR",
        dataset="recbole_ext.data.dataset.dynamic_graph.DynamicGraphDataset",
        transform="recbole_ext.data.dataloader.subgraph_sampler.SubgraphSampler",
    ),
}

DEFAULT_SEQUENTIAL_DATASET = "recbole_ext.data.dataset.base.ExtSequentialDataset"


class UnknownNameError(ValueError):
    """A model (or other registered) name that resolves to nothing; the message lists the choices."""


def import_object(path):
    """Import ``package.module.Name`` and return ``Name``."""
    module_path, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module_path), name)


def stock_model_names():
    """Every model name RecBole itself exports, read from its packages' ``__init__`` files.

    Reading the text (not importing) keeps this cheap and works without optional backends
    such as lightgbm or xgboost.
    """
    import os
    import re

    import recbole.model

    names = set()
    root = os.path.dirname(recbole.model.__file__)
    for family in sorted(os.listdir(root)):
        init = os.path.join(root, family, "__init__.py")
        if family.endswith("_recommender") and os.path.isfile(init):
            with open(init, encoding="utf-8") as f:
                names.update(re.findall(r"^from \S+ import (\w+)", f.read(), re.M))
    return sorted(names)


def available_model_names():
    return sorted(EXTENSION_MODELS), stock_model_names()


def is_extension(model_name):
    return model_name in EXTENSION_MODELS


def get_spec(model_name):
    return EXTENSION_MODELS.get(model_name)


def get_model(model_name):
    """Model class for ``model_name``: an extension model, else RecBole's, else a clear error."""
    if not isinstance(model_name, str):
        return model_name
    spec = EXTENSION_MODELS.get(model_name)
    if spec is not None:
        return import_object(spec.model)
    extension, stock = available_model_names()
    if model_name not in stock:
        # checked before RecBole's lookup, which would import optional backends (lightgbm...)
        raise UnknownNameError(
            f"unknown model '{model_name}'; extension models: {', '.join(extension)}; "
            f"stock RecBole models: {', '.join(stock)}"
        )
    from recbole.utils import get_model as recbole_get_model

    return recbole_get_model(model_name)


def get_dataset_class(config):
    """Dataset plugin for ``config['model']``; None means RecBole's own ``create_dataset`` choice."""
    from recbole.utils import ModelType

    spec = EXTENSION_MODELS.get(config["model"])
    if spec is not None and spec.dataset is not None:
        return import_object(spec.dataset)
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        import recbole.data.dataset as recbole_datasets

        # RecBole's own per-model datasets (e.g. for DIN-like models) keep precedence.
        if hasattr(recbole_datasets, config["model"] + "Dataset"):
            return None
        return import_object(DEFAULT_SEQUENTIAL_DATASET)
    return None


def get_transform_class(model_name):
    spec = EXTENSION_MODELS.get(model_name)
    return import_object(spec.transform) if spec is not None and spec.transform else None


def get_data_preparation(model_name):
    spec = EXTENSION_MODELS.get(model_name)
    if spec is not None and spec.data_preparation:
        return import_object(spec.data_preparation)
    return None


def get_trainer(model_type, model_name):
    """Trainer class: the spec's, else RecBole's choice, always with safe checkpoints."""
    from recbole_ext.trainer import with_safe_checkpoints

    spec = EXTENSION_MODELS.get(model_name)
    if spec is not None and spec.trainer:
        trainer_class = import_object(spec.trainer)
    else:
        from recbole.utils import get_trainer as recbole_get_trainer

        trainer_class = recbole_get_trainer(model_type, model_name)
    return with_safe_checkpoints(trainer_class)
