"""EMBSR against SASRec on the same macro-item sequences, targets and split (issue 5, "Measured").

Measures, on ``synthetic`` by default: test NDCG@10 / Hit@10 / MRR@10 (full ranking, the model
of the best validation epoch), training seconds per epoch and the peak resident memory of the
process (peak GPU memory too on CUDA) for SASRec, EMBSR, EMBSR-NS, EMBSR-NG and SGNN-Self (no
operations at all); with ``--with-target`` also EMBSR with ``star_op: target`` (the paper's setting,
which reads the held-out target's operation). Every model runs in its own subprocess so that peak
memory is its own. Every model gets the same learning rate (``--lr``, from the paper's grid); the
EMBSR rows use dropout 0.5 (the paper's Trivago setting), SASRec 0.2.

    OMP_NUM_THREADS=1 python benchmarks/bench_embsr.py   # default run, about 10 minutes on 2 cores
    OMP_NUM_THREADS=1 python benchmarks/bench_embsr.py --epochs 3   # quicker look
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from common import evaluation_settings  # noqa: E402  (benchmarks/common.py)

RUNS = {
    "SASRec": ("SASRec", {"n_layers": 2, "n_heads": 2, "inner_size": 128, "hidden_dropout_prob": 0.2,
                          "attn_dropout_prob": 0.2}),
    "EMBSR": ("EMBSR", {"dropout_prob": 0.5}),
    "EMBSR-NS": ("EMBSR", {"variant": "EMBSR-NS", "dropout_prob": 0.5}),
    "EMBSR-NG": ("EMBSR", {"variant": "EMBSR-NG", "dropout_prob": 0.5}),
    "SGNN-Self": ("EMBSR", {"variant": "SGNN-Self", "dropout_prob": 0.5}),
    "EMBSR star_op=target": ("EMBSR", {"star_op": "target", "dropout_prob": 0.5}),
}


def common_config(args, checkpoint_dir):
    return {
        "epochs": args.epochs,
        "stopping_step": 3,
        "hidden_size": args.dim,
        "embedding_size": args.dim,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "train_batch_size": 512,
        "learning_rate": args.lr,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        **evaluation_settings(
            seed=args.seed, state="ERROR", eval_batch_size=2048, checkpoint_dir=checkpoint_dir,
            metrics=("NDCG", "Hit", "MRR"),
        ),
    }


def run_one(args):
    """Child process: one model, one JSON line on stdout."""
    sys.path.insert(0, REPO_ROOT)
    import torch

    from recbole_ext.quick_start import run_single

    model, overrides = RUNS[args.one]
    with tempfile.TemporaryDirectory() as checkpoint_dir:
        os.chdir(checkpoint_dir)  # RecBole's log/ folder lands here
        config = {**common_config(args, checkpoint_dir), **overrides}
        record = run_single(model, args.dataset, config_dict=config, saved=True, read_command_line=False)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_gpu_mib = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({
        "name": args.one,
        "test": record["test_result"],
        "seconds_per_epoch": record["seconds_per_epoch"],
        "epochs_trained": record["epochs_trained"],
        "num_parameters": record["num_parameters"],
        "peak_rss_mib": peak_rss_mib,
        "peak_gpu_mib": peak_gpu_mib,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01, help="one learning rate for every model (paper grid)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--with-target", action="store_true", help="also run EMBSR with star_op: target")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_one(args)

    names = [name for name in RUNS if args.with_target or name != "EMBSR star_op=target"]
    results = {}
    for name in names:
        command = [sys.executable, os.path.abspath(__file__), "--one", name, "--dataset", args.dataset,
                   "--epochs", str(args.epochs), "--lr", str(args.lr), "--dim", str(args.dim), "--max-len", str(args.max_len),
                   "--seed", str(args.seed)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
        print(f"done: {name}", file=sys.stderr)

    print(f"dataset={args.dataset} lr={args.lr} dim={args.dim} MAX_ITEM_LIST_LENGTH={args.max_len} epochs<={args.epochs} "
          f"seed={args.seed}; same macro sequences, targets, LS split; full ranking")
    print(f"{'model':<22}{'NDCG@10':>9}{'Hit@10':>9}{'MRR@10':>9}{'s/epoch':>9}{'epochs':>7}{'params':>9}{'peak RSS MiB':>14}")
    for name, r in results.items():
        t = r["test"]
        print(f"{name:<22}{t['ndcg@10']:>9.4f}{t['hit@10']:>9.4f}{t['mrr@10']:>9.4f}{r['seconds_per_epoch']:>9.2f}"
              f"{r['epochs_trained']:>7}{r['num_parameters']:>9}{r['peak_rss_mib']:>14.0f}"
              + (f"  GPU {r['peak_gpu_mib']:.0f} MiB" if r["peak_gpu_mib"] is not None else ""))
    sasrec, embsr = results["SASRec"], results["EMBSR"]
    gain = embsr["test"]["ndcg@10"] / sasrec["test"]["ndcg@10"] - 1
    ratio = embsr["seconds_per_epoch"] / sasrec["seconds_per_epoch"]
    print(f"EMBSR NDCG@10 vs SASRec: {gain:+.1%} (target >= +10%)")
    print(f"EMBSR-NS below EMBSR: {results['EMBSR-NS']['test']['ndcg@10'] < embsr['test']['ndcg@10']}; "
          f"EMBSR-NG below EMBSR: {results['EMBSR-NG']['test']['ndcg@10'] < embsr['test']['ndcg@10']}")
    print(f"EMBSR seconds per epoch / SASRec's: {ratio:.2f} (target <= 2.5)")


if __name__ == "__main__":
    main()
