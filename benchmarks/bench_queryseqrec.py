"""QuerySeqRec against SASRec on ``synthetic``: quality, speed, augmentation cost, and the
memory of one training step with a million items (sampled vs full softmax).

    OMP_NUM_THREADS=1 python benchmarks/bench_queryseqrec.py   # everything (~10 min on 2 cores)
    python benchmarks/bench_queryseqrec.py --skip-quality   # memory only

Quality and speed: SASRec, QuerySeqRec (defaults), QuerySeqRec ``augmentation: none`` ("w/o A")
and QuerySeqRec ``use_queries: False`` ("w/o Q") with the same dimensions, epochs, seed, split
(leave-one-out) and full-ranking metrics; the figures are the test results of the best
validation epoch. The augmentation time is measured inside the batch
transform during QuerySeqRec's own training run.

Memory: each variant runs in a fresh process; one Adam step on a batch of 128 sequences of 50
events, with the peak resident memory (``ru_maxrss``) reported before and after the step.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from common import evaluation_settings  # noqa: E402  (benchmarks/common.py)


def quality_and_speed(args):
    import recbole_ext  # noqa: F401  (compat shims)
    from recbole_ext.data.dataloader import query_augmentation
    from recbole_ext.quick_start import run_single

    # time spent inside the augmentation transform (all phases; valid/test calls are no-ops)
    spent = {"seconds": 0.0}
    original_call = query_augmentation.QueryGraphAugmentation.__call__

    def timed_call(self, dataset, interaction):
        start = time.perf_counter()
        result = original_call(self, dataset, interaction)
        spent["seconds"] += time.perf_counter() - start
        return result

    query_augmentation.QueryGraphAugmentation.__call__ = timed_call
    common = {
        "epochs": args.epochs, "hidden_size": args.hidden, "inner_size": 2 * args.hidden,
        "n_layers": 2, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": args.max_len,
        "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "train_batch_size": 256,
        "learning_rate": 1e-3, "stopping_step": 1000, "train_neg_sample_args": None, "loss_type": "CE",
        **evaluation_settings(state="ERROR", eval_batch_size=2048),
    }
    runs = [("SASRec", "SASRec", {}),
            ("QuerySeqRec", "QuerySeqRec", {}),
            ("QuerySeqRec w/o A", "QuerySeqRec", {"augmentation": "none"}),
            ("QuerySeqRec w/o Q", "QuerySeqRec", {"use_queries": False})]
    results = {}
    for label, model, extra in runs:
        spent["seconds"] = 0.0
        record = run_single(model, args.dataset, config_dict=dict(common, **extra), saved=False,
                            read_command_line=False)
        results[label] = {
            "ndcg@10": record["test_result"]["ndcg@10"],
            "hit@10": record["test_result"]["hit@10"],
            "seconds_per_epoch": record["seconds_per_epoch"],
            "augmentation_seconds_per_epoch": spent["seconds"] / max(record["epochs_trained"], 1),
        }
        print(label, json.dumps(results[label]), flush=True)

    base = results["SASRec"]
    ours, without = results["QuerySeqRec"], results["QuerySeqRec w/o Q"]
    no_augmentation = results["QuerySeqRec w/o A"]
    print(f"\nsynthetic, {args.epochs} epochs, hidden {args.hidden}, max_len {args.max_len}:")
    print(f"{'model':20s} {'NDCG@10':>8s} {'HR@10':>8s} {'s/epoch':>8s}")
    for label, row in results.items():
        print(f"{label:20s} {row['ndcg@10']:8.4f} {row['hit@10']:8.4f} "
              f"{row['seconds_per_epoch']:8.2f}")
    print(f"QuerySeqRec NDCG@10 vs SASRec: {100 * (ours['ndcg@10'] / base['ndcg@10'] - 1):+.1f}%")
    print(f"QuerySeqRec w/o A NDCG@10 vs SASRec: "
          f"{100 * (no_augmentation['ndcg@10'] / base['ndcg@10'] - 1):+.1f}%")
    print(f"w/o Q NDCG@10 vs SASRec: {100 * (without['ndcg@10'] / base['ndcg@10'] - 1):+.1f}%")
    print(f"epoch time QuerySeqRec / SASRec: "
          f"{ours['seconds_per_epoch'] / base['seconds_per_epoch']:.2f}x")
    print(f"augmentation share of QuerySeqRec's epoch: "
          f"{100 * ours['augmentation_seconds_per_epoch'] / ours['seconds_per_epoch']:.1f}%")


def memory_step(softmax_samples, n_items, batch, length, hidden):
    """One training step in this (fresh) process; prints peak RSS before and after."""
    import torch

    import recbole_ext  # noqa: F401
    from recbole_ext.model.sequential_recommender.queryseqrec import QuerySeqRec

    torch.manual_seed(0)
    n_words, n_queries = 5000, 20000

    class LargeCatalogue:
        max_event_list_len = length
        num_words = n_words
        query_words = torch.randint(0, n_words, (n_queries, 5))
        train_item_counts = torch.randint(0, 50, (n_items,))

        def num(self, field):
            return n_items if field == "item_id" else 1000

    config = {
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_",
        "MAX_ITEM_LIST_LENGTH": length, "device": torch.device("cpu"), "n_layers": 2,
        "n_heads": 2, "hidden_size": hidden, "inner_size": 4 * hidden,
        "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "initializer_range": 0.02, "loss_type": "CE",
        "softmax_samples": softmax_samples, "softmax_sampler": "popularity",
        "logq_correction": True,
    }
    model = QuerySeqRec(type("Cfg", (dict,), {"__getitem__": dict.get})(config),
                        LargeCatalogue())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    types = torch.where(torch.rand(batch, length) < 0.3, 2, 1)
    interaction = {
        "event_item_list": torch.where(types == 1, torch.randint(1, n_items, (batch, length)), 0),
        "event_query_list": torch.where(types == 2, torch.randint(1, n_queries, (batch, length)),
                                        0),
        "event_type_list": types, "event_length": torch.full((batch,), length),
        "item_id": torch.randint(1, n_items, (batch,)),
    }
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    loss = model.calculate_loss(interaction)
    loss.backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"softmax_samples": softmax_samples, "peak_rss_before_mib": before,
                      "peak_rss_after_mib": after, "step_mib": after - before,
                      "step_seconds": seconds}))


def memory(args):
    print(f"\none training step, {args.items:,} items, batch {args.batch}, {args.length} events,"
          f" hidden {args.memory_hidden} (Adam, fresh process each):")
    for samples in (args.samples, 0):
        child = subprocess.run(
            [sys.executable, __file__, "--memory-step", str(samples), "--items", str(args.items),
             "--batch", str(args.batch), "--length", str(args.length), "--memory-hidden",
             str(args.memory_hidden)],
            capture_output=True, text=True, check=True,
            env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")))
        row = json.loads(child.stdout.strip().splitlines()[-1])
        name = f"sampled softmax n={samples}" if samples else "full softmax"
        print(f"{name:28s} peak RSS {row['peak_rss_after_mib']:8.0f} MiB "
              f"(+{row['step_mib']:.0f} MiB in the step, model and batch before: "
              f"{row['peak_rss_before_mib']:.0f} MiB), step {row['step_seconds']:.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--memory-hidden", type=int, default=64)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-step", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_step is not None:
        memory_step(args.memory_step, args.items, args.batch, args.length, args.memory_hidden)
        return
    if not args.skip_quality:
        quality_and_speed(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
