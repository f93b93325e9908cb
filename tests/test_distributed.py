"""RecBole's distributed path (--nproc) on CPU: gloo backend, two ranks, tiny data."""

import socket

import pytest

from conftest import tiny_config_dict
from recbole_ext.quick_start import run


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return str(s.getsockname()[1])


@pytest.mark.parametrize("model", ["SASRec", "QuerySeqRec"])  # QuerySeqRec: two training stages
def test_two_process_cpu_training(model, tmp_path):
    config = tiny_config_dict(checkpoint_dir=str(tmp_path / "saved"), topk=[5, 10], metrics=["Hit", "NDCG"], valid_metric="NDCG@10")
    record = run(model, "synthetic", config_dict=config, nproc=2, port=free_port(), read_command_line=False)
    assert record is not None, "rank 0 returned no record"
    assert set(record["test_result"]) == {"hit@5", "hit@10", "ndcg@5", "ndcg@10"}
    assert set(record["best_valid_result"]) == set(record["test_result"])
    for value in record["test_result"].values():
        assert 0.0 <= value <= 1.0
    assert record["test_result"]["hit@10"] >= record["test_result"]["hit@5"]
    assert record["test_result"]["hit@10"] > 0
    assert record["config"]["world_size"] == 2 and record["config"]["single_spec"] is False
    assert record["checkpoint"].endswith(".pth")
    if model == "QuerySeqRec":  # every rank reloads stage 1's best, which rank 0 wrote
        assert record["stage_epochs"] == [1, 1]
