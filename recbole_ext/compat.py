"""The few shims RecBole 1.2.1 needs on today's stack (torch 2.13, numpy 1.26, pandas 2.3).

Each shim says why it exists and when it can go. They are applied once, on import of
``recbole_ext``; none of them changes a loss or a metric.
"""

import warnings

import numpy as np
import torch


def restore_numpy_aliases():
    """numpy>=1.24 removed ``np.float``/``np.long``/``np.bool``... that RecBole's metrics use
    (``evaluator/metrics.py:90``). RecBole re-creates them in ``Config.compatibility_settings``,
    but a process that never builds a Config (loading a saved model) would crash.
    Drop when RecBole stops using the aliases (not the case in 1.2.1)."""
    from recbole.config import Config

    Config.compatibility_settings(None)


def set_anomaly_detection(enabled=False):
    """Importing RecBole's sequential models runs ``torch.autograd.set_detect_anomaly(True)`` at
    module level (``sequential_recommender/sine.py:25``), which leaves anomaly detection on for
    every run and made training 1.2-3x slower in our measurements with identical results.
    We import that package once, then set the mode the user asked for (config key
    ``detect_anomaly``, default off). Drop when RecBole removes the module-level call."""
    import recbole.model.sequential_recommender  # noqa: F401  (runs sine.py's side effect first)

    torch.autograd.set_detect_anomaly(bool(enabled))


def silence_known_warnings():
    """pandas 2.x FutureWarnings from RecBole's chained ``fillna(inplace=True)``
    (``dataset.py:501,648,650,1217``) and torch's ``torch.cuda.amp.GradScaler`` deprecation
    (``trainer.py:235``): they fire on every run and say nothing a user can act on.
    Drop with a RecBole release that fixes those call sites."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.data\.dataset\.dataset")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.trainer\.trainer")
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.GradScaler.*")


def never_unpickle_dataloaders():
    """RecBole's ``data_preparation`` unpickles ``saved/<dataset>-for-<model>-dataloader.pth`` (or
    ``dataloaders_save_path``) whenever that file exists, whether or not the run asked for it,
    and ``save_dataloaders`` writes such pickles (``recbole/data/utils.py``). Unpickling runs
    code, so a planted file would run on a plain run. Both are replaced, in RecBole's module, by
    functions that never read or write a pickle: the dataloaders are rebuilt from the dataset
    (which ``save_dataset`` caches in a format that cannot run code, see ``data/cache.py``).
    Keep as long as RecBole's dataloader cache is a pickle."""
    import recbole.data.utils as recbole_data_utils

    def load_split_dataloaders(config):
        return None

    def save_split_dataloaders(config, dataloaders):
        from logging import getLogger

        getLogger().warning(
            "save_dataloaders: not supported by recbole-ext (RecBole's dataloader cache is a pickle, "
            "which can run code); the dataloaders are rebuilt from the dataset (use save_dataset to cache it)"
        )

    recbole_data_utils.load_split_dataloaders = load_split_dataloaders
    recbole_data_utils.save_split_dataloaders = save_split_dataloaders


def apply():
    restore_numpy_aliases()
    set_anomaly_detection(False)
    silence_known_warnings()
    never_unpickle_dataloaders()


# Checkpoints --------------------------------------------------------------------------------
# torch>=2.6 loads with ``weights_only=True`` by default, and RecBole's checkpoints pickle the
# whole Config object (enums, torch.device, ...), which no allow-list can load (the unpickler
# stops at opcode 149 before any class check). Turning ``weights_only`` off globally would let any
# file a user passes in run code. So the package saves its checkpoints in a form that loads with
# ``weights_only=True`` (recbole_ext/trainer.py: tensors, numbers, strings and the external config
# as plain data) and unpickles a stock RecBole checkpoint only when the caller explicitly says it
# trusts the file.

SAFE_CHECKPOINT_FORMAT = "recbole_ext/1"


def load_checkpoint(path, map_location="cpu", trust_pickle=False):
    """Load a checkpoint safely; a stock RecBole checkpoint needs ``trust_pickle=True``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError or RuntimeError depending on content
        if not trust_pickle:
            raise ValueError(
                f"{path}: not a recbole-ext checkpoint (it needs full unpickling, which can run "
                f"arbitrary code); if you trust this file, load it with "
                f"recbole_ext.quick_start.load_data_and_model(path, trust_pickle=True)"
            ) from error
    return torch.load(path, map_location=map_location, weights_only=False)
