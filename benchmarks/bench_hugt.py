"""HUGT benchmark: training speed against SASRec, and NDCG@10 / HR@10 of its variants.

What it measures (issue 7, "Measured"):
1. Seconds per training epoch of HUGT against SASRec (CE) with the same hidden size, blocks,
   heads, dropout, batch size, max length and training examples (RecBole's every prefix,
   last-position loss, ``train_windows: prefixes``, ``train_positions: last``), on ml-100k:
   the cost of the graph heads (kNN edges, shortest paths, biased attention) alone.
2. Test NDCG@10 and HR@10 (full ranking, RecBole's LS split, best validation epoch) of
   HUGT-MP, HUGT-SE, HUGT with 0 graph heads (the paper's "SASRec-Ours": same training
   protocol, tiled windows with an all-position loss) and SASRec (CE), on ml-100k and `synthetic`.
   An epoch of the tiled HUGT protocol holds about MAX_ITEM_LIST_LENGTH times fewer examples
   than SASRec's every-prefix epoch (each trained at every position), so HUGT variants get
   ``--hugt-epochs`` and SASRec ``--epochs``; the table shows both and the seconds per epoch.

Every run goes through ``recbole_ext.quick_start.run_single`` with the same seed.

    python benchmarks/bench_hugt.py     # default (hidden 32, max length 20): about 10 minutes on
                                        # 2 idle cores; several times that on a loaded machine
    python benchmarks/bench_hugt.py --epochs 20 --hugt-epochs 100 --hidden-size 64 --max-len 200
                                        # closer to the paper (hours on a CPU)
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_ext.quick_start import run_single  # noqa: E402
from common import evaluation_settings  # noqa: E402  (benchmarks/common.py)

MODELS = {
    "SASRec (CE)": ("SASRec", {"loss_type": "CE", "train_neg_sample_args": None}),
    "HUGT 0 graph heads": ("HUGT", {"n_graph_heads": 0}),
    "HUGT-MP": ("HUGT", {"graph_mode": "mp"}),
    "HUGT-SE": ("HUGT", {"graph_mode": "se"}),
}


def shared_config(args, epochs):
    return {
        "epochs": epochs,
        "hidden_size": args.hidden_size,
        "inner_size": 4 * args.hidden_size,
        "n_layers": 2,
        "n_heads": 4,
        "hidden_dropout_prob": 0.2,
        "attn_dropout_prob": 0.2,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "train_batch_size": args.batch_size,
        "stopping_step": epochs,
        **evaluation_settings(seed=args.seed, checkpoint_dir=args.checkpoint_dir),
    }


def run(model_name, dataset, config_dict):
    started = time.time()
    # saved=True: the best validation epoch's checkpoint is what gets tested
    record = run_single(model_name, dataset, config_dict=config_dict, saved=True, read_command_line=False)
    record["wall_seconds"] = time.time() - started
    return record


def measure_speed(args, sasrec_record=None):
    """``sasrec_record``: SASRec's ml-100k quality run, whose config equals the speed runs'."""
    rows = []
    for label, (model_name, overrides) in MODELS.items():
        if label == "HUGT 0 graph heads":
            continue
        if model_name == "SASRec" and sasrec_record is not None:
            record = sasrec_record
        else:
            config = dict(shared_config(args, epochs=args.speed_epochs), **overrides)
            if model_name == "HUGT":
                config.update(train_windows="prefixes", train_positions="last")
            record = run(model_name, "ml-100k", config)
        rows.append((label, record["seconds_per_epoch"], record["num_parameters"]))
    sasrec_seconds = rows[0][1]
    print("\n## Seconds per training epoch, ml-100k (same examples, dims, batch, max length)")
    print("| model | s/epoch | x SASRec | parameters |\n|---|---|---|---|")
    for label, seconds, parameters in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / sasrec_seconds:.2f} | {parameters} |")
    return rows


def measure_quality(args):
    results, records = {}, {}
    for dataset in args.datasets:
        print(f"\n## Test NDCG@10 / HR@10 on {dataset} (best validation epoch)")
        print("| model | NDCG@10 | HR@10 | epochs | s/epoch |\n|---|---|---|---|---|")
        for label, (model_name, overrides) in MODELS.items():
            epochs = args.hugt_epochs if model_name == "HUGT" else args.epochs
            record = run(model_name, dataset, dict(shared_config(args, epochs), **overrides))
            test = record["test_result"]
            results[(dataset, label)] = test
            records[(dataset, label)] = record
            print(
                f"| {label} | {test['ndcg@10']:.4f} | {test['hit@10']:.4f} | {epochs} "
                f"| {record['seconds_per_epoch']:.2f} |",
                flush=True,
            )
    return results, records


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "ml-100k"])
    parser.add_argument("--epochs", type=int, default=2, help="SASRec's training epochs (quality)")
    parser.add_argument("--hugt-epochs", type=int, default=10, help="HUGT's training epochs (quality)")
    parser.add_argument("--speed-epochs", type=int, default=1, help="epochs timed in the speed runs")
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--checkpoint-dir", default=os.path.join("saved", "bench_hugt"))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    started = time.time()
    quality, records = ({}, {}) if args.skip_quality else measure_quality(args)
    speed = None if args.skip_speed else measure_speed(args, records.get(("ml-100k", "SASRec (CE)")))
    print(f"\ntotal wall time {time.time() - started:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "args": vars(args),
                    "speed": speed,
                    "quality": {f"{d} | {m}": r for (d, m), r in (quality or {}).items()},
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
