"""Config: RecBole's layering, with this package's property files in RecBole's own order.

Internal layers, lowest first (as RecBole 1.2.1 orders its own files):
RecBole ``overall.yaml`` -> this package's ``properties/overall.yaml`` -> RecBole
``model/<Model>.yaml`` -> this package's ``properties/model/<Model>.yaml`` -> RecBole
``dataset/sample.yaml`` -> RecBole ``dataset/<dataset>.yaml`` -> this package's
``properties/dataset/<dataset>.yaml`` -> RecBole's quick-start yaml of the model type.
A recipe (``recipe: <paper>-<dataset>``, e.g. ``--recipe=hugt-ml-1m``) is one more internal
layer on top: ``properties/recipe/<paper>-<dataset>.yaml``, a paper's published settings.
External layers then win, as in RecBole: config files < ``config_dict`` < command line.
"""

import ast
import os
import re
from enum import Enum

import torch
from recbole.config import Config as RecBoleConfig

from recbole_ext import compat, paths, registry, schema


def convert_config_value(value):
    """RecBole's typing of a string config value (``'3'`` -> 3, ``'[10, 20]'`` -> list,
    ``'true'`` -> True, other text stays text), with :func:`ast.literal_eval` in place of
    RecBole's ``eval``: ``eval`` runs any expression, and config values also come from files
    (checkpoints, result records) that must never run code."""
    if not isinstance(value, str):
        return value
    try:
        converted = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        lowered = value.lower()
        return True if lowered == "true" else False if lowered == "false" else value
    if converted is not None and not isinstance(converted, (str, int, float, list, tuple, dict, bool, Enum)):
        return value
    return converted


def convert_config_dict(config_dict):
    """:func:`convert_config_value` over a dict (in place, as RecBole's ``_convert_config_dict``)."""
    for key in config_dict:
        config_dict[key] = convert_config_value(config_dict[key])
    return config_dict


class Config(RecBoleConfig):
    """RecBole's Config with the package's registry and property files.

    ``read_command_line=False`` ignores ``sys.argv`` (RecBole always reads it): used when a
    config is rebuilt from a checkpoint or inside a tuning trial, where the current process's
    arguments are not the run's.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, read_command_line=True):
        self._read_command_line = read_command_line
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
        self._check_valid_metric()

    def _check_valid_metric(self):
        """RecBole only notices a valid_metric it does not compute after the first epoch, as a
        KeyError deep in the trainer; say it before anything runs."""
        valid_metric = str(self.final_config_dict["valid_metric"])
        name, _, k = valid_metric.lower().partition("@")
        metrics = self.final_config_dict["metrics"]
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        topk = self.final_config_dict["topk"]
        topk = [topk] if isinstance(topk, int) else list(topk or [])
        if name not in [m.lower() for m in metrics] or (k and int(k) not in topk):
            raise ValueError(
                f"valid_metric '{valid_metric}' is not computed (metrics {metrics} at topk {topk}); "
                f"add it to metrics/topk or choose another valid_metric"
            )

    def _convert_config_dict(self, config_dict):
        return convert_config_dict(config_dict)

    def _load_cmd_line(self):
        if not self._read_command_line:
            return {}
        try:
            return super()._load_cmd_line()
        except SyntaxError as error:  # RecBole's report of a key given twice with two values
            match = re.search(r"'--([^=']+)=", str(error))
            key = match.group(1) if match else "?"
            raise schema.ConfigValueError(f"config key '{key}' given twice with different values") from None

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise ValueError("no model given: pass --model=NAME (or 'model' in a config file)")
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise ValueError("no dataset given: pass --dataset=NAME (or 'dataset' in a config file)")
        model_class = registry.get_model(model)
        model_name = model if isinstance(model, str) else model.__name__
        schema.validate(model_name, self.external_config_dict)
        return model_name, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        self._ext_dataset_layer_done = False
        super()._load_internal_config_dict(model, model_class, dataset)
        if not self._ext_dataset_layer_done:  # model types without a quick-start yaml
            self._apply_package_dataset_yaml(dataset)
        self._recipe_keys = set(self._apply_recipe(self.external_config_dict.get("recipe")))

    def _apply_recipe(self, name):
        """The recipe layer: above the package's yamls, below the user's files and overrides.
        Returns the keys the recipe set."""
        if name is None:
            return {}
        folder = os.path.join(paths.PROPERTIES_DIR, "recipe")
        file = os.path.join(folder, f"{name}.yaml")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", str(name)) or not os.path.isfile(file):
            known = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []
            raise ValueError(f"recipe {name!r} not found in {folder}; recipes: {', '.join(known)}")
        return self._apply_package_yaml(file)

    def _update_internal_config_dict(self, file):
        name = os.path.basename(file)
        folder = os.path.basename(os.path.dirname(os.path.realpath(file)))
        if folder == "quick_start_config" and not self._ext_dataset_layer_done:
            self._apply_package_dataset_yaml(self.dataset)
        if folder == "dataset" and name == "sample.yaml":
            self._apply_package_yaml(paths.model_yaml(self.model))
        config_dict = super()._update_internal_config_dict(file)
        if folder == "properties" and name == "overall.yaml":
            self.internal_config_dict["data_path"] = paths.DATASET_ATOMIC_DIR
            self._apply_package_yaml(os.path.join(paths.PROPERTIES_DIR, "overall.yaml"))
        return config_dict

    def _apply_package_yaml(self, file):
        if os.path.isfile(file):
            return RecBoleConfig._update_internal_config_dict(self, file) or {}
        return {}

    def _apply_package_dataset_yaml(self, dataset):
        self._ext_dataset_layer_done = True
        config_dict = self._apply_package_yaml(paths.dataset_yaml(dataset))
        self.parameters["Dataset"] += [k for k in config_dict if k not in self.parameters["Dataset"]]

    def _has_dataset_yaml(self):
        import recbole

        recbole_yaml = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", f"{self.dataset}.yaml")
        return os.path.isfile(recbole_yaml) or os.path.isfile(paths.dataset_yaml(self.dataset))

    def _set_default_parameters(self):
        # RecBole's sample.yaml loads only user_id and item_id of .inter: a user's own dataset
        # without a yaml would lose its timestamps (every sequential model needs them). With no
        # dataset yaml and no load_col of the user's (or a recipe's), every column the header declares is loaded.
        user_set = set(self.external_config_dict) | getattr(self, "_recipe_keys", set())
        if not self._has_dataset_yaml() and "load_col" not in user_set:
            self.final_config_dict["load_col"] = None
        # RecBole's overall.yaml samples one negative per example, which its own check then
        # rejects for CE (every stock sequential yaml is CE). A user who did not ask for negatives
        # wants none under CE; an explicit setting is left for RecBole to judge.
        if self.final_config_dict.get("loss_type") == "CE" and "train_neg_sample_args" not in self.external_config_dict:
            self.final_config_dict["train_neg_sample_args"] = None
        super()._set_default_parameters()
        compat.set_anomaly_detection(self.final_config_dict.get("detect_anomaly", False))

    def _init_device(self):
        distributed = "local_rank" in self.final_config_dict
        use_cuda = torch.cuda.is_available() and self.final_config_dict.get("use_gpu", True)
        if not distributed or use_cuda:
            return super()._init_device()
        # RecBole's distributed branch hard-codes NCCL and CUDA devices; on a machine without CUDA
        # the same run uses gloo on the CPU. One thread per rank: mp.spawn does not split the cores
        # and oversubscription made ranks 8x slower in our measurement.
        cfg = self.final_config_dict
        cfg["gpu_id"] = ""
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, cfg["nproc"])))
        torch.distributed.init_process_group(
            backend="gloo",
            rank=cfg["local_rank"] + cfg["offset"],
            world_size=cfg["world_size"],
            init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
        )
        cfg["device"] = torch.device("cpu")
        cfg["single_spec"] = False
        if cfg["local_rank"] != 0:
            cfg["state"] = "error"
            cfg["show_progress"] = False
            cfg["verbose"] = False
