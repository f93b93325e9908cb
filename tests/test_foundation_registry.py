"""The registry resolves stock and extension names; a wrong name fails with one clear line."""

import subprocess
import sys

import pytest
from recbole.model.abstract_recommender import SequentialRecommender

from conftest import REPO_ROOT
from recbole_ext import registry


def test_stock_names_resolve_to_recbole_classes_unchanged():
    from recbole.model.sequential_recommender.sasrec import SASRec
    from recbole.model.general_recommender.bpr import BPR

    assert registry.get_model("SASRec") is SASRec
    assert registry.get_model("BPR") is BPR
    assert not registry.is_extension("SASRec")


@pytest.mark.parametrize("name", sorted(registry.EXTENSION_MODELS))
def test_extension_names_resolve_to_their_sequential_model(name):
    model_class = registry.get_model(name)
    assert model_class.__name__ == name
    assert issubclass(model_class, SequentialRecommender)
    assert model_class.__module__ == f"recbole_ext.model.sequential_recommender.{name.lower()}"
    spec = registry.get_spec(name)
    for path in (spec.dataset, spec.transform, spec.data_preparation, spec.trainer):
        if path:
            assert registry.import_object(path) is not None


def test_unknown_name_lists_stock_and_extension_names():
    with pytest.raises(registry.UnknownNameError) as info:
        registry.get_model("SASRecc")
    message = str(info.value)
    assert "SASRecc" in message and "QuerySeqRec" in message and "GRU4Rec" in message
    assert "\n" not in message


def test_cli_unknown_model_exits_nonzero_with_one_line_and_no_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, f"{REPO_ROOT}/run_recbole_ext.py", "--model=NoSuchModel", "--dataset=synthetic"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert completed.returncode == 2
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, completed.stderr
    assert "unknown model 'NoSuchModel'" in lines[0] and "DGSR" in lines[0] and "SASRec" in lines[0]
    assert "Traceback" not in completed.stderr


def test_dataset_class_choice():
    from recbole_ext.config import Config

    config = Config("SASRec", "synthetic", config_dict={"use_gpu": False}, read_command_line=False)
    assert registry.get_dataset_class(config).__name__ == "ExtSequentialDataset"
    config = Config("BPR", "ml-100k", config_dict={"use_gpu": False}, read_command_line=False)
    assert registry.get_dataset_class(config) is None  # RecBole's own choice


def test_console_script_is_installed_and_behaves_like_the_cli(tmp_path):
    import os
    import shutil

    script = shutil.which("recbole-ext", path=os.path.dirname(sys.executable))
    assert script, "the recbole-ext console script is not installed beside this interpreter"
    completed = subprocess.run([script, "--model=NoSuchModel"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert completed.returncode == 2 and "unknown model 'NoSuchModel'" in completed.stderr


def test_cli_unknown_dataset_exits_with_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, f"{REPO_ROOT}/run_recbole_ext.py", "--model=SASRec", "--dataset=no-such-data"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert completed.returncode == 2
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no-such-data" in lines[0] and "Traceback" not in completed.stderr
