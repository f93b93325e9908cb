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
The table (Markdown, CSV, LaTeX), ``comparison.json`` (the same results for scripts) and a bar
chart of the main metric are written beside the records.

Tuned comparison (``--tune=N``): every entry gets the same N trials of RecBole's
:class:`~recbole.trainer.HyperTuning` (Hyperopt; sampling without repetition when the space is all
``choice``, random search otherwise, seeded by the comparison's seed) over its search space:
``properties/hyper/<Model>.hyper`` plus the keys of :data:`DEFAULT_SPACE_FILE` it does not search
(the learning rate), or the default space alone for a model without a file. Trials
train and validate only (RecBole's early stopping on ``valid_metric``, one shared ``epochs`` cap);
the trial with the best validation score is chosen and only that configuration is tested, on every
seed of ``--repeats``. Each finished trial is a record under ``trials/``, so a rerun skips it.
The trials run with the first seed, so the chosen trial is that seed's run: when this process
trained it, its best-validation checkpoint is tested instead of training the same run again (one
training fewer per model; the record says ``trained_as_trial``, and a resumed comparison whose
trials were read back from records trains that run).

Significance: every run also stores the per-user test values of its top-k metrics (RecBole's own
``metric_info``, the arrays RecBole averages) as ``runs/<entry>-seed<s>.npz``. Against
``--baseline`` each test metric gets a paired test over (user, seed) pairs pooled over seeds
(``--test=wilcoxon``, the default, or ``ttest``), its p-value, a ``*`` for p < 0.05 and the relative
change with a bootstrap 95% interval (:mod:`recbole_ext.stats`).

Variants: an entry of ``--model`` may fix config keys of its own, ``Model[key=value,key=value]``,
e.g. ``--model="EMBSR,EMBSR[variant=EMBSR-NS]"``; the whole text is the entry's name in the table.
Keys an entry fixes are removed from its search space (the variant is compared, not tuned away).
"""

import csv
import hashlib
import inspect
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time

import numpy as np

from recbole_ext import paths, registry, stats
from recbole_ext.config import convert_config_dict
from recbole_ext.data.cache import dataset_content_digest

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
    # the evaluation protocol decides examples, split and candidates (recbole_ext/data/protocol.py)
    "eval_protocol",
    "magnn_test_ratio",
    "magnn_valid_ratio",
    "magnn_train_on_valid",
    "hugt_train_ratio",
    "hugt_valid_users",
    "dgsr_negatives",
    "embsr_split_ratios",
)

#: Per-model keys worth seeing in the table's header when the models' yamls set them differently
#: (they are each model's own hyper-parameters, so they may differ).
PER_MODEL_KEYS = ("MAX_ITEM_LIST_LENGTH", "epochs", "train_batch_size", "learning_rate", "loss_type", "hidden_size")

#: Keys that must also agree across models in a tuned comparison: one shared epoch cap and
#: early-stopping patience, so trials differ only in their searched values.
TUNED_SHARED_KEYS = ("epochs", "stopping_step")

#: Search space of any model without its own ``properties/hyper/<Model>.hyper``.
DEFAULT_SPACE_FILE = os.path.join(paths.PROPERTIES_DIR, "hyper", "default.hyper")

TABLE_NAME = "comparison"

#: p-values below this get the table's ``*`` marker.
SIGNIFICANCE_LEVEL = 0.05


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
    parser.add_argument(
        "--tune", type=int, default=0, help="Hyperopt trials per model on validation (0: each yaml's values)"
    )
    parser.add_argument(
        "--test", type=str, default="wilcoxon", choices=sorted(stats.TESTS), help="paired test against --baseline"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="models trained side by side in that many processes, each with its share "
        "of the cores (default 1: one after another)"
    )
    return parser


class Entry:
    """One row of a comparison: a label, the model it trains and the config keys it fixes."""

    def __init__(self, label, model, fixed=None):
        self.label, self.model, self.fixed = label, model, dict(fixed or {})

    def __repr__(self):
        return f"Entry({self.label!r}, {self.model!r}, {self.fixed!r})"


def parse_model_specs(text):
    """``A,B[key=value,key=value],C`` as :class:`Entry` objects (commas inside brackets belong to
    the entry; values are typed as RecBole types command-line values)."""
    specs, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise ValueError(f"--model={text}: unbalanced or nested brackets")
        if char == "," and depth == 0:
            specs.append(current.strip())
            current = ""
        else:
            current += char
    if depth:
        raise ValueError(f"--model={text}: unbalanced brackets")
    specs.append(current.strip())
    entries = []
    for spec in dict.fromkeys(s for s in specs if s):
        model, bracket, rest = spec.partition("[")
        fixed = {}
        if bracket:
            if not rest.endswith("]"):
                raise ValueError(f"--model entry '{spec}': text after ']'")
            pairs = [p for p in rest[:-1].split(",") if p.strip()]
            fixed = parse_overrides([f"--{p.strip()}" for p in pairs])
        entries.append(Entry(spec, model.strip(), fixed))
    return entries


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
    # typed as a run types them, without RecBole's eval() of strings
    return convert_config_dict(overrides)


def _file_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def setting_digest(dataset, overrides, config_files, data_digest=None, tune=0):
    """Digest of what all runs share (everything but the seed): names the default output folder
    and tells a resumed run whether a record was made under the same setting."""
    shared = {
        "dataset": dataset,
        "overrides": {k: v for k, v in overrides.items() if k != "seed"},
        "config_files": [[os.path.abspath(f), _file_text(f)] for f in (config_files or [])],
    }
    if data_digest is not None:
        shared["data"] = data_digest
    if tune:
        shared["tune"] = tune
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
    the same (user, target item) examples; under a protocol with fixed negatives (``dgsr``) the
    candidates are digested too."""
    from recbole_ext.data.protocol import candidates_digest

    digest = {"valid": _split_targets_digest(valid_data), "test": _split_targets_digest(test_data)}
    for split, loader in (("valid", valid_data), ("test", test_data)):
        candidates = candidates_digest(loader)
        if candidates is not None:
            digest[f"{split}_candidates"] = candidates
    return digest


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


def check_shared_setting(configs, keys=SHARED_SETTING_KEYS):
    """Raise if the compared models' configs disagree on a key of the shared setting."""
    (first_model, first), *others = configs.items()
    for key in keys:
        for model, config in others:
            if config[key] != first[key]:
                raise ValueError(
                    f"models disagree on '{key}': {first_model} has {first[key]!r}, {model} has {config[key]!r} "
                    f"(set by a model yaml); pass --{key}=... to fix it for all models"
                )


def describe_setting(config, dataset, seeds, overrides, config_files):
    eval_args = config["eval_args"]
    protocol = config["eval_protocol"] or "next_item"
    return {
        "dataset": dataset,
        "eval_protocol": protocol,
        # a protocol other than next_item brings its own split (eval_args.split is ignored)
        "split": eval_args.get("split") if protocol == "next_item" else f"eval_protocol {protocol}",
        "order": eval_args.get("order"),
        "group_by": eval_args.get("group_by"),
        "eval_mode": eval_args.get("mode"),
        "metrics": [f"{m}@{k}" for m in config["metrics"] for k in config["topk"]],
        "valid_metric": config["valid_metric"],
        "seeds": seeds,
        "overrides": {k: v for k, v in overrides.items() if k != "seed"},
        "config_files": config_files or [],
    }


def _same(a, b):
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _as_json(values):
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def machine_description():
    """The CPU, cores, memory and OS of this machine: a record's timings hold on it only."""
    cpu, avx512 = platform.processor() or platform.machine(), None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = names[0] if names else cpu
        flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), None)
        avx512 = None if flags is None else "avx512f" in flags
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        memory = f"{kib / 1024 ** 2:.1f} GiB"
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": memory, "os": platform.platform(), "avx512": avx512}


def record_machine_counts(records):
    """``{machine: number of records}``; records made before records named their machine count
    as ``"not recorded"``."""
    counts = {}
    for record in records:
        name = record.get("machine") or "not recorded"
        counts[name] = counts.get(name, 0) + 1
    return counts


def machine_label():
    """What a trial or run record names as the machine it was timed on; AVX-512 or not, since the
    kernels numpy and torch pick (and so timings and last bits) depend on it."""
    machine = machine_description()
    simd = {True: ", AVX-512", False: ", no AVX-512", None: ""}[machine["avx512"]]
    return f"{machine['cpu']}, {machine['cores']} cores{simd}"


#: Config keys that say where a run's files live, not what it computes.
LOCATION_KEYS = ("data_path", "checkpoint_dir")


def equal_run_record(model, dataset, config_files, config_dict, record_file, reuse):
    """``(path, record)`` of a finished run in another comparison folder that is the very run
    ``record_file`` asks for, or None. ``reuse`` is ``(that folder's runs/, its setting digest)``.
    The same run: made under that digest (data, shared overrides, config files), by the same model,
    with the same resolved configuration (seed included) but for :data:`LOCATION_KEYS`; it is looked
    up under this entry's file name and under the model's own (a tuned comparison labels by model)."""
    from recbole_ext.trainer import _plain

    runs_dir, source_digest = reuse
    seed = config_dict["seed"]
    names = dict.fromkeys([os.path.basename(record_file), f"{_safe_file_name(model)}-seed{seed}.json"])
    wanted = None
    for name in names:
        path = os.path.join(runs_dir, name)
        if not (os.path.isfile(path) and os.path.isfile(per_user_file(path))):
            continue
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("setting_digest") != source_digest or record.get("model") != model:
            continue
        if wanted is None:
            wanted = _plain(make_config(model, dataset, config_files, dict(config_dict)).final_config_dict)
        if same_resolved_config(wanted, record.get("config") or {}):
            return path, record
    return None


def same_resolved_config(ours, theirs):
    """True when two runs' resolved configurations (seed included) agree on every key but
    :data:`LOCATION_KEYS`: the same training."""
    keys = (set(ours) | set(theirs)) - set(LOCATION_KEYS)
    return all(_same(ours.get(key), theirs.get(key)) for key in keys)


def run_one(model, dataset, config_files, config_dict, record_file, setting_id, chosen=None, label=None,
            reuse=None, trained=None):
    """Train and test one (entry, seed) unless its record exists; return the record. The per-user
    test values land beside the record (``.npz``) before the record itself, so a record means done.
    ``reuse``: ``(runs folder, setting digest)`` of another comparison whose record of the very same
    run (:func:`equal_run_record`) is copied instead of training it again. ``trained``: the run
    record of a training this process made (the chosen trial, :func:`tune_entry`); when its resolved
    configuration is this run's, its checkpoint is tested instead of training again."""
    from recbole_ext.quick_start import run_single, write_json_atomically
    from recbole_ext.trainer import _plain

    chosen = dict(chosen or {})
    if os.path.isfile(record_file):
        with open(record_file, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("setting_digest") != setting_id or not _same(record.get("chosen", {}), chosen):
            raise ResumeConflictError(
                f"record {record_file} was made under a different setting or chosen configuration; "
                "pass another --output_dir (records are never overwritten)"
            )
        # an entry's own fixed keys (a variant's switches) are not in the setting digest
        asked = _as_json(config_dict)
        for key, value in (record.get("requested") or {}).items():
            if key != "seed" and key not in LOCATION_KEYS and asked.get(key) != value:  # a moved folder still resumes
                raise ResumeConflictError(
                    f"record {record_file} was made with {key}={value!r}, this run asks {asked.get(key)!r}; "
                    "pass another --output_dir (records are never overwritten)"
                )
        print(f"[compare] skipped {label or model} seed {config_dict['seed']}: record {record_file} exists", flush=True)
        return record
    found = equal_run_record(model, dataset, config_files, dict(config_dict, **chosen), record_file, reuse) if reuse else None
    if found:
        source, record = found
        print(f"[compare] reused {label or model} seed {config_dict['seed']}: the same run is {source}", flush=True)
        save_per_user(per_user_file(record_file), load_per_user(per_user_file(source)))
        record = dict(record, setting_digest=setting_id, chosen=chosen, requested=_as_json(config_dict),
                      reused_from=os.path.abspath(source))
        write_json_atomically(record_file, record)
        return record
    started = time.time()
    if trained and same_resolved_config(
        _plain(make_config(model, dataset, config_files, dict(config_dict, **chosen)).final_config_dict), trained["config"]
    ):
        print(f"[compare] testing {label or model} seed {config_dict['seed']}: the chosen trial is this very run", flush=True)
        values, test_result = test_checkpoint(trained["checkpoint"])
        # wall_seconds: this step's (testing); the training's is the trial record's
        record = dict(trained, test_result={k: float(v) for k, v in test_result.items()}, trained_as_trial=True)
        record["wall_seconds"] = time.time() - started
        return _finish_run(record, values, record_file, setting_id, chosen, config_dict)
    print(f"[compare] training {label or model} seed {config_dict['seed']}", flush=True)
    record = run_single(
        model, dataset, config_file_list=config_files, config_dict=dict(config_dict, **chosen), saved=True,
        read_command_line=False,
    )
    record["wall_seconds"] = time.time() - started
    values = per_user_test_values(record["checkpoint"]) if record.get("checkpoint") else None
    return _finish_run(record, values, record_file, setting_id, chosen, config_dict)


def _finish_run(record, per_user, record_file, setting_id, chosen, config_dict):
    """Stamp a finished run and write its per-user values, then its record (a record means done)."""
    from recbole_ext.quick_start import write_json_atomically

    record["machine"] = machine_label()
    record["seed"] = config_dict["seed"]
    record["setting_digest"] = setting_id
    record["chosen"] = chosen
    record["requested"] = _as_json(config_dict)
    if per_user is not None:
        save_per_user(per_user_file(record_file), per_user)
    write_json_atomically(record_file, record)
    return record


# ----------------------------------------------------------------------------------------------
# per-user test values (RecBole's evaluator, not a reimplementation)


def per_user_file(record_file):
    return os.path.splitext(record_file)[0] + ".npz"


def save_per_user(path, values):
    """Write to a temporary name and rename (np.savez adds ``.npz`` to a name without it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path[: -len(".npz")] + ".partial.npz"
    np.savez(partial, **values)
    os.replace(partial, path)


def load_per_user(path):
    if not os.path.isfile(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def evaluate_per_user(trainer, eval_data):
    """Evaluate ``trainer.model`` on ``eval_data`` as RecBole does, and return, beside RecBole's
    result, the per-user value of every top-k metric (the arrays its ``topk_result`` averages)
    and the user token of every row: ``{"users": [...], "ndcg@10": [...], ...}``."""
    from recbole.evaluator.base_metric import TopkMetric

    config = trainer.config
    uid_field = config["USER_ID_FIELD"]
    collector, evaluator = trainer.eval_collector, trainer.evaluator
    users, captured = [], {}
    collect, evaluate = collector.eval_batch_collect, evaluator.evaluate

    def collect_with_users(scores, interaction, positive_u, positive_i):
        rows = len(scores) if scores.dim() > 1 else len(interaction)
        ids = interaction[uid_field].cpu().numpy() if uid_field in interaction.interaction else None
        users.append(ids if ids is not None and len(ids) == rows else np.full(rows, -1))
        return collect(scores, interaction, positive_u, positive_i)

    def evaluate_capturing(struct):
        captured["struct"] = struct
        return evaluate(struct)

    # instance attributes of this trainer's own collector/evaluator, removed afterwards
    collector.eval_batch_collect, evaluator.evaluate = collect_with_users, evaluate_capturing
    try:
        result = trainer.evaluate(eval_data, load_best_model=False)
    finally:
        del collector.eval_batch_collect, evaluator.evaluate
    ids = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
    dataset = eval_data._dataset
    if len(ids) and (ids >= 0).all():
        tokens = np.asarray(dataset.id2token(uid_field, ids)).astype(str)
    else:  # no user field in the batches: pair by row position
        tokens = np.array([f"#{i}" for i in range(len(ids))])
    values = {"users": tokens}
    for name, metric in evaluator.metric_class.items():
        if not isinstance(metric, TopkMetric):
            continue
        pos_index, pos_len = metric.used_info(captured["struct"])
        takes_len = len(inspect.signature(metric.metric_info).parameters) > 1
        per_user = metric.metric_info(pos_index, pos_len) if takes_len else metric.metric_info(pos_index)
        for k in metric.topk:
            values[f"{name}@{k}"] = np.asarray(per_user[:, k - 1], dtype=np.float64)
    return values, result


def test_checkpoint(checkpoint):
    """Reload a run's best-validation checkpoint and test it: ``(per-user test values, RecBole's
    test result)``."""
    from recbole_ext.quick_start import load_data_and_model

    config, model, _, _, _, test_data = load_data_and_model(checkpoint)
    trainer = registry.get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return evaluate_per_user(trainer, test_data)


def per_user_test_values(checkpoint):
    """Reload a run's best-validation checkpoint and return its per-user test values."""
    return test_checkpoint(checkpoint)[0]


# ----------------------------------------------------------------------------------------------
# tuning: RecBole's HyperTuning, trials cached as records


def space_file(model):
    """The model's own search space, or the shared default one."""
    own = paths.hyper_file(model)
    return own if os.path.isfile(own) else DEFAULT_SPACE_FILE


def search_space(model, fixed=None):
    """The space a tuned comparison searches for ``model``: its own file, plus every key of the
    default space (the learning rate) that file does not search, so no model is compared at one
    fixed learning rate; minus the keys an entry fixes. Returns ``(params, description)``."""
    from recbole_ext.tuning import read_params_file

    fixed = fixed or {}
    source = space_file(model)
    params = read_params_file(source)
    names = [os.path.relpath(source, paths.PROPERTIES_DIR)]
    if source != DEFAULT_SPACE_FILE:
        own = {name for name, _, _ in params}
        added = [p for p in read_params_file(DEFAULT_SPACE_FILE) if p[0] not in own]
        if added:
            params = params + added
            names.append(os.path.relpath(DEFAULT_SPACE_FILE, paths.PROPERTIES_DIR))
    return [p for p in params if p[0] not in fixed], " + ".join(names)


def describe_space(params):
    """``{key: "loguniform [3e-04, 1e-02]"}``: the searched ranges, in the values the trials see
    (RecBole's loguniform bounds are logarithms)."""
    described = {}
    for name, kind, value in params:
        if kind == "choice":
            described[name] = "choice " + json.dumps(list(value), default=str)
        elif kind == "loguniform":
            described[name] = f"loguniform [{math.exp(value[0]):.2g}, {math.exp(value[1]):.2g}]"
        else:
            described[name] = f"{kind} " + json.dumps(list(value))
    return described


def same_trial_values(a, b, rel_tol=1e-9):
    """True when two trials' values are the same up to float rounding: hyperopt draws a
    ``loguniform`` value through numpy's ``exp``, whose last bit depends on the SIMD path the CPU
    takes (seen here, same seed: 0.0062925257897992705 on one machine, 0.006292525789799271 on
    one without AVX-512)."""
    if set(a) != set(b):
        return False
    for key, x in a.items():
        y = b[key]
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=rel_tol, abs_tol=0.0):
                return False
        elif not _same(x, y):
            return False
    return True


class CachedTrialObjective:
    """RecBole's tuning objective for one entry, training and validating only; each finished
    trial is a record ``<folder>/<digest of its values>.json`` that a rerun reads back, found by
    its values up to float rounding (:func:`same_trial_values`) when another machine made it.

    A trial trained by this process keeps its best-validation checkpoint (``<folder>/saved/<digest>/``)
    and its run record in memory (:meth:`trained_run`): the chosen trial is the first seed's run
    (same configuration, same seed), which is then tested, not trained again. Only checkpoints this
    process wrote are ever loaded; a trial read back from a record has none."""

    def __init__(self, entry, dataset, fixed_config, config_files, folder, setting_id):
        from recbole_ext.tuning import TuningObjective

        self.objective = TuningObjective(entry.model, dataset, dict(fixed_config, **entry.fixed), saved=False)
        self.config_files, self.folder, self.setting_id, self.label = config_files, folder, setting_id, entry.label
        self.trials = []
        self.trained = {}  # digest -> (values, run record) of the trials this process trained

    def __call__(self, config_dict, config_file_list=None, saved=None):
        from recbole_ext.quick_start import objective_function, write_json_atomically

        params = dict(config_dict or {})
        key = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]
        path = os.path.join(self.folder, f"{key}.json")
        if not os.path.isfile(path):
            path = self._recorded_as(params) or path
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            if record.get("setting_digest") != self.setting_id:
                raise ResumeConflictError(f"trial record {path} was made under a different setting")
            print(f"[compare] skipped {self.label} trial {params}: record exists", flush=True)
        else:
            started = time.time()
            trial_config = dict(self.objective.fixed_config, **params, checkpoint_dir=self.checkpoint_dir(key))
            result = objective_function(trial_config, self.config_files, saved=True, test=False, run_record=True)
            self.trained[key] = (params, dict(result["run_record"], wall_seconds=time.time() - started))
            record = {
                "model": result["model"],
                "params": params,
                "best_valid_score": float(result["best_valid_score"]),
                "valid_score_bigger": bool(result["valid_score_bigger"]),
                "best_valid_result": {k: float(v) for k, v in (result["best_valid_result"] or {}).items()},
                "wall_seconds": time.time() - started,
                "machine": machine_label(),
                "setting_digest": self.setting_id,
            }
            write_json_atomically(path, record)
        self.trials.append(record)
        return dict(record, test_result=None)

    def _recorded_as(self, params):
        """The record of these values made under another float rounding, or None."""
        for name in sorted(os.listdir(self.folder)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(self.folder, name), encoding="utf-8") as f:
                record = json.load(f)
            if same_trial_values(record.get("params") or {}, params):
                return os.path.join(self.folder, name)
        return None

    def checkpoint_dir(self, key):
        return os.path.join(self.folder, "saved", key)

    def trained_run(self, params):
        """The run record of the trial with these values if this process trained it, else None."""
        for values, record in self.trained.values():
            if same_trial_values(values, params):
                return record
        return None

    def discard_checkpoints(self, keep=None):
        """Delete the checkpoints of the trials this process trained, but ``keep``'s."""
        for key, (_, record) in self.trained.items():
            if record is not keep:
                shutil.rmtree(self.checkpoint_dir(key), ignore_errors=True)

    def recorded_values(self, params):
        """The values as the record of this trial holds them, so that the chosen configuration
        (and the seed runs that check it) do not depend on the machine that resumes."""
        for record in self.trials:
            if same_trial_values(record["params"], params):
                return dict(record["params"])
        return dict(params)


class _SeededHyperopt:
    """Hyperopt's trial sequence from the comparison's seed (``HYPEROPT_FMIN_SEED``, read by
    ``fmin``), so a rerun proposes the same trials and finds their records."""

    def __init__(self, seed):
        self.seed = str(int(seed))

    def __enter__(self):
        self.saved = os.environ.get("HYPEROPT_FMIN_SEED")
        os.environ["HYPEROPT_FMIN_SEED"] = self.seed

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop("HYPEROPT_FMIN_SEED", None)
        else:
            os.environ["HYPEROPT_FMIN_SEED"] = self.saved


def tune_entry(entry, dataset, config_files, fixed_config, trials, output_dir, setting_id):
    """Tune one entry with ``trials`` HyperTuning trials on validation; returns
    ``(chosen values, summary, the chosen trial's run record or None)``, the record when this
    process trained that trial (:meth:`CachedTrialObjective.trained_run`; its checkpoint is kept,
    the other trials' are deleted). Keys the entry fixes are not searched."""
    from recbole_ext.tuning import make_hyper_tuning, read_params_file

    params, space_label = search_space(entry.model, entry.fixed)
    summary = {"space_file": space_label, "searched": describe_space(params)}
    if not params:
        return {}, dict(summary, trials=[]), None
    folder = os.path.join(output_dir, "trials", _safe_file_name(entry.label))
    os.makedirs(folder, exist_ok=True)
    effective = os.path.join(folder, "space.hyper")  # the space actually searched, for the record
    with open(effective, "w", encoding="utf-8") as f:
        for name, kind, value in params:
            text = repr(list(value)).replace(" ", "") if kind == "choice" else ",".join(map(str, value))
            f.write(f"{name} {kind} {text}\n")
    objective = CachedTrialObjective(entry, dataset, fixed_config, config_files, folder, setting_id)
    algo = "exhaustive" if all(kind == "choice" for _, kind, _ in params) else "random"
    tuner = make_hyper_tuning(objective, effective, algo, max_evals=trials, early_stop=trials, config_files=config_files)
    with _SeededHyperopt(fixed_config["seed"]):
        tuner.run()
    chosen = objective.recorded_values({k: _plain_value(v) for k, v in tuner.best_params.items()})
    chosen_run = objective.trained_run(chosen)
    objective.discard_checkpoints(keep=chosen_run)
    summary["trials"] = [{"params": t["params"], "valid_score": t["best_valid_score"]} for t in objective.trials]
    summary["algo"] = algo
    return chosen, summary, chosen_run


def _plain_value(value):
    return value.item() if isinstance(value, np.generic) else value


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


def pooled_pairs(per_user, base_per_user, metric):
    """The (user, seed) pairs of one entry and the baseline, pooled over their common seeds:
    two aligned arrays, or None when a seed's users differ (or no per-user values exist)."""
    values, base_values = [], []
    for seed in sorted(set(per_user) & set(base_per_user)):
        ours, theirs = per_user[seed], base_per_user[seed]
        if metric not in ours or metric not in theirs:
            return None
        aligned = stats.align_users(ours["users"], ours[metric], theirs["users"], theirs[metric])
        if aligned is None:
            return None
        values.append(aligned[0])
        base_values.append(aligned[1])
    if not values:
        return None
    return np.concatenate(values), np.concatenate(base_values)


def significance(per_user_by_label, baseline, metric_names, test="wilcoxon"):
    """``{label: {metric: {p_value, change, change_ci, pairs}}}`` against ``baseline``, for every
    entry but the baseline (per-user values: ``{label: {seed: {"users": ..., metric: ...}}}``)."""
    results = {}
    base = per_user_by_label.get(baseline) or {}
    for label, per_user in per_user_by_label.items():
        if label == baseline:
            continue
        results[label] = {}
        for metric in metric_names:
            pairs = pooled_pairs(per_user, base, metric)
            if pairs is not None:
                results[label][metric] = dict(stats.compare_paired(*pairs, test=test), pairs=len(pairs[0]))
    return results


def summarise(records_by_model, baseline, significance_by_model=None):
    """One row per model: mean (and std over seeds) of every metric, seconds/epoch, parameters,
    and the relative change of each test metric against ``baseline`` (percent; with
    ``significance_by_model``, the pooled paired change, its p-value and bootstrap interval)."""
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
        # a third field: how many machines timed the seeds (their mean then mixes CPUs)
        row["s/epoch"] = _mean_std([r.get("seconds_per_epoch") for r in records]) + (len(record_machine_counts(records)),)
        row["parameters"] = (records[0]["num_parameters"], None) if records else (None, None)
        rows[model] = row
    base_row = rows.get(baseline)
    for row in rows.values():
        for name in metric_names:
            value, base = row[f"test {name}"][0], base_row and base_row[f"test {name}"][0]
            change = None if value is None or not base else 100.0 * (value - base) / base
            found = ((significance_by_model or {}).get(row["model"]) or {}).get(name)
            if found and found["change"] is not None:
                ci = found["change_ci"] and [100.0 * c for c in found["change_ci"]]
                row[f"test {name} vs {baseline}"] = (100.0 * found["change"], None, found["p_value"], ci)
            else:
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
    value, std = cell[:2]
    if value is None:
        return "-"
    if column == "parameters":
        return f"{int(value):,}"
    if " vs " in column:
        text = f"{value:+.2f}%"
        if len(cell) > 2:
            p_value, ci = cell[2], cell[3]
            text += f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else ""
            text += f" p={p_value:.2g}" + (" *" if p_value < SIGNIFICANCE_LEVEL else "")
        return text
    digits = 2 if column == "s/epoch" else 4
    text = f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
    if column == "s/epoch" and len(cell) > 2 and cell[2] > 1:
        text += f" ({cell[2]} machines)"
    return text


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
    """Plain numbers: a mean column and, where seeds were repeated, a ``<column> std`` column;
    beside each change against the baseline its p-value and bootstrap interval when computed."""
    with_std = any(row[c][1] is not None for row in rows for c in columns if c not in ("model", "runs"))
    with_tests = any(len(row[c]) > 2 for row in rows for c in columns if " vs " in c)
    header = []
    for column in columns:
        header.append(column)
        if with_std and column not in ("model", "runs", "parameters") and " vs " not in column:
            header.append(f"{column} std")
        if with_tests and " vs " in column:
            header += [f"{column} p", f"{column} ci low", f"{column} ci high"]
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
                if with_tests and " vs " in column:
                    p_value, ci = (cell[2], cell[3]) if len(cell) > 2 else (None, None)
                    values += ["" if p_value is None else p_value] + (ci if ci else ["", ""])
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


def tuning_lines(tuning, tune, reference):
    if not tune:
        return ["tuning: none (each model's yaml values; pass --tune=N for N trials per model)"]
    return [
        f"tuning: {tune} trials per model with RecBole's HyperTuning (Hyperopt), chosen on valid "
        f"{reference['valid_metric']} only; early stopping on validation (stopping_step {reference['stopping_step']}), "
        f"one epoch cap ({reference['epochs']}) for all; only the chosen configuration is tested"
    ]


def render_tuning_markdown(tuning, chosen_by_label):
    """The searched space and the chosen values of every tuned entry."""
    out = ["| model | space | trials | searched | chosen |", "|---|---|---|---|---|"]
    for label, summary in tuning.items():
        searched = "; ".join(f"{k}: {v}" for k, v in summary["searched"].items()) or "-"
        chosen = ", ".join(f"{k}={_short(v)}" for k, v in chosen_by_label.get(label, {}).items()) or "-"
        out.append(f"| {label} | {summary['space_file']} | {len(summary['trials'])} | {searched} | {chosen} |")
    return "\n".join(out) + "\n"


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def comparison_json(entries, records_by_label, chosen_by_label, tuning, sig, baseline, test, setting):
    """The comparison for scripts (the schema of ``comparison.json``)."""
    models = {}
    for entry in entries:
        records = records_by_label.get(entry.label)
        if not records:
            continue
        item = {
            "model": entry.model,
            "fixed": entry.fixed,
            "chosen": chosen_by_label.get(entry.label, {}),
            "seeds": [r["seed"] for r in records],
            "test": {},
            "valid": {},
            "seconds_per_epoch": stats.mean_std([r.get("seconds_per_epoch") for r in records])[0],
            "machines": record_machine_counts(records),
            "num_parameters": records[0].get("num_parameters"),
        }
        if entry.label in tuning:
            item["space_file"] = tuning[entry.label]["space_file"]
            item["searched"] = tuning[entry.label]["searched"]
            item["trials"] = tuning[entry.label]["trials"]
        for split, key in (("test", "test_result"), ("valid", "best_valid_result")):
            names = list(dict.fromkeys(n for r in records for n in r[key]))
            for name in names:
                per_seed = [r[key].get(name) for r in records]
                mean, std = stats.mean_std(per_seed)
                item[split][name] = {"mean": mean, "std": std, "per_seed": per_seed}
                if split == "test":
                    found = (sig.get(entry.label) or {}).get(name) or {}
                    for field in ("p_value", "change", "change_ci"):
                        item[split][name][field] = found.get(field)
        models[entry.label] = item
    return {"baseline": baseline, "test": stats.TESTS[test], "setting": setting, "models": models}


def main(argv):
    """Compare the models of ``--model=A,B,...``; returns 0, or 1 when a run failed (the table
    then lists the models that finished). User errors raise ValueError."""
    args, unknown = build_parser().parse_known_args(argv)
    entries = parse_model_specs(args.model)
    if len(entries) < 2:
        raise ValueError(f"--model needs at least two comma-separated models to compare, got '{args.model}'")
    if args.nproc != 1 or args.world_size > 0:
        raise ValueError(
            "--nproc/--world_size: a comparison trains each model in one process (--jobs trains several side by side)"
        )
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    status, _ = run_comparison(
        entries, args.dataset, parse_overrides(unknown), config_files, output_dir=args.output_dir,
        tune=args.tune, repeats=args.repeats, baseline=args.baseline, metric=args.metric, test=args.test,
        result_file=args.result_file, jobs=args.jobs,
    )
    return status


def train_entry(entry, work):
    """Tune one entry (when ``tune``) and train and test it on every seed, from its records where
    they exist; returns ``(chosen or None, tuning summary or None, records, {seed: per-user values},
    failures)``, a failure being ``(label, where, "Error: text")``. A failing model must not lose
    the others' results, so only a :class:`ResumeConflictError` is raised."""
    dataset, config_files, shared, seeds, tune, output_dir, setting_id, reuse = work
    chosen, summary, chosen_run, records, per_user, failures = None, None, None, [], {}, []
    try:
        if tune:
            chosen, summary, chosen_run = tune_entry(entry, dataset, config_files, dict(shared, seed=seeds[0]), tune,
                                                     output_dir, setting_id)
    except ResumeConflictError:
        raise
    except Exception as error:
        return None, None, records, per_user, [(entry.label, "tuning", f"{type(error).__name__}: {error}")]
    for seed in seeds:
        record_file = os.path.join(output_dir, "runs", f"{_safe_file_name(entry.label)}-seed{seed}.json")
        try:
            record = run_one(entry.model, dataset, config_files, dict(shared, **entry.fixed, seed=seed), record_file,
                             setting_id, chosen, entry.label, reuse, trained=chosen_run if seed == seeds[0] else None)
        except ResumeConflictError:
            raise
        except Exception as error:
            failures.append((entry.label, f"seed {seed}", f"{type(error).__name__}: {error}"))
            continue
        records.append(record)
        values = load_per_user(per_user_file(record_file))
        if values is not None:
            per_user[seed] = values
    return chosen, summary, records, per_user, failures


def _prepare_child(threads, start_method):
    """Hold a spawned child to its share of the cores, and let it start processes of its own (a
    model's dataloader workers) as its parent would: a spawned child defaults to spawn, under which
    a RecBole dataloader worker (DGSR's ``worker: 1``, or any model's) could not receive its dataset
    and died."""
    import multiprocessing

    import torch

    torch.set_num_threads(threads)
    multiprocessing.set_start_method(start_method, force=True)


def _train_entries(entries, work, jobs):
    """:func:`train_entry` of every entry, in order. With ``jobs`` > 1 the entries run side by side
    in that many fresh (spawned) processes, each held to its share of the cores: on 2 cores two
    torch jobs at full thread count oversubscribe OpenMP and slow each other down several times
    over. Every run is seeded on its own and written as a record, so the results are the ones one
    process gets (``OMP_NUM_THREADS``, when set, is kept)."""
    if jobs == 1 or len(entries) == 1:
        return [train_entry(entry, work) for entry in entries]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = min(jobs, len(entries))
    threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // jobs))
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by the children's OpenMP when torch loads
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_prepare_child,
                                 initargs=(threads, multiprocessing.get_start_method())) as pool:
            futures = [pool.submit(train_entry, entry, work) for entry in entries]
            try:
                return [future.result() for future in futures]
            except BaseException:  # a resume conflict or an interrupt: start no further entry
                for future in futures:
                    future.cancel()
                raise
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def run_comparison(
    entries, dataset, overrides, config_files=None, output_dir=None, tune=0, repeats=1, baseline=None,
    metric=None, test="wilcoxon", result_file=None, quiet=False, reuse_from=None, jobs=1,
):
    """Tune (``tune`` trials), train and test every :class:`Entry` on ``repeats`` seeds and write
    the tables; returns ``(exit status, the comparison.json dict or None)``. ``reuse_from``:
    ``(folder, its number of trials)`` of another comparison on the same data and shared overrides;
    a run it already holds with the same resolved configuration is copied, not trained again.
    ``jobs``: entries trained side by side in that many processes (:func:`_train_entries`)."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    if tune < 0:
        raise ValueError(f"--tune must be 0 (no tuning) or a number of trials, got {tune}")
    if test not in stats.TESTS:
        raise ValueError(f"--test={test}: the paired tests are {', '.join(stats.TESTS)}")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    labels = [e.label for e in entries]
    for entry in entries:
        registry.get_model(entry.model)  # an unknown name fails now, before anything is trained
        if tune and not os.path.isfile(space_file(entry.model)):
            raise ValueError(f"--tune: no search space for {entry.model} and no {DEFAULT_SPACE_FILE}")
    baseline = baseline or labels[0]
    if baseline not in labels:
        raise ValueError(f"--baseline={baseline} is not one of the compared models ({', '.join(labels)})")
    for file in config_files or []:
        if not os.path.isfile(file):
            raise ValueError(f"--config_files: no such file '{file}'")

    # the data's content is part of the setting: a resumed comparison on changed data refuses old runs
    data_digest = dataset_content_digest(make_config(entries[0].model, dataset, config_files, dict(overrides)))
    setting_id = setting_digest(dataset, overrides, config_files, data_digest, tune)
    reuse = None
    if reuse_from:
        folder, source_tune = reuse_from
        reuse = (os.path.join(folder, "runs"), setting_digest(dataset, overrides, config_files, data_digest, source_tune))
    output_dir = output_dir or os.path.join("comparison", f"{_safe_file_name(dataset)}-{setting_id}")
    shared = dict(overrides)
    shared.setdefault("checkpoint_dir", os.path.join(output_dir, "saved"))

    configs = {e.label: make_config(e.model, dataset, config_files, dict(shared, **e.fixed)) for e in entries}
    check_shared_setting(configs, SHARED_SETTING_KEYS + (TUNED_SHARED_KEYS if tune else ()))
    reference = configs[labels[0]]
    seeds = [int(reference["seed"]) + r for r in range(repeats)]
    metric = (metric or reference["valid_metric"] or "NDCG@10").lower()
    computed = [f"{m}@{k}".lower() for m in reference["metrics"] for k in reference["topk"]]
    if metric not in computed:
        raise ValueError(f"--metric={metric} is not computed; the metrics are {', '.join(computed)}")
    setting = describe_setting(reference, dataset, seeds, overrides, config_files)
    setting["per_model"] = per_model_differences(configs)

    records_by_label, per_user_by_label, chosen_by_label, tuning = {}, {}, {}, {}
    failures = []
    work = (dataset, config_files, shared, seeds, tune, output_dir, setting_id, reuse)
    results = _train_entries(entries, work, jobs)
    for entry, (chosen, summary, records, per_user, entry_failures) in zip(entries, results):
        if chosen is not None:
            chosen_by_label[entry.label], tuning[entry.label] = chosen, summary
        records_by_label[entry.label], per_user_by_label[entry.label] = records, per_user
        failures.extend(entry_failures)
    for label, where, error in failures:
        print(f"[compare] FAILED {label} {where}: {error}", file=sys.stderr, flush=True)

    finished = {label: r for label, r in records_by_label.items() if r}
    if not finished:
        return 1, None
    targets_note = (
        "identical for all models (digest of (user, target item) pairs of the valid and test splits)"
        if targets_agree(finished)
        else "DIFFER between models: see targets_digest in the run records"
    )
    test_metrics = list(dict.fromkeys(n for records in finished.values() for r in records for n in r["test_result"]))
    sig = significance({k: v for k, v in per_user_by_label.items() if k in finished}, baseline, test_metrics, test)
    metric_names, rows = summarise(finished, baseline, sig)
    columns = table_columns(metric_names, baseline)
    lines = setting_lines(setting, baseline, targets_note) + tuning_lines(tuning, tune, reference)
    lines.append(
        f"significance: {stats.TESTS[test]} over (test user, seed) pairs pooled over seeds, against {baseline}; "
        f"* p < {SIGNIFICANCE_LEVEL}; [lo, hi]: bootstrap 95% interval of the relative change (%)"
    )
    markdown = render_markdown(columns, rows, lines)
    if tuning:
        markdown += "\n" + render_tuning_markdown(tuning, chosen_by_label)
    base = os.path.join(output_dir, TABLE_NAME)
    os.makedirs(output_dir, exist_ok=True)
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(markdown)
    render_csv(base + ".csv", columns, rows)
    with open(base + ".tex", "w", encoding="utf-8") as f:
        f.write(render_latex(columns, rows, lines))
    with open(os.path.join(output_dir, "setting.json"), "w", encoding="utf-8") as f:
        json.dump(dict(setting, targets=targets_note, baseline=baseline, models=labels), f, indent=2, default=str)
    comparison = comparison_json(entries, finished, chosen_by_label, tuning, sig, baseline, test, setting)
    comparison["targets"] = targets_note
    from recbole_ext.quick_start import write_json_atomically

    write_json_atomically(base + ".json", comparison)
    render_chart(os.path.join(output_dir, f"{TABLE_NAME}_{_safe_file_name(metric)}.png"), rows, metric, setting)
    if result_file:  # the table as data: per model, [mean, std] of every column
        write_json_atomically(
            result_file, {"setting": setting, "targets": targets_note, "baseline": baseline, "rows": rows}
        )
    if not quiet:
        print(markdown, flush=True)
    print(f"[compare] table and chart written to {output_dir}", flush=True)
    return (1 if failures else 0), comparison


if __name__ == "__main__":
    from recbole_ext.cli import main as cli_main

    sys.exit(cli_main(sys.argv[1:]))
