"""QuerySeqRec against SASRec on ``synthetic`` and ``synthetic-weakq``: quality with the split that
explains it (test examples whose last input event is a query vs an item), speed, augmentation
cost, and the memory of one training step with a million items (sampled vs full softmax).

    OMP_NUM_THREADS=1 python benchmarks/bench_queryseqrec.py --skip-memory            # quality
    python benchmarks/bench_queryseqrec.py --datasets synthetic-weakq --seeds 2020 2021 2022 \
        --rows SASRec heterogeneous gated --json out.json --skip-memory
    python benchmarks/bench_queryseqrec.py --skip-quality   # memory only

Quality: every row (``ROWS``: SASRec and each QuerySeqRec variant) with the same dimensions,
learning rate, epoch cap, early stopping on validation NDCG@10, seed, split (leave-one-out) and
full-ranking metrics; the figures are the test results of the best validation epoch, per seed
and as mean +- std over seeds. Beside all test examples, NDCG@10 on the examples whose last
input event is a query (``query_ended``) and on those whose last input event is an item
(``item_ended``), computed with ``recbole_ext.data.dataset.query_dataset.last_event_is_query``
and ``split_by_last_event`` from per-example ranks of the target (the per-example mean equals
RecBole's NDCG@10; checked). The augmentation time is measured inside the batch transform.

How the default was chosen (validation only; 3 seeds, both datasets, run as three processes
side by side on the shared 2-core machine, about 15 minutes):

    python benchmarks/bench_queryseqrec.py --datasets synthetic synthetic-weakq --seeds 2020 \
        --rows SASRec heterogeneous gated "gated w/o A" "gated b-4" --epochs 20 \
        --stopping-step 3 --lr 5e-3 --max-len 10 --skip-memory --json out-2020.json
    (the same for 2021 and 2022), then --summarize out-*.json

Issue 16's figure page, benchmarks/QSR_WEAKQ.md (+ .json): rows SASRec, QuerySeqRec (defaults)
and heterogeneous (the paper's), test NDCG@10 on all / query-ended / item-ended examples, mean
+- std over seeds, and a paired Wilcoxon test against SASRec over (test user, seed) pairs; one
process per dataset and seed (each a few minutes under the shared core's lock), then merged:

    for d in synthetic-weakq synthetic; do for s in 2020 2021 2022; do
      python benchmarks/bench_queryseqrec.py --datasets $d --seeds $s --rows SASRec QuerySeqRec \
        heterogeneous --epochs 100 --stopping-step 3 --lr 5e-3 --max-len 10 --skip-memory \
        --json page-$d-$s.json; done; done
    python benchmarks/bench_queryseqrec.py --summarize page-*.json --page benchmarks/QSR_WEAKQ \
        --epochs 100 --stopping-step 3 --lr 5e-3 --max-len 10

Issue 16's rare-word rows (``gated mwc<k>``: min_word_count k, ``gated wd<p>``: word_dropout p,
``gated noword``: every word mapped to the OOV word, ``gated mwc0``: both off whatever the
defaults), measured on synthetic-weakq, one process per seed (figures in QuerySeqRec.yaml; on
synthetic no word is rare and these rows are the default model exactly):

    for s in 2020 2021 2022; do
      python benchmarks/bench_queryseqrec.py --datasets synthetic-weakq --seeds $s --rows SASRec \
        "gated mwc0" "gated mwc2" "gated mwc4" "gated mwc8" "gated noword" --epochs 100 \
        --stopping-step 3 --lr 5e-3 --max-len 10 --skip-memory --json sel-$s.json; done
    python benchmarks/bench_queryseqrec.py --summarize sel-*.json --epochs 100 --stopping-step 3 \
        --lr 5e-3 --max-len 10

``--page-rows`` adds such rows to the figure page (paired against SASRec like the others).

Memory: each variant runs in a fresh process; one Adam step on a batch of 128 sequences of 50
events, with the peak resident memory (``ru_maxrss``) reported before and after the step.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from common import evaluation_settings  # noqa: E402  (benchmarks/common.py)

# label -> (model, config overrides); "QuerySeqRec" is the package default (QuerySeqRec.yaml)
ROWS = {
    "SASRec": ("SASRec", {}),
    "QuerySeqRec": ("QuerySeqRec", {}),
    # the paper's model: the heterogeneous sequence, rare-word switches off whatever the defaults
    "heterogeneous": ("QuerySeqRec", {"query_fusion": "heterogeneous", "min_word_count": 0,
                                      "word_dropout": 0.0}),
    # rare-word regularisation of the queries (issue 16), on the gated form; "gated mwc0" is the
    # gated form with both switches off whatever the defaults (the default before issue 16)
    "gated mwc0": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "min_word_count": 0, "word_dropout": 0.0}),
    **{f"gated mwc{k}": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "min_word_count": k,
                                         "word_dropout": 0.0}) for k in (2, 4, 8)},
    **{f"gated wd{p}": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "min_word_count": 0,
                                        "word_dropout": p}) for p in (0.1, 0.2, 0.4)},
    # every word below the count: a query is reduced to "a query was issued" (its event type)
    "gated noword": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "min_word_count": 10 ** 9,
                                     "word_dropout": 0.0}),
    "gated mwc4 wd0.1": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "min_word_count": 4,
                                         "word_dropout": 0.1}),
    "gated": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint"}),
    # issue 16: the item side trained as SASRec first, then the query side on it frozen
    "gated 2stage": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "two_stage",
                                     "stage_two_word_init": "random"}),
    "gated joint": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint"}),
    "gated 2stage ft": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "two_stage_fine_tune",
                                        "stage_two_word_init": "random"}),
    "gated 2stage ft li": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "two_stage_fine_tune",
                                           "stage_two_word_init": "linked_items"}),
    "gated 2stage li": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "two_stage",
                                        "stage_two_word_init": "linked_items"}),
    "gated 2stage ft aux1": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "two_stage_fine_tune",
                                             "stage_two_word_init": "random", "item_stream_loss_weight": 1.0}),
    "gated w/o A": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "augmentation": "none"}),
    "gated b-4": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "gate_bias_init": -4.0}),
    "gated aux1": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "item_stream_loss_weight": 1.0}),
    "gated sd0.3": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "stream_dropout": 0.3}),
    "gated aux1 sd0.3": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "item_stream_loss_weight": 1.0,
                                         "stream_dropout": 0.3}),
    "gated aux1 w/o A": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "item_stream_loss_weight": 1.0,
                                         "augmentation": "none"}),
    "gated iso": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "item_stream_loss_weight": 1.0,
                                  "item_stream_isolation": "table"}),
    "gated iso sd0.3": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "item_stream_loss_weight": 1.0,
                                        "item_stream_isolation": "table", "stream_dropout": 0.3}),
    "gated deep": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "item_stream_loss_weight": 1.0,
                                   "query_stream_loss_weight": 1.0}),
    "gated iso-stream": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "item_stream_loss_weight": 1.0,
                                         "item_stream_isolation": "stream"}),
    "gated b-4 sd0.3": ("QuerySeqRec", {"query_fusion": "gated", "training_schedule": "joint", "gate_bias_init": -4.0,
                                        "stream_dropout": 0.3}),
    "w/o A": ("QuerySeqRec", {"augmentation": "none"}),
    "w/o Q": ("QuerySeqRec", {"use_queries": False}),
}


def per_example_metrics(model, data, k=10):
    """NDCG@k and HR@k of every example of a full-sort sequential evaluation loader, in the
    dataset's order (the padding item is never a candidate, as in RecBole)."""
    import torch

    ndcg, hit = [], []
    model.eval()
    with torch.no_grad():
        for interaction, _, _, positive_i in data:
            scores = model.full_sort_predict(interaction).view(len(interaction), -1).clone()
            scores[:, 0] = -float("inf")
            target = scores.gather(1, positive_i.view(-1, 1))
            rank = (scores > target).sum(1).double()
            hit.append((rank < k).double())
            ndcg.append(torch.where(rank < k, 1.0 / torch.log2(rank + 2.0), 0.0))
    return torch.cat(ndcg), torch.cat(hit)


def query_ended_masks(dataset_name, common):
    """``(valid, test)`` masks of the examples whose last input event is a query, and the test
    targets (every row's test examples are checked against them)."""
    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset
    from recbole_ext.data.dataset.query_dataset import last_event_is_query

    config = Config("QuerySeqRec", dataset_name, config_dict=dict(common), read_command_line=False)
    _, valid, test = create_dataset(config).build()
    return last_event_is_query(valid.inter_feat), last_event_is_query(test.inter_feat), \
        test.inter_feat[config["ITEM_ID_FIELD"]].clone()


def train_row(model_name, dataset_name, config_dict, masks):
    """Train one row to its best validation epoch; its metrics with the query/item split."""
    import torch
    from recbole.utils import init_seed

    from recbole_ext import registry
    from recbole_ext.config import Config
    from recbole_ext.data import create_dataset, data_preparation
    from recbole_ext.data.dataset.query_dataset import split_by_last_event

    config = Config(model_name, dataset_name, config_dict=config_dict, read_command_line=False)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = registry.get_model(model_name)(config, train_data._dataset)
    trainer = registry.get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    start = time.perf_counter()
    _, valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    seconds = time.perf_counter() - start
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    valid_mask, test_mask, targets = masks
    if not torch.equal(test_data._dataset.inter_feat[config["ITEM_ID_FIELD"]], targets):
        raise RuntimeError(f"{model_name}: test targets differ from QuerySeqRec's")
    ndcg, hit = per_example_metrics(trainer.model, test_data)
    if abs(float(ndcg.mean()) - test_result["ndcg@10"]) > 1e-3:
        raise RuntimeError(f"per-example NDCG@10 {float(ndcg.mean())} != RecBole's "
                           f"{test_result['ndcg@10']}")
    valid_ndcg, _ = per_example_metrics(trainer.model, valid_data)
    epochs = len(trainer.train_epoch_seconds)
    stage_epochs = getattr(trainer, "stage_epochs", None) or [epochs]
    users = test_data._dataset.inter_feat[config["USER_ID_FIELD"]]
    return {
        # per test example (dataset order): for the paired tests of the figure page
        "test_per_example": {"user": users.tolist(), "ndcg@10": ndcg.tolist(),
                             "query_ended": test_mask.bool().tolist()},
        "valid_ndcg@10": valid_result["ndcg@10"],
        "valid": split_by_last_event(valid_ndcg, valid_mask),
        "test": split_by_last_event(ndcg, test_mask),
        "test_hit": split_by_last_event(hit, test_mask),
        "epochs_trained": epochs,
        "stage_epochs": stage_epochs,  # per training stage (two_stage: items, queries)
        "seconds_per_epoch": seconds / max(epochs, 1),
    }


def quality(args):
    import recbole_ext  # noqa: F401  (compat shims)
    from recbole_ext.data.dataloader import query_augmentation

    spent = {"seconds": 0.0}  # time inside the augmentation transform
    original_call = query_augmentation.QueryGraphAugmentation.__call__

    def timed_call(self, dataset, interaction):
        start = time.perf_counter()
        result = original_call(self, dataset, interaction)
        spent["seconds"] += time.perf_counter() - start
        return result

    query_augmentation.QueryGraphAugmentation.__call__ = timed_call
    checkpoints = tempfile.mkdtemp(prefix="bench-qsr-")
    results = {}
    for dataset_name in args.datasets:
        for seed in args.seeds:
            common = {
                "epochs": args.epochs, "hidden_size": args.hidden, "inner_size": 2 * args.hidden,
                "n_layers": 2, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": args.max_len,
                "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "train_batch_size": 256,
                "learning_rate": args.lr, "stopping_step": args.stopping_step,
                "train_neg_sample_args": None, "loss_type": "CE",
                **evaluation_settings(seed=seed, state="ERROR", eval_batch_size=2048,
                                      checkpoint_dir=checkpoints),
            }
            masks = query_ended_masks(dataset_name, common)
            for label in args.rows:
                model_name, extra = ROWS[label]
                spent["seconds"] = 0.0
                row = train_row(model_name, dataset_name, dict(common, **extra), masks)
                row["augmentation_seconds"] = spent["seconds"]
                results.setdefault(dataset_name, {}).setdefault(label, {})[seed] = row
                print(json.dumps({"dataset": dataset_name, "row": label, "seed": seed, **row}),
                      flush=True)
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump(results, f, indent=1)
    summarize(results, args)
    if args.page:
        write_page(results, args)


def _mean_std(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return f"{mean:.4f} +- {std:.4f}"


def summarize(results, args):
    """Mean +- std over seeds of every row: validation NDCG@10, test NDCG@10 on all examples and
    on the query-ended / item-ended groups, and each row against SASRec."""
    for dataset_name, rows in results.items():
        seeds = sorted({seed for row in rows.values() for seed in row})
        print(f"\n{dataset_name}: {len(seeds)} seeds {seeds}, hidden {args.hidden}, max_len "
              f"{args.max_len}, lr {args.lr}, at most {args.epochs} epochs, early stopping "
              f"{args.stopping_step} on valid NDCG@10")
        any_row = next(iter(next(iter(rows.values())).values()))
        print(f"test examples whose last input event is a query: "
              f"{100 * any_row['test']['query_share']:.1f}%")
        print(f"| row | valid NDCG@10 | test NDCG@10 all | query-ended | item-ended | all vs SASRec |")
        print("|---|---|---|---|---|---|")
        base = rows.get("SASRec")
        for label, per_seed in rows.items():
            cells = [_mean_std([r["valid_ndcg@10"] for r in per_seed.values()])]
            cells += [_mean_std([r["test"][group] for r in per_seed.values()])
                      for group in ("all", "query_ended", "item_ended")]
            if base and label != "SASRec":
                ratio = [per_seed[s]["test"]["all"] / base[s]["test"]["all"] - 1
                         for s in per_seed if s in base]
                cells.append(f"{100 * sum(ratio) / len(ratio):+.1f}%")
            else:
                cells.append("")
            print(f"| {label} | " + " | ".join(cells) + " |")


PAGE_ROWS = ["SASRec", "QuerySeqRec", "heterogeneous"]
GROUPS = ("all", "query_ended", "item_ended")


def paired_groups(row, base):
    """Per group, the paired per-example NDCG@10 of ``row`` and ``base`` pooled over their common
    seeds, each (test user, seed) a pair (users aligned by id within a seed)."""
    import numpy as np

    from recbole_ext.stats import align_users

    pooled = {group: ([], []) for group in GROUPS}
    for seed in sorted(set(row) & set(base)):
        mine, theirs = row[seed]["test_per_example"], base[seed]["test_per_example"]
        aligned = align_users(mine["user"], mine["ndcg@10"], theirs["user"], theirs["ndcg@10"])
        masks = align_users(mine["user"], mine["query_ended"], theirs["user"], theirs["query_ended"])
        if aligned is None or masks is None or not np.array_equal(*masks):
            raise RuntimeError(f"seed {seed}: the rows' test examples differ")
        query_ended = masks[0].astype(bool)
        for group, keep in (("all", slice(None)), ("query_ended", query_ended),
                            ("item_ended", ~query_ended)):
            pooled[group][0].append(aligned[0][keep])
            pooled[group][1].append(aligned[1][keep])
    return {group: (np.concatenate(a), np.concatenate(b)) for group, (a, b) in pooled.items()}


def _stage_epochs(row):
    """Epochs of each training stage of one run (the epoch cap applies per stage)."""
    return row.get("stage_epochs") or [row["epochs_trained"]]


def page_figures(results, args):
    """The figure page's numbers: per dataset and row, test NDCG@10 mean and std over seeds per
    group, epochs trained per seed (and whether any hit the cap), and against SASRec the
    relative change of the pooled mean and the paired Wilcoxon p-value over (user, seed) pairs."""
    from recbole_ext.stats import mean_std, paired_p_value, relative_change

    figures = {}
    for dataset_name, rows in results.items():
        base = rows["SASRec"]
        extra = [r for r in getattr(args, "page_rows", None) or [] if r not in PAGE_ROWS]
        for label in [r for r in PAGE_ROWS + extra if r in rows]:
            per_seed = rows[label]
            entry = {"seeds": sorted(int(s) for s in per_seed),
                     # per seed: the epochs, or "items+queries" for two_stage's two stages
                     "epochs_trained": ["+".join(map(str, _stage_epochs(per_seed[s])))
                                        for s in sorted(per_seed)],
                     "valid_ndcg@10": mean_std([r["valid_ndcg@10"] for r in per_seed.values()])}
            entry["hit_cap"] = any(e >= args.epochs for r in per_seed.values()
                                   for e in _stage_epochs(r))
            for group in GROUPS:
                entry[group] = dict(zip(("mean", "std"), mean_std(
                    [r["test"][group] for r in per_seed.values()])))
            if label != "SASRec":
                for group, (values, baseline) in paired_groups(per_seed, base).items():
                    entry[group].update(change=relative_change(values, baseline),
                                        p_value=paired_p_value(values, baseline, "wilcoxon"),
                                        pairs=len(values))
            entry["query_share"] = next(iter(per_seed.values()))["test"]["query_share"]
            figures.setdefault(dataset_name, {})[label] = entry
    return figures


def verdicts(figures, alpha=0.05):
    """The issue's required results, each with whether it holds on these figures. 'Level'
    means not significantly below SASRec (mean not below, or paired p >= alpha); 'below' means
    a lower mean with p < alpha."""
    def level(entry, group):
        return entry[group]["change"] >= 0 or entry[group]["p_value"] >= alpha

    def below(entry, group):
        return entry[group]["change"] < 0 and entry[group]["p_value"] < alpha

    lines = []
    weak, plain = figures.get("synthetic-weakq"), figures.get("synthetic")
    if weak:
        for group in ("all", "query_ended"):
            lines.append((f"synthetic-weakq, {group}: default QuerySeqRec at least level with SASRec",
                          level(weak["QuerySeqRec"], group)))
            lines.append((f"synthetic-weakq, {group}: heterogeneous (paper) below SASRec",
                          below(weak["heterogeneous"], group)))
    if plain:
        lines.append(("synthetic, all: default QuerySeqRec >= +15% NDCG@10 over SASRec",
                      plain["QuerySeqRec"]["all"]["change"] >= 0.15))
    return lines


def _yaml_defaults():
    import yaml

    with open(os.path.join(REPO_ROOT, "properties", "model", "QuerySeqRec.yaml")) as f:
        return yaml.safe_load(f)


def _default_switches():
    """The package defaults of QuerySeqRec's query switches, as the page states them."""
    defaults = _yaml_defaults()
    return ", ".join(f"`{key}: {defaults[key]}`" for key in
                     ("query_fusion", "training_schedule", "stage_two_word_init", "min_word_count",
                      "word_dropout"))


def as_default_row(results, label):
    """``results`` with row ``label`` shown as the page's QuerySeqRec row (the default), checked:
    every override of that row must be the yaml's default value, so the row IS the default
    model (e.g. runs made before the default changed, under an explicit label)."""
    model, extra = ROWS[label]
    defaults = _yaml_defaults()
    differ = {k: v for k, v in extra.items() if defaults.get(k) != v}
    if model != "QuerySeqRec" or differ:
        raise SystemExit(f"--default-row {label!r} is not QuerySeqRec's default: {differ}")
    renamed = {}
    for dataset_name, rows in results.items():
        if "QuerySeqRec" in rows:
            raise SystemExit(f"--default-row: {dataset_name} already has a QuerySeqRec row")
        renamed[dataset_name] = {("QuerySeqRec" if r == label else r): v for r, v in rows.items()}
    return renamed


def _overrides(label):
    model, extra = ROWS[label]
    return ", ".join(f"{k}: {v}" for k, v in extra.items()) or f"{model} defaults"


def write_page(results, args):
    """``<page>.md`` and ``<page>.json``: the figure page of issue 16 (see ``page_figures``)."""
    figures = page_figures(results, args)
    checks = verdicts(figures)
    extra_rows = [r for r in getattr(args, "page_rows", None) or [] if r not in PAGE_ROWS
                  and any(r in rows for rows in figures.values())]
    command = args.command or "python benchmarks/bench_queryseqrec.py " + " ".join(sys.argv[1:])
    out = [
        "# QuerySeqRec on weak queries (issue 16)",
        "",
        "Written by `benchmarks/bench_queryseqrec.py --page` (do not edit by hand). Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Rows: SASRec; QuerySeqRec with its defaults ({_default_switches()}: this package's "
        f"robust form); QuerySeqRec `query_fusion: heterogeneous` (the paper's model, otherwise the same "
        f"defaults, graph augmentation included, rare-word switches off)"
        + ("; then " + ", ".join(f"`{r}` ({_overrides(r)})" for r in extra_rows) if extra_rows
           else "") + f". Same hyper-parameters for every row: hidden "
        f"{args.hidden}, inner {2 * args.hidden}, 2 layers, 2 heads, dropout 0.2/0.2, "
        f"MAX_ITEM_LIST_LENGTH {args.max_len}, batch 256, full-softmax CE, Adam lr {args.lr} (chosen "
        f"on validation for the default, see QuerySeqRec.yaml), at most {args.epochs} epochs, early "
        f"stopping after {args.stopping_step} epochs without a better validation NDCG@10; test "
        f"figures of the best validation epoch, leave-one-out split, full ranking, CPU.",
        "",
        "NDCG@10 on all test examples and on the examples whose last input event is a query "
        "(query-ended) or an item (item-ended): mean ± std over seeds. Against SASRec: the "
        "change of the mean over (test user, seed) pairs and the two-sided paired Wilcoxon "
        "signed-rank p-value over those pairs (`recbole_ext/stats.py`).",
        "",
    ]
    for dataset_name, rows in figures.items():
        any_entry = next(iter(rows.values()))
        out += [f"## {dataset_name}", "",
                f"Seeds {any_entry['seeds']}; {100 * any_entry['query_share']:.1f}% of the test "
                f"examples are query-ended.", "",
                "| row | epochs (per seed) | valid NDCG@10 | test all | query-ended | item-ended "
                "| vs SASRec all (p) | query-ended (p) | item-ended (p) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for label, entry in rows.items():
            epochs = ", ".join(map(str, entry["epochs_trained"])) + (" (cap hit)" if entry["hit_cap"] else "")
            cells = [label, epochs, _fmt(*entry["valid_ndcg@10"])]
            cells += [_fmt(entry[g]["mean"], entry[g]["std"]) for g in GROUPS]
            for group in GROUPS:
                if "change" in entry[group]:
                    cells.append(f"{100 * entry[group]['change']:+.1f}% (p={entry[group]['p_value']:.3g})")
                else:
                    cells.append("")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    capped = [f"{d}/{r}" for d, rows in figures.items() for r, e in rows.items() if e["hit_cap"]]
    out += ["## Required results", "",
            "'Level' = not significantly below SASRec (mean not below, or p >= 0.05); 'below' = "
            "lower mean with p < 0.05.", ""]
    out += [f"- {text}: **{'holds' if ok else 'does NOT hold'}**" for text, ok in checks]
    out += ["", "Runs that hit the epoch cap: " + (", ".join(capped) if capped else "none") + ".", ""]
    with open(args.page + ".md", "w") as f:
        f.write("\n".join(out))
    with open(args.page + ".json", "w") as f:
        json.dump({"command": command, "settings": {
            "hidden": args.hidden, "max_len": args.max_len, "lr": args.lr, "epochs": args.epochs,
            "stopping_step": args.stopping_step}, "figures": figures,
            "required": [{"result": text, "holds": ok} for text, ok in checks]}, f, indent=1)
    print(f"wrote {args.page}.md and {args.page}.json")


def _fmt(mean, std):
    return "" if mean is None else f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


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
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "synthetic-weakq"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--stopping-step", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--json", default=None, help="write the per-seed results here")
    parser.add_argument("--summarize", nargs="+", default=None,
                        help="only print the tables of these --json files (merged)")
    parser.add_argument("--page", default=None,
                        help="also write the figure page PAGE.md and PAGE.json (rows SASRec, "
                             "QuerySeqRec, heterogeneous; with --summarize: from those files)")
    parser.add_argument("--page-rows", nargs="+", default=[], choices=list(ROWS),
                        help="rows shown on the page after SASRec, QuerySeqRec, heterogeneous "
                             "(where the results hold them)")
    parser.add_argument("--default-row", default=None, choices=list(ROWS),
                        help="with --summarize: show this row as the page's QuerySeqRec (default) "
                             "row; its overrides must all be the yaml's defaults")
    parser.add_argument("--command", default=None,
                        help="the command line the page states (default: this one)")
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
    if args.summarize:
        merged = {}
        for path in args.summarize:
            with open(path) as f:
                for dataset_name, rows in json.load(f).items():
                    for label, per_seed in rows.items():
                        merged.setdefault(dataset_name, {}).setdefault(label, {}).update(per_seed)
        if args.default_row:
            merged = as_default_row(merged, args.default_row)
        summarize(merged, args)
        if args.page:
            write_page(merged, args)
        return
    if not args.skip_quality:
        quality(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
