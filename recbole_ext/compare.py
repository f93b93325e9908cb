"""Side-by-side comparison of several models on one shared setting (RecBole's run_recbole_group).

    python run_recbole_ext.py --model=SASRec,GRU4Rec,QuerySeqRec --dataset=diginetica \
        --baseline=SASRec --repeats=3 --epochs=50

Every model is trained by :func:`recbole_ext.quick_start.run_single` with one shared config: the
same dataset, split, seeds, evaluation mode and metrics. A model's own keys come only from its
``properties/model/<Model>.yaml``; ``--key=value`` overrides apply to every model. Before anything
is trained, the settings that decide the examples and their evaluation (:data:`SHARED_SETTING_KEYS`)
are checked to agree across the models, and every run records a digest of its validation and test
targets (user, target item), so the table can state that all models were scored on the same targets.

One JSON record per (model, seed) lands in ``<output_dir>/runs/``; a rerun skips runs whose record
exists (records are never overwritten), so an interrupted comparison resumes where it stopped. The
default ``output_dir`` is ``comparison/<dataset>-<digest of the shared setting>``: rerunning the
same command finds it again, a different setting gets a folder of its own.
The table (Markdown, CSV, LaTeX) and a bar chart of the main metric are written beside the records.
"""

import csv
import hashlib
import json
import os
import statistics
import sys
import time

import numpy as np
from recbole.config import Config as RecBoleConfig

from recbole_ext import registry

#: Config keys that decide which examples exist, how they are split and how they are scored.
#: They must agree across the compared models (a model yaml must not change them silently).
SHARED_SETTING_KEYS = (
    "eval_args",
    "metrics",
    "topk",
    "valid_metric",
    "seed",
    "repeatable",
    "USER_ID_FIELD",
    "ITEM_ID_FIELD",
    "TIME_FIELD",
    "data_path",
    "benchmark_filename",
    "user_inter_num_interval",
    "item_inter_num_interval",
    "val_interval",
    "rm_dup_inter",
    "filter_inter_by_user_or_item",
    "merge_micro_behaviours",
)

#: Per-model keys worth seeing in the table's header when the models' yamls set them differently
#: (they are each model's own hyper-parameters, so they may differ).
PER_MODEL_KEYS = ("MAX_ITEM_LIST_LENGTH", "epochs", "train_batch_size", "learning_rate", "loss_type", "hidden_size")

TABLE_NAME = "comparison"


class ResumeConflictError(ValueError):
    """A run record in the output folder was made under another shared setting."""


def build_parser():
    """The run's flags (:mod:`recbole_ext.cli`) plus the comparison's own."""
    from recbole_ext.cli import build_parser as build_run_parser

    parser = build_run_parser()
    parser.allow_abbrev = False  # a config key such as --metric must never be taken for --metrics
    parser.add_argument(
        "--baseline", type=str, default=None, help="model the relative change is computed against (default: the first)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="seeds per model: seed, seed+1, ...")
    parser.add_argument(
        "--output_dir",
        type=str,
        default=None,
        help="folder of records and tables (default: comparison/<dataset>-<setting digest>)",
    )
    parser.add_argument(
        "--metric", type=str, default=None, help="main metric of the chart (default: the config's valid_metric)"
    )
    return parser


def parse_overrides(unknown_args):
    """RecBole's ``--key=value`` command-line overrides, typed as RecBole types them."""
    overrides = {}
    for arg in unknown_args:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not key or not sep:
            raise ValueError(f"unrecognised argument '{arg}': config overrides are written --key=value")
        if key in overrides and overrides[key] != value:
            raise ValueError(f"config key '{key}' given twice with different values")
        overrides[key] = value
    # RecBole's own conversion (a function of the dict alone) keeps the typing identical to a run
    return RecBoleConfig._convert_config_dict(None, overrides)


def _file_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def setting_digest(dataset, overrides, config_files):
    """Digest of what all runs share (everything but the seed): names the default output folder
    and tells a resumed run whether a record was made under the same setting."""
    shared = {
        "dataset": dataset,
        "overrides": {k: v for k, v in overrides.items() if k != "seed"},
        "config_files": [[os.path.abspath(f), _file_text(f)] for f in (config_files or [])],
    }
    text = json.dumps(shared, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _split_targets_digest(loader):
    """sha256 of the sorted (user token, target item token) pairs of an evaluation dataloader."""
    dataset = loader._dataset
    users = np.asarray(dataset.id2token(dataset.uid_field, dataset.inter_feat[dataset.uid_field].numpy())).astype(str)
    items = np.asarray(dataset.id2token(dataset.iid_field, dataset.inter_feat[dataset.iid_field].numpy())).astype(str)
    order = np.lexsort((items, users))  # independent of the loader's row order
    digest = hashlib.sha256()
    digest.update("\n".join(users[order]).encode("utf-8"))
    digest.update(b"\0")
    digest.update("\n".join(items[order]).encode("utf-8"))
    return f"{len(order)}:{digest.hexdigest()[:16]}"


def targets_digest(valid_data, test_data):
    """Digest of the validation and test targets, equal for two models iff they are scored on
    the same (user, target item) examples."""
    return {"valid": _split_targets_digest(valid_data), "test": _split_targets_digest(test_data)}


def targets_digest_of_config(config):
    """Build the dataset and dataloaders exactly as a run does and digest their targets."""
    from recbole.utils import init_seed

    from recbole_ext.data import create_dataset, data_preparation

    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    _, valid_data, test_data = data_preparation(config, dataset)
    return targets_digest(valid_data, test_data)


def make_config(model, dataset, config_files, config_dict):
    from recbole_ext.config import Config

    return Config(
        model=model, dataset=dataset, config_file_list=config_files, config_dict=config_dict, read_command_line=False
    )


def check_shared_setting(configs):
    """Raise if the compared models' configs disagree on a key of the shared setting."""
    (first_model, first), *others = configs.items()
    for key in SHARED_SETTING_KEYS:
        for model, config in others:
            if config[key] != first[key]:
                raise ValueError(
                    f"models disagree on '{key}': {first_model} has {first[key]!r}, {model} has {config[key]!r} "
                    f"(set by a model yaml); pass --{key}=... to fix it for all models"
                )


def describe_setting(config, dataset, seeds, overrides, config_files):
    eval_args = config["eval_args"]
    return {
        "dataset": dataset,
        "split": eval_args.get("split"),
        "order": eval_args.get("order"),
        "group_by": eval_args.get("group_by"),
        "eval_mode": eval_args.get("mode"),
        "metrics": [f"{m}@{k}" for m in config["metrics"] for k in config["topk"]],
        "valid_metric": config["valid_metric"],
        "seeds": seeds,
        "overrides": {k: v for k, v in overrides.items() if k != "seed"},
        "config_files": config_files or [],
    }


def run_one(model, dataset, config_files, config_dict, record_file, setting_id):
    """Train one (model, seed) unless its record exists; return the record."""
    from recbole_ext.quick_start import run_single, write_json_atomically

    if os.path.isfile(record_file):
        with open(record_file, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("setting_digest") != setting_id:
            raise ResumeConflictError(
                f"record {record_file} was made under a different setting; "
                "pass another --output_dir (records are never overwritten)"
            )
        print(f"[compare] skipped {model} seed {config_dict['seed']}: record {record_file} exists", flush=True)
        return record
    print(f"[compare] training {model} seed {config_dict['seed']}", flush=True)
    started = time.time()
    record = run_single(
        model, dataset, config_file_list=config_files, config_dict=config_dict, saved=True, read_command_line=False
    )
    record["wall_seconds"] = time.time() - started
    record["seed"] = config_dict["seed"]
    record["setting_digest"] = setting_id
    write_json_atomically(record_file, record)
    return record


def targets_agree(records_by_model):
    """True when, for every seed, all models' runs recorded the same targets digest."""
    by_seed = {}
    for records in records_by_model.values():
        for record in records:
            digest = json.dumps(record.get("targets_digest"), sort_keys=True)
            by_seed.setdefault(record["seed"], set()).add(digest)
    return all(len(digests) == 1 for digests in by_seed.values())


# ----------------------------------------------------------------------------------------------
# The table


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(records_by_model, baseline):
    """One row per model: mean (and std over seeds) of every metric, seconds/epoch, parameters,
    and the relative change of each test metric against ``baseline`` (percent)."""
    metric_names = []
    for records in records_by_model.values():
        for record in records:
            for name in record["test_result"]:
                if name not in metric_names:
                    metric_names.append(name)
    rows = {}
    for model, records in records_by_model.items():
        row = {"model": model, "runs": len(records)}
        for split, key in (("valid", "best_valid_result"), ("test", "test_result")):
            for name in metric_names:
                row[f"{split} {name}"] = _mean_std([r[key].get(name) for r in records])
        row["s/epoch"] = _mean_std([r.get("seconds_per_epoch") for r in records])
        row["parameters"] = (records[0]["num_parameters"], None) if records else (None, None)
        rows[model] = row
    base_row = rows.get(baseline)
    for row in rows.values():
        for name in metric_names:
            value, base = row[f"test {name}"][0], base_row and base_row[f"test {name}"][0]
            change = None if value is None or not base else 100.0 * (value - base) / base
            row[f"test {name} vs {baseline}"] = (change, None)
    return metric_names, list(rows.values())


def table_columns(metric_names, baseline):
    return (
        ["model", "runs"]
        + [f"valid {m}" for m in metric_names]
        + [f"test {m}" for m in metric_names]
        + [f"test {m} vs {baseline}" for m in metric_names]
        + ["s/epoch", "parameters"]
    )


def _format_cell(column, cell):
    if column in ("model", "runs"):
        return str(cell)
    value, std = cell
    if value is None:
        return "-"
    if column == "parameters":
        return f"{int(value):,}"
    if " vs " in column:
        return f"{value:+.2f}%"
    digits = 2 if column == "s/epoch" else 4
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _best_models(rows, columns):
    """Model(s) with the best mean of each metric column (all ranking metrics: bigger is better)."""
    best = {}
    for column in columns:
        if column.startswith(("valid ", "test ")) and " vs " not in column:
            values = [row[column][0] for row in rows if row[column][0] is not None]
            if values:
                best[column] = max(values)
    return best


def setting_lines(setting, baseline, targets_note):
    return [
        f"dataset: {setting['dataset']}",
        f"split: {setting['split']} (order {setting['order']}, group by {setting['group_by']})",
        f"evaluation mode: {setting['eval_mode']}",
        f"metrics: {', '.join(setting['metrics'])} (model selection on {setting['valid_metric']})",
        f"seeds: {', '.join(str(s) for s in setting['seeds'])} (mean ± std over seeds when more than one)",
        f"shared overrides: {setting['overrides'] or 'none'}; config files: {setting['config_files'] or 'none'}",
        f"evaluation targets: {targets_note}",
        f"relative change: test metric against {baseline}",
    ] + [
        f"differs by model: {key} (" + ", ".join(f"{m} {v}" for m, v in values.items()) + ")"
        for key, values in setting.get("per_model", {}).items()
    ]


def per_model_differences(configs):
    """The :data:`PER_MODEL_KEYS` whose values differ between the models' configs."""
    differences = {}
    for key in PER_MODEL_KEYS:
        values = {model: config[key] for model, config in configs.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            differences[key] = values
    return differences


def render_markdown(columns, rows, lines):
    best = _best_models(rows, columns)
    out = [f"- {line}" for line in lines] + ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            text = _format_cell(column, row[column])
            if column in best and row[column][0] == best[column]:
                text = f"**{text}**"
            cells.append(text)
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def render_csv(path, columns, rows):
    """Plain numbers: a mean column and, where seeds were repeated, a ``<column> std`` column."""
    with_std = any(row[c][1] is not None for row in rows for c in columns if c not in ("model", "runs"))
    header = []
    for column in columns:
        header.append(column)
        if with_std and column not in ("model", "runs", "parameters") and " vs " not in column:
            header.append(f"{column} std")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            values = []
            for column in columns:
                cell = row[column]
                if column in ("model", "runs"):
                    values.append(cell)
                    continue
                values.append("" if cell[0] is None else cell[0])
                if with_std and column != "parameters" and " vs " not in column:
                    values.append("" if cell[1] is None else cell[1])
            writer.writerow(values)


def _latex_escape(text):
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("±", r"$\pm$"),
        ("@", "@"),
    ):
        text = text.replace(char, escaped)
    return text


def render_latex(columns, rows, lines):
    best = _best_models(rows, columns)
    out = [
        "\\begin{table}[ht]",
        "\\centering",
        "\\caption{" + _latex_escape("; ".join(lines)) + "}",
        "\\begin{tabular}{l" + "r" * (len(columns) - 1) + "}",
        "\\toprule",
        " & ".join(_latex_escape(c) for c in columns) + " \\\\",
        "\\midrule",
    ]
    for row in rows:
        cells = []
        for column in columns:
            text = _latex_escape(_format_cell(column, row[column]))
            if column in best and row[column][0] == best[column]:
                text = "\\textbf{" + text + "}"
            cells.append(text)
        out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(out) + "\n"


def render_chart(path, rows, metric, setting):
    """Bar chart of the test ``metric`` (error bars: std over seeds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    column = f"test {metric}"
    shown = [row for row in rows if row[column][0] is not None]
    figure = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(shown)), 3.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    means = [row[column][0] for row in shown]
    errors = [row[column][1] or 0.0 for row in shown]
    axes.bar(range(len(shown)), means, yerr=errors if any(errors) else None, capsize=4, color="tab:blue")
    axes.set_xticks(range(len(shown)))
    axes.set_xticklabels([row["model"] for row in shown], rotation=30, ha="right")
    axes.set_ylabel(f"test {metric}")
    mode = setting["eval_mode"].get("test") if isinstance(setting["eval_mode"], dict) else setting["eval_mode"]
    seeds = ", ".join(str(s) for s in setting["seeds"])
    axes.set_title(f"{setting['dataset']}, {mode} ranking, seeds {seeds}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _safe_file_name(text):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def main(argv):
    """Compare the models of ``--model=A,B,...``; returns 0, or 1 when a run failed (the table
    then lists the models that finished). User errors raise ValueError."""
    args, unknown = build_parser().parse_known_args(argv)
    models = list(dict.fromkeys(name.strip() for name in args.model.split(",") if name.strip()))
    if len(models) < 2:
        raise ValueError(f"--model needs at least two comma-separated models to compare, got '{args.model}'")
    if args.nproc != 1 or args.world_size > 0:
        raise ValueError("--nproc/--world_size: a comparison trains its models one after another in one process")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    for name in models:
        registry.get_model(name)  # an unknown name fails now, before anything is trained
    baseline = args.baseline or models[0]
    if baseline not in models:
        raise ValueError(f"--baseline={baseline} is not one of the compared models ({', '.join(models)})")
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    for file in config_files or []:
        if not os.path.isfile(file):
            raise ValueError(f"--config_files: no such file '{file}'")
    overrides = parse_overrides(unknown)

    setting_id = setting_digest(args.dataset, overrides, config_files)
    output_dir = args.output_dir or os.path.join("comparison", f"{_safe_file_name(args.dataset)}-{setting_id}")
    shared = dict(overrides)
    shared.setdefault("checkpoint_dir", os.path.join(output_dir, "saved"))

    configs = {m: make_config(m, args.dataset, config_files, shared) for m in models}
    check_shared_setting(configs)
    reference = configs[models[0]]
    seeds = [int(reference["seed"]) + r for r in range(args.repeats)]
    metric = (args.metric or reference["valid_metric"] or "NDCG@10").lower()
    computed = [f"{m}@{k}".lower() for m in reference["metrics"] for k in reference["topk"]]
    if metric not in computed:
        raise ValueError(f"--metric={metric} is not computed; the metrics are {', '.join(computed)}")
    setting = describe_setting(reference, args.dataset, seeds, overrides, config_files)
    setting["per_model"] = per_model_differences(configs)

    records_by_model = {m: [] for m in models}
    failures = []
    for model in models:
        for seed in seeds:
            record_file = os.path.join(output_dir, "runs", f"{_safe_file_name(model)}-seed{seed}.json")
            try:
                record = run_one(model, args.dataset, config_files, dict(shared, seed=seed), record_file, setting_id)
            except ResumeConflictError:
                raise
            except Exception as error:  # one failing model must not lose the others' results
                failures.append((model, seed, error))
                continue
            records_by_model[model].append(record)
    for model, seed, error in failures:
        print(f"[compare] FAILED {model} seed {seed}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)

    finished = {m: r for m, r in records_by_model.items() if r}
    if not finished:
        return 1
    targets_note = (
        "identical for all models (digest of (user, target item) pairs of the valid and test splits)"
        if targets_agree(finished)
        else "DIFFER between models: see targets_digest in the run records"
    )
    metric_names, rows = summarise(finished, baseline)
    columns = table_columns(metric_names, baseline)
    lines = setting_lines(setting, baseline, targets_note)
    markdown = render_markdown(columns, rows, lines)
    base = os.path.join(output_dir, TABLE_NAME)
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(markdown)
    render_csv(base + ".csv", columns, rows)
    with open(base + ".tex", "w", encoding="utf-8") as f:
        f.write(render_latex(columns, rows, lines))
    with open(os.path.join(output_dir, "setting.json"), "w", encoding="utf-8") as f:
        json.dump(dict(setting, targets=targets_note, baseline=baseline, models=models), f, indent=2, default=str)
    render_chart(os.path.join(output_dir, f"{TABLE_NAME}_{_safe_file_name(metric)}.png"), rows, metric, setting)
    if args.result_file:  # the table as data: per model, [mean, std] of every column
        from recbole_ext.quick_start import write_json_atomically

        write_json_atomically(
            args.result_file, {"setting": setting, "targets": targets_note, "baseline": baseline, "rows": rows}
        )
    print(markdown, flush=True)
    print(f"[compare] table and chart written to {output_dir}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    from recbole_ext.cli import main as cli_main

    sys.exit(cli_main(sys.argv[1:]))
