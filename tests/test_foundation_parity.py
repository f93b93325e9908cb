"""Rule 1 (parity): a stock model through run_recbole_ext.py gives exactly RecBole's metrics."""

import json
import subprocess
import sys

import yaml

from conftest import REPO_ROOT

PARITY_CONFIG = {
    "epochs": 1,
    "hidden_size": 8,
    "inner_size": 16,
    "n_layers": 1,
    "n_heads": 1,
    "MAX_ITEM_LIST_LENGTH": 10,
    "train_batch_size": 2048,
    "eval_batch_size": 4096,
    "train_neg_sample_args": None,
    "seed": 7,
    "reproducibility": True,
    "use_gpu": False,
    "show_progress": False,
    "state": "ERROR",
}


def test_sasrec_through_cli_matches_recbole_run_recbole(tmp_path, monkeypatch):
    config_file = tmp_path / "parity.yaml"
    config_file.write_text(yaml.safe_dump(PARITY_CONFIG))
    result_file = tmp_path / "record.json"
    completed = subprocess.run(
        [
            sys.executable, f"{REPO_ROOT}/run_recbole_ext.py", "--model=SASRec", "--dataset=ml-100k",
            f"--config_files={config_file}", f"--result_file={result_file}",
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    ours = json.loads(result_file.read_text())

    from recbole.quick_start import run_recbole

    monkeypatch.setattr(sys, "argv", ["run_recbole.py"])
    theirs = run_recbole(model="SASRec", dataset="ml-100k", config_file_list=[str(config_file)], saved=False)

    assert ours["test_result"] == {k: float(v) for k, v in theirs["test_result"].items()}
    assert ours["best_valid_result"] == {k: float(v) for k, v in theirs["best_valid_result"].items()}
    assert ours["test_result"]["ndcg@10"] > 0  # a real run, not an empty one
    for key in ("model", "dataset", "seconds_per_epoch", "num_parameters", "config"):
        assert ours[key] is not None
    assert ours["config"]["hidden_size"] == 8
