"""Bad input gives one line, exit status 2, no traceback, and runs nothing (issue 14, items 5-8).

The matrix runs the real ``run_recbole_ext.main`` in-process (RecBole reads ``sys.argv``, so it
is set as the shell would); a few cases go through a real interpreter as well, all started at
once so the import cost is paid in parallel. Ctrl-C is tested in-process (an interrupt raised in
the second epoch) and with a real SIGINT to a real run.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import REPO_ROOT, run_tiny, tiny_config_dict
from recbole_ext import paths, schema
from recbole_ext.config import Config

SCRIPT = os.path.join(REPO_ROOT, "run_recbole_ext.py")
TINY = ["--epochs=1", "--show_progress=False", "--state=ERROR", "--use_gpu=False", "--hidden_size=8",
        "--inner_size=16", "--n_layers=1", "--n_heads=1", "--MAX_ITEM_LIST_LENGTH=10", "--embedding_size=8"]


def own_datasets(root, users=120):
    """``root/mine`` (user, item, timestamp) and ``root/nots`` (user, item): no yaml anywhere."""
    frame = pd.read_csv(os.path.join(paths.DATASET_ATOMIC_DIR, "synthetic", "synthetic.inter"), sep="\t")
    frame = frame[frame["user_id:token"].isin(frame["user_id:token"].unique()[:users])]
    frame = frame[["user_id:token", "item_id:token", "timestamp:float"]].drop_duplicates(
        ["user_id:token", "item_id:token"])
    for name, columns in (("mine", list(frame.columns)), ("nots", list(frame.columns[:2]))):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        frame[columns].to_csv(os.path.join(root, name, f"{name}.inter"), sep="\t", index=False)
    return str(root)


# (case, extra command-line arguments, expected text of the one line); {data} is the own-data folder
MATRIX = [
    ("negative epochs", ["--epochs=-3"], "config key 'epochs': expected int >= 1, got -3"),
    ("zero sequence length", ["--MAX_ITEM_LIST_LENGTH=0"], "config key 'MAX_ITEM_LIST_LENGTH': expected int >= 1, got 0"),
    ("text for an int", ["--hidden_size=abc"], "config key 'hidden_size': expected int >= 1, got 'abc'"),
    ("float for an int", ["--epochs=1.5"], "config key 'epochs': expected int >= 1, got 1.5"),
    ("negative learning rate", ["--learning_rate=-0.1"], "config key 'learning_rate': expected float > 0, got -0.1"),
    ("zero batch", ["--train_batch_size=0"], "config key 'train_batch_size': expected int >= 1, got 0"),
    ("dropout above one", ["--hidden_dropout_prob=1.5"], "expected float >= 0 and <= 1, got 1.5"),
    ("value outside the yaml's Range", ["--loss_type=XE"], "config key 'loss_type': expected one of ['BPR', 'CE'], got 'XE'"),
    ("misspelled key", ["--learning_rte=0.1"], "unknown config key 'learning_rte': did you mean learning_rate?"),
    ("wrong case", ["--Epochs=3"], "unknown config key 'Epochs': did you mean epochs?"),
    ("key given twice", ["--epochs=2", "--epochs=3"], "config key 'epochs' given twice with different values"),
    ("unknown model", ["--model=SASRek"], "unknown model 'SASRek'"),
    ("own data without timestamps", ["--dataset=nots", "--data_path={data}"],
     "nots.inter: SASRec needs the time field 'timestamp' (TIME_FIELD"),
    ("DGSR without timestamps", ["--model=DGSR", "--dataset=nots", "--data_path={data}"],
     "nots.inter: DGSR needs the time field 'timestamp' (TIME_FIELD"),
    ("EMBSR without operations", ["--model=EMBSR", "--dataset=mine", "--data_path={data}"],
     "mine.inter: EMBSR needs the operation field (micro-behaviour operations, e.g. op:token), and OPERATION_FIELD is not set"),
    ("QuerySeqRec without a query file", ["--model=QuerySeqRec", "--dataset=mine", "--data_path={data}"],
     "QuerySeqRec needs the query file"),
    ("load_col that drops the time", ["--dataset=mine", "--data_path={data}", "--load_col={'inter': ['user_id', 'item_id']}"],
     "needs the time field 'timestamp' (TIME_FIELD), which load_col does not load"),
]


def command_line(args, data=""):
    """The base run's flags, with the case's own flags in place of the base's same keys."""
    args = [a.replace("{data}", data) for a in args]
    own = {a.split("=", 1)[0] for a in args}
    base = ["--model=SASRec", "--dataset=synthetic"] + TINY
    return [a for a in base if a.split("=", 1)[0] not in own] + args


def one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("case,args,expected", MATRIX, ids=[c[0] for c in MATRIX])
def test_bad_input_matrix_in_process(case, args, expected, tmp_path, monkeypatch, capsys):
    import run_recbole_ext

    data = own_datasets(tmp_path / "data")
    argv = command_line(args, data)
    monkeypatch.setattr(sys, "argv", [SCRIPT] + argv)
    assert run_recbole_ext.main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("recbole-ext: error: ") and expected in line, line
    assert not os.path.exists("saved") or not os.listdir("saved")  # nothing was trained


def test_bad_input_through_real_interpreters(tmp_path):
    """A few matrix cases as the user types them (exit status and stderr of a real process)."""
    cases = {c[0]: c for c in MATRIX if c[0] in ("negative epochs", "key given twice")}
    data = own_datasets(tmp_path / "data")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    running = {
        name: subprocess.Popen(
            [sys.executable, SCRIPT] + command_line(args, data),
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, (_, args, _) in cases.items()
    }
    for name, process in running.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, (name, stderr)
        assert cases[name][2] in one_line(stderr)


def test_unknown_key_far_from_any_known_one_is_one_warning_and_passed_on(capsys):
    schema._warned.discard("my_model_knob")
    config = Config("SASRec", "synthetic", config_dict=tiny_config_dict(my_model_knob=3), read_command_line=False)
    line = one_line(capsys.readouterr().err)
    assert line == ("recbole-ext: warning: unknown config key 'my_model_knob' (no RecBole or recbole-ext yaml "
                    "defines it); passed on unchanged")
    assert config["my_model_knob"] == 3


def test_schema_comes_from_the_yaml_comments(tmp_path):
    yaml_file = tmp_path / "M.yaml"
    yaml_file.write_text(
        "alpha: 0.5          # (float) Weight. Range in [0, 1].\n"
        "mode: 'a'           # (str) Mode. Range in ['a', 'b'].\n"
        "sizes: [1, 2]       # (list of int) Sizes.\n"
        "path: ~             # (str) A file.\n"
    )
    specs = schema.parse_yaml_comments(str(yaml_file))
    assert (specs["alpha"].low, specs["alpha"].high, specs["alpha"].types) == (0, 1, ("float",))
    assert specs["mode"].choices == ("a", "b") and specs["sizes"].element == "int" and specs["path"].nullable
    with pytest.raises(schema.ConfigValueError, match="expected list of int"):
        schema.check_value("sizes", [1, "x"], specs["sizes"])
    schema.check_value("alpha", 1, specs["alpha"])  # an int is a float
    # the package yamls are in the schema (a model's own key, its own type)
    assert schema.schema_for("DGSR")["max_neighbors"].types == ("int",)
    assert "svd_rank" in schema.known_keys("HUGT")


def test_valid_settings_pass_the_schema():
    config = Config("SASRec", "synthetic", read_command_line=False, config_dict=tiny_config_dict(
        learning_rate=1, topk=[5, 10], metrics=["Recall", "MRR"], train_neg_sample_args=None, gpu_id=0,
        user_inter_num_interval=[0, 25], item_inter_num_interval="[1,inf)",
        eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
    ))
    assert config["learning_rate"] == 1


def test_own_dataset_without_a_yaml_works_for_sequential_models(tmp_path):
    data = own_datasets(tmp_path / "data")
    for model in ("SASRec", "HUGT", "MAGNN", "DGSR"):
        record = run_tiny(model, "mine", data_path=data, embedding_size=8, hidden_size=8, MAX_ITEM_LIST_LENGTH=5)
        assert record["epochs_trained"] == 1 and record["test_result"]
    config = Config("SASRec", "mine", config_dict=tiny_config_dict(data_path=data), read_command_line=False)
    assert config["load_col"] is None  # every column of the header
    synthetic = Config("SASRec", "synthetic", config_dict=tiny_config_dict(), read_command_line=False)
    assert synthetic["load_col"]["inter"][:3] == ["user_id", "item_id", "timestamp"]  # a yaml's choice stays


def test_ctrl_c_removes_the_unfinished_checkpoint_and_keeps_finished_runs(monkeypatch, capsys):
    import run_recbole_ext
    from recbole_ext.trainer import SafeCheckpointMixin

    finished = run_tiny("SASRec", saved=True)["checkpoint"]
    real_epoch = SafeCheckpointMixin._train_epoch

    def interrupted_second_epoch(self, *args, **kwargs):
        if self.train_epoch_seconds:
            raise KeyboardInterrupt
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(SafeCheckpointMixin, "_train_epoch", interrupted_second_epoch)
    argv = command_line(["--epochs=3", "--result_file=out.json"])
    monkeypatch.setattr(sys, "argv", [SCRIPT] + argv)
    assert run_recbole_ext.main(argv) == 130
    line = one_line(capsys.readouterr().err)
    assert line.startswith("recbole-ext: interrupted; removed the unfinished run's saved/SASRec-")
    assert os.listdir("saved") == [os.path.basename(finished)] and not os.path.exists("out.json")


def test_real_sigint_exits_130_with_one_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, SCRIPT] + command_line(["--epochs=300", "--stopping_step=300"]),
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a suite started in the background by a non-interactive shell inherits SIGINT ignored, and
        # Python keeps an ignored SIGINT ignored: the child gets the default disposition, as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 120
        saved = tmp_path / "saved"
        while time.time() < deadline and not (saved.is_dir() and any(f.endswith(".pth") for f in os.listdir(saved))):
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert one_line(stderr).startswith("recbole-ext: interrupted; removed the unfinished run's")
    assert not [f for f in os.listdir(tmp_path / "saved") if ".pth" in f]
    shutil.rmtree(tmp_path / "saved")
