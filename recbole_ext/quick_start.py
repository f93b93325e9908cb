"""Entry points: run one model (single process or distributed), the tuning objective, and
loading a saved model. Every one of them resolves names through :mod:`recbole_ext.registry`.
"""

import json
import logging
import os
import re
import sys
from logging import getLogger

import torch
from recbole.utils import get_environment, get_flops, init_logger, init_seed, set_color

from recbole_ext import paths, registry
from recbole_ext.compat import SAFE_CHECKPOINT_FORMAT, load_checkpoint
from recbole_ext.config import Config
from recbole_ext.data import create_dataset, data_preparation
from recbole_ext.errors import RunInterrupted


def prepare_dataset_files(config):
    """Make sure the atomic files exist (converting raw public files if they are there) and are
    well-formed, so that a problem surfaces as one line naming the file, line and field."""
    from recbole_ext.data.convert.auto import ensure_dataset
    from recbole_ext.data.validate import check_model_fields, validate_atomic_dataset

    if config["dataset"] == "ml-100k" and not os.path.isdir(config["data_path"]):
        return  # RecBole downloads its own example dataset
    dataset_root = os.path.dirname(os.path.normpath(config["data_path"]))
    raw_root = config["raw_data_path"] or paths.DATASET_RAW_DIR
    ensure_dataset(config["dataset"], dataset_root, raw_root)
    if config["validate_atomic"]:
        validate_atomic_dataset(
            config["data_path"], config["dataset"], config["field_separator"], config["seq_separator"]
        )
    check_model_fields(config)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _log_flops(model, dataset, config, logger):
    # RecBole logs FLOPs (thop) for its models; extension models consume batch-transformed
    # inputs that a raw dataset row does not have, so they are not counted.
    if registry.is_extension(config["model"]):
        return
    from recbole.data.transform import construct_transform

    flops = get_flops(model, dataset, config["device"], logger, construct_transform(config))
    logger.info(set_color("FLOPs", "blue") + f": {flops}")


def run_single(
    model=None, dataset=None, config_file_list=None, config_dict=None, saved=True,
    queue=None, result_file=None, read_command_line=True,
):
    """Train and test one model, as RecBole's ``run_recbole`` does; returns a result record."""
    config = Config(
        model=model, dataset=dataset, config_file_list=config_file_list,
        config_dict=config_dict, read_command_line=read_command_line,
    )
    prepare_dataset_files(config)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    trainer = None
    try:
        dataset = create_dataset(config)
        logger.info(dataset)
        train_data, valid_data, test_data = data_preparation(config, dataset)

        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model = registry.get_model(config["model"])(config, train_data._dataset).to(config["device"])
        logger.info(model)
        _log_flops(model, dataset, config, logger)

        trainer = registry.get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"]
        )
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])

        logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
        logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
        logger.info(set_color("test result", "yellow") + f": {test_result}")

        record = make_record(config, model, trainer, best_valid_score, best_valid_result, test_result, saved)
        from recbole_ext.compare import targets_digest  # lets comparisons prove they share targets

        record["targets_digest"] = targets_digest(valid_data, test_data)
        if result_file and config["local_rank"] == 0:
            write_json_atomically(result_file, record)
    except KeyboardInterrupt:
        raise RunInterrupted(remove_unfinished_outputs(trainer, result_file)) from None
    if not config["single_spec"]:
        torch.distributed.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(record)
    return record


def remove_unfinished_outputs(trainer, result_file=None):
    """Delete what an interrupted run half-made (its checkpoint, a partial result file); returns
    the removed paths. Runs that finished before are left alone: their files have other names."""
    candidates = []
    if trainer is not None:
        candidates += [trainer.saved_model_file, trainer.saved_model_file + ".partial"]
    if result_file:
        candidates.append(f"{result_file}.partial")
    removed = []
    for path in candidates:
        if os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def make_record(config, model, trainer, best_valid_score, best_valid_result, test_result, saved):
    from recbole_ext.trainer import _plain

    epochs = trainer.train_epoch_seconds
    stages = getattr(trainer, "stage_epochs", None) or []
    return {**({"stage_epochs": list(stages)} if len(stages) > 1 else {}),  # StagedTrainer
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": float(best_valid_score),
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": {k: float(v) for k, v in (best_valid_result or {}).items()},
        "test_result": {k: float(v) for k, v in (test_result or {}).items()},
        "seconds_per_epoch": sum(epochs) / len(epochs) if epochs else None,
        "epochs_trained": len(epochs),
        "num_parameters": count_parameters(model),
        "checkpoint": trainer.saved_model_file if saved else None,
        "config": _plain(config.final_config_dict),
    }


def write_json_atomically(path, record):
    """Write to a temporary name and rename, so an interrupted run never leaves a torn file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True, default=str)
    os.replace(partial, path)


def _distributed_worker(rank, model, dataset, config_file_list, config_dict, queue, result_file, read_command_line):
    # The spawn start method begins a fresh interpreter: importing recbole_ext (done by the
    # pickled reference to this function) re-applies the compat shims in each rank.
    config_dict = dict(config_dict, local_rank=rank)
    run_single(
        model, dataset, config_file_list, config_dict, queue=queue, result_file=result_file,
        read_command_line=read_command_line,
    )


def run(
    model, dataset, config_file_list=None, config_dict=None, saved=True, nproc=1,
    world_size=-1, ip="localhost", port="5678", group_offset=0, result_file=None, read_command_line=True,
):
    """RecBole's ``run``: one process, or ``nproc`` ranks with torch.distributed (NCCL on CUDA,
    gloo on CPU)."""
    if nproc == 1 and world_size <= 0:
        return run_single(
            model, dataset, config_file_list, config_dict, saved,
            result_file=result_file, read_command_line=read_command_line,
        )
    import torch.multiprocessing as mp

    if world_size == -1:
        world_size = nproc
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": world_size, "ip": ip, "port": port, "nproc": nproc, "offset": group_offset})
    # RecBole's ensure_dir races between ranks (exists-then-makedirs): create the folders first.
    for folder in ("log", os.path.join("log", model), config_dict.get("checkpoint_dir", "saved")):
        os.makedirs(folder, exist_ok=True)
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(
        _distributed_worker,
        args=(model, dataset, config_file_list, config_dict, queue, result_file, read_command_line),
        nprocs=nproc,
        join=True,
    )
    return None if queue.empty() else queue.get()


def objective_function(config_dict=None, config_file_list=None, saved=True, test=True, run_record=False):
    """The objective RecBole's ``HyperTuning`` calls, for stock and extension models alike.
    ``test=False`` trains and validates only (``test_result`` is None): a tuned comparison tests
    only each model's chosen configuration. ``run_record=True`` adds ``run_record``: the record
    :func:`run_single` would write for this training (checkpoint, epochs, s/epoch, config), so a
    tuned comparison can test the chosen trial's checkpoint instead of training it again."""
    config = Config(config_dict=config_dict, config_file_list=config_file_list, read_command_line=False)
    prepare_dataset_files(config)
    init_seed(config["seed"], config["reproducibility"])
    logger = getLogger()
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
    init_logger(config)
    logging.basicConfig(level=logging.ERROR)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = registry.get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = registry.get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    try:
        best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, verbose=False, saved=saved)
        test_result = trainer.evaluate(test_data, load_best_model=saved) if test else None
    except KeyboardInterrupt:
        raise RunInterrupted(remove_unfinished_outputs(trainer)) from None
    _report_to_ray_tune(best_valid_score, test_result or {})
    result = {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }
    if run_record:
        from recbole_ext.compare import targets_digest

        record = make_record(config, model, trainer, best_valid_score, best_valid_result, test_result, saved)
        result["run_record"] = dict(record, targets_digest=targets_digest(valid_data, test_data))
    return result


def _report_to_ray_tune(best_valid_score, test_result):
    """Report to Ray Tune only inside a Ray trial (RecBole always calls ``tune.report``, which
    warns 'Session not detected' under Hyperopt)."""
    if "ray" not in sys.modules:
        return
    import warnings

    from ray.air import session

    with warnings.catch_warnings():  # ray warns when asked outside a trial: that is the question
        warnings.simplefilter("ignore")
        inside_trial = session.get_trial_name() is not None
    if inside_trial:
        from ray import tune

        tune.report(best_valid_score=float(best_valid_score), **test_result)


# Keys whose values are filesystem paths (or switch a cache on): never taken from a checkpoint.
_PATH_KEY = re.compile(r"(_path|_dir|_file|_files)$")
_CACHE_SWITCHES = {"save_dataset": False, "save_dataloaders": False, "dataset_save_path": None, "dataloaders_save_path": None}


def checkpoint_external_config(saved):
    """The stored external config of a safe checkpoint, without any path-valued key (cache and
    checkpoint locations, data folders, config files) and with caching off: loading a model
    rebuilds its data from the atomic files and never follows a path stored in the file it
    loads (a stored ``dataset_save_path`` pointing at a pickle would otherwise be unpickled)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("external"), dict):
        raise ValueError("checkpoint: its 'config' is not the recbole-ext format (model, dataset, external)")
    for key in ("model", "dataset"):
        if not isinstance(saved.get(key), str):
            raise ValueError(f"checkpoint: its config's {key!r} is not a name")
    external = {k: v for k, v in saved["external"].items() if not _PATH_KEY.search(str(k)) and k not in _CACHE_SWITCHES}
    external.update(_CACHE_SWITCHES)
    return external


def load_data_and_model(model_file, trust_pickle=False, config_dict=None):
    """Restore a model trained through the package, with its dataset plugin and dataloaders.

    Returns ``(config, model, dataset, train_data, valid_data, test_data)`` like RecBole's
    function. Paths stored in the checkpoint are ignored (see :func:`checkpoint_external_config`):
    the data is read from the package's ``dataset_atomic/`` unless ``config_dict`` says otherwise
    (``config_dict={"data_path": FOLDER}`` for a dataset of your own). A checkpoint written by
    stock RecBole pickles its Config and loads only with ``trust_pickle=True`` (unpickling can
    run code; only do it for files you trust).
    """
    checkpoint = load_checkpoint(model_file, map_location="cpu", trust_pickle=trust_pickle)
    if isinstance(checkpoint, dict) and checkpoint.get("format") == SAFE_CHECKPOINT_FORMAT:
        saved = checkpoint["config"]
        external = checkpoint_external_config(saved)
        external.update(config_dict or {})
        config = Config(model=saved["model"], dataset=saved["dataset"], config_dict=external, read_command_line=False)
    else:  # a stock RecBole checkpoint the caller chose to trust
        config = checkpoint["config"]
        for key, value in dict(_CACHE_SWITCHES, **(config_dict or {})).items():
            config[key] = value
    inter_file = os.path.join(config["data_path"], f'{config["dataset"]}.inter')
    if not os.path.isfile(inter_file):
        raise FileNotFoundError(
            f"{model_file}: trained on dataset {config['dataset']!r}, whose {inter_file} is missing; paths "
            f"stored in a checkpoint are never followed: pass config_dict={{'data_path': FOLDER}}"
        )
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = registry.get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
