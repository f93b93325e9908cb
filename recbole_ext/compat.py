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


def apply():
    restore_numpy_aliases()
    set_anomaly_detection(False)
    silence_known_warnings()


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
                f"arbitrary code); if you trust this file, pass trust_pickle=True "
                f"(CLI: --trust_checkpoint)"
            ) from error
    return torch.load(path, map_location=map_location, weights_only=False)
