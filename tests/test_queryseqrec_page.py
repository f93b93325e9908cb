"""The figure page of issue 16 (``benchmarks/bench_queryseqrec.py --page``): its paired tests pair
(test user, seed), its verdicts follow the figures, and it states whether a run hit the cap.
Hand-made per-example results; nothing trains."""

import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import bench_queryseqrec as bench  # noqa: E402


def _row(users, ndcg, query_ended, epochs=5):
    ndcg, query_ended = np.asarray(ndcg, float), np.asarray(query_ended, bool)
    return {"valid_ndcg@10": float(ndcg.mean()), "epochs_trained": epochs,
            "test": {"all": float(ndcg.mean()), "query_ended": float(ndcg[query_ended].mean()),
                     "item_ended": float(ndcg[~query_ended].mean()),
                     "query_share": float(query_ended.mean())},
            "test_per_example": {"user": list(users), "ndcg@10": ndcg.tolist(),
                                 "query_ended": query_ended.tolist()}}


def _results(shift_default, shift_paper, seeds=(1, 2, 3), n=60, epochs=5):
    rng = np.random.default_rng(0)
    results = {}
    for dataset in ("synthetic", "synthetic-weakq"):
        rows = results.setdefault(dataset, {})
        for seed in seeds:
            users = rng.permutation(np.arange(1, n + 1))
            base = rng.uniform(0.1, 0.5, n)
            ended = np.arange(n) % 3 == 0
            noise = rng.normal(0, 0.01, n)
            order = rng.permutation(n)  # another model may list the users in another order
            rows.setdefault("SASRec", {})[seed] = _row(users, base, ended)
            rows.setdefault("QuerySeqRec", {})[seed] = _row(
                users[order], (base + shift_default[dataset] + noise)[order], ended[order], epochs)
            rows.setdefault("heterogeneous", {})[seed] = _row(
                users, base + shift_paper + noise, ended)
    return results


ARGS = SimpleNamespace(epochs=10, hidden=32, max_len=10, lr=5e-3, stopping_step=3, command="cmd")


def test_pairs_are_user_and_seed_and_the_verdicts_follow_the_figures(tmp_path):
    results = _results({"synthetic": 0.1, "synthetic-weakq": 0.0}, -0.05)
    figures = bench.page_figures(results, ARGS)
    default = figures["synthetic-weakq"]["QuerySeqRec"]
    assert default["all"]["pairs"] == 180 and default["query_ended"]["pairs"] == 60
    assert default["all"]["p_value"] > 0.05  # noise only, users aligned despite the order
    assert figures["synthetic"]["QuerySeqRec"]["all"]["change"] > 0.15
    assert figures["synthetic-weakq"]["heterogeneous"]["query_ended"]["p_value"] < 1e-6
    assert all(ok for _, ok in bench.verdicts(figures))
    worse = bench.page_figures(_results({"synthetic": 0.02, "synthetic-weakq": -0.05}, 0.0), ARGS)
    assert not any(ok for _, ok in bench.verdicts(worse))  # the control: every verdict flips


def test_page_files_state_the_cap_and_the_verdicts(tmp_path):
    args = SimpleNamespace(**vars(ARGS), page=str(tmp_path / "PAGE"))
    bench.write_page(_results({"synthetic": 0.1, "synthetic-weakq": 0.0}, -0.05, epochs=10), args)
    page = (tmp_path / "PAGE.md").read_text()
    data = json.loads((tmp_path / "PAGE.json").read_text())
    assert "synthetic-weakq/QuerySeqRec" in page and "(cap hit)" in page
    assert data["figures"]["synthetic"]["QuerySeqRec"]["hit_cap"]
    assert not data["figures"]["synthetic"]["SASRec"]["hit_cap"]
    assert [r["holds"] for r in data["required"]] == [True] * 5
    assert page.count("**holds**") == 5


def test_rows_with_other_test_examples_are_refused():
    results = _results({"synthetic": 0.1, "synthetic-weakq": 0.0}, -0.05)
    results["synthetic"]["QuerySeqRec"][1]["test_per_example"]["user"][0] = 999
    with pytest.raises(RuntimeError, match="differ"):
        bench.page_figures(results, ARGS)


def test_page_rows_add_a_variant_with_its_tests(tmp_path):
    """``--page-rows``: a variant present in the results gets its own row, paired against
    SASRec like the others; the verdicts stay those of the default and the paper's rows."""
    results = _results({"synthetic": 0.1, "synthetic-weakq": 0.0}, -0.05)
    for rows in results.values():
        rows["gated mwc4"] = {seed: dict(row) for seed, row in rows["heterogeneous"].items()}
    args = SimpleNamespace(**vars(ARGS), page=str(tmp_path / "PAGE"), page_rows=["gated mwc4"])
    bench.write_page(results, args)
    page = (tmp_path / "PAGE.md").read_text()
    data = json.loads((tmp_path / "PAGE.json").read_text())
    assert "| gated mwc4 |" in page and "`gated mwc4` (query_fusion: gated, training_schedule: joint, min_word_count: 4" in page
    assert data["figures"]["synthetic"]["gated mwc4"]["all"] == \
        data["figures"]["synthetic"]["heterogeneous"]["all"]
    assert "`query_fusion: gated`" in page
    assert [r["holds"] for r in data["required"]] == [True] * 5
    bench.write_page(results, SimpleNamespace(**vars(ARGS), page=str(tmp_path / "PLAIN")))
    assert "gated mwc4" not in (tmp_path / "PLAIN.md").read_text()  # the control


def test_default_row_must_be_the_default_and_is_shown_as_querysecrec():
    results = {"synthetic": {"SASRec": {1: {}}, "gated joint": {1: {"x": 1}}, "heterogeneous": {}}}
    defaults = bench._yaml_defaults()
    assert (defaults["training_schedule"], defaults["stage_two_word_init"]) == ("two_stage_fine_tune", "linked_items")
    label, other = "gated 2stage ft li", "gated joint"
    results["synthetic"][label] = results["synthetic"].pop("gated joint")
    renamed = bench.as_default_row(results, label)
    assert set(renamed["synthetic"]) == {"SASRec", "QuerySeqRec", "heterogeneous"}
    with pytest.raises(SystemExit, match="not QuerySeqRec's default"):
        bench.as_default_row(results, other)
    with pytest.raises(SystemExit, match="not QuerySeqRec's default"):
        bench.as_default_row(results, "heterogeneous")


def test_two_stage_epochs_are_shown_per_stage_and_the_cap_applies_per_stage():
    results = _results({"synthetic": 0.1, "synthetic-weakq": 0.0}, -0.05, epochs=5)
    for stages, capped in (([4, 6], False), ([3, 10], True)):
        for row in results["synthetic"]["QuerySeqRec"].values():
            row.update(epochs_trained=sum(stages), stage_epochs=stages)
        entry = bench.page_figures(results, ARGS)["synthetic"]["QuerySeqRec"]
        assert entry["epochs_trained"] == ["+".join(map(str, stages))] * 3
        assert entry["hit_cap"] is capped  # 10 epochs in all without a stage at the cap: not hit
