"""Side-by-side comparison (recbole_ext.compare): fairness, table files, resume."""

import datetime
import csv
import json
import math
import os

import numpy as np
import pytest
from conftest import tiny_config_dict

from recbole_ext import compare


def _tiny_args(**overrides):
    config = tiny_config_dict(**overrides)
    config.pop("use_gpu")
    return [f"--{key}={value}" for key, value in config.items()] + ["--use_gpu=False"]


# ---------------------------------------------------------------------------------------------
# building blocks, hand-computed


class _FakeEvalDataset:
    uid_field, iid_field = "user_id", "item_id"

    def __init__(self, users, items):
        import torch

        self.inter_feat = {"user_id": torch.tensor(users), "item_id": torch.tensor(items)}

    def id2token(self, field, ids):
        return np.array([f"{field[0]}{i}" for i in ids])


class _FakeLoader:
    def __init__(self, users, items):
        self._dataset = _FakeEvalDataset(users, items)


def test_targets_digest_ignores_row_order_and_sees_one_changed_target():
    digest = compare._split_targets_digest(_FakeLoader([1, 2, 3], [5, 6, 7]))
    assert digest == compare._split_targets_digest(_FakeLoader([3, 1, 2], [7, 5, 6]))
    assert digest.startswith("3:")
    assert digest != compare._split_targets_digest(_FakeLoader([1, 2, 3], [5, 6, 8]))
    assert digest != compare._split_targets_digest(_FakeLoader([1, 2, 3], [6, 5, 7]))  # pairs, not sets


def test_targets_agree_is_checked_per_seed():
    a = {"seed": 1, "targets_digest": {"test": "x"}}
    b = {"seed": 2, "targets_digest": {"test": "y"}}  # another seed may shuffle a random split
    assert compare.targets_agree({"SASRec": [a, b], "HUGT": [dict(a), dict(b)]})
    assert not compare.targets_agree({"SASRec": [a, b], "HUGT": [dict(a), dict(b, targets_digest={"test": "z"})]})


def _record(model, seed, ndcg, seconds, params=100):
    return {
        "model": model,
        "seed": seed,
        "num_parameters": params,
        "seconds_per_epoch": seconds,
        "best_valid_result": {"ndcg@10": ndcg / 2},
        "test_result": {"ndcg@10": ndcg},
    }


def test_summary_means_stds_and_relative_change():
    records = {
        "SASRec": [_record("SASRec", 1, 0.10, 2.0), _record("SASRec", 2, 0.20, 4.0)],
        "HUGT": [_record("HUGT", 1, 0.30, 1.0), _record("HUGT", 2, 0.30, 1.0)],
    }
    metric_names, rows = compare.summarise(records, baseline="SASRec")
    assert metric_names == ["ndcg@10"]
    sasrec, hugt = rows
    assert sasrec["test ndcg@10"][0] == pytest.approx(0.15)
    assert sasrec["test ndcg@10"][1] == pytest.approx(np.std([0.1, 0.2], ddof=1))
    assert sasrec["valid ndcg@10"][0] == pytest.approx(0.075)
    assert sasrec["s/epoch"][0] == pytest.approx(3.0)
    assert hugt["test ndcg@10 vs SASRec"][0] == pytest.approx(100.0)  # 0.30 against 0.15
    assert sasrec["test ndcg@10 vs SASRec"][0] == pytest.approx(0.0)
    columns = compare.table_columns(metric_names, "SASRec")
    markdown = compare.render_markdown(columns, rows, ["dataset: x"])
    assert "| HUGT | 2 | **0.1500 ± 0.0000** | **0.3000 ± 0.0000** | +100.00% | 1.00 ± 0.00 | 100 |" in markdown
    assert "0.1500 ± 0.0707" in markdown


def test_models_that_disagree_on_the_split_are_refused():
    base = {key: 1 for key in compare.SHARED_SETTING_KEYS}
    changed = dict(base, eval_args={"split": {"RS": [0.8, 0.1, 0.1]}})
    with pytest.raises(ValueError, match="disagree on 'eval_args'"):
        compare.check_shared_setting({"SASRec": base, "NewModel": changed})
    compare.check_shared_setting({"SASRec": base, "Other": dict(base)})


def test_per_model_keys_that_differ_are_listed():
    configs = {"SASRec": {"MAX_ITEM_LIST_LENGTH": 50, "epochs": 3}, "HUGT": {"MAX_ITEM_LIST_LENGTH": 200, "epochs": 3}}
    configs = {m: dict({k: 1 for k in compare.PER_MODEL_KEYS}, **c) for m, c in configs.items()}
    differences = compare.per_model_differences(configs)
    assert differences == {"MAX_ITEM_LIST_LENGTH": {"SASRec": 50, "HUGT": 200}}
    setting = {
        "dataset": "d",
        "split": {},
        "order": "TO",
        "group_by": "user",
        "eval_mode": "full",
        "metrics": ["NDCG@10"],
        "valid_metric": "NDCG@10",
        "seeds": [1],
        "overrides": {},
        "config_files": [],
        "per_model": differences,
    }
    lines = compare.setting_lines(setting, "SASRec", "identical")
    assert lines[-1] == "differs by model: MAX_ITEM_LIST_LENGTH (SASRec 50, HUGT 200)"


def test_user_errors_are_one_clear_value_error():
    with pytest.raises(ValueError, match="unknown model 'NoSuchModel'"):
        compare.main(["--model=SASRec,NoSuchModel"])
    with pytest.raises(ValueError, match="--baseline=GRU4Rec"):
        compare.main(["--model=SASRec,HUGT", "--baseline=GRU4Rec"])
    with pytest.raises(ValueError, match="--key=value"):
        compare.main(["--model=SASRec,HUGT", "--epochs", "3"])
    with pytest.raises(ValueError, match="--metric=auc is not computed"):
        compare.main(["--model=SASRec,HUGT", "--metric=AUC"])


def test_the_library_never_imports_the_cli_script():
    import subprocess
    import sys

    from conftest import REPO_ROOT

    code = (
        "import sys; import recbole_ext.compare as c, recbole_ext.cli, recbole_ext.tuning, recbole_ext.quick_start; "
        "c.build_parser(); assert 'run_recbole_ext' not in sys.modules, 'imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]


# ---------------------------------------------------------------------------------------------
# one real comparison: fairness, files, resume


def test_two_model_comparison_is_fair_writes_tables_and_resumes(tmp_path, capsys):
    from recbole_ext.cli import main as cli_main

    output_dir = str(tmp_path / "cmp")
    argv = [
        "--model=SASRec,HUGT",
        "--dataset=synthetic",
        f"--output_dir={output_dir}",
        "--metric=NDCG@10",
        f"--result_file={tmp_path / 'summary.json'}",
    ]
    argv += _tiny_args(metrics="['NDCG','Hit']", topk=10, valid_metric="NDCG@10")
    assert cli_main(argv) == 0  # the CLI hands a comma-separated --model to compare.main

    runs = {m: json.load(open(os.path.join(output_dir, "runs", f"{m}-seed2020.json"))) for m in ("SASRec", "HUGT")}
    # identical split and targets: the digests of (user, target item) agree, and are real digests
    assert runs["SASRec"]["targets_digest"] == runs["HUGT"]["targets_digest"]
    assert int(runs["SASRec"]["targets_digest"]["test"].split(":")[0]) > 0
    # one shared evaluation setting in both runs' final configs
    for key in ("eval_args", "metrics", "topk", "valid_metric", "seed", "MAX_ITEM_LIST_LENGTH", "epochs"):
        assert runs["SASRec"]["config"][key] == runs["HUGT"]["config"][key], key
    # a fresh build of the default split gives the recorded digest; another split does not
    assert (
        compare.targets_digest_of_config(compare.make_config("SASRec", "synthetic", None, {}))
        == runs["HUGT"]["targets_digest"]
    )
    ratio_split = {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"}
    other = compare.targets_digest_of_config(
        compare.make_config("SASRec", "synthetic", None, {"eval_args": ratio_split})
    )
    assert other["test"] != runs["HUGT"]["targets_digest"]["test"]

    with open(os.path.join(output_dir, "comparison.csv"), newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["model"] for row in table] == ["SASRec", "HUGT"]
    assert list(table[0]) == [
        "model",
        "runs",
        "valid ndcg@10",
        "valid hit@10",
        "test ndcg@10",
        "test hit@10",
        "test ndcg@10 vs SASRec",
        "test ndcg@10 vs SASRec p",
        "test ndcg@10 vs SASRec ci low",
        "test ndcg@10 vs SASRec ci high",
        "test hit@10 vs SASRec",
        "test hit@10 vs SASRec p",
        "test hit@10 vs SASRec ci low",
        "test hit@10 vs SASRec ci high",
        "s/epoch",
        "parameters",
    ]
    # the per-user values beside each record are RecBole's: their mean is the recorded metric
    for model in ("SASRec", "HUGT"):
        values = compare.load_per_user(os.path.join(output_dir, "runs", f"{model}-seed2020.npz"))
        assert len(values["users"]) == int(runs[model]["targets_digest"]["test"].split(":")[0])
        assert len(set(values["users"].tolist())) == len(values["users"])
        for name in ("ndcg@10", "hit@10"):
            assert round(float(values[name].mean()), 4) == pytest.approx(runs[model]["test_result"][name], abs=1e-4)
    assert float(table[1]["test ndcg@10 vs SASRec p"]) < 1.0
    assert float(table[0]["test ndcg@10 vs SASRec"]) == 0.0 and table[0]["test ndcg@10 vs SASRec p"] == ""
    assert float(table[1]["test ndcg@10"]) == pytest.approx(runs["HUGT"]["test_result"]["ndcg@10"])
    assert int(table[1]["parameters"]) == runs["HUGT"]["num_parameters"]
    summary = json.load(open(tmp_path / "summary.json"))
    assert [row["model"] for row in summary["rows"]] == ["SASRec", "HUGT"] and summary["baseline"] == "SASRec"
    markdown = open(os.path.join(output_dir, "comparison.md")).read()
    assert "dataset: synthetic" in markdown and "evaluation targets: identical" in markdown
    assert "seeds: 2020" in markdown and "evaluation mode:" in markdown
    assert "\\begin{tabular}" in open(os.path.join(output_dir, "comparison.tex")).read()
    with open(os.path.join(output_dir, "comparison_ndcg_10.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # resume: the finished runs are skipped, their records untouched
    record_file = os.path.join(output_dir, "runs", "HUGT-seed2020.json")
    before = os.stat(record_file).st_mtime_ns
    capsys.readouterr()
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "skipped SASRec seed 2020" in out and "skipped HUGT seed 2020" in out
    assert "training" not in out
    assert os.stat(record_file).st_mtime_ns == before

    # a different shared setting never reuses (or overwrites) those records
    with pytest.raises(compare.ResumeConflictError):
        compare.main(argv + ["--learning_rate=0.01"])
    assert os.stat(record_file).st_mtime_ns == before


# ---------------------------------------------------------------------------------------------
# benchmarks/run_benchmarks.py: the machinery, on the smallest run


def _load_script(name):
    import importlib.util

    from conftest import REPO_ROOT

    path = os.path.join(REPO_ROOT, "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_benchmark_script():
    return _load_script("run_benchmarks")


def test_benchmark_script_writes_its_page_through_the_tuned_protocol(tmp_path):
    import subprocess
    import sys

    bench = _load_benchmark_script()
    output = tmp_path / "page" / "RESULTS.md"  # a folder that does not exist yet
    command = [sys.executable, bench.__file__, "--models", "SASRec,GRU4Rec", "--datasets", "synthetic"]
    command += ["--tune", "1", "--repeats", "1", "--epochs", "1", "--hidden-size", "8", "--max-len", "10"]
    command += ["--batch-size", "2048", "--work-dir", str(tmp_path / "work"), "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    page = output.read_text()
    assert page.splitlines()[2].startswith("**smoke test: not converged/tuned enough to rank models**")
    assert "--models SASRec,GRU4Rec --datasets synthetic --tune 1 --repeats 1 --epochs 1" in page  # the command
    assert "- wall time:" in page and "estimated wall time of the full budget" in page and "recbole 1.2.1" in page
    assert "training time in the records" in page and "- records written from " in page
    # every trial and run names the machine that timed it; one machine, so no warning
    assert f"- machines that timed the trial and run records (number of records): {compare.machine_label()} (4)\n" in page
    left_out = next(line for line in page.splitlines() if line.startswith("- models of the default list"))
    assert "QuerySeqRec" in left_out and "BERT4Rec" in left_out and "GRU4Rec" not in left_out
    result = json.loads((tmp_path / "page" / "RESULTS.json").read_text())
    comparison = result["datasets"]["synthetic"]["comparison"]
    gru = comparison["models"]["GRU4Rec"]
    row = next(line for line in page.splitlines() if line.startswith("| GRU4Rec | RecBole |"))
    assert f"{gru['test']['ndcg@10']['mean']:.4f}" in row and f"{100 * gru['test']['ndcg@10']['change']:+.1f}%" in row
    assert row.endswith("| ok |") and result["full_budget"] is False and result["estimated_full_seconds"] > 0
    assert "| GRU4Rec | hyper/GRU4Rec.hyper + hyper/default.hyper | 1 | dropout_prob: choice [0.0, 0.2, 0.4, 0.6]; learning_rate: loguniform [0.0003, 0.01]; weight_decay: choice [0.0, 1e-06, 1e-05, 0.0001] | dropout_prob=" in page
    assert ("| SASRec | hyper/SASRec.hyper + hyper/default.hyper | 1 | attn_dropout_prob: choice [0.0, 0.2, 0.5]; hidden_dropout_prob: choice "
            "[0.0, 0.2, 0.4, 0.6, 0.8]; learning_rate: loguniform [0.0003, 0.01]; weight_decay: choice [0.0, 1e-06, 1e-05, 0.0001] |") in page
    # the runs tested their best-validation checkpoints, and the plots are real PNGs
    run = json.load(open(tmp_path / "work" / "synthetic" / "runs" / "GRU4Rec-seed2020.json"))
    assert run["checkpoint"] and os.path.isfile(run["checkpoint"])
    for name in ("RESULTS_synthetic_ndcg10.png", "RESULTS_synthetic_quality_vs_speed.png"):
        assert f"]({name})" in page
        assert (tmp_path / "page" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_records_timed_on_other_machines_are_counted_and_the_page_says_timings_do_not_compare():
    import datetime

    bench = _load_benchmark_script()
    found = {"trials": [{"machine": "CPU A, 2 cores"}, {}], "runs": [{"machine": "CPU B, 2 cores"}, {"machine": "CPU A, 2 cores"}]}
    machines = bench.record_machines(found)
    assert machines == {"CPU A, 2 cores": 2, "not recorded": 1, "CPU B, 2 cores": 1}
    now = datetime.datetime.now(datetime.timezone.utc)
    page = bench.render_page([], bench.build_parser().parse_args([]), "cmd", now, now, ("0", "0"), None, {}, None, None,
                             machines)
    assert ("- machines that timed the trial and run records (number of records): CPU A, 2 cores (2); CPU B, 2 cores (1); "
            "not recorded (1); s/epoch and wall times compare only between records of one machine") in page
    # each row's s/epoch names the machine(s) that timed its seed runs once a section mixes machines
    comparison = {
        "baseline": "SASRec", "test": "Wilcoxon signed-rank test",
        "setting": {"split": {}, "order": "TO", "group_by": "user", "eval_mode": "full", "seeds": [1, 2]},
        "models": {m: {"test": {}, "valid": {}, "seconds_per_epoch": 2.0, "num_parameters": 1, "chosen": {}, "seeds": [1, 2]}
                   for m in ("SASRec", "HUGT")},
    }
    runs = [{"model": "SASRec", "machine": "CPU A, 2 cores"}, {"model": "SASRec", "machine": "CPU A, 2 cores"},
            {"model": "HUGT", "machine": "CPU A, 2 cores"}, {"model": "HUGT"}]
    lines = "\n".join(bench.dataset_section("x", ["SASRec", "HUGT"], comparison, {}, {}, 1.0, set(), [], {"runs": runs}, 9))
    assert "| SASRec | RecBole | - | - | - | - | 2.00 [m1] |" in lines and "| HUGT | RecBole | - | - | - | - | 2.00 [m1+m2] |" in lines
    assert "(m1 = CPU A, 2 cores; m2 = not recorded)" in lines
    lines = "\n".join(bench.dataset_section("x", ["SASRec"], comparison, {}, {}, 1.0, set(), [], {"runs": runs[:2]}, 9))
    assert "| 2.00 |" in lines and "[m1]" not in lines  # one machine: no tags
    # the comparison's own table and JSON say so too
    records = {"SASRec": [dict(_record("SASRec", 1, 0.1, 2.0), machine="CPU A"), dict(_record("SASRec", 2, 0.1, 4.0), machine="CPU B")]}
    metric_names, rows = compare.summarise(records, baseline="SASRec")
    assert "| 3.00 ± 1.41 (2 machines) |" in compare.render_markdown(compare.table_columns(metric_names, "SASRec"), rows, [])
    assert compare.record_machine_counts(records["SASRec"] + [{}]) == {"CPU A": 1, "CPU B": 1, "not recorded": 1}


def test_a_failing_model_becomes_a_row_and_a_full_budget_is_not_called_a_smoke_test():
    bench = _load_benchmark_script()
    cell = {"mean": 0.2, "std": 0.01, "per_seed": [0.19, 0.21], "p_value": 0.001, "change": 0.25, "change_ci": [0.1, 0.4]}
    comparison = {
        "baseline": "SASRec",
        "test": "Wilcoxon signed-rank test",
        "setting": {"split": {}, "order": "TO", "group_by": "user", "eval_mode": "full", "seeds": [1, 2]},
        "models": {
            "HUGT": {"test": {"ndcg@10": cell}, "valid": {}, "seconds_per_epoch": 2.0, "num_parameters": 1234,
                     "chosen": {}, "seeds": [1, 2]},
        },
    }
    failures = {"EMBSR": "failed (seed 1): ValueError: OPERATION_FIELD is not set"}
    records = {"runs": [{"model": "HUGT", "epochs_trained": 12}, {"model": "HUGT", "epochs_trained": 30}]}
    lines = bench.dataset_section("ml-100k", ["EMBSR", "HUGT"], comparison, failures, {}, 60.0, {"EMBSR", "HUGT"}, [],
                                  records, 30)
    assert "| EMBSR | extension | - | - | - | - | - | - | - | failed (seed 1): ValueError: OPERATION_FIELD is not set |" in lines
    # the epochs column: mean epochs trained, and how many runs reached the cap (here 1 of 2)
    assert "| HUGT | extension | 0.2000 ± 0.0100 | +25.0% [+10.0, +40.0] p=0.001 * | - | - | 2.00 | 21.0 (1/2) | 1,234 | ok |" in lines
    assert "| HUGT | at least level with SASRec (not significantly below) | +25.0% [+10.0, +40.0] p=0.001 * | yes |" in lines
    full = bench.build_parser().parse_args([])
    assert bench.is_full_budget(full) and not bench.is_full_budget(bench.build_parser().parse_args(["--tune", "2"]))


def test_query_split_groups_users_by_their_last_input_event(tmp_path):
    bench = _load_benchmark_script()
    flags = bench.last_event_is_query("synthetic", tiny_config_dict())
    share = sum(flags.values()) / len(flags)
    assert len(flags) > 100 and 0.05 < share < 0.5  # about 16% of the synthetic test users
    runs = tmp_path / "runs"
    runs.mkdir()
    users = np.array(sorted(flags))
    is_query = np.array([flags[u] for u in users])
    values = np.where(is_query, 0.5, 0.1)
    compare.save_per_user(str(runs / "A-seed1.npz"), {"users": users[::-1], "ndcg@10": values[::-1]})
    # a baseline B that is better on the item-ended users only: the paired test runs within each group
    base = np.where(is_query, 0.1, 0.3) + np.linspace(0, 0.01, len(users))
    compare.save_per_user(str(runs / "B-seed1.npz"), {"users": users, "ndcg@10": base})
    split = bench.query_split({"baseline": "B", "models": {"A": {"seeds": [1]}, "B": {"seeds": [1]}}}, str(tmp_path), flags)
    assert split["A"]["query"]["mean"] == 0.5 and split["A"]["query"]["users"] == int(is_query.sum())
    assert split["A"]["item"]["mean"] == pytest.approx(0.1) and split["A"]["item"]["users"] == int((~is_query).sum())
    assert split["A"]["query"]["change"] > 3 and split["A"]["query"]["p_value"] < 1e-6
    assert split["A"]["item"]["change"] < -0.6 and split["A"]["item"]["p_value"] < 1e-6
    assert "change" not in split["B"]["query"]


def test_the_claims_are_read_from_the_measured_change_and_its_test():
    bench = _load_benchmark_script()
    assert bench.claim_holds({"change": 0.2, "p_value": 0.01}, 0.15, True)
    assert not bench.claim_holds({"change": 0.2, "p_value": 0.2}, 0.15, True)  # not significant
    assert not bench.claim_holds({"change": 0.1, "p_value": 0.001}, 0.15, True)  # too small
    assert bench.claim_holds({"change": -0.03, "p_value": 0.4}, None, False)  # level: within noise
    assert not bench.claim_holds({"change": -0.03, "p_value": 0.01}, None, False)  # significantly below
    assert bench.claim_holds({"change": None}, 0.1, True) is None


def test_benchmarks_test_the_best_validation_checkpoint(tmp_path):
    import sys

    from conftest import REPO_ROOT

    sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
    from common import run_best_validation

    config = tiny_config_dict(epochs=3, metrics=["NDCG"], topk=[10], valid_metric="NDCG@10", learning_rate=0.05)
    record = run_best_validation("GRU4Rec", "synthetic", config, checkpoint_dir=str(tmp_path / "saved"))
    assert record["checkpoint"] and os.path.isfile(record["checkpoint"])
    values = compare.per_user_test_values(record["checkpoint"])  # the saved (best-validation) model
    assert round(float(values["ndcg@10"].mean()), 4) == pytest.approx(record["test_result"]["ndcg@10"], abs=1e-4)


# ---------------------------------------------------------------------------------------------
# tuned comparison with seeds and significance (issue 12, items 1 and 2): the plumbing, tiny


def test_model_specs_with_variants_keep_commas_inside_brackets():
    entries = compare.parse_model_specs("SASRec, EMBSR[variant=EMBSR-NS,fusion_beta=0.2],HUGT[n_graph_heads=0]")
    assert [(e.label, e.model, e.fixed) for e in entries] == [
        ("SASRec", "SASRec", {}),
        ("EMBSR[variant=EMBSR-NS,fusion_beta=0.2]", "EMBSR", {"variant": "EMBSR-NS", "fusion_beta": 0.2}),
        ("HUGT[n_graph_heads=0]", "HUGT", {"n_graph_heads": 0}),
    ]
    with pytest.raises(ValueError, match="unbalanced"):
        compare.parse_model_specs("SASRec,EMBSR[variant=EMBSR-NS")
    with pytest.raises(ValueError, match="--key=value"):
        compare.parse_model_specs("SASRec,EMBSR[variant]")


def test_search_spaces_and_the_default_space(tmp_path, monkeypatch):
    assert compare.space_file("HUGT").endswith("hyper/HUGT.hyper")
    assert compare.space_file("SRGNN") == compare.DEFAULT_SPACE_FILE  # no dropout to search
    # the baseline searches its dropouts and weight decay too, not only the learning rate
    sasrec = {p[0] for p in compare.search_space("SASRec")[0]}
    assert sasrec == {"learning_rate", "hidden_dropout_prob", "attn_dropout_prob", "weight_decay"}
    # equal tuning: every model of the results page searches the learning rate, the weight decay
    # (RecBole's optimiser applies it to every model) and each dropout key its own yaml sets
    import yaml
    from recbole.config import Config  # noqa: F401  (RecBole installed: its yaml files are there)
    import recbole

    from recbole_ext.tuning import read_params_file

    (name, kind, (low, high)), decay = read_params_file(compare.DEFAULT_SPACE_FILE)
    shared_decay = tuple(decay)
    for model in ("SASRec", "GRU4Rec", "NARM", "SRGNN", "GCSAN", "BERT4Rec", "Caser",
                  "QuerySeqRec", "HUGT", "EMBSR", "MAGNN", "DGSR"):
        own = os.path.join(os.path.dirname(compare.DEFAULT_SPACE_FILE), "..", "model", f"{model}.yaml")
        stock = os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{model}.yaml")
        with open(own if os.path.isfile(own) else stock) as f:
            keys = set(yaml.safe_load(f))
        # QuerySeqRec's robustness switches (off by default, measured in benchmarks/QSR_WEAKQ.md) are not searched
        dropouts = {k for k in keys if "dropout" in k and k not in ("stream_dropout", "word_dropout")}
        space = {p[0]: p for p in compare.search_space(model)[0]}
        assert {"learning_rate", "weight_decay"} | dropouts <= set(space), (model, dropouts - set(space))
        # one weight-decay grid for all: a model with a wider one spends trials the others do not
        assert space["weight_decay"] == shared_decay, (model, space["weight_decay"])
    assert (name, kind) == ("learning_rate", "loguniform")
    assert decay == ("weight_decay", "choice", [0.0, 1e-6, 1e-5, 1e-4])
    assert compare.describe_space([(name, kind, (low, high))]) == {name: "loguniform [0.0003, 0.01]"}
    # a model's own space that leaves the learning rate out gets the default one added ...
    (tmp_path / "hyper").mkdir()
    (tmp_path / "hyper" / "HUGT.hyper").write_text("knn_k choice [5,10,20]\n")
    with monkeypatch.context() as patch:
        patch.setattr(compare.paths, "PROPERTIES_DIR", str(tmp_path))
        patch.setattr(compare.paths, "hyper_file", lambda model: str(tmp_path / "hyper" / f"{model}.hyper"))
        own = {p[0]: p for p in read_params_file(compare.space_file("HUGT"))}
        params, label = compare.search_space("HUGT")
    assert label.startswith("hyper/HUGT.hyper + ") and label.endswith("default.hyper") and "learning_rate" not in own
    assert {p[0]: p for p in params} == dict(own, learning_rate=(name, kind, [low, high]), weight_decay=decay)
    # ... one that searches it keeps its own values; keys an entry fixes are not searched
    params, label = compare.search_space("EMBSR", {"dropout_prob": 0.1})
    embsr = {p[0]: p for p in read_params_file(compare.space_file("EMBSR"))}
    assert label == "hyper/EMBSR.hyper + hyper/default.hyper"
    assert {p[0]: p for p in params} == {"learning_rate": embsr["learning_rate"], "weight_decay": decay}


def test_data_digest_sees_a_changed_atomic_file(tmp_path):
    from recbole_ext.data import dataset_content_digest

    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    config = {"data_path": str(folder), "dataset": "d"}
    before = dataset_content_digest(config)
    assert before == dataset_content_digest(config)
    (folder / "d.inter").write_text("user_id:token\titem_id:token\n1\t3\n")
    assert dataset_content_digest(config) != before
    assert compare.setting_digest("d", {}, None, before) != compare.setting_digest("d", {}, None, "other")


def test_tuned_comparison_with_seeds_and_paired_tests_writes_json_and_resumes(tmp_path, capsys):
    from recbole_ext.cli import main as cli_main

    output_dir = str(tmp_path / "tuned")
    argv = ["--model=SASRec,GRU4Rec", "--dataset=synthetic", f"--output_dir={output_dir}", "--tune=2", "--repeats=2"]
    argv += _tiny_args(metrics="['NDCG','Hit']", topk=10, valid_metric="NDCG@10", stopping_step=1)
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    for label in ("SASRec", "GRU4Rec"):  # the first seed's run is the chosen trial: tested, not trained again
        assert f"[compare] testing {label} seed 2020: the chosen trial is this very run" in out
        assert f"[compare] training {label} seed 2020" not in out and f"[compare] training {label} seed 2021" in out

    result = json.load(open(os.path.join(output_dir, "comparison.json")))
    assert result["baseline"] == "SASRec" and result["test"] == "Wilcoxon signed-rank test"
    for label in ("SASRec", "GRU4Rec"):
        model = result["models"][label]
        assert model["seeds"] == [2020, 2021]
        searched = {"learning_rate": "loguniform [0.0003, 0.01]", "weight_decay": "choice [0.0, 1e-06, 1e-05, 0.0001]"}
        if label == "SASRec":  # the baseline also searches its dropouts (hyper/SASRec.hyper)
            searched.update(hidden_dropout_prob="choice [0.0, 0.2, 0.4, 0.6, 0.8]", attn_dropout_prob="choice [0.0, 0.2, 0.5]")
        else:  # and GRU4Rec its own (hyper/GRU4Rec.hyper)
            searched.update(dropout_prob="choice [0.0, 0.2, 0.4, 0.6]")
        assert model["searched"] == searched
        # the chosen value is the trial with the best validation score; trials were never tested
        trials = model["trials"]
        assert len(trials) == 2 and trials[0]["params"] != trials[1]["params"]
        best = max(trials, key=lambda t: t["valid_score"])
        assert model["chosen"] == best["params"] and 3e-4 <= model["chosen"]["learning_rate"] <= 1e-2
        trial_files = [f for f in os.listdir(os.path.join(output_dir, "trials", label)) if f.endswith(".json")]
        assert len(trial_files) == 2
        for file in trial_files:
            assert "test_result" not in json.load(open(os.path.join(output_dir, "trials", label, file)))
        runs = [json.load(open(os.path.join(output_dir, "runs", f"{label}-seed{s}.json"))) for s in (2020, 2021)]
        assert all(r["config"]["learning_rate"] == model["chosen"]["learning_rate"] for r in runs)
        # same seed, same configuration: the chosen trial's validation score comes back exactly
        assert runs[0]["best_valid_score"] == pytest.approx(best["valid_score"], abs=1e-12)
        assert runs[0]["trained_as_trial"] is True and "trained_as_trial" not in runs[1]
        kept = os.path.join(output_dir, "trials", label, "saved")
        assert runs[0]["checkpoint"].startswith(kept) and os.path.isfile(runs[0]["checkpoint"])
        assert len(os.listdir(kept)) == 1  # the other trial's checkpoint is deleted
        ndcg = model["test"]["ndcg@10"]
        assert set(ndcg) == {"mean", "std", "per_seed", "p_value", "change", "change_ci"}
        assert ndcg["per_seed"] == [r["test_result"]["ndcg@10"] for r in runs]
        assert ndcg["mean"] == pytest.approx(np.mean(ndcg["per_seed"]))
        assert ndcg["std"] == pytest.approx(np.std(ndcg["per_seed"], ddof=1))
        assert set(model["valid"]["ndcg@10"]) >= {"mean", "std", "per_seed"}
        # another seed changes the per-user values
        first, second = (compare.load_per_user(os.path.join(output_dir, "runs", f"{label}-seed{s}.npz")) for s in (2020, 2021))
        assert not np.array_equal(first["ndcg@10"], second["ndcg@10"])
    assert result["models"]["SASRec"]["test"]["ndcg@10"]["p_value"] is None
    gru = result["models"]["GRU4Rec"]["test"]["ndcg@10"]
    assert 0.0 <= gru["p_value"] <= 1.0 and gru["change_ci"][0] <= gru["change"] <= gru["change_ci"][1]
    # the pooled paired change is the change of the (user, seed) means, recomputed from the .npz
    pooled = {
        label: np.concatenate(
            [compare.load_per_user(os.path.join(output_dir, "runs", f"{label}-seed{s}.npz"))["ndcg@10"] for s in (2020, 2021)]
        )
        for label in ("SASRec", "GRU4Rec")
    }
    assert gru["change"] == pytest.approx(pooled["GRU4Rec"].mean() / pooled["SASRec"].mean() - 1)
    # testing the chosen trial's checkpoint gives exactly what training that run again gives
    first_file = os.path.join(output_dir, "runs", "SASRec-seed2020.json")
    first = json.load(open(first_file))
    again_file = str(tmp_path / "again" / "runs" / "SASRec-seed2020.json")
    asked = dict(first["requested"], checkpoint_dir=str(tmp_path / "again" / "saved"))
    again = compare.run_one("SASRec", "synthetic", None, asked, again_file, first["setting_digest"], first["chosen"])
    assert "trained_as_trial" not in again and again["epochs_trained"] == first["epochs_trained"]
    assert again["best_valid_result"] == first["best_valid_result"] and again["test_result"] == first["test_result"]
    ours, theirs = (compare.load_per_user(compare.per_user_file(f)) for f in (first_file, again_file))
    assert np.array_equal(ours["users"], theirs["users"]) and np.array_equal(ours["ndcg@10"], theirs["ndcg@10"])
    markdown = open(os.path.join(output_dir, "comparison.md")).read()
    assert "tuning: 2 trials per model" in markdown and "Wilcoxon signed-rank test" in markdown
    assert "| GRU4Rec | hyper/GRU4Rec.hyper + hyper/default.hyper | 2 | dropout_prob: choice [0.0, 0.2, 0.4, 0.6]; learning_rate: loguniform [0.0003, 0.01]; weight_decay: choice [0.0, 1e-06, 1e-05, 0.0001] | dropout_prob=" in markdown

    # resume: every trial and run is read back, nothing trains
    capsys.readouterr()
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "[compare] training" not in out and out.count("[compare] skipped") == 8  # 4 trials, 4 runs
    assert json.load(open(os.path.join(output_dir, "comparison.json")))["models"] == result["models"]

    # records made on a CPU whose exp rounds the drawn learning rates one bit apart still resume
    nudged = {}
    for label in ("SASRec", "GRU4Rec"):
        folder = os.path.join(output_dir, "trials", label)
        for file in [f for f in os.listdir(folder) if f.endswith(".json")]:
            record = json.load(open(os.path.join(folder, file)))
            record["params"]["learning_rate"] = math.nextafter(record["params"]["learning_rate"], 1.0)
            os.remove(os.path.join(folder, file))
            with open(os.path.join(folder, f"other-cpu-{file}"), "w") as f:
                json.dump(record, f)
        nudged[label] = math.nextafter(result["models"][label]["chosen"]["learning_rate"], 1.0)
        for seed in (2020, 2021):
            path = os.path.join(output_dir, "runs", f"{label}-seed{seed}.json")
            record = json.load(open(path))
            record["chosen"]["learning_rate"] = nudged[label]
            json.dump(record, open(path, "w"))
    capsys.readouterr()
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "[compare] training" not in out and out.count("[compare] skipped") == 8
    for label in ("SASRec", "GRU4Rec"):  # the chosen value is the recorded one, not this machine's
        assert json.load(open(os.path.join(output_dir, "comparison.json")))["models"][label]["chosen"]["learning_rate"] == nudged[label]
        assert len(os.listdir(os.path.join(output_dir, "trials", label))) == 4  # two trials, the space, saved/


def test_same_seed_reproduces_the_per_user_values(tmp_path):
    config = dict(tiny_config_dict(metrics=["NDCG", "Hit"], topk=[10], valid_metric="NDCG@10"))
    values = []
    for name in ("a", "b"):
        record_file = str(tmp_path / name / "runs" / "SASRec-seed2020.json")
        config["checkpoint_dir"] = str(tmp_path / name / "saved")
        compare.run_one("SASRec", "synthetic", None, dict(config), record_file, "digest")
        values.append(compare.load_per_user(compare.per_user_file(record_file)))
    assert np.array_equal(values[0]["users"], values[1]["users"])
    assert np.array_equal(values[0]["ndcg@10"], values[1]["ndcg@10"]) and values[0]["ndcg@10"].any()


# ---------------------------------------------------------------------------------------------
# benchmarks/paper_tables.py: rows as variants, the paper's orderings as data


def _load_paper_tables():
    return _load_script("paper_tables")


def test_paper_orderings_are_derived_from_the_papers_values():
    tables = {t["key"]: t for t in _load_paper_tables().TABLES}
    magnn = tables["magnn-table3"]
    assert ("(6) MA-GNN", "(3) MF+S+H+gating") in magnn["claims"]
    assert ("(2) MF+S", "(1) MF") in magnn["claims"] and ("(1) MF", "(2) MF+S") not in magnn["claims"]
    assert len(magnn["claims"]) == 15  # six distinct values: every pair
    assert tables["qsr-table3"]["claims"][0] == ("Query-SeqRec", "w/ R")
    for table in tables.values():  # every claim names rows of its table
        labels = {row[0] for row in table["rows"]}
        assert all(a in labels and b in labels for a, b in table["claims"]), table["key"]


def test_paper_tables_plumbing_one_table_two_rows(tmp_path):
    paper_tables = _load_paper_tables()
    output = tmp_path / "PAPER_TABLES.md"
    argv = ["--tables", "magnn-table3", "--rows", "2", "--datasets", "synthetic", "--tune", "1", "--repeats", "1"]
    argv += ["--epochs", "1", "--hidden-size", "8", "--max-len", "10", "--batch-size", "2048"]
    argv += ["--work-dir", str(tmp_path / "work"), "--output", str(output)]
    assert paper_tables.main(argv) == 0
    page = output.read_text()
    assert "**smoke test: not converged/tuned enough to rank models**" in page
    assert "## MA-GNN Table 3 (architecture) on synthetic" in page
    left_out = next(line for line in page.splitlines() if line.startswith("- tables this command did not run"))
    assert "qsr-table3" in left_out and "dgsr-variants" in left_out and "magnn-table3" not in left_out
    folder = tmp_path / "work" / "synthetic"
    result = json.load(open(folder / "comparison.json"))
    assert set(result["models"]) == {"SASRec", "(1) MF", "(2) MF+S"}
    # each row ran its own variant of the model
    for label, variant in (("(1) MF", "mf"), ("(2) MF+S", "mf_s")):
        run = json.load(open(folder / "runs" / f"{compare._safe_file_name(label)}-seed2020.json"))
        assert run["model"] == "MAGNN" and run["config"]["variant"] == variant
    mf, mf_s = (result["models"][k]["test"]["ndcg@10"]["mean"] for k in ("(1) MF", "(2) MF+S"))
    (claim,) = json.loads((tmp_path / "PAPER_TABLES.json").read_text())["tables"][0]["claims"]
    assert (claim["better"], claim["worse"]) == ("(2) MF+S", "(1) MF")
    assert claim["agrees"] == (mf_s > mf) and 0.0 <= claim["p_value"] <= 1.0
    assert claim["change"] == pytest.approx(mf_s / mf - 1, abs=0.02)  # the means are rounded to 4 places
    agrees = "yes" if claim["agrees"] else "NO"
    assert any(line.startswith("| (2) MF+S | (1) MF |") and f"| {agrees} |" in line for line in page.splitlines())


def _fake_tuned_comparison(folder, hidden_size=8):
    """A run_benchmarks.py work folder whose tuned comparison chose these values."""
    (folder / "synthetic").mkdir(parents=True)
    chosen = {"SASRec": {"learning_rate": 0.0042}, "MAGNN": {"learning_rate": 0.0071, "memory_slots": 5}}
    source = {"setting": {"overrides": {"hidden_size": hidden_size, "epochs": 1}},
              "models": {label: {"chosen": values, "trials": [{}] * 8} for label, values in chosen.items()}}
    (folder / "synthetic" / "comparison.json").write_text(json.dumps(source))


def test_paper_tables_rows_inherit_the_tuned_choice_and_magnn_runs_both_protocols(tmp_path):
    paper_tables = _load_paper_tables()
    _fake_tuned_comparison(tmp_path / "results")
    output = tmp_path / "PAPER_TABLES.md"
    argv = ["--tables", "magnn-table3", "--rows", "2", "--datasets", "synthetic", "--repeats", "1", "--epochs", "1",
            "--hidden-size", "8", "--max-len", "10", "--batch-size", "2048", "--chosen-from", str(tmp_path / "results"),
            "--work-dir", str(tmp_path / "work"), "--output", str(output)]
    assert paper_tables.main(argv) == 0
    page = output.read_text()
    assert "no row is tuned here" in page and "| inherited |" in page
    assert "**smoke test" in page  # --rows cuts the table: never a full page
    for folder in ("synthetic", "synthetic-magnn"):
        runs = tmp_path / "work" / folder / "runs"
        sasrec = json.load(open(runs / "SASRec-seed2020.json"))
        assert sasrec["config"]["learning_rate"] == 0.0042
        for label, variant in (("(1) MF", "mf"), ("(2) MF+S", "mf_s")):
            run = json.load(open(runs / f"{compare._safe_file_name(label)}-seed2020.json"))
            assert run["config"]["learning_rate"] == 0.0071 and run["config"]["memory_slots"] == 5
            assert run["config"]["variant"] == variant  # the row's own switch on top of the choice
        protocol = json.load(open(tmp_path / "work" / folder / "comparison.json"))["setting"]["eval_protocol"]
        assert protocol == ("magnn" if folder.endswith("-magnn") else "next_item")
    assert "## MA-GNN Table 3 (architecture) on synthetic, eval_protocol magnn" in page


def _woq_table_under_chosen_from(paper_tables, key, tmp_path):
    """A one-epoch ``--chosen-from`` run of the w/o Q table ``key``: a source comparison in which
    SASRec's choice covers its whole space (as a tuned comparison's does: nothing left to search)
    and QuerySeqRec chose a learning rate of 0.0071; returns the table, its row and the argv."""
    (tmp_path / "results" / "synthetic").mkdir(parents=True)
    sasrec = {"learning_rate": 0.0042, "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.5, "weight_decay": 0.0}
    chosen = {"SASRec": sasrec, "QuerySeqRec": {"learning_rate": 0.0071}}
    source = {"setting": {"overrides": {"hidden_size": 8, "epochs": 1}},
              "models": {label: {"chosen": values, "trials": [{}]} for label, values in chosen.items()}}
    (tmp_path / "results" / "synthetic" / "comparison.json").write_text(json.dumps(source))
    table = next(t for t in paper_tables.TABLES if t["key"] == key)
    (label, switches, _), = table["rows"]
    assert switches["use_queries"] is False
    argv = ["--tables", key, "--datasets", "synthetic", "--repeats", "1", "--epochs", "1", "--hidden-size", "8",
            "--max-len", "10", "--batch-size", "2048", "--chosen-from", str(tmp_path / "results"),
            "--work-dir", str(tmp_path / "work"), "--output", str(tmp_path / "PAPER_TABLES.md")]
    return table, label, switches, chosen, argv


def test_a_tuned_rows_table_tunes_its_rows_under_chosen_from_and_sasrec_keeps_its_choice(tmp_path):
    """QuerySeqRec's w/o Q inherits in Table 3 the configuration chosen for the full model; its
    own section tunes it with as many trials as SASRec had. Without ``tuned_rows`` the row would
    take QuerySeqRec's chosen learning rate (0.0071 here, outside the searched choices)."""
    paper_tables = _load_paper_tables()
    table, label, switches, chosen, argv = _woq_table_under_chosen_from(paper_tables, "qsr-woq-tuned", tmp_path)
    entries = paper_tables.entries_of(table, chosen=chosen)
    assert [e.fixed for e in entries] == [chosen["SASRec"], switches]  # nothing inherited from QuerySeqRec
    inherited = paper_tables.entries_of(next(t for t in paper_tables.TABLES if t["key"] == "qsr-table3"), chosen=chosen)
    assert inherited[-1].fixed["learning_rate"] == 0.0071  # Table 3's w/o Q does inherit it
    output = tmp_path / "PAPER_TABLES.md"
    assert paper_tables.main(argv) == 0
    folder = tmp_path / "work" / "synthetic-tuned-rows"
    result = json.load(open(folder / "comparison.json"))
    row = result["models"][label]
    assert len(row["trials"]) == 1 and row["chosen"]  # tuned here, one trial as the source had
    assert "use_queries" not in row["chosen"] and "augmentation" not in row["chosen"]  # switches are not searched
    run = json.load(open(folder / "runs" / f"{compare._safe_file_name(label)}-seed2020.json"))
    assert run["config"]["learning_rate"] == row["chosen"]["learning_rate"] != 0.0071
    assert run["config"]["use_queries"] is False
    assert not result["models"]["SASRec"]["trials"] and not result["models"]["SASRec"]["chosen"]
    assert json.load(open(folder / "runs" / "SASRec-seed2020.json"))["config"]["learning_rate"] == 0.0042
    page = output.read_text()
    assert "Except in qsr-woq-tuned" in page and "its rows are tuned here, 1 Hyperopt trials each" in page
    assert any(line.startswith(f"| {label} |") and "learning_rate=" in line for line in page.splitlines())
    assert any(line.startswith("| SASRec |") and "learning_rate=0.0042" in line for line in page.splitlines())


def test_an_inherit_from_table_takes_sasrecs_choice_and_is_not_run_without_one(tmp_path):
    """w/o Q at SASRec's chosen configuration: the row starts from SASRec's values, not
    QuerySeqRec's (whose learning rate 0.0071 Table 3's w/o Q inherits), and is trained untuned."""
    paper_tables = _load_paper_tables()
    table, label, switches, chosen, argv = _woq_table_under_chosen_from(paper_tables, "qsr-woq-sasrec", tmp_path)
    sasrec = chosen["SASRec"]
    entries = paper_tables.entries_of(table, chosen=chosen)
    assert [e.fixed for e in entries] == [sasrec, dict(sasrec, **switches)]
    assert entries[1].model == "QuerySeqRec"
    args = paper_tables.build_parser().parse_args(["--work-dir", str(tmp_path / "untuned")])
    comparison, _, _, error = paper_tables.run_table(table, "synthetic", args)
    assert comparison is None and "needs --chosen-from" in error  # no SASRec choice to take
    output = tmp_path / "PAPER_TABLES.md"
    assert paper_tables.main(argv) == 0
    folder = tmp_path / "work" / "synthetic"
    row = json.load(open(folder / "comparison.json"))["models"][label]
    assert not row.get("trials")  # not tuned
    run = json.load(open(folder / "runs" / f"{compare._safe_file_name(label)}-seed2020.json"))
    assert run["config"]["learning_rate"] == 0.0042 and run["config"]["attn_dropout_prob"] == 0.5
    assert run["config"]["use_queries"] is False
    page = output.read_text()
    assert "Except in qsr-woq-sasrec" in page and "take SASRec's chosen configuration" in page


def test_a_label_several_tables_share_has_one_set_of_switches():
    """Tables share their dataset's run records by label, so a label must mean one configuration."""
    switches = {}
    for table in _load_paper_tables().TABLES:
        for label, row, _ in table["rows"]:
            assert switches.setdefault((table["model"], label), row) == row, label


def test_no_row_becomes_another_by_the_values_its_model_was_tuned_to():
    """Rows start from the tuned choice: a row that leaves a searched key open would turn into the
    ablation that sets it wherever the search picks that value (QuerySeqRec's full row into w/o A
    once augmentation is searched), so such a row must fix the key."""
    from recbole_ext.tuning import read_params_file

    for table in _load_paper_tables().TABLES:
        space = {name: (kind, values) for name, kind, values in read_params_file(compare.space_file(table["model"]))}
        for label, row, _ in table["rows"]:
            for other, switches, _ in table["rows"]:
                for key, value in switches.items():
                    kind, values = space.get(key, (None, ()))
                    could_become = (key not in row and kind == "choice" and value in values
                                    and all(switches.get(k) == v for k, v in row.items()))
                    assert not could_become, (table["key"], label, other, key)


def test_a_record_made_with_other_fixed_keys_is_refused(tmp_path):
    config = tiny_config_dict(epochs=1)
    record_file = str(tmp_path / "runs" / "SASRec-seed2020.json")
    config["checkpoint_dir"] = str(tmp_path / "saved")
    compare.run_one("SASRec", "synthetic", None, dict(config), record_file, "digest")
    assert compare.run_one("SASRec", "synthetic", None, dict(config), record_file, "digest")["seed"] == config["seed"]
    with pytest.raises(compare.ResumeConflictError, match="made with n_layers=1, this run asks 2"):
        compare.run_one("SASRec", "synthetic", None, dict(config, n_layers=2), record_file, "digest")
    # where files live is not what a run computes: a record read from a moved folder is still the run
    moved = dict(config, checkpoint_dir=str(tmp_path / "elsewhere" / "saved"))
    assert compare.run_one("SASRec", "synthetic", None, moved, record_file, "digest")["seed"] == config["seed"]


def test_paper_tables_skip_rows_are_listed_as_not_run():
    paper_tables = _load_paper_tables()
    table = next(t for t in paper_tables.TABLES if t["key"] == "qsr-table3")
    labels = [e.label for e in paper_tables.entries_of(table, skip=["w/ R", "w/o A"])]
    assert labels == ["SASRec", "Query-SeqRec", "w/o Q"]
    comparison = {"setting": {"seeds": [1]}, "test": "Wilcoxon signed-rank test", "models": {}}
    lines = paper_tables.table_section(table, "synthetic", comparison, [], 1.0, None, skip=["w/ R"])
    assert any(line.startswith("| w/ R |") and "not run (--skip-rows)" in line for line in lines)
    assert any(line.startswith("| w/o A |") and "| failed |" in line for line in lines)


def _fake_table_runs(paper_tables, monkeypatch, mean):
    """Tables that 'run' without training: every row gets test NDCG@10 ``mean``."""
    def run_table(table, dataset, args, protocol=None, chosen=None, reuse_from=None):
        labels = ["SASRec"] + [row[0] for row in table["rows"]]
        models = {label: {"chosen": {}, "fixed": {}, "test": {"ndcg@10": {"mean": mean, "std": 0.0}}}
                  for label in labels}
        return {"setting": {"seeds": [2020]}, "test": "Wilcoxon signed-rank test", "models": models}, "", 1.0, None

    monkeypatch.setattr(paper_tables, "run_table", run_table)
    monkeypatch.setattr(paper_tables, "check_claims", lambda *args, **kwargs: [])


def test_paper_tables_keep_the_sections_of_other_datasets(tmp_path, monkeypatch):
    """A page built over several runs (one dataset, then another) keeps what it does not rerun,
    names the command of each kept section, and without --keep-sections holds this run only."""
    paper_tables = _load_paper_tables()
    output = tmp_path / "PAPER_TABLES.md"
    common = ["--output", str(output), "--work-dir", str(tmp_path / "work")]
    _fake_table_runs(paper_tables, monkeypatch, 0.1111)
    first = ["--tables", "magnn-table3", "--datasets", "synthetic", "--repeats", "1"] + common
    assert paper_tables.main(first) == 0
    _fake_table_runs(paper_tables, monkeypatch, 0.2222)
    second = ["--tables", "hugt-table2", "--datasets", "ml-100k", "--keep-sections"] + common  # the full budget
    for _ in range(2):  # keeping a kept section marks it once
        assert paper_tables.main(second) == 0
        page = output.read_text().splitlines()
        headings = [line for line in page if line.startswith("## ")]
        assert headings == ["## HUGT Table 2 (graph heads) on ml-100k",  # the order of TABLES
                            "## MA-GNN Table 3 (architecture) on synthetic",
                            "## MA-GNN Table 3 (architecture) on synthetic, eval_protocol magnn"]
        marks = [line for line in page if line.startswith("- kept from an earlier run")]
        assert len(marks) == 2 and all("--tables magnn-table3 --datasets synthetic" in m for m in marks)
        assert page[page.index(headings[1]) + 1] == marks[0]
        assert any("| 0.1111 ± 0.0000 |" in line for line in page) and any("| 0.2222 ± 0.0000 |" in line for line in page)
        # this run had the full budget; the kept one did not, and the page says so
        assert any(line.startswith("**smoke test") and "kept from an earlier run" in line for line in page)
        assert "qsr-table3" in next(line for line in page if line.startswith("- tables neither run nor kept"))
    summary = json.loads((tmp_path / "PAPER_TABLES.json").read_text())["tables"]
    assert [(e["table"], e["dataset"], e["eval_protocol"]) for e in summary] == [
        ("hugt-table2", "ml-100k", "next_item"), ("magnn-table3", "synthetic", "next_item"),
        ("magnn-table3", "synthetic", "magnn")]
    assert not any("shared setting differs" in line for line in page)  # both runs shared one setting
    # a section kept under another shared setting says which keys differ (on the page, not in its lines)
    assert paper_tables.main(second + ["--epochs", "3"]) == 0
    page = output.read_text().splitlines()
    default_epochs = paper_tables.build_parser().parse_args([]).epochs
    notes = [line for line in page if line.startswith("- its shared setting differs")]
    assert notes == [f"- its shared setting differs from this command's: epochs={default_epochs} (here 3)"] * 2
    assert page[page.index("## MA-GNN Table 3 (architecture) on synthetic") + 2] == notes[0]
    assert not any("differs" in line for e in json.loads((tmp_path / "PAPER_TABLES.json").read_text())["tables"]
                   for line in e["lines"])
    # a page whose JSON predates the sections' lines gives them from its Markdown
    legacy = json.loads((tmp_path / "PAPER_TABLES.json").read_text())
    recorded = legacy["tables"][1]["shared_setting"]
    for entry in legacy["tables"]:
        entry.pop("lines"), entry.pop("written"), entry.pop("shared_setting")
    (tmp_path / "PAPER_TABLES.json").write_text(json.dumps(legacy))
    kept = paper_tables.earlier_sections(str(output))
    header = next(line for line in output.read_text().splitlines() if line.startswith("- wall time:"))
    assert kept[("magnn-table3", "synthetic", None)]["written"] in header  # the date of the page's header
    # and their shared setting from the command that wrote them
    assert paper_tables.setting_of_section(kept[("magnn-table3", "synthetic", None)]) == recorded
    assert paper_tables.setting_of_section({"command": "python other.py"}) is None
    assert "not recorded" in paper_tables.setting_difference_line(None, recorded)
    assert kept[("magnn-table3", "synthetic", "magnn")]["lines"][0].endswith("on synthetic, eval_protocol magnn")
    assert not any(line.startswith("## ") for line in kept[("hugt-table2", "ml-100k", None)]["lines"][1:])
    # without the flag the page is this run's alone
    assert paper_tables.main(second[:-len(common) - 1] + common) == 0
    assert [line for line in output.read_text().splitlines() if line.startswith("## ")] == [
        "## HUGT Table 2 (graph heads) on ml-100k"]


def test_paper_tables_refuse_a_tuned_comparison_of_another_setting(tmp_path):
    paper_tables = _load_paper_tables()
    _fake_tuned_comparison(tmp_path / "results", hidden_size=64)
    argv = ["--tables", "magnn-table3", "--rows", "1", "--datasets", "synthetic", "--hidden-size", "8", "--epochs", "1",
            "--chosen-from", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"),
            "--output", str(tmp_path / "P.md")]
    with pytest.raises(ValueError, match="tuned with hidden_size=64, this run has 8"):
        paper_tables.main(argv)


def test_models_must_share_the_evaluation_protocol():
    base = {key: None for key in compare.SHARED_SETTING_KEYS}
    compare.check_shared_setting({"SASRec": dict(base, eval_protocol="dgsr"), "DGSR": dict(base, eval_protocol="dgsr")})
    with pytest.raises(ValueError, match="models disagree on 'eval_protocol'"):
        compare.check_shared_setting({"SASRec": dict(base), "MAGNN": dict(base, eval_protocol="magnn")})
    with pytest.raises(ValueError, match="dgsr_negatives"):
        compare.check_shared_setting({"SASRec": dict(base, dgsr_negatives=100), "DGSR": dict(base, dgsr_negatives=50)})


def test_a_run_another_comparison_already_made_is_copied_not_retrained(tmp_path, capsys):
    """paper_tables --chosen-from: SASRec and a row equal to the tuned choice reuse the results
    page's runs; a row with another configuration, or another source setting, trains."""
    overrides = tiny_config_dict(metrics=["NDCG"], topk=[10], valid_metric="NDCG@10")
    overrides.pop("n_graph_heads")
    source = str(tmp_path / "source")
    compare.run_comparison([compare.Entry("SASRec", "SASRec"), compare.Entry("GRU4Rec", "GRU4Rec")], "synthetic",
                           dict(overrides), output_dir=source, quiet=True)
    capsys.readouterr()
    entries = [compare.Entry("SASRec", "SASRec"),
               compare.Entry("GRU (its default dropout)", "GRU4Rec", {"dropout_prob": 0.3}),
               compare.Entry("GRU dropout 0.1", "GRU4Rec", {"dropout_prob": 0.1})]
    here = str(tmp_path / "here")
    compare.run_comparison(entries, "synthetic", dict(overrides), output_dir=here, quiet=True, reuse_from=(source, 0))
    printed = capsys.readouterr().out
    assert "[compare] reused SASRec seed 2020" in printed and "[compare] reused GRU (its default dropout)" in printed
    assert "[compare] training GRU dropout 0.1 seed 2020" in printed

    def record(folder, label):
        with open(os.path.join(folder, "runs", f"{compare._safe_file_name(label)}-seed2020.json")) as f:
            return json.load(f)

    copied = record(here, "GRU (its default dropout)")
    assert copied["reused_from"].endswith(os.path.join("source", "runs", "GRU4Rec-seed2020.json"))
    assert copied["test_result"] == record(source, "GRU4Rec")["test_result"]
    name = compare._safe_file_name("GRU (its default dropout)") + "-seed2020.json"
    per_user = compare.load_per_user(compare.per_user_file(os.path.join(here, "runs", name)))
    assert np.array_equal(per_user["ndcg@10"], compare.load_per_user(
        os.path.join(source, "runs", "GRU4Rec-seed2020.npz"))["ndcg@10"])
    assert "reused_from" not in record(here, "GRU dropout 0.1")
    # the source's setting must be the one it was made under: another trial count is another setting
    elsewhere = str(tmp_path / "elsewhere")
    compare.run_comparison(entries[:1], "synthetic", dict(overrides), output_dir=elsewhere, quiet=True,
                           reuse_from=(source, 3))
    assert "[compare] training SASRec seed 2020" in capsys.readouterr().out


def test_models_trained_side_by_side_give_the_results_of_one_process(tmp_path):
    """--jobs 2 trains the entries in two spawned processes; every run is seeded on its own, so the
    chosen values and every seed's test metrics are those of the same comparison in one process.
    GRU4Rec loads its batches in a dataloader worker (DGSR's default): a spawned child starts that
    worker as its parent would (under spawn it could not receive its dataset and died)."""
    overrides = tiny_config_dict(metrics=["NDCG"], topk=[10], valid_metric="NDCG@10")
    overrides.pop("n_graph_heads")
    entries = [compare.Entry("SASRec", "SASRec"), compare.Entry("GRU4Rec", "GRU4Rec", {"worker": 1})]
    results, spans = {}, {}
    for jobs in (1, 2):
        folder = tmp_path / f"jobs{jobs}"
        status, results[jobs] = compare.run_comparison(entries, "synthetic", dict(overrides), output_dir=str(folder),
                                                       tune=1, repeats=2, quiet=True, jobs=jobs)
        assert status == 0
        for label in ("SASRec", "GRU4Rec"):  # from the first trial's start to the last seed's end
            files = list((folder / "trials" / label).glob("*.json")) + list((folder / "runs").glob(f"{label}-seed*.json"))
            ends = {f: f.stat().st_mtime for f in files}
            spans[jobs, label] = (min(ends[f] - json.loads(f.read_text())["wall_seconds"] for f in files),
                                  max(ends.values()))
    # one process trains GRU4Rec after SASRec; two train them at the same time
    assert spans[1, "SASRec"][1] <= spans[1, "GRU4Rec"][0]
    assert spans[2, "GRU4Rec"][0] < spans[2, "SASRec"][1] and spans[2, "SASRec"][0] < spans[2, "GRU4Rec"][1]
    for label in ("SASRec", "GRU4Rec"):
        one, two = results[1]["models"][label], results[2]["models"][label]
        assert one["chosen"] == two["chosen"] and one["test"]["ndcg@10"]["per_seed"] == two["test"]["ndcg@10"]["per_seed"]
    seeds = results[2]["models"]["SASRec"]["test"]["ndcg@10"]["per_seed"]
    assert seeds[0] != seeds[1]  # the two seeds are two runs, not one run read twice
    with pytest.raises(ValueError, match="--jobs must be at least 1"):
        compare.run_comparison(entries, "synthetic", dict(overrides), output_dir=str(tmp_path / "x"), jobs=0)


# ---------------------------------------------------------------------------------------------
# benchmarks/convergence_check.py: the models that reached the epoch cap, trained again under a higher one


def test_convergence_check_retrains_at_cap_runs_under_the_higher_cap_with_the_baseline(tmp_path):
    """Both models of a one-epoch comparison stop at the cap; asked for GRU4Rec alone, the check
    trains SASRec too (its recorded runs are at the old cap, so they are not the new cap's), and
    every run it trains runs under the higher cap, on the results run's seeds."""
    check = _load_script("convergence_check")
    overrides = tiny_config_dict(metrics=["NDCG"], topk=[10], valid_metric="NDCG@10")
    overrides.pop("n_graph_heads")
    results = tmp_path / "results"
    compare.run_comparison([compare.Entry("SASRec", "SASRec"), compare.Entry("GRU4Rec", "GRU4Rec")], "synthetic",
                           dict(overrides), output_dir=str(results / "synthetic"), quiet=True)
    argv = ["--results", str(results), "--datasets", "synthetic", "--models", "GRU4Rec",
            "--work-dir", str(tmp_path / "work"), "--output", str(tmp_path / "CONVERGENCE.md")]
    with pytest.raises(ValueError, match="already 1"):
        check.main(argv + ["--epochs", "1"])
    assert check.main(argv + ["--epochs", "2"]) == 0
    for label in ("SASRec", "GRU4Rec"):
        run = json.load(open(tmp_path / "work" / "synthetic" / "runs" / f"{label}-seed2020.json"))
        assert run["config"]["epochs"] == 2 and run["epochs_trained"] == 2
    (summary,) = json.load(open(tmp_path / "CONVERGENCE.json"))["datasets"]
    assert summary["old_cap"] == 1 and summary["at_cap"] == {"SASRec": 1, "GRU4Rec": 1}
    rows = {row["model"]: row for row in summary["rows"]}
    assert rows["GRU4Rec"]["old"]["epochs"] == [1] and rows["GRU4Rec"]["new"]["epochs"] == [2]
    assert rows["GRU4Rec"]["old"]["test"] != rows["GRU4Rec"]["new"]["test"]  # a second epoch moved it
    page = (tmp_path / "CONVERGENCE.md").read_text()
    assert "| GRU4Rec | 1.0 (1/1 at cap) |" in page and "still at the cap" in page
    early = dict(summary, at_cap={"SASRec": 0, "GRU4Rec": 0}, rows=[])  # no run at the cap: no table
    assert "nothing was trained again" in check.render([early], "cmd", datetime.datetime.now(), 0.0)
