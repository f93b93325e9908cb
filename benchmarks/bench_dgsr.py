"""DGSR benchmark: sampler throughput, seconds per epoch and quality against SASRec.

Measures, with the same embedding size, sequence length, epochs and seed for both models:
- the sub-graph sampler's throughput (training examples per second, transform alone);
- seconds per training epoch on each dataset (the goal: DGSR at most 4x SASRec on ml-100k);
- NDCG@10 and HR@10 on the test split, full ranking and uni100 (one trained model per row,
  evaluated both ways; model selection on the full-ranking validation NDCG@10).

Usage (defaults: 2 epochs, d=32, L=2, n=10, each model's default learning rate, the ml-100k users with <= 60 ratings, so that the
run fits about 10 minutes on 2 CPU cores):
    OMP_NUM_THREADS=2 python benchmarks/bench_dgsr.py
    python benchmarks/bench_dgsr.py --datasets ml-100k --ml100k-max-ratings 0 --epochs 20 --max-neighbors 50 --max-len 50
"""

import argparse
import os
import sys
import time

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import recbole  # noqa: E402

import recbole_ext  # noqa: E402,F401  (compat shims first)
from recbole_ext import registry  # noqa: E402
from recbole_ext.config import Config  # noqa: E402
from recbole_ext.data import create_dataset, data_preparation  # noqa: E402
from common import evaluation_settings  # noqa: E402  (benchmarks/common.py)

ML100K_PATH = os.path.join(os.path.dirname(recbole.__file__), "dataset_example") + os.sep


def _config(model, dataset, args, mode):
    config_dict = {
        "epochs": args.epochs,
        "embedding_size": args.dim,
        "hidden_size": args.dim,
        "inner_size": 2 * args.dim,
        "n_heads": 2,
        "n_layers": args.layers,
        "max_neighbors": args.max_neighbors,
        "subgraph_order": args.order,
        "local_mode": args.local_mode,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "train_batch_size": args.batch_size,
        "learning_rate": args.lr_dgsr if model == "DGSR" else args.lr_sasrec,
        "stopping_step": 100,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": mode},
        **evaluation_settings(state="ERROR"),
    }
    if model == "SASRec":
        config_dict.update(n_layers=2, hidden_dropout_prob=0.2, attn_dropout_prob=0.2, weight_decay=0.0)
    if dataset == "ml-100k":
        config_dict["data_path"] = ML100K_PATH
        if args.ml100k_max_ratings:
            config_dict["user_inter_num_interval"] = f"[0,{args.ml100k_max_ratings}]"
    return Config(model, dataset, config_dict=config_dict, read_command_line=False)


def sampler_throughput(dataset_name, args):
    config = _config("DGSR", dataset_name, args, "full")
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    sampler = train.transform
    examples = train.dataset
    start = time.perf_counter()
    for begin in range(0, len(examples), args.batch_size):
        index = torch.arange(begin, min(begin + args.batch_size, len(examples)))
        sampler(examples, examples[index])
    return len(examples) / (time.perf_counter() - start), len(examples)


def train_and_test(model_name, dataset_name, args):
    from recbole.utils import init_seed

    config = _config(model_name, dataset_name, args, "full")
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test_full = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = registry.get_model(model_name)(config, train._dataset)
    trainer = registry.get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    trainer.fit(train, valid, saved=True, show_progress=False)
    full = trainer.evaluate(test_full, load_best_model=True, show_progress=False)
    # the same trained model, ranked against 100 sampled negatives (same data and split; RecBole's
    # build() runs once per dataset object, hence a fresh one)
    uni_config = _config(model_name, dataset_name, args, "uni100")
    _, _, test_uni = data_preparation(uni_config, create_dataset(uni_config))
    uni = trainer.evaluate(test_uni, load_best_model=False, show_progress=False)
    seconds = sum(trainer.train_epoch_seconds) / len(trainer.train_epoch_seconds)
    return seconds, full, uni


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "ml-100k"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--max-neighbors", type=int, default=10)
    parser.add_argument("--max-len", type=int, default=10)
    parser.add_argument(
        "--ml100k-max-ratings", type=int, default=60,
        help="keep ml-100k users with at most this many ratings (0: all users); keeps the default run short",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr-dgsr", type=float, default=0.01, help="DGSR's default (the paper's)")
    parser.add_argument("--lr-sasrec", type=float, default=0.001, help="SASRec's RecBole default")
    parser.add_argument("--local-mode", default="gru", choices=["gru", "last_attention"])
    args = parser.parse_args()
    os.chdir(os.environ.get("BENCH_WORKDIR", "/tmp"))
    print(f"settings: {vars(args)}; torch threads {torch.get_num_threads()}")

    rows = []
    for dataset_name in args.datasets:
        rate, count = sampler_throughput(dataset_name, args)
        print(f"[{dataset_name}] sampler: {rate:,.0f} training examples/s ({count} examples)", flush=True)
        for model_name in ("SASRec", "DGSR"):
            seconds, full, uni = train_and_test(model_name, dataset_name, args)
            rows.append((dataset_name, model_name, seconds, full, uni))
            print(
                f"[{dataset_name}] {model_name}: {seconds:.1f} s/epoch; full NDCG@10 {full['ndcg@10']:.4f} "
                f"HR@10 {full['hit@10']:.4f}; uni100 NDCG@10 {uni['ndcg@10']:.4f} HR@10 {uni['hit@10']:.4f}",
                flush=True,
            )

    print("\n| dataset | model | s/epoch | full NDCG@10 | full HR@10 | uni100 NDCG@10 | uni100 HR@10 |")
    print("|---|---|---|---|---|---|---|")
    for dataset_name, model_name, seconds, full, uni in rows:
        print(
            f"| {dataset_name} | {model_name} | {seconds:.1f} | {full['ndcg@10']:.4f} | {full['hit@10']:.4f} "
            f"| {uni['ndcg@10']:.4f} | {uni['hit@10']:.4f} |"
        )
    for dataset_name in args.datasets:
        times = {m: s for d, m, s, _, _ in rows if d == dataset_name}
        print(f"{dataset_name}: DGSR / SASRec seconds per epoch = {times['DGSR'] / times['SASRec']:.1f}x")


if __name__ == "__main__":
    main()
