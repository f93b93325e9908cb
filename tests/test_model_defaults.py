"""The shipped defaults and search spaces of EMBSR, HUGT and MAGNN (issue 12, item 3): each yaml
sets a learning rate (chosen on validation by benchmarks/sweep_lr.py) and each search space holds
the learning rate on a log-spaced grid around it plus 1-3 of the model's own keys."""

import math

import pytest
import yaml

from recbole_ext import paths
from recbole_ext.tuning import read_params_file

MODELS = ["EMBSR", "HUGT", "MAGNN"]


@pytest.mark.parametrize("model", MODELS)
def test_yaml_sets_a_learning_rate_and_keeps_the_papers(model):
    with open(paths.model_yaml(model), encoding="utf-8") as f:
        text = f.read()
    values = yaml.safe_load(text)
    assert isinstance(values["learning_rate"], float) and values["learning_rate"] > 0
    line = next(line for line in text.splitlines() if line.startswith("learning_rate:"))
    assert "# (float)" in line and "validation" in line.lower() and "paper" in line.lower()


@pytest.mark.parametrize("model", MODELS)
def test_search_space_is_the_learning_rate_on_a_log_grid_plus_model_keys(model):
    params = {name: (kind, value) for name, kind, value in read_params_file(paths.hyper_file(model))}
    with open(paths.model_yaml(model), encoding="utf-8") as f:
        defaults = yaml.safe_load(f)
    kind, grid = params.pop("learning_rate")
    assert kind == "choice" and len(grid) >= 4
    assert defaults["learning_rate"] in grid
    ratios = [math.log10(b / a) for a, b in zip(grid, grid[1:])]
    assert all(r == pytest.approx(ratios[0], abs=0.03) for r in ratios)  # evenly spaced in log
    assert 1 <= len(params) <= 4  # the model's own keys and its regularisers (dropout or weight decay)
    for name, (kind, values) in params.items():
        assert name in defaults, f"{name} is not a key of {model}.yaml"
        assert kind == "choice" and defaults[name] in values, name


def test_dgsr_space_leaves_the_neighbourhood_to_the_sequence_length():
    # max_neighbors above MAX_ITEM_LIST_LENGTH is an error (one window for every node), so a
    # searched max_neighbors made every tuned DGSR trial at length 20 fail (found by run_benchmarks)
    from recbole_ext import paths
    from recbole_ext.tuning import read_params_file

    names = [name for name, _, _ in read_params_file(paths.hyper_file("DGSR"))]
    assert "learning_rate" in names and "max_neighbors" not in names
