"""Benchmark every registered extension model and RecBole's baselines side by side.

For each (dataset, model) it measures, in a subprocess of its own (so memory peaks do not mix and
a failing model does not stop the table): seconds per training epoch, training examples per
second, peak resident memory, test NDCG@10 and HR@10 (full ranking, the best validation epoch),
and the parameter count. All models share the dimensions, epoch budget, batch size, maximum
length, seed, split and metrics (each model's other keys come from its own yaml). The script
writes ``benchmarks/RESULTS.md`` (and the raw records as ``RESULTS.json``) itself, with the
machine, the versions, the exact command and the date.

    python benchmarks/run_benchmarks.py                          # every model, synthetic and ml-100k
    python benchmarks/run_benchmarks.py --models SASRec HUGT --datasets synthetic --epochs 10
    python benchmarks/run_benchmarks.py --quick --models SASRec --datasets synthetic   # smoke run

Extension models are read from ``recbole_ext.registry.EXTENSION_MODELS``: a new model is
benchmarked without any change here.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)  # also when loaded by path, as the tests do

from common import evaluation_settings  # noqa: E402  (benchmarks/common.py)

#: Stock RecBole models the five papers compare with (where RecBole has them).
STOCK_BASELINES = ["SASRec", "GRU4Rec", "NARM", "STAMP", "SRGNN", "GCSAN", "Caser", "BERT4Rec"]
DATASETS = ["synthetic", "ml-100k"]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=None, help="models (default: every extension model and the stock baselines)"
    )
    parser.add_argument("--datasets", nargs="+", default=None, help=f"datasets (default: {' '.join(DATASETS)})")
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs of every run (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--hidden-size",
        type=int,
        default=None,
        help="hidden and embedding size of every model (default 64; 16 with --quick)",
    )
    parser.add_argument("--max-len", type=int, default=None, help="MAX_ITEM_LIST_LENGTH (default 50; 10 with --quick)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size of every model")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run of the machinery")
    parser.add_argument("--gpu", action="store_true", help="train on the GPU if there is one (default: CPU)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one run may take before it is stopped")
    parser.add_argument(
        "--output",
        default=os.path.join(HERE, "RESULTS.md"),
        help="the Markdown report (RESULTS.json is written beside it)",
    )
    parser.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    return parser


def _split_names(values):
    return [name for value in values for name in value.split(",") if name]


def default_models():
    from recbole_ext.registry import EXTENSION_MODELS

    return sorted(EXTENSION_MODELS) + STOCK_BASELINES


def shared_config(args):
    hidden = args.hidden_size or (16 if args.quick else 64)
    epochs = args.epochs or (1 if args.quick else 3)
    return {
        "epochs": epochs,
        "stopping_step": epochs,  # the same budget for every model: no early stop
        "hidden_size": hidden,
        "embedding_size": hidden,
        "inner_size": 4 * hidden,
        "n_layers": 1 if args.quick else 2,
        "n_heads": 2,
        "MAX_ITEM_LIST_LENGTH": args.max_len or (10 if args.quick else 50),
        "train_batch_size": args.batch_size,
        **evaluation_settings(seed=args.seed),
        "use_gpu": bool(args.gpu),
    }


# ----------------------------------------------------------------------------------------------
# one run, in its own process


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def worker(spec_file, out_file):
    """Train one model (called in a fresh interpreter) and write its measurements."""
    sys.path.insert(0, REPO_ROOT)
    with open(spec_file, encoding="utf-8") as f:
        spec = json.load(f)
    import recbole_ext.quick_start as quick_start

    rss_after_imports = _peak_rss_mib()
    counted = {}
    prepare = quick_start.data_preparation

    def counting_data_preparation(config, dataset):
        # instrumentation of this benchmark process only: the number of training examples
        loaders = prepare(config, dataset)
        train = loaders[0]
        counted["train_examples"] = getattr(train, "sample_size", None) or len(train._dataset)
        return loaders

    quick_start.data_preparation = counting_data_preparation
    started = time.perf_counter()
    record = quick_start.run_single(
        spec["model"], spec["dataset"], config_dict=spec["config"], saved=True, read_command_line=False
    )
    seconds = record["seconds_per_epoch"]
    result = {
        "model": spec["model"],
        "dataset": spec["dataset"],
        "status": "ok",
        "seconds_per_epoch": seconds,
        "train_examples": counted.get("train_examples"),
        "examples_per_second": (
            counted["train_examples"] / seconds if seconds and counted.get("train_examples") else None
        ),
        "peak_rss_mib": _peak_rss_mib(),
        "rss_after_imports_mib": rss_after_imports,
        "test_ndcg@10": record["test_result"].get("ndcg@10"),
        "test_hit@10": record["test_result"].get("hit@10"),
        "valid_ndcg@10": record["best_valid_result"].get("ndcg@10"),
        "epochs_trained": record["epochs_trained"],
        "num_parameters": record["num_parameters"],
        "wall_seconds": time.perf_counter() - started,
    }
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


def run_in_subprocess(model, dataset, config, timeout):
    scratch = tempfile.mkdtemp(prefix=f"bench-{model}-{dataset}-")
    try:
        spec_file, out_file = os.path.join(scratch, "spec.json"), os.path.join(scratch, "out.json")
        with open(spec_file, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "model": model,
                    "dataset": dataset,
                    "config": dict(config, checkpoint_dir=os.path.join(scratch, "saved")),
                },
                f,
            )
        command = [sys.executable, os.path.abspath(__file__), "--worker", spec_file, out_file]
        try:
            # cwd = scratch: RecBole's log/ and saved/ folders of the run land there and are removed
            done = subprocess.run(command, cwd=scratch, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"model": model, "dataset": dataset, "status": f"stopped after {timeout} s"}
        if done.returncode != 0 or not os.path.isfile(out_file):
            lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {done.returncode}"
            return {"model": model, "dataset": dataset, "status": f"failed: {reason[:400]}"}
        with open(out_file, encoding="utf-8") as f:
            return json.load(f)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# the report


def machine_description():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        memory = f"{kib / 1024 ** 2:.1f} GiB"
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": memory, "os": platform.platform()}


def versions():
    import numpy
    import recbole
    import torch

    import recbole_ext

    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "recbole": recbole.__version__,
        "recbole_ext": recbole_ext.__version__,
        "numpy": numpy.__version__,
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            found["recbole_ext commit"] = commit.stdout.strip() + (
                " (with uncommitted changes)" if dirty.stdout.strip() else ""
            )
    except (OSError, subprocess.SubprocessError):
        pass
    return found


#: The measured columns of the report, in order, with their decimal places.
COLUMN_DIGITS = [
    ("seconds_per_epoch", 2),
    ("examples_per_second", 0),
    ("peak_rss_mib", 0),
    ("rss_after_imports_mib", 0),
    ("test_ndcg@10", 4),
    ("test_hit@10", 4),
    ("num_parameters", 0),
]


def _number(value, digits):
    return "-" if value is None else f"{value:,.{digits}f}"


def load_average():
    try:
        return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def render_report(results, args, config, command, started, finished, extension_models, loads=("unknown", "unknown")):
    machine, found = machine_description(), versions()
    lines = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run_benchmarks.py`; nothing in this file is typed by hand.",
        "",
        f"- command: `{command}`",
        f"- date: {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, {machine['os']}",
        f"- load average (1, 5, 15 min) at the start: {loads[0]}; at the end: {loads[1]}"
        " (other work on the machine slows every timing)",
        f"- device: {'GPU if available' if args.gpu else 'CPU'}; torch threads: torch's default"
        + (f" (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})" if "OMP_NUM_THREADS" in os.environ else ""),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in found.items()),
        "- shared setting: " + ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("show_progress", "state")),
        "- every model: RecBole's split of its dataset (leave-one-out by time unless the dataset yaml says"
        " otherwise), full ranking, test metrics of the best validation epoch; other keys from each"
        " model's own yaml",
        "- s/epoch: wall seconds of one training epoch (mean over epochs); examples/s: training examples"
        " per epoch / s/epoch; peak RSS: the run's process (imports included: see the import column)",
        "",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        lines += [
            f"## {dataset}",
            "",
            "| model | kind | s/epoch | examples/s | peak RSS MiB | RSS after imports MiB "
            "| test NDCG@10 | test HR@10 | parameters | status |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in results if r["dataset"] == dataset):
            kind = "extension" if r["model"] in extension_models else "RecBole"
            cells = [r["model"], kind]
            for key, digits in COLUMN_DIGITS:
                cells.append(_number(r.get(key), digits))
            cells.append(r["status"].replace("|", "/"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    sys.path.insert(0, REPO_ROOT)
    from recbole_ext.registry import EXTENSION_MODELS, get_model

    models = _split_names(args.models) if args.models else default_models()
    datasets = _split_names(args.datasets) if args.datasets else list(DATASETS)
    for model in models:
        get_model(model)  # an unknown name fails before anything runs, with the list of names
    config = shared_config(args)
    script = os.path.relpath(os.path.abspath(__file__), os.getcwd())
    script = os.path.abspath(__file__) if script.startswith("..") else script
    command = "python " + " ".join(shlex.quote(a) for a in [script] + (sys.argv[1:] if argv is None else list(argv)))
    started = datetime.datetime.now(datetime.timezone.utc)
    load_at_start = load_average()
    results = []
    for dataset in datasets:
        for model in models:
            print(f"[bench] {dataset} {model} ...", flush=True)
            result = run_in_subprocess(model, dataset, config, args.timeout)
            print(
                f"[bench] {dataset} {model}: {result['status']}, {result.get('seconds_per_epoch')} s/epoch, "
                f"NDCG@10 {result.get('test_ndcg@10')}",
                flush=True,
            )
            results.append(result)
    finished = datetime.datetime.now(datetime.timezone.utc)
    report = render_report(
        results, args, config, command, started, finished, set(EXTENSION_MODELS), (load_at_start, load_average())
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(report)
    with open(os.path.splitext(args.output)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump({"command": command, "config": config, "results": results}, f, indent=2)
    print(report)
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
