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

import os
import re

import torch
from recbole.config import Config as RecBoleConfig

from recbole_ext import compat, paths, registry


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

    def _load_cmd_line(self):
        return super()._load_cmd_line() if self._read_command_line else {}

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
        return model_name, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        self._ext_dataset_layer_done = False
        super()._load_internal_config_dict(model, model_class, dataset)
        if not self._ext_dataset_layer_done:  # model types without a quick-start yaml
            self._apply_package_dataset_yaml(dataset)
        self._apply_recipe(self.external_config_dict.get("recipe"))

    def _apply_recipe(self, name):
        """The recipe layer: above the package's yamls, below the user's files and overrides."""
        if name is None:
            return
        folder = os.path.join(paths.PROPERTIES_DIR, "recipe")
        file = os.path.join(folder, f"{name}.yaml")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", str(name)) or not os.path.isfile(file):
            known = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []
            raise ValueError(f"recipe {name!r} not found in {folder}; recipes: {', '.join(known)}")
        self._apply_package_yaml(file)

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

    def _set_default_parameters(self):
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
