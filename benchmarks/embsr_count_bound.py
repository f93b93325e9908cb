"""How much can the operation signal of ``synthetic`` give? Count models on the training split.

Numpy only, no model: the micro-behaviour rows are merged into macro items as the package does
(consecutive rows on one item within a session), each user's last macro item is the test target
and the one before it the validation target (RecBole's leave-one-out split), and every earlier
transition is training data. Ranked on the validation targets (full ranking, NDCG@10):

* ``last item``: counts of next item given the last input item (what an op-blind model can learn
  from first-order transitions);
* ``last item + op slot``: counts given the last item and the successor slot its operation run
  selects (:func:`recbole_ext.data.synthetic.successor_slot`), backed off to the above;
* the same two rankings built from the generator's true co-visit graph instead of counts.

For the targets that follow the graph it also prints how often the right-slot successor is ranked
above both other successors (chance: 1/3), to compare with a trained model.

    python benchmarks/embsr_count_bound.py [--dataset synthetic] [--output PAGE]
"""

import argparse
import os
import sys

import numpy as np
import pandas as pd

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from recbole_ext.data.synthetic import OPERATION_PATTERNS, SyntheticConfig, generate, successor_slot  # noqa: E402


def macro_items(inter_path):
    df = pd.read_csv(inter_path, sep="\t")
    df.columns = [c.split(":")[0] for c in df.columns]
    df = df.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    key = df[["user_id", "session_id", "item_id"]].to_numpy()
    new = np.ones(len(df), dtype=bool)
    new[1:] = (key[1:] != key[:-1]).any(1)
    df["macro"] = np.cumsum(new) - 1
    macro = df.groupby("macro").agg(user=("user_id", "first"), item=("item_id", "first"), run=("op", tuple))
    macro["slot"] = macro.run.map(successor_slot)
    return macro


def transitions(macro):
    """(previous item, its slot, next item) of every transition: training ones, and the one into
    each user's validation target; the transition into the test target is never read."""
    position = macro.groupby("user", sort=False).cumcount().to_numpy()
    length = macro.groupby("user", sort=False).item.transform("size").to_numpy()
    prev_item, prev_slot = macro.item.shift(1), macro.slot.shift(1)
    frame = pd.DataFrame({"prev": prev_item, "slot": prev_slot, "next": macro.item})
    train = frame[(position >= 1) & (position <= length - 3)]
    valid = frame[(position >= 1) & (position == length - 2)]
    return [part.astype(int).reset_index(drop=True) for part in (train, valid)]


def ndcg_at_10(scores, targets):
    scores = scores.copy()
    scores[:, 0] = -np.inf
    rank = (scores > scores[np.arange(len(targets)), targets][:, None]).sum(1)
    return np.where(rank < 10, 1 / np.log2(rank + 2), 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "benchmarks", "EMBSR_COUNT_BOUND.md"),
                        help="the page this script writes (its figures, and the command)")
    args = parser.parse_args()
    lines = []
    macro = macro_items(os.path.join(REPO_ROOT, "dataset_atomic", args.dataset, f"{args.dataset}.inter"))
    train, valid = transitions(macro)
    n_items = int(macro.item.max()) + 1
    popularity = np.bincount(train.next, minlength=n_items).astype(float)
    tie_break = 1e-6 * popularity / popularity.max()  # ties go to the more popular item
    by_item = np.zeros((n_items, n_items))
    np.add.at(by_item, (train.prev, train.next), 1)
    by_item_slot = np.zeros((n_items, 3, n_items))
    np.add.at(by_item_slot, (train.prev, train.slot, train.next), 1)
    prev, slot, target = valid.prev.to_numpy(), valid.slot.to_numpy(), valid.next.to_numpy()
    rows = np.arange(len(valid))
    scores = {
        "last item (counts)": by_item[prev] + tie_break,
        "last item + op slot (counts)": by_item_slot[prev, slot] + 1e-3 * by_item[prev] + tie_break,
    }
    if args.dataset == "synthetic":  # the shipped dataset is the generator's default
        successors = generate(SyntheticConfig()).successors
        slot_share = np.zeros(3)  # how often each successor slot is chosen, from the generator's patterns
        np.add.at(slot_share, [successor_slot(run) for run, _ in OPERATION_PATTERNS], [p for _, p in OPERATION_PATTERNS])
        blind, aware = np.tile(tie_break, (len(valid), 1)), np.tile(tie_break, (len(valid), 1))
        for k in range(3):
            blind[rows, successors[prev, k]] += slot_share[k]
        aware[rows, successors[prev, slot]] += 1
        scores["last item (true graph)"], scores["last item + op slot (true graph)"] = blind, aware
    lines.append(f"{args.dataset}: {len(train)} training transitions, {len(valid)} validation targets")
    for name, score in scores.items():
        line = f"  {name:34s} valid NDCG@10 {ndcg_at_10(score, target).mean():.4f}"
        if args.dataset == "synthetic":
            right = score[rows, successors[prev, slot]]
            others = np.stack([score[rows, successors[prev, k]] for k in range(3)], 1)
            wrong = np.where(np.arange(3)[None] == slot[:, None], -np.inf, others).max(1)
            follows = target == successors[prev, slot]
            line += f"   right-slot successor above both others: {np.mean((right > wrong)[follows]):.3f}"
        lines.append(line)
    print("\n".join(lines))
    command = "python benchmarks/embsr_count_bound.py" + ("" if args.dataset == "synthetic" else f" --dataset {args.dataset}")
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("# Count-model bounds of the operation signal\n\nWritten by `benchmarks/embsr_count_bound.py`; "
                f"nothing here is typed by hand.\n\n- command: `{command}`\n\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
