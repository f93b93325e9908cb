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

    python benchmarks/embsr_count_bound.py [--dataset synthetic]
"""

import argparse
import os
import sys

import numpy as np
import pandas as pd

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from recbole_ext.data.synthetic import SyntheticConfig, generate, successor_slot  # noqa: E402


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
    train, valid = [], []
    for _, group in macro.groupby("user", sort=False):
        items, slots = group.item.to_numpy(), group.slot.to_numpy()
        n = len(items)
        for t in range(1, n - 1):  # the last transition (test) is never read
            (train if t <= n - 3 else valid).append((items[t - 1], slots[t - 1], items[t]))
    return [pd.DataFrame(rows, columns=["prev", "slot", "next"]) for rows in (train, valid)]


def ndcg_at_10(scores, targets):
    scores = scores.copy()
    scores[:, 0] = -np.inf
    rank = (scores > scores[np.arange(len(targets)), targets][:, None]).sum(1)
    return np.where(rank < 10, 1 / np.log2(rank + 2), 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synthetic")
    args = parser.parse_args()
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
        slot_share = [0.25, 0.35, 0.40]  # cart/buy, detail/comments, bare view (OPERATION_PATTERNS)
        blind, aware = np.tile(tie_break, (len(valid), 1)), np.tile(tie_break, (len(valid), 1))
        for k in range(3):
            blind[rows, successors[prev, k]] += slot_share[k]
        aware[rows, successors[prev, slot]] += 1
        scores["last item (true graph)"], scores["last item + op slot (true graph)"] = blind, aware
    print(f"{args.dataset}: {len(train)} training transitions, {len(valid)} validation targets")
    for name, score in scores.items():
        line = f"  {name:34s} valid NDCG@10 {ndcg_at_10(score, target).mean():.4f}"
        if args.dataset == "synthetic":
            right = score[rows, successors[prev, slot]]
            others = np.stack([score[rows, successors[prev, k]] for k in range(3)], 1)
            wrong = np.where(np.arange(3)[None] == slot[:, None], -np.inf, others).max(1)
            follows = target == successors[prev, slot]
            line += f"   right-slot successor above both others: {np.mean((right > wrong)[follows]):.3f}"
        print(line)


if __name__ == "__main__":
    main()
