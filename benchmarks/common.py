"""What every benchmark script measures and reports, identically for every model it runs:
test NDCG@10 and HR@10 of the best validation epoch (by NDCG@10), fixed seed, on the CPU."""


def evaluation_settings(seed=2020, state="WARNING", eval_batch_size=4096, checkpoint_dir=None, metrics=("Hit", "NDCG")):
    settings = {
        "metrics": list(metrics),
        "topk": [10],
        "valid_metric": "NDCG@10",
        "eval_batch_size": eval_batch_size,
        "seed": seed,
        "reproducibility": True,
        "show_progress": False,
        "state": state,
        "use_gpu": False,
    }
    if checkpoint_dir is not None:
        settings["checkpoint_dir"] = checkpoint_dir
    return settings


def run_best_validation(model, dataset, config_dict, checkpoint_dir=None):
    """Train ``model`` and test the checkpoint of its best validation epoch (RecBole's
    ``saved=True``: the trainer saves on every validation improvement and ``evaluate`` reloads it),
    never the last epoch. Returns the run record; ``record["checkpoint"]`` is the tested file."""
    from recbole_ext.quick_start import run_single

    config = dict(config_dict)
    if checkpoint_dir is not None:
        config["checkpoint_dir"] = checkpoint_dir
    return run_single(model, dataset, config_dict=config, saved=True, read_command_line=False)
