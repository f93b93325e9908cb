"""Trainer additions shared by every model run through the package.

:func:`with_safe_checkpoints` derives, from whichever trainer class RecBole (or a model's spec)
chooses, a subclass that
- saves checkpoints that load with ``torch.load(weights_only=True)`` (see ``compat.py``),
- gives each run a checkpoint name of its own (RecBole's has one-second resolution, so two runs
  of one model started in the same second would overwrite each other),
- runs RecBole's distributed path on CPU with gloo (RecBole hard-codes CUDA device ids), and
  waits for rank 0's checkpoint before every rank loads it,
- applies the Adam/AdamW switches ``adam_betas`` and ``amsgrad`` (``properties/overall.yaml``)
  to the optimiser RecBole builds.
Training and evaluation themselves are RecBole's, unchanged.
"""

import os
import time
import uuid
from enum import Enum

import numpy as np
import torch
import torch.distributed as dist
from recbole.trainer import Trainer

from recbole_ext.compat import SAFE_CHECKPOINT_FORMAT


def _plain(value):
    """Config values as plain data (what ``weights_only`` loading accepts)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def checkpoint_config(config):
    """What is needed to rebuild the same Config: model, dataset and the external settings
    (config files, config_dict and command line, merged), plus the final config for reference."""
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "external": _plain(config.external_config_dict),
        "final": _plain(config.final_config_dict),
    }


ADAM_LEARNERS = ("adam", "adamw")
DEFAULT_ADAM_BETAS = (0.9, 0.999)  # torch's (and so RecBole's) Adam/AdamW defaults


def adam_switches(config):
    """``(betas, amsgrad)`` from the config, checked; one-line errors name the key."""
    betas = config["adam_betas"]
    betas = DEFAULT_ADAM_BETAS if betas is None else betas
    if (
        not isinstance(betas, (list, tuple))
        or len(betas) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas)
    ):
        raise ValueError(f"adam_betas must be a list of two floats in [0, 1), got {betas!r}")
    amsgrad = False if config["amsgrad"] is None else config["amsgrad"]
    if not isinstance(amsgrad, bool):
        raise ValueError(f"amsgrad must be True or False, got {amsgrad!r}")
    return tuple(float(b) for b in betas), amsgrad


class AdamSwitchesMixin:
    """RecBole's optimiser, built by RecBole, with ``adam_betas`` and ``amsgrad`` set on it."""

    def _build_optimizer(self, **kwargs):
        betas, amsgrad = adam_switches(self.config)
        learner = kwargs.get("learner", self.learner)
        optimizer = super()._build_optimizer(**kwargs)
        if (betas, amsgrad) == (DEFAULT_ADAM_BETAS, False):
            return optimizer
        if str(learner).lower() not in ADAM_LEARNERS or not isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
            raise ValueError(f"adam_betas and amsgrad apply to learner adam or adamw only, got learner {learner!r}")
        # torch reads both from the parameter groups at every step; no step has run yet
        for group in [optimizer.defaults, *optimizer.param_groups]:
            group["betas"], group["amsgrad"] = betas, amsgrad
        return optimizer


def distributed_model(model, config):
    """RecBole's DistributedDataParallel wrapping, with device_ids only on a GPU (on CPU they
    are invalid)."""
    if config["device"].type == "cpu":
        return torch.nn.parallel.DistributedDataParallel(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[config["local_rank"]])


class SafeCheckpointMixin(AdamSwitchesMixin):
    def __init__(self, config, model):
        distributed_on_cpu = not config["single_spec"] and config["device"].type == "cpu"
        if distributed_on_cpu:
            # RecBole wraps the model in DDP with device_ids=[local_rank], valid only for GPUs.
            config["single_spec"] = True
            try:
                super().__init__(config, model)
            finally:
                config["single_spec"] = False
            self.model = model
            self.distributed_model = distributed_model(model, config)
        else:
            super().__init__(config, model)
        base, ext = os.path.splitext(self.saved_model_file)
        names = [f"{base}-{uuid.uuid4().hex[:8]}{ext}"]
        if not config["single_spec"]:
            # each rank names the file from its own clock; all must load the one rank 0 writes
            dist.broadcast_object_list(names, src=0)
        self.saved_model_file = names[0]
        self.train_epoch_seconds = []  # wall seconds of each training epoch, for result records

    def _train_epoch(self, *args, **kwargs):
        start = time.perf_counter()
        result = super()._train_epoch(*args, **kwargs)
        self.train_epoch_seconds.append(time.perf_counter() - start)
        return result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "format": SAFE_CHECKPOINT_FORMAT,
            "config": checkpoint_config(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        # write then rename: an interrupted save never leaves a truncated best checkpoint
        partial = saved_model_file + ".partial"
        torch.save(state, partial)
        os.replace(partial, saved_model_file)
        if verbose:
            from recbole.utils import set_color

            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and not self.config["single_spec"]:
            dist.barrier()  # rank 0 may still be writing the best checkpoint
        return super().evaluate(
            eval_data, load_best_model=load_best_model, model_file=model_file, show_progress=show_progress
        )


_derived = {}


def with_safe_checkpoints(trainer_class):
    if issubclass(trainer_class, SafeCheckpointMixin):
        return trainer_class
    if trainer_class not in _derived:
        _derived[trainer_class] = type(trainer_class.__name__, (SafeCheckpointMixin, trainer_class), {})
        _derived[trainer_class].__module__ = __name__
    return _derived[trainer_class]


class StagedTrainer(Trainer):
    """RecBole's Trainer over the model's training stages (``model.training_stages()``), each
    one a call of RecBole's own ``fit`` with its own early stopping, optimiser and epoch cap
    (``epochs`` applies per stage). A model with the one stage ``None`` is trained by
    ``Trainer.fit`` unchanged. Between stages the model is reloaded from the previous stage's
    best checkpoint and switched (``model.set_training_stage``: its loss, its prediction and the
    parameters it trains; then ``model.begin_training_stage(stage)``, where the model has it,
    may initialise what the new stage trains); the optimiser is rebuilt over
    ``model.stage_parameters(stage)``.
    Before any update of a later stage, its start is validated and kept as that stage's best,
    so a stage that never improves validation returns the model it started from. The
    checkpoint left at the end (and loaded by ``evaluate``) is the last stage's best; the model
    is left in stage ``None`` (nothing frozen).
    ``stage_epochs`` lists the epochs each stage trained."""

    def _track_trained_parameters(self):
        """In DDP, wrap the model again as RecBole's Trainer does: DistributedDataParallel
        reduces the gradients of the parameters that require them when it is built, and a
        stage that freezes some would otherwise leave their reduction waiting."""
        if not self.config["single_spec"]:
            self.distributed_model = distributed_model(self.model, self.config)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        stages = self.model.training_stages()
        self.stage_epochs = []
        if len(stages) == 1:
            result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
            self.stage_epochs.append(len(self.train_loss_dict))
            return result
        for number, stage in enumerate(stages):
            last = number == len(stages) - 1
            if number:
                # the previous stage's best (every stage but the last always saves it; in DDP
                # rank 0 writes it, so the other ranks wait for it, as evaluate does)
                if not self.config["single_spec"]:
                    dist.barrier()
                checkpoint = torch.load(self.saved_model_file, map_location=self.device, weights_only=True)
                self.model.load_state_dict(checkpoint["state_dict"])
                self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.model.set_training_stage(stage)
            if number and hasattr(self.model, "begin_training_stage"):
                self.model.begin_training_stage(stage)
            self._track_trained_parameters()
            self.optimizer = self._build_optimizer(params=self.model.stage_parameters(stage))
            self.start_epoch, self.cur_step = 0, 0
            self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
            self.best_valid_result = None
            self.train_loss_dict = {}
            stage_saved = saved or not last
            if number and valid_data:
                self.best_valid_score, self.best_valid_result = self._valid_epoch(valid_data, show_progress)
                if stage_saved:
                    self._save_checkpoint(-1, verbose=verbose)
            if verbose:
                self.logger.info(f"training stage {number + 1}/{len(stages)}: {stage}")
            result = super().fit(train_data, valid_data, verbose, stage_saved, show_progress, callback_fn)
            self.stage_epochs.append(len(self.train_loss_dict))
        self.model.set_training_stage(None)  # nothing frozen after training
        self._track_trained_parameters()
        if not saved and os.path.exists(self.saved_model_file):
            os.remove(self.saved_model_file)  # only the stages' hand-over used it
        return result
