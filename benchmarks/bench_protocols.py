"""Every model under every evaluation protocol (issue 15): SASRec, GRU4Rec and the five extension
models, each trained with the same short budget under ``eval_protocol`` next_item, magnn, hugt,
dgsr and embsr, on ``synthetic``.

Reports test Recall@10 and NDCG@10 of the best validation epoch (by NDCG@10). Recall@10 is Hit@10
where a row has one target (next_item, hugt, dgsr, embsr) and the set recall of MA-GNN's protocol
under magnn; dgsr ranks each target among 100 fixed negatives, the others rank all items. The
target digest column shows that all models of a protocol were scored on the same targets.
A short, untuned budget: a smoke-level table, not a ranking of the models.

    python benchmarks/bench_protocols.py                          # about 15 minutes on 2 cores
    python benchmarks/bench_protocols.py --epochs 1 --models SASRec GRU4Rec   # quicker look
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_ext.quick_start import run_single  # noqa: E402
from common import evaluation_settings  # noqa: E402  (benchmarks/common.py)

MODELS = ["SASRec", "GRU4Rec", "QuerySeqRec", "HUGT", "EMBSR", "MAGNN", "DGSR"]
PROTOCOLS = ["next_item", "magnn", "hugt", "dgsr", "embsr"]
HERE = os.path.dirname(os.path.abspath(__file__))


def config_for(args, protocol, checkpoint_dir):
    return {
        "eval_protocol": protocol,
        "epochs": args.epochs,
        "stopping_step": 3,
        "hidden_size": args.dim,
        "embedding_size": args.dim,
        "inner_size": 2 * args.dim,
        "n_layers": 1,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "train_batch_size": args.batch_size,
        "learning_rate": 1e-3,
        **evaluation_settings(seed=args.seed, checkpoint_dir=checkpoint_dir, metrics=("Recall", "NDCG")),
    }


def table(rows, args):
    lines = [
        "# Every model under every evaluation protocol (synthetic)",
        "",
        f"Written by `python benchmarks/bench_protocols.py --epochs {args.epochs} --dim {args.dim} "
        f"--max-len {args.max_len} --batch-size {args.batch_size} --seed {args.seed}`.",
        f"Budget: {args.epochs} epochs per run (early stop after 3 validations without improvement), "
        f"d = {args.dim}, one layer, Adam 1e-3, one seed, untuned: a smoke test of the protocols, "
        "not a ranking of the models. Test metrics of the best validation epoch (NDCG@10); seconds "
        "are wall time on a shared 2-core machine.",
        "",
        "| protocol | model | test Recall@10 | test NDCG@10 | valid NDCG@10 | wall s | test targets (digest) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['protocol']} | {row['model']} | failed: {row['error']} | | | | |")
            continue
        lines.append(
            f"| {row['protocol']} | {row['model']} | {row['test']['recall@10']:.4f} | {row['test']['ndcg@10']:.4f} | "
            f"{row['valid'].get('ndcg@10', float('nan')):.4f} | {row['seconds']:.0f} | `{row['digest']}` |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--protocols", nargs="+", default=PROTOCOLS, choices=PROTOCOLS)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--output", default=os.path.join(HERE, "PROTOCOLS.md"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as checkpoint_dir:
        for protocol in args.protocols:
            for model in args.models:
                started = time.time()
                row = {"protocol": protocol, "model": model}
                try:
                    record = run_single(model, "synthetic", config_dict=config_for(args, protocol, checkpoint_dir),
                                        saved=True, read_command_line=False)
                    row.update(test=record["test_result"], valid=record["best_valid_result"],
                               digest=record["targets_digest"]["test"], seconds=time.time() - started)
                except Exception as error:  # one failing pair must not hide the others
                    row["error"] = f"{type(error).__name__}: {error}".replace("|", "/")[:200]
                rows.append(row)
                print(json.dumps(row), flush=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(table(rows, args))
    with open(os.path.splitext(args.output)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    print(table(rows, args))


if __name__ == "__main__":
    main()
