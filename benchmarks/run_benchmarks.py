"""The results page: every model tuned equally, on several seeds, against SASRec, on each dataset.

``benchmarks/RESULTS.md`` (with ``RESULTS.json`` and PNG plots beside it) is written by this
script through the tuned comparison protocol of :mod:`recbole_ext.compare`, one
``run_recbole_ext.py --model=A,B,... --tune=N --repeats=K`` per dataset, in a subprocess:

- every model gets the same N Hyperopt trials of RecBole's HyperTuning over its search space
  (``properties/hyper/<Model>.hyper`` plus the default space's learning rate where the file does
  not search it; ``properties/hyper/default.hyper`` alone for a model without a file),
  chosen on validation NDCG@10 only, with RecBole's early stopping and one shared epoch cap;
- only each model's chosen configuration is tested, on K seeds, from its best-validation
  checkpoint; the page gives mean ± std, and against SASRec a Wilcoxon signed-rank test over
  (test user, seed) pairs, its p-value and the relative change with a bootstrap 95% interval;
- it records the settings, the searched ranges and chosen values, the command and the wall time;
- for datasets with queries (QuerySeqRec), the test NDCG@10 of every model on the examples whose
  last input event is a query against those whose last input event is an item.

    python benchmarks/run_benchmarks.py                      # the full run: the documented budget
    python benchmarks/run_benchmarks.py --tune 2 --repeats 2 --epochs 3 --models SASRec,HUGT \
        --datasets synthetic                                  # a smoke run (the page says so)

A page made with less than the full budget (:data:`FULL_BUDGET`) says at its top that it is a
smoke test that cannot rank models. Records of finished trials and runs stay under ``--work-dir``:
rerunning the same command resumes (finished trials and runs are skipped).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)  # also when loaded by path, as the tests do

from common import evaluation_settings  # noqa: E402  (benchmarks/common.py)

#: Stock RecBole models the five papers compare with (where RecBole has them).
STOCK_BASELINES = ["SASRec", "GRU4Rec", "NARM", "SRGNN", "GCSAN", "BERT4Rec", "Caser"]
DATASETS = ["synthetic", "ml-100k"]
BASELINE = "SASRec"
MAIN_METRIC = "ndcg@10"

#: The documented full run; a page made with less says it is a smoke test. 6 trials keep the whole
#: synthetic table (12 models, 3 seeds) within 2 hours on 2 cores: 8 trials took 137.1 min there
#: (records/results-synthetic-tune8/COMMAND), every trial a Hyperopt draw of the same seeded sequence.
FULL_BUDGET = {"tune": 6, "repeats": 3, "epochs": 60}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=None, help="models (default: every extension model and the stock baselines)"
    )
    parser.add_argument("--datasets", nargs="+", default=None, help=f"datasets (default: {' '.join(DATASETS)})")
    parser.add_argument("--tune", type=int, default=FULL_BUDGET["tune"], help="Hyperopt trials per model")
    parser.add_argument("--repeats", type=int, default=FULL_BUDGET["repeats"], help="seeds of each chosen config")
    parser.add_argument("--epochs", type=int, default=FULL_BUDGET["epochs"], help="shared epoch cap of every run")
    parser.add_argument("--stopping-step", type=int, default=5, help="RecBole's early-stopping patience")
    # hidden 32 and length 20 keep the full synthetic table within about 2 hours on 2 idle cores
    parser.add_argument("--hidden-size", type=int, default=32, help="hidden and embedding size of every model")
    parser.add_argument("--max-len", type=int, default=20, help="MAX_ITEM_LIST_LENGTH")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size of every model")
    parser.add_argument("--seed", type=int, default=2020, help="first seed (then seed+1, ...)")
    parser.add_argument("--gpu", action="store_true", help="train on the GPU if there is one (default: CPU)")
    parser.add_argument("--timeout", type=int, default=6 * 3600, help="seconds one dataset's comparison may take")
    parser.add_argument(
        "--jobs", type=int, default=1, help="models trained side by side in that many processes, each with its share "
        "of the cores (the comparison's --jobs; the figures are the same, the timings are then shared-core)"
    )
    parser.add_argument(
        "--work-dir",
        default=os.path.join(HERE, "out", "results"),
        help="records of trials and runs (a rerun resumes from them)",
    )
    parser.add_argument(
        "--output", default=os.path.join(HERE, "RESULTS.md"), help="the Markdown page (JSON and PNGs beside it)"
    )
    return parser


def _split_names(values):
    return [name for value in values for name in value.split(",") if name]


def default_models():
    from recbole_ext.registry import EXTENSION_MODELS

    return sorted(EXTENSION_MODELS) + STOCK_BASELINES


def is_full_budget(args):
    return all(getattr(args, key) >= value for key, value in FULL_BUDGET.items())


def shared_overrides(args):
    """Config keys every model shares. Only dimensions, lengths, budget and evaluation: each
    model's own structure (heads, layers) stays its yaml's, so no model is silently reshaped."""
    settings = evaluation_settings(seed=args.seed, state="ERROR")
    settings.update(
        {
            "epochs": args.epochs,
            "stopping_step": args.stopping_step,
            "hidden_size": args.hidden_size,
            "embedding_size": args.hidden_size,
            "MAX_ITEM_LIST_LENGTH": args.max_len,
            "train_batch_size": args.batch_size,
            "use_gpu": bool(args.gpu),
        }
    )
    return settings


# ----------------------------------------------------------------------------------------------
# one dataset: one tuned comparison, in its own process


FAILED_LINE = re.compile(r"^\[compare\] FAILED (\S+) (tuning|seed \d+): (.*)$")


def comparison_command(models, dataset, args, output_dir):
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, "run_recbole_ext.py"),
        "--model=" + ",".join(models),
        f"--dataset={dataset}",
        f"--tune={args.tune}",
        f"--repeats={args.repeats}",
        f"--baseline={BASELINE if BASELINE in models else models[0]}",
        f"--output_dir={output_dir}",
        f"--metric={MAIN_METRIC}",
        f"--jobs={args.jobs}",
    ]
    return command + [f"--{key}={value}" for key, value in shared_overrides(args).items()]


def run_dataset(models, dataset, args):
    """Run the comparison of ``models`` on ``dataset``; returns ``(comparison dict or None,
    {label: failure}, wall seconds, output folder)``."""
    output_dir = os.path.join(os.path.abspath(args.work_dir), dataset)
    os.makedirs(output_dir, exist_ok=True)
    started = time.perf_counter()
    failures = {}
    try:
        done = subprocess.run(
            comparison_command(models, dataset, args, output_dir), cwd=output_dir, capture_output=True, text=True,
            timeout=args.timeout, env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        )
        for line in done.stderr.splitlines():
            found = FAILED_LINE.match(line.strip())
            if found:
                failures[found.group(1)] = f"failed ({found.group(2)}): {found.group(3)[:300]}"
        if done.returncode not in (0, 1):
            lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
            reason = lines[-1][:400] if lines else f"exit status {done.returncode}"
            failures = {m: f"failed: {reason}" for m in models}
    except subprocess.TimeoutExpired:
        failures = {m: f"stopped after {args.timeout} s" for m in models}
    wall = time.perf_counter() - started
    path = os.path.join(output_dir, "comparison.json")
    comparison = None
    if os.path.isfile(path) and not all(m in failures for m in models):
        with open(path, encoding="utf-8") as f:
            comparison = json.load(f)
    return comparison, failures, wall, output_dir


def last_event_is_query(dataset, overrides):
    """``{user token: bool}``: whether the last input event of the user's test example is a
    query (QuerySeqRec's event sequence of its dataset plugin; the test split is RecBole's)."""
    import numpy as np
    from recbole.utils import init_seed

    from recbole_ext.compare import make_config
    from recbole_ext.data import create_dataset, data_preparation
    from recbole_ext.data.dataset.query_dataset import EVENT_LENGTH_FIELD, EVENT_QUERY, EVENT_TYPE_FIELD

    config = make_config("QuerySeqRec", dataset, None, dict(overrides))
    init_seed(config["seed"], config["reproducibility"])
    _, _, test = data_preparation(config, create_dataset(config))
    data = test._dataset
    features = data.inter_feat
    types, length = features[EVENT_TYPE_FIELD].numpy(), features[EVENT_LENGTH_FIELD].numpy()
    last = types[np.arange(len(types)), np.maximum(length - 1, 0)] == EVENT_QUERY
    users = np.asarray(data.id2token(data.uid_field, features[data.uid_field].numpy())).astype(str)
    return dict(zip(users.tolist(), last.tolist()))


def query_split(comparison, output_dir, flags, metric=MAIN_METRIC, baseline=None):
    """Per model: mean over seeds of ``metric`` on the 'last event is a query' users and on the
    others, with the group sizes and, against ``baseline``, the paired test within each group."""
    import numpy as np

    from recbole_ext import stats
    from recbole_ext.compare import _safe_file_name, load_per_user, pooled_pairs

    baseline = baseline or comparison.get("baseline")
    per_group = {}  # label -> group -> {seed: {"users", metric}}
    for label, model in comparison["models"].items():
        for seed in model["seeds"]:
            values = load_per_user(os.path.join(output_dir, "runs", f"{_safe_file_name(label)}-seed{seed}.npz"))
            if values is None or metric not in values:
                continue
            is_query = np.array([flags.get(u, False) for u in values["users"].tolist()])
            for name, mask in (("query", is_query), ("item", ~is_query)):
                per_group.setdefault(label, {}).setdefault(name, {})[seed] = {
                    "users": values["users"][mask], metric: values[metric][mask]}
    split = {}
    for label, groups in per_group.items():
        split[label] = {}
        for name in ("query", "item"):
            by_seed = groups.get(name, {})
            means = [float(v[metric].mean()) for v in by_seed.values() if len(v[metric])]
            cell = {"mean": _mean(means), "users": len(next(iter(by_seed.values()))["users"]) if by_seed else 0}
            if label != baseline and baseline in per_group:
                pairs = pooled_pairs(by_seed, per_group[baseline].get(name, {}), metric)
                if pairs is not None and len(pairs[0]):
                    cell.update(stats.compare_paired(*pairs))
            split[label][name] = cell
    return split


def _mean(values):
    return sum(values) / len(values) if values else None


def run_records(output_dir):
    """Wall time, epochs and s/epoch of every finished run and trial record of a comparison, and
    ``written``: the first and last time a record was written (a resumed page spans them all)."""
    found = {"runs": [], "trials": []}
    times = []
    for kind in ("runs", "trials"):
        for root, _, files in os.walk(os.path.join(output_dir, kind)):
            for name in files:
                if name.endswith(".json"):
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as f:
                        record = json.load(f)
                    times.append(os.path.getmtime(path) - record.get("wall_seconds", 0.0))
                    times.append(os.path.getmtime(path))
                    found[kind].append(record)
    found["written"] = (min(times), max(times)) if times else None
    return found


def estimate_full_seconds(comparison, records, measured_tune, measured_repeats):
    """Upper bound of the full budget's wall time on this machine: for every model, the
    full number of trials and seeds, each run to the full epoch cap at the measured s/epoch,
    plus the measured per-run overhead (data preparation, evaluation). The first seed's run is the
    chosen trial's (tested, not trained again), so a model costs trials + seeds - 1 trainings."""
    if not comparison:
        return None
    total = 0.0
    runs_by_model = {}
    for record in records["runs"]:
        runs_by_model.setdefault(record.get("model"), []).append(record)
    for label, model in comparison["models"].items():
        spe = model.get("seconds_per_epoch")
        runs = runs_by_model.get(model.get("model") or label, [])
        if not spe or not runs:
            continue
        trainings = [r for r in runs if not r.get("trained_as_trial")] or runs
        overhead = _mean([max(0.0, r["wall_seconds"] - r["epochs_trained"] * r["seconds_per_epoch"]) for r in trainings])
        total += (FULL_BUDGET["tune"] + FULL_BUDGET["repeats"] - 1) * (overhead + FULL_BUDGET["epochs"] * spe)
    return total


# ----------------------------------------------------------------------------------------------
# the page


def machine_description():
    from recbole_ext.compare import machine_description as describe

    return describe()


def record_machines(found):
    """``{machine: number of records}`` over the trial and run records ``found`` (``run_records``);
    records older than the field count as ``"not recorded"``."""
    from recbole_ext.compare import record_machine_counts

    return record_machine_counts(found.get("trials", []) + found.get("runs", []))


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


def load_average():
    try:
        return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def _fmt(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}"


def _mean_std_text(cell):
    if not cell or cell.get("mean") is None:
        return "-"
    return _fmt(cell["mean"]) + (f" ± {_fmt(cell['std'])}" if cell.get("std") is not None else "")


def _change_text(cell):
    if not cell or cell.get("change") is None:
        return "-"
    text = f"{100 * cell['change']:+.1f}%"
    if cell.get("change_ci"):
        low, high = cell["change_ci"]
        text += f" [{100 * low:+.1f}, {100 * high:+.1f}]"
    if cell.get("p_value") is not None:
        text += f" p={cell['p_value']:.2g}" + (" *" if cell["p_value"] < 0.05 else "")
    return text


#: The bars a tuned table is read against: (model, what is claimed, least relative change of test
#: NDCG@10 over SASRec, whether it must be significant). The first four are the comparison issue's
#: bars on synthetic; each paper claims its model beats SASRec-type baselines on its own data.
CLAIMS = [
    ("QuerySeqRec", "at least +15% over SASRec, p < 0.05", 0.15, True),
    ("EMBSR", "at least +10% over SASRec, p < 0.05", 0.10, True),
    ("HUGT", "at least level with SASRec (not significantly below)", None, False),
    ("DGSR", "at least level with SASRec (not significantly below)", None, False),
    ("MAGNN", "above SASRec, p < 0.05 (the paper's claim)", 0.0, True),
]


def claim_holds(cell, least_change, significant):
    """Whether a row's change against the baseline meets a claim; None when it was not measured."""
    if not cell or cell.get("change") is None or cell.get("p_value") is None:
        return None
    if least_change is None:  # level: not significantly below
        return cell["change"] >= 0 or cell["p_value"] >= 0.05
    return cell["change"] >= least_change and (cell["p_value"] < 0.05 or not significant)


def claims_lines(models, comparison):
    results = (comparison or {}).get("models", {})
    rows = [c for c in CLAIMS if c[0] in models and c[0] in results]
    if not rows:
        return []
    lines = [f"The bars these results are read against (test NDCG@10 against {BASELINE}; computed, not typed):", "",
             "| model | claim | ours | holds |", "|---|---|---|---|"]
    for label, text, least, significant in rows:
        cell = results[label]["test"].get(MAIN_METRIC)
        holds = claim_holds(cell, least, significant)
        verdict = "-" if holds is None else ("yes" if holds else "**no**")
        lines.append(f"| {label} | {text} | {_change_text(cell)} | {verdict} |")
    return lines + [""]


def epochs_by_model(records):
    """``{model: (epochs trained per seed run, how many of them)}`` of the chosen configurations' runs."""
    found = {}
    for record in records.get("runs", []):
        found.setdefault(record.get("model"), []).append(record.get("epochs_trained"))
    return found


def machines_by_model(records):
    """``{model: [machine of each seed run]}``; records older than the field say ``"not recorded"``."""
    found = {}
    for record in records.get("runs", []):
        found.setdefault(record.get("model"), []).append(record.get("machine") or "not recorded")
    return found


def machine_tags(machines):
    """``{machine: "m1", ...}`` when the seed runs of a section come from more than one machine
    (their s/epoch then compare only between rows of one tag), else ``{}``."""
    names = sorted({name for found in machines.values() for name in found})
    return {name: f"m{i + 1}" for i, name in enumerate(names)} if len(names) > 1 else {}


def _seconds_text(seconds, machines, tags):
    text = _fmt(seconds, 2)
    if tags and machines:
        text += " [" + "+".join(sorted({tags[name] for name in machines})) + "]"
    return text


def _epochs_text(epochs, cap):
    epochs = [e for e in epochs or [] if e is not None]
    if not epochs:
        return "-"
    return f"{_mean(epochs):.1f} ({sum(e >= cap for e in epochs)}/{len(epochs)})"


def dataset_section(dataset, models, comparison, failures, split, wall, extension_models, plots, records=None,
                    epoch_cap=None):
    lines = [f"## {dataset}", ""]
    lines.append(f"- wall time of this dataset: {wall / 60:.1f} min")
    if comparison:
        setting = comparison["setting"]
        lines.append(
            f"- split: {setting['split']} (order {setting['order']}, group by {setting['group_by']}); "
            f"evaluation: {setting['eval_mode']}; seeds: {', '.join(map(str, setting['seeds']))}"
        )
        lines.append(f"- evaluation targets: {comparison.get('targets', '-')}")
        lines.append(
            f"- against {comparison['baseline']}: {comparison['test']} over (test user, seed) pairs pooled over "
            "seeds; * p < 0.05; [lo, hi] bootstrap 95% interval of the relative change"
        )
    lines += [
        "",
        f"| model | kind | test NDCG@10 | vs {BASELINE} | test HR@10 | valid NDCG@10 | s/epoch | epochs (at cap) "
        "| parameters | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    epochs = epochs_by_model(records or {})
    machines = machines_by_model(records or {})
    tags = machine_tags(machines)
    results = (comparison or {}).get("models", {})
    for label in models:
        kind = "extension" if label in extension_models else "RecBole"
        row = results.get(label)
        if row is None:
            lines.append(f"| {label} | {kind} | - | - | - | - | - | - | - | {failures.get(label, 'failed').replace('|', '/')} |")
            continue
        status = failures.get(label, "ok").replace("|", "/")
        lines.append(
            f"| {label} | {kind} | {_mean_std_text(row['test'].get('ndcg@10'))} | "
            f"{_change_text(row['test'].get('ndcg@10'))} | {_mean_std_text(row['test'].get('hit@10'))} | "
            f"{_mean_std_text(row['valid'].get('ndcg@10'))} | "
            f"{_seconds_text(row.get('seconds_per_epoch'), machines.get(row.get('model') or label), tags)} | "
            f"{_epochs_text(epochs.get(row.get('model') or label), epoch_cap or 0)} | "
            f"{row.get('num_parameters') or 0:,} | {status} |"
        )
    lines += ["", f"epochs (at cap): mean epochs each seed's run trained before early stopping (patience on "
              "validation), and how many runs reached the epoch cap instead (those may not have converged).", ""]
    if tags:
        legend = "; ".join(f"{tag} = {name}" for name, tag in tags.items())
        lines += [f"s/epoch [tag]: the machine(s) that timed the row's seed runs ({legend}); s/epoch compare "
                  "only between rows of one tag, a row tagged with several mixes machines.", ""]
    lines += claims_lines(models, comparison)
    tuned = {label: results[label] for label in models if "searched" in results.get(label, {})}
    if tuned:
        lines += [
            "Searched ranges and chosen values (chosen on validation NDCG@10 only):",
            "",
            "| model | space | trials | searched | chosen |",
            "|---|---|---|---|---|",
        ]
        for label, row in tuned.items():
            searched = "; ".join(f"{k}: {v}" for k, v in row["searched"].items()) or "-"
            chosen = ", ".join(f"{k}={_short(v)}" for k, v in row["chosen"].items()) or "-"
            lines.append(f"| {label} | {row['space_file']} | {len(row['trials'])} | {searched} | {chosen} |")
        lines.append("")
    if split:
        some = next(iter(split.values()))
        lines += [
            "Test NDCG@10 by the last input event of the test example (users: "
            f"{some['query']['users']} whose last event is a query, {some['item']['users']} an item; "
            f"mean over seeds; against {BASELINE} the same paired test within each group):",
            "",
            f"| model | last event a query | vs {BASELINE} | last event an item | vs {BASELINE} |",
            "|---|---|---|---|---|",
        ]
        for label in (m for m in models if m in split):
            groups = split[label]
            lines.append(f"| {label} | {_fmt(groups['query']['mean'])} | {_change_text(groups['query'])} | "
                         f"{_fmt(groups['item']['mean'])} | {_change_text(groups['item'])} |")
        lines.append("")
    for title, path in plots:
        lines += [f"![{title}]({path})", ""]
    return lines


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def render_page(sections, args, command, started, finished, loads, estimate, found=None, compute_seconds=None,
                span=None, machines=None):
    machine, found = machine_description(), found or versions()
    lines = ["# Benchmark results", ""]
    if not is_full_budget(args):
        lines += [
            f"**smoke test: not converged/tuned enough to rank models** (budget: {args.tune} trials, "
            f"{args.repeats} seeds, {args.epochs} epochs at most; the full run is "
            f"{FULL_BUDGET['tune']} trials, {FULL_BUDGET['repeats']} seeds, {FULL_BUDGET['epochs']} epochs at most)",
            "",
        ]
    lines += [
        "Written by `benchmarks/run_benchmarks.py`; nothing in this file is typed by hand.",
        "",
        f"- command: `{command}`",
        f"- wall time: {(finished - started).total_seconds() / 60:.1f} min ({started:%Y-%m-%d %H:%M} to "
        f"{finished:%H:%M} UTC)",
    ]
    if compute_seconds:
        lines.append(
            f"- training time in the records (every trial and run, also those a resumed run skipped): "
            f"{compute_seconds / 60:.1f} min"
        )
    if getattr(args, "jobs", 1) > 1:
        lines.append(f"- models trained side by side in {args.jobs} processes (`--jobs`), the cores shared among them: "
                     "every s/epoch is a shared-core figure; the metrics are the ones one process gets")
    if span:  # a resumed page: from the first trial's start to the last record, over every invocation
        first, last = (datetime.datetime.fromtimestamp(t, datetime.timezone.utc) for t in span)
        lines.append(f"- records written from {first:%Y-%m-%d %H:%M} to {last:%H:%M} UTC "
                     f"({(last - first).total_seconds() / 3600:.2f} h, every invocation of this command included)")
    if estimate is not None and not is_full_budget(args):
        lines.append(
            f"- estimated wall time of the full budget for these models and datasets on this machine: "
            f"{estimate / 3600:.1f} h at most (every trial and seed run to the epoch cap at the measured s/epoch; "
            "early stopping shortens it)"
        )
    lines += [
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, {machine['os']}",
    ]
    if machines:  # a resumed run's records may come from other machines than the one writing the page
        counts = "; ".join(f"{name} ({count})" for name, count in sorted(machines.items(), key=lambda kv: (-kv[1], kv[0])))
        mixed = "; s/epoch and wall times compare only between records of one machine" if len(machines) > 1 else ""
        lines.append(f"- machines that timed the trial and run records (number of records): {counts}{mixed}")
    lines += [
        f"- load average (1, 5, 15 min) at the start: {loads[0]}; at the end: {loads[1]}"
        " (other work on the machine slows every timing)",
        f"- device: {'GPU if available' if args.gpu else 'CPU'}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in found.items()),
        f"- protocol: every model gets {args.tune} trials of RecBole's HyperTuning (Hyperopt) over its search space "
        "(properties/hyper/<Model>.hyper plus the keys of properties/hyper/default.hyper, the learning rate and the "
        "weight decay, that it does not search; the default space alone without a file), chosen on validation "
        "NDCG@10 only, "
        f"RecBole's early stopping on validation (stopping_step {args.stopping_step}), one epoch cap ({args.epochs}); "
        f"only the chosen configuration is tested, on {args.repeats} seed(s), from its best-validation checkpoint",
        "- shared setting: "
        + ", ".join(f"{k}={v}" for k, v in shared_overrides(args).items() if k not in ("show_progress", "state"))
        + "; every other key (heads, layers, dropout) from each model's own yaml",
        "- s/epoch: wall seconds of one training epoch of the chosen configuration (mean over seeds)",
    ]
    ran = _split_names(args.models) if args.models else default_models()
    left_out = [m for m in default_models() if m not in ran]
    if left_out:
        lines.append("- models of the default list this command did not run (`--models`): " + ", ".join(left_out))
    lines.append("")
    for section in sections:
        lines += section
    return "\n".join(lines) + "\n"


def write_plots(dataset, models, comparison, output):
    """Main metric per model with error bars, and quality against seconds per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)  # the plots lie beside the page

    rows = [
        (label, row["test"][MAIN_METRIC]["mean"], row["test"][MAIN_METRIC]["std"] or 0.0, row.get("seconds_per_epoch"))
        for label, row in ((m, comparison["models"][m]) for m in models if m in comparison["models"])
        if MAIN_METRIC in row["test"]
    ]
    stem = os.path.splitext(output)[0]
    paths = []
    figure = Figure(figsize=(max(4.0, 1.0 + 0.7 * len(rows)), 3.6))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.bar(range(len(rows)), [r[1] for r in rows], yerr=[r[2] for r in rows], capsize=4, color="tab:blue")
    axes.set_xticks(range(len(rows)))
    axes.set_xticklabels([r[0] for r in rows], rotation=30, ha="right")
    axes.set_ylabel("test NDCG@10 (mean ± std over seeds)")
    axes.set_title(f"{dataset}: tuned, {len(next(iter(comparison['models'].values()))['seeds'])} seed(s)", fontsize=9)
    figure.tight_layout()
    paths.append(("test NDCG@10", f"{stem}_{dataset}_ndcg10.png"))
    figure.savefig(paths[-1][1], dpi=120)

    figure = Figure(figsize=(5.5, 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    timed = [r for r in rows if r[3]]
    axes.errorbar([r[3] for r in timed], [r[1] for r in timed], yerr=[r[2] for r in timed], fmt="o", capsize=3)
    for label, mean, _, seconds in timed:
        axes.annotate(label, (seconds, mean), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel("seconds per training epoch (log)")
    axes.set_ylabel("test NDCG@10")
    machines = {name for m in models for name in (comparison["models"].get(m) or {}).get("machines", {})}
    mixed = f" (timed on {len(machines)} machines: see the table's tags)" if len(machines) > 1 else ""
    axes.set_title(f"{dataset}: quality against training time{mixed}", fontsize=9)
    figure.tight_layout()
    paths.append(("quality against seconds per epoch", f"{stem}_{dataset}_quality_vs_speed.png"))
    figure.savefig(paths[-1][1], dpi=120)
    return [(title, os.path.basename(path)) for title, path in paths]


def main(argv=None):
    args = build_parser().parse_args(argv)
    sys.path.insert(0, REPO_ROOT)
    from recbole_ext.registry import EXTENSION_MODELS, get_model

    models = _split_names(args.models) if args.models else default_models()
    datasets = _split_names(args.datasets) if args.datasets else list(DATASETS)
    for model in models:
        get_model(model)  # an unknown name fails before anything runs, with the list of names
    if len(models) < 2:
        raise SystemExit("run_benchmarks.py: --models needs at least two models (a comparison)")
    script = os.path.relpath(os.path.abspath(__file__), os.getcwd())
    script = os.path.abspath(__file__) if script.startswith("..") else script
    command = "python " + " ".join(shlex.quote(a) for a in [script] + (sys.argv[1:] if argv is None else list(argv)))
    started = datetime.datetime.now(datetime.timezone.utc)
    load_at_start = load_average()
    found = versions()  # before this run writes its own files into the checkout
    sections, everything, estimate, compute_seconds, spans, machines = [], {}, 0.0, 0.0, [], {}
    for dataset in datasets:
        print(f"[bench] {dataset}: {', '.join(models)} ...", flush=True)
        comparison, failures, wall, output_dir = run_dataset(models, dataset, args)
        split = {}
        if comparison and "QuerySeqRec" in models and "QuerySeqRec" in comparison["models"]:
            split = query_split(comparison, output_dir, last_event_is_query(dataset, shared_overrides(args)),
                                baseline=BASELINE)
        plots = write_plots(dataset, models, comparison, args.output) if comparison else []
        records = run_records(output_dir)
        compute_seconds += sum(r.get("wall_seconds", 0.0) for kind in ("runs", "trials") for r in records[kind])
        spans.append(records["written"])
        for name, count in record_machines(records).items():
            machines[name] = machines.get(name, 0) + count
        estimate += estimate_full_seconds(comparison, records, args.tune, args.repeats) or 0.0
        sections.append(dataset_section(dataset, models, comparison, failures, split, wall, set(EXTENSION_MODELS), plots,
                                        records, args.epochs))
        everything[dataset] = {"comparison": comparison, "failures": failures, "wall_seconds": wall, "query_split": split}
        print(f"[bench] {dataset}: {wall / 60:.1f} min, failures: {failures or 'none'}", flush=True)
    finished = datetime.datetime.now(datetime.timezone.utc)
    spans = [span for span in spans if span]
    span = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else None
    page = render_page(
        sections, args, command, started, finished, (load_at_start, load_average()), estimate, found, compute_seconds,
        span, machines,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(page)
    with open(os.path.splitext(args.output)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(
            {"command": command, "budget": {"tune": args.tune, "repeats": args.repeats, "epochs": args.epochs},
             "full_budget": is_full_budget(args), "estimated_full_seconds": estimate, "datasets": everything},
            f, indent=2, default=str,
        )
    print(page)
    return 0 if all(not d["failures"] for d in everything.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
