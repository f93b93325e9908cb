"""Hyper-parameter tuning of stock and extension models, mirroring RecBole's ``run_hyper.py``.

    python run_hyper_ext.py --model=HUGT --dataset=synthetic --algo=random --max_evals=20
    python run_hyper_ext.py --model=SASRec --dataset=ml-100k --params_file=my.hyper --tool=Ray

``--tool=Hyperopt`` (the default) runs RecBole's :class:`~recbole.trainer.HyperTuning`, trial after
trial, with :func:`recbole_ext.quick_start.objective_function`. ``--tool=Ray`` runs the trials in
parallel with Ray Tune (one CPU per trial unless ``--cpus_per_trial`` says otherwise). The search
space is RecBole's params-file format; by default the model's shipped
``properties/hyper/<Model>.hyper``. Any other ``--key=value`` is a fixed config override of
every trial (a tuned key wins over it).

Trials are selected on the validation score (``valid_metric``), as RecBole's HyperTuning does;
the test result of each trial is written next to it, never used for selection.
"""

import argparse
import math
import os
import sys

from recbole_ext import paths, registry  # recbole_ext first: it applies the compat shims

from recbole.trainer import HyperTuning
from recbole.utils.utils import dict2str

PARAM_TYPES = ("choice", "uniform", "quniform", "loguniform")


def build_parser():
    parser = argparse.ArgumentParser(
        description="Tune the hyper-parameters of a RecBole or recbole-ext model.", allow_abbrev=False
    )
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (required)")
    parser.add_argument("--dataset", "-d", type=str, default="synthetic", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated fixed config files")
    parser.add_argument(
        "--params_file", type=str, default=None, help="search space (default: properties/hyper/<Model>.hyper)"
    )
    parser.add_argument(
        "--output_file", type=str, default=None, help="result of every trial (default: hyper_<Model>.result)"
    )
    parser.add_argument(
        "--display_file", type=str, default=None, help="plot of the validation score per trial (.png/.pdf/.svg)"
    )
    parser.add_argument("--tool", type=str, default="Hyperopt", choices=["Hyperopt", "Ray"], help="tuning backend")
    parser.add_argument(
        "--algo", type=str, default="exhaustive", choices=["exhaustive", "random", "bayes"], help="search algorithm"
    )
    parser.add_argument(
        "--max_evals", type=int, default=None, help="trials (default: the whole grid for exhaustive, 100 otherwise)"
    )
    parser.add_argument(
        "--early_stop", type=int, default=10, help="Hyperopt: stop after this many trials without improvement"
    )
    parser.add_argument("--cpus_per_trial", type=float, default=1, help="Ray: CPUs per trial (sets the parallelism)")
    parser.add_argument("--gpus_per_trial", type=float, default=0, help="Ray: GPUs per trial")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    return parser


def read_params_file(file):
    """``name type value`` lines of RecBole's params-file format, checked: one clear error for a
    malformed line (RecBole's parser raises a bare unpacking or eval error)."""
    params = []
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            parts = line.strip().split(" ")
            if len(parts) < 3:  # RecBole skips such lines too
                continue
            name, kind, value = parts[0], parts[1], "".join(parts[2:])
            if kind not in PARAM_TYPES:
                raise ValueError(
                    f"{file}:{number}: parameter type '{kind}' of '{name}' is not one of {', '.join(PARAM_TYPES)}"
                )
            expected = {"uniform": 2, "quniform": 3, "loguniform": 2}.get(kind)
            try:
                if kind == "choice":
                    parsed = eval(value)  # RecBole's format: a Python list literal
                    if not isinstance(parsed, (list, tuple)) or not parsed:
                        raise ValueError
                else:
                    parsed = [float(v) for v in value.split(",")]
                    if len(parsed) != expected:
                        raise ValueError
            except Exception:
                shape = (
                    "a non-empty list such as [0.1,0.01]" if kind == "choice" else f"{expected} comma-separated numbers"
                )
                raise ValueError(
                    f"{file}:{number}: the value of '{name}' ({kind}) must be {shape}, got '{value}'"
                ) from None
            params.append((name, kind, parsed))
    if not params:
        raise ValueError(f"{file}: no parameter lines ('name choice [a,b]', 'name uniform low,high', ...)")
    return params


class TuningObjective:
    """RecBole's objective with the model, dataset and fixed overrides added to every trial's
    parameters (HyperTuning passes only the tuned keys)."""

    def __init__(self, model, dataset, fixed_config=None, saved=True):
        self.fixed_config = dict(fixed_config or {}, model=model, dataset=dataset)
        self.saved = saved

    def __call__(self, config_dict, config_file_list=None, saved=None):
        from recbole_ext.quick_start import objective_function

        trial_config = dict(self.fixed_config, **(config_dict or {}))
        return objective_function(trial_config, config_file_list, self.saved if saved is None else saved)


def make_hyper_tuning(
    objective, params_file, algo, max_evals=None, early_stop=10, config_files=None, display_file=None
):
    """RecBole's HyperTuning; ``max_evals`` also caps an exhaustive search (RecBole sets it to the
    grid size regardless)."""
    read_params_file(params_file)  # a malformed file fails here with its line number
    tuner = _PlottingHyperTuning(
        objective,
        params_file=params_file,
        algo=algo,
        max_evals=max_evals or 100,
        early_stop=early_stop,
        fixed_config_file_list=config_files,
        display_file=display_file,
    )
    if algo == "exhaustive" and max_evals:
        tuner.max_evals = min(int(tuner.max_evals), max_evals)
    return tuner


class _PlottingHyperTuning(HyperTuning):
    """HyperTuning whose ``display_file`` is a matplotlib figure (RecBole's plot needs plotly and
    uses ``np.str``, which numpy >= 1.24 no longer has)."""

    def plot_hyper(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 3.5))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot(1, 1, 1)
        trials = range(1, len(self.score_list) + 1)
        axes.plot(trials, self.score_list, marker="o", color="green")
        axes.set_xlabel("trial")
        axes.set_ylabel("best valid score")
        axes.set_title(f"{self.model} tuning", fontsize=9)
        figure.tight_layout()
        figure.savefig(self.display_file, dpi=120)


def check_display_file(display_file):
    if display_file and os.path.splitext(display_file)[1].lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"--display_file={display_file}: the plot is written as .png, .pdf or .svg")


def hyperopt_tune(args, objective, params_file, config_files, output_file):
    tuner = make_hyper_tuning(
        objective, params_file, args.algo, args.max_evals, args.early_stop, config_files, args.display_file
    )
    tuner.run()
    tuner.export_result(output_file=output_file)
    best = tuner.params2result[tuner.params2str(tuner.best_params)]
    print("best params: ", tuner.best_params)
    print("best result: ")
    print(best)
    return tuner.best_params, best


def ray_space(params, algo):
    """The params file as a Ray Tune search space: grid search for ``exhaustive`` (choices only),
    sampled distributions for ``random``. ``loguniform low,high`` is RecBole's (hyperopt's)
    exp(uniform(low, high)), so Ray gets exp(low), exp(high)."""
    from ray import tune

    space = {}
    for name, kind, value in params:
        if algo == "exhaustive":
            if kind != "choice":
                raise ValueError(f"--algo=exhaustive needs 'choice' parameters only; '{name}' is {kind}")
            space[name] = tune.grid_search(list(value))
        elif kind == "choice":
            space[name] = tune.choice(list(value))
        elif kind == "uniform":
            space[name] = tune.uniform(*value)
        elif kind == "quniform":
            space[name] = tune.quniform(*value)
        else:
            space[name] = tune.loguniform(math.exp(value[0]), math.exp(value[1]))
    return space


def _ray_trial(config, objective, config_file_list):
    """One Ray trial: run the objective and report the validation score (objective_function
    itself reports only the test result), flattened so Ray can select on it."""
    result = objective(dict(config), config_file_list)
    flat = {"best_valid_score": float(result["best_valid_score"])}
    flat.update({f"valid/{k}": float(v) for k, v in (result["best_valid_result"] or {}).items()})
    flat.update({f"test/{k}": float(v) for k, v in (result["test_result"] or {}).items()})
    return flat


def ray_tune(args, objective, params_file, config_files, output_file):
    import ray
    from ray import tune

    if args.algo == "bayes":
        raise ValueError("--algo=bayes is available with --tool=Hyperopt; with --tool=Ray use exhaustive or random")
    space = ray_space(read_params_file(params_file), args.algo)
    # trials run in Ray's own working folders: every path must be absolute
    config_files = [os.path.abspath(f) for f in config_files] if config_files else None
    bigger = _valid_metric_bigger(objective, config_files)

    class TrialCollector(tune.Callback):
        """Keeps each trial's final result in the driver (see the note on pyarrow below)."""

        def __init__(self):
            self.results = {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "best_valid_score" in result:
                self.results[trial.trial_id] = ({k: trial.config[k] for k in space}, dict(result))

    collector = TrialCollector()
    ray.init(ignore_reinit_error=True)
    try:
        tune.run(
            tune.with_parameters(_ray_trial, objective=objective, config_file_list=config_files),
            config=space,
            num_samples=1 if args.algo == "exhaustive" else (args.max_evals or 100),
            resources_per_trial={"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
            local_dir=os.path.abspath("ray_log"),
            callbacks=[collector],
            raise_on_failed_trial=False,
            verbose=1,
        )
    except RuntimeError as error:
        # Ray 2.6 builds its ExperimentAnalysis with pyarrow even for a local folder, after every
        # trial has finished; the results are already in the collector, so pyarrow is not needed.
        if "pyarrow" not in str(error):
            raise
    finally:
        ray.shutdown()
    if not collector.results:
        raise RuntimeError("no Ray trial finished; see the trial logs under ray_log/")
    finished = list(collector.results.values())
    with open(output_file, "w", encoding="utf-8") as f:
        for params, result in finished:
            f.write(", ".join(f"{k}:{v}" for k, v in params.items()) + "\n")
            for split in ("valid", "test"):
                values = {k.split("/", 1)[1]: v for k, v in result.items() if k.startswith(split + "/")}
                f.write(f"{split.capitalize()} result:\n{dict2str(values)}\n")
            f.write("\n")
    pick = max if bigger else min
    best_params, best_result = pick(finished, key=lambda item: item[1]["best_valid_score"])
    print("best params: ", best_params)
    print("best result: ", {k: v for k, v in best_result.items() if k == "best_valid_score" or "/" in k})
    return best_params, best_result


def _valid_metric_bigger(objective, config_files):
    from recbole_ext.config import Config

    config = Config(config_dict=dict(objective.fixed_config), config_file_list=config_files, read_command_line=False)
    return bool(config["valid_metric_bigger"])


def parse_fixed_overrides(unknown_args):
    from recbole_ext.compare import parse_overrides

    return parse_overrides(unknown_args)


def main(argv=None):
    """Run a tuning; returns 0, or 2 after a user error (one line, no traceback)."""
    from recbole_ext.errors import USER_ERRORS, report_user_error

    argv = sys.argv[1:] if argv is None else argv
    args, unknown = build_parser().parse_known_args(argv)
    try:
        return _main(args, unknown)
    except USER_ERRORS as error:
        if args.traceback:
            raise
        return report_user_error(error)


def _main(args, unknown):
    if not args.model:
        raise ValueError("no model given: pass --model=NAME")
    registry.get_model(args.model)  # an unknown name fails with the list of names
    if args.max_evals is not None and args.max_evals < 1:
        raise ValueError(f"--max_evals must be at least 1, got {args.max_evals}")
    check_display_file(args.display_file)
    params_file = args.params_file or paths.hyper_file(args.model)
    if not os.path.isfile(params_file):
        raise ValueError(f"--params_file: no such file '{params_file}'")
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    for file in config_files or []:
        if not os.path.isfile(file):
            raise ValueError(f"--config_files: no such file '{file}'")
    output_file = args.output_file or f"hyper_{args.model}.result"
    objective = TuningObjective(args.model, args.dataset, parse_fixed_overrides(unknown))
    warn_unknown_keys(objective, params_file, config_files)
    tune_with = hyperopt_tune if args.tool == "Hyperopt" else ray_tune
    tune_with(args, objective, params_file, config_files, output_file)
    print(f"trial results written to {output_file}")
    return 0


def warn_unknown_keys(objective, params_file, config_files):
    """A tuned key that no config layer of the model defines is most likely a typo."""
    from recbole_ext.config import Config

    config = Config(config_dict=dict(objective.fixed_config), config_file_list=config_files, read_command_line=False)
    model = objective.fixed_config["model"]
    for name, _, _ in read_params_file(params_file):
        if name not in config.final_config_dict:
            print(
                f"warning: {params_file}: '{name}' is not a config key of {model}; check its spelling",
                file=sys.stderr,
            )


if __name__ == "__main__":
    sys.exit(main())
