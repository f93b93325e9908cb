"""Did the models that reached the epoch cap of a tuned results run converge?

    python benchmarks/convergence_check.py --results benchmarks/records/results-synthetic --datasets synthetic --epochs 120

A run that trains up to the epoch cap was stopped by the cap, not by early stopping, so its test
figure may still have been rising. For every model of a ``run_benchmarks.py`` results folder
(``--results``: its ``--work-dir``) with a run at the cap, this trains its chosen configuration
again on the same seeds under a higher cap (``--epochs``), everything else as the results run
recorded (shared setting, patience, seeds). A model whose runs all stopped early is not trained
again: with the same seed its run is the same epoch by epoch (``reproducibility``), so early stopping
fires at the same epoch under any higher cap, and its recorded runs are the runs of the new cap.

``CONVERGENCE.md`` (and ``.json``) gives, per model trained again: epochs and test NDCG@10 at the
old cap and at the new one, and against the baseline (SASRec) the paired test of the results page
(Wilcoxon signed-rank over (test user, seed) pairs, bootstrap interval of the relative change) at
both caps. Records stay under ``--work-dir``, so a rerun resumes.
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO_ROOT)

import run_benchmarks  # noqa: E402  (benchmarks/run_benchmarks.py: formatting of changes)
from paper_tables import _write_atomically  # noqa: E402

METRIC = "ndcg@10"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="the --work-dir of a run_benchmarks.py run")
    parser.add_argument("--datasets", nargs="+", default=["synthetic"])
    parser.add_argument("--epochs", type=int, required=True, help="the higher epoch cap")
    parser.add_argument("--models", nargs="+", default=None,
                        help="models to train again (default: every model with a run at the cap)")
    parser.add_argument("--jobs", type=int, default=1, help="models trained side by side")
    parser.add_argument("--work-dir", default=os.path.join(HERE, "out", "convergence"))
    parser.add_argument("--output", default=os.path.join(HERE, "CONVERGENCE.md"))
    return parser


def load_results(results_dir, dataset):
    """``(comparison.json of the results run, {label: [run records in seed order]})``."""
    folder = os.path.join(os.path.abspath(results_dir), dataset)
    path = os.path.join(folder, "comparison.json")
    if not os.path.isfile(path):
        raise ValueError(f"--results: no tuned comparison {path} (run benchmarks/run_benchmarks.py first)")
    with open(path, encoding="utf-8") as f:
        comparison = json.load(f)
    records = {}
    for label, model in comparison["models"].items():
        records[label] = [read_run(folder, label, seed) for seed in model["seeds"]]
    return comparison, records


def read_run(folder, label, seed):
    from recbole_ext.compare import _safe_file_name

    path = os.path.join(folder, "runs", f"{_safe_file_name(label)}-seed{seed}.json")
    if not os.path.isfile(path):
        raise ValueError(f"--results: no run record {path}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def per_user_of(folder, label, seeds):
    """``{seed: per-user test values}`` of one label's runs in a comparison folder."""
    from recbole_ext.compare import _safe_file_name, load_per_user

    found = {}
    for seed in seeds:
        values = load_per_user(os.path.join(folder, "runs", f"{_safe_file_name(label)}-seed{seed}.npz"))
        if values is None:
            raise ValueError(f"no per-user test values of {label} seed {seed} in {folder}")
        found[seed] = values
    return found


def at_cap(records, cap):
    return sum(1 for r in records if r.get("epochs_trained", 0) >= cap)


def check_dataset(args, dataset):
    """Train the at-cap models again under ``args.epochs``; returns the dataset's summary."""
    from recbole_ext.compare import Entry, run_comparison, significance

    comparison, records = load_results(args.results, dataset)
    overrides = dict(comparison["setting"]["overrides"])
    cap, seeds, baseline = int(overrides["epochs"]), comparison["setting"]["seeds"], comparison["baseline"]
    if args.epochs <= cap:
        raise ValueError(f"--epochs={args.epochs}: the results run's cap is already {cap}")
    capped = [label for label in records if at_cap(records[label], cap)]
    chosen_models = args.models or capped
    unknown = sorted(set(chosen_models) - set(records))
    if unknown:
        raise ValueError(f"--models: the results run has no {', '.join(unknown)}")
    if baseline in capped and baseline not in chosen_models:
        chosen_models = [baseline] + list(chosen_models)  # its recorded runs are not those of the new cap
    entries = [Entry(label, comparison["models"][label]["model"], dict(comparison["models"][label]["chosen"] or {}))
               for label in chosen_models]
    summary = {"dataset": dataset, "old_cap": cap, "new_cap": args.epochs, "seeds": seeds, "baseline": baseline,
               "at_cap": {label: at_cap(records[label], cap) for label in records}, "rows": [], "wall_seconds": 0.0}
    if not entries:  # every run stopped early: nothing to train again
        return summary
    output_dir = os.path.join(os.path.abspath(args.work_dir), dataset)
    overrides.update(epochs=args.epochs, seed=seeds[0])
    started = time.perf_counter()
    _, rerun = run_comparison(entries, dataset, overrides, output_dir=output_dir, repeats=len(seeds),
                              baseline=entries[0].label, metric=METRIC, quiet=True, jobs=args.jobs)
    wall = time.perf_counter() - started
    if rerun is None or rerun["setting"]["seeds"] != seeds:
        raise RuntimeError(f"the runs under the new cap failed or used other seeds ({output_dir})")

    source = os.path.join(os.path.abspath(args.results), dataset)
    old_per_user = {label: per_user_of(source, label, seeds) for label in records}
    new_per_user = dict(old_per_user, **{e.label: per_user_of(output_dir, e.label, seeds) for e in entries})
    old_sig = significance(old_per_user, baseline, [METRIC])
    new_sig = significance(new_per_user, baseline, [METRIC])
    rows = []
    for entry in entries:
        new_records = [read_run(output_dir, entry.label, seed) for seed in seeds]
        rows.append({
            "model": entry.label,
            "chosen": entry.fixed,
            "old": {"epochs": [r["epochs_trained"] for r in records[entry.label]],
                    "test": [r["test_result"][METRIC] for r in records[entry.label]],
                    "vs_baseline": old_sig.get(entry.label, {}).get(METRIC)},
            "new": {"epochs": [r["epochs_trained"] for r in new_records],
                    "test": [r["test_result"][METRIC] for r in new_records],
                    "vs_baseline": new_sig.get(entry.label, {}).get(METRIC)},
        })
    return dict(summary, rows=rows, wall_seconds=wall)


def _mean_std_text(values):
    from recbole_ext.stats import mean_std

    mean, std = mean_std(values)
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _epochs_text(epochs, cap):
    return f"{sum(epochs) / len(epochs):.1f} ({sum(e >= cap for e in epochs)}/{len(epochs)} at cap)"


def render(summaries, command, started, wall):
    lines = ["# Convergence of the models that reached the epoch cap", "",
             "Written by `benchmarks/convergence_check.py`; nothing in this file is typed by hand.", "",
             f"- command: `{command}`",
             f"- wall time: {wall / 60:.1f} min ({started:%Y-%m-%d %H:%M} UTC)",
             "- protocol: each model with a run at the results run's epoch cap is trained again at its chosen "
             "configuration on the same seeds under a higher cap, everything else as recorded; a model whose runs "
             "all stopped early keeps its recorded runs (same seed: same run, early stopping fires at the same "
             "epoch under any higher cap). Against the baseline: Wilcoxon signed-rank test over (test user, seed) "
             "pairs; * p < 0.05; [lo, hi] bootstrap 95% interval of the relative change", ""]
    for summary in summaries:
        old_cap, new_cap, baseline = summary["old_cap"], summary["new_cap"], summary["baseline"]
        capped = ", ".join(f"{label} {n}/{len(summary['seeds'])}" for label, n in summary["at_cap"].items() if n)
        lines += [f"## {summary['dataset']}", "",
                  f"- runs at the cap of {old_cap} epochs in the results run: {capped or 'none'}",
                  f"- seeds: {', '.join(map(str, summary['seeds']))}; wall time {summary['wall_seconds'] / 60:.1f} min",
                  ""]
        if not summary["rows"]:
            lines += ["Every run stopped early: nothing was trained again.", ""]
            continue
        lines += [f"| model | epochs, cap {old_cap} | test NDCG@10, cap {old_cap} | vs {baseline}, cap {old_cap} | "
                  f"epochs, cap {new_cap} | test NDCG@10, cap {new_cap} | vs {baseline}, cap {new_cap} | converged |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in summary["rows"]:
            old, new = row["old"], row["new"]
            converged = "yes" if all(e < new_cap for e in new["epochs"]) else "**no**: still at the cap"
            lines.append(
                f"| {row['model']} | {_epochs_text(old['epochs'], old_cap)} | {_mean_std_text(old['test'])} | "
                f"{run_benchmarks._change_text(old['vs_baseline'])} | {_epochs_text(new['epochs'], new_cap)} | "
                f"{_mean_std_text(new['test'])} | {run_benchmarks._change_text(new['vs_baseline'])} | {converged} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/convergence_check.py"]
                                   + (sys.argv[1:] if argv is None else list(argv)))
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    summaries = [check_dataset(args, dataset) for dataset in args.datasets]
    wall = time.perf_counter() - clock
    from recbole_ext.quick_start import write_json_atomically

    page = render(summaries, command, started, wall)
    _write_atomically(args.output, page)  # an interrupted run leaves the earlier page whole
    write_json_atomically(os.path.splitext(args.output)[0] + ".json",
                          {"command": command, "wall_seconds": wall, "datasets": summaries})
    print(page, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
