"""Learning-rate sweep behind the defaults of EMBSR.yaml, HUGT.yaml and MAGNN.yaml (issue 12, item 3).

For each model, dataset and learning rate: one run at the yaml's defaults (only the learning rate,
the small dims below and the shared evaluation settings are set), trained with RecBole's early
stopping on validation NDCG@10 up to an epoch cap. The choice per model and dataset is the
learning rate of the best **validation** NDCG@10; test figures are neither printed nor written,
so that nothing here can choose on test. A run that stops before the cap has converged in
RecBole's sense (``stopping_step`` epochs without a better validation score).

    OMP_NUM_THREADS=1 python benchmarks/sweep_lr.py                      # all three (about 1 hour on 2 busy cores)
    OMP_NUM_THREADS=1 python benchmarks/sweep_lr.py --models HUGT --datasets ml-100k

Writes ``--out`` (default ``benchmarks/SWEEP_LR.md``) and the same figures as JSON beside it.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_ext.quick_start import run_single  # noqa: E402
from common import evaluation_settings  # noqa: E402  (benchmarks/common.py)

LEARNING_RATES = {
    "EMBSR": [1e-3, 3e-3, 1e-2, 3e-2],
    "HUGT": [3e-4, 1e-3, 3e-3, 1e-2],
    "MAGNN": [1e-3, 3e-3, 1e-2, 3e-2],
}
DATASETS = {"EMBSR": ["synthetic"], "HUGT": ["synthetic", "ml-100k"], "MAGNN": ["synthetic", "ml-100k"]}


def run_config(args, learning_rate):
    return {
        "learning_rate": learning_rate,
        "epochs": args.epochs,
        "stopping_step": args.stopping_step,
        "hidden_size": args.dim,
        "embedding_size": args.dim,
        "inner_size": 4 * args.dim,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        **evaluation_settings(seed=args.seed, checkpoint_dir=args.checkpoint_dir),
    }


def best_epoch(record):
    """The epoch of the best validation score (stored in the best checkpoint), 0-based as RecBole's."""
    return int(torch.load(record["checkpoint"], weights_only=True)["epoch"])


def sweep(args):
    rows = []
    for model in args.models:
        for dataset in args.datasets or DATASETS[model]:
            for learning_rate in args.lrs or LEARNING_RATES[model]:
                started = time.time()
                record = run_single(
                    model, dataset, config_dict=run_config(args, learning_rate), saved=True, read_command_line=False
                )
                row = {
                    "model": model,
                    "dataset": dataset,
                    "learning_rate": learning_rate,
                    "valid": record["best_valid_result"],
                    "epochs_trained": record["epochs_trained"],
                    "best_epoch": best_epoch(record),
                    "converged": record["epochs_trained"] < args.epochs,
                    "seconds_per_epoch": record["seconds_per_epoch"],
                    "wall_seconds": time.time() - started,
                }
                os.remove(record["checkpoint"])
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def choices(rows):
    best = {}
    for row in rows:
        key = (row["model"], row["dataset"])
        if key not in best or row["valid"]["ndcg@10"] > best[key]["valid"]["ndcg@10"]:
            best[key] = row
    return best


def render(rows, args, command, wall_seconds):
    best = choices(rows)
    lines = [
        "# Learning-rate sweep (validation only)",
        "",
        f"Command: `{command}` ({wall_seconds / 60:.0f} min wall time on a shared 2-core machine).",
        "",
        f"Each run: the model's yaml defaults plus hidden/embedding size {args.dim}, inner size {4 * args.dim}, "
        f"MAX_ITEM_LIST_LENGTH {args.max_len}, seed {args.seed}, at most {args.epochs} epochs, early stopping "
        f"after {args.stopping_step} epochs without a better validation NDCG@10 (full ranking, RecBole's "
        "leave-one-out split). Chosen: the best validation NDCG@10 per model and dataset (**bold**). "
        "No test figure was computed into this choice or is shown here.",
        "",
        "| model | dataset | learning rate | valid NDCG@10 | valid HR@10 | best epoch | epochs trained | converged | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        chosen = best[(row["model"], row["dataset"])] is row
        mark = "**" if chosen else ""
        lines.append(
            f"| {row['model']} | {row['dataset']} | {mark}{row['learning_rate']:g}{mark} | "
            f"{mark}{row['valid']['ndcg@10']:.4f}{mark} | {row['valid']['hit@10']:.4f} | {row['best_epoch'] + 1} | "
            f"{row['epochs_trained']} | {'yes' if row['converged'] else 'no (cap)'} | {row['seconds_per_epoch']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(LEARNING_RATES), choices=list(LEARNING_RATES))
    parser.add_argument("--datasets", nargs="+", help="default: synthetic, and ml-100k for HUGT and MAGNN")
    parser.add_argument("--lrs", nargs="+", type=float, help="default: four values per model around 1e-3..1e-2")
    parser.add_argument("--epochs", type=int, default=100, help="epoch cap")
    parser.add_argument("--stopping-step", type=int, default=5)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--checkpoint-dir", default=os.path.join("saved", "sweep_lr"))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "SWEEP_LR.md"))
    args = parser.parse_args()

    started = time.time()
    rows = sweep(args)
    command = "python benchmarks/sweep_lr.py " + " ".join(sys.argv[1:])
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(render(rows, args, command.strip(), time.time() - started))
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    print(open(args.out, encoding="utf-8").read())


if __name__ == "__main__":
    main()
