"""Seconds per SASRec training epoch with autograd anomaly detection on (RecBole 1.2.1's import-time
default, via sine.py) and off (this package's default), same data, config and seed.

    python benchmarks/bench_anomaly.py [--dataset ml-100k] [--epochs 2]

Prints one line per setting and the ratio; losses and metrics of both runs must be identical.
"""

import argparse
import platform
import time

import torch

from recbole_ext.quick_start import run_single


def measure(dataset, epochs, detect_anomaly):
    config = {
        "epochs": epochs, "detect_anomaly": detect_anomaly, "use_gpu": False, "show_progress": False,
        "state": "ERROR", "seed": 2020, "train_neg_sample_args": None, "eval_step": epochs,
    }
    start = time.perf_counter()
    record = run_single("SASRec", dataset, config_dict=config, saved=False, read_command_line=False)
    return record, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}; SASRec RecBole defaults (hidden 64, 2 layers, max len 50, batch 2048, CE)")
    results = {}
    for enabled in (True, False):
        record, wall = measure(args.dataset, args.epochs, enabled)
        results[enabled] = record
        print(f"detect_anomaly={enabled}: {record['seconds_per_epoch']:.1f} s per epoch "
              f"({args.epochs} epochs), test {record['test_result']}")
    ratio = results[True]["seconds_per_epoch"] / results[False]["seconds_per_epoch"]
    same = results[True]["test_result"] == results[False]["test_result"]
    print(f"anomaly on / off: {ratio:.2f}x slower; identical test metrics: {same}")


if __name__ == "__main__":
    main()
