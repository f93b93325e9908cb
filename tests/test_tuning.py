"""Hyper-parameter tuning (recbole_ext.tuning): shipped search spaces, params-file checks, and a
2-trial Hyperopt run of an extension model."""

import math

import pytest
from conftest import tiny_config_dict

from recbole_ext import paths, registry, tuning
from recbole_ext.config import Config


def _never_called(*args, **kwargs):
    raise AssertionError("building a search space must not train")


@pytest.mark.parametrize("model", sorted(registry.EXTENSION_MODELS))
def test_shipped_hyper_file_builds_a_space_of_real_config_keys(model):
    tuner = tuning.make_hyper_tuning(_never_called, paths.hyper_file(model), algo="exhaustive")
    assert tuner.space and tuner.max_evals >= 1
    config = Config(model=model, dataset="synthetic", read_command_line=False)
    for name, kind, value in tuning.read_params_file(paths.hyper_file(model)):
        assert name in tuner.space
        # a tuned key no config layer defines would be silently ignored by the model
        assert name in config.final_config_dict, f"{model}.hyper tunes '{name}', which {model} does not read"
        if kind == "choice":  # every candidate value has the default's type (e.g. no '0.1' strings)
            default = config[name]
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value), name


def test_params_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.hyper"
    bad.write_text("learning_rate choice [0.1,0.01]\nhidden_size normal 1,2\n")
    with pytest.raises(ValueError, match=r"bad.hyper:2: parameter type 'normal' of 'hidden_size'"):
        tuning.read_params_file(str(bad))
    bad.write_text("dropout uniform 0.1\n")
    with pytest.raises(ValueError, match=r"bad.hyper:1: the value of 'dropout' \(uniform\) must be 2"):
        tuning.read_params_file(str(bad))
    assert tuning.main(["--model=HUGT", f"--params_file={bad}"]) == 2
    assert tuning.main(["--model=NoSuchModel"]) == 2
    assert tuning.main(["--model=HUGT", "--display_file=plot.html"]) == 2


def test_a_tuned_key_the_model_does_not_know_is_reported(tmp_path, capsys):
    typo = tmp_path / "typo.hyper"
    typo.write_text("learning_rate choice [0.1,0.01]\nlearnig_rate choice [0.1,0.01]\n")
    tuning.warn_unknown_keys(tuning.TuningObjective("HUGT", "synthetic"), str(typo), None)
    err = capsys.readouterr().err
    assert "'learnig_rate' is not a config key of HUGT" in err and "'learning_rate'" not in err


def test_exhaustive_search_is_capped_by_max_evals(tmp_path):
    grid = tmp_path / "grid.hyper"
    grid.write_text("learning_rate choice [0.1,0.01,0.001]\nn_layers choice [1,2]\n")
    assert tuning.make_hyper_tuning(_never_called, str(grid), "exhaustive").max_evals == 6
    assert tuning.make_hyper_tuning(_never_called, str(grid), "exhaustive", max_evals=4).max_evals == 4


def test_ray_space_mirrors_the_params_file():
    from ray import tune

    params = [("lr", "loguniform", [math.log(1e-4), math.log(1e-2)]), ("k", "choice", [5, 10])]
    space = tuning.ray_space(params, "random")
    assert isinstance(space["lr"], tune.search.sample.Float)
    assert space["lr"].lower == pytest.approx(1e-4) and space["lr"].upper == pytest.approx(1e-2)
    assert space["k"].categories == [5, 10]
    assert tuning.ray_space(params[1:], "exhaustive") == {"k": {"grid_search": [5, 10]}}
    with pytest.raises(ValueError, match="'lr' is loguniform"):
        tuning.ray_space(params, "exhaustive")


def test_two_trial_hyperopt_run_of_an_extension_model(tmp_path, capsys):
    params_file = tmp_path / "two.hyper"
    params_file.write_text("learning_rate choice [0.01,0.001]\n")
    output_file = tmp_path / "hugt.result"
    display_file = tmp_path / "hugt.png"
    fixed = tiny_config_dict(checkpoint_dir=str(tmp_path / "saved"))
    argv = [
        "--model=HUGT",
        "--dataset=synthetic",
        f"--params_file={params_file}",
        f"--output_file={output_file}",
        f"--display_file={display_file}",
        "--tool=Hyperopt",
        "--algo=exhaustive",
    ] + [f"--{k}={v}" for k, v in fixed.items()]
    assert tuning.main(argv) == 0
    text = output_file.read_text()
    assert text.count("Valid result:") == 2 and text.count("Test result:") == 2
    assert "learning_rate:0.01\n" in text and "learning_rate:0.001\n" in text
    assert "ndcg@10" in text
    assert display_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "best params:" in capsys.readouterr().out


@pytest.mark.parametrize("algo", ["exhaustive", "random"])
def test_fewer_trials_are_the_first_trials_of_more(tmp_path, algo):
    """The comparison's budget (benchmarks' FULL_BUDGET) can drop trials without changing the ones
    kept: under the comparison's seed Hyperopt proposes one sequence whatever max_evals is, and the
    proposals do not depend on the scores (random and exhaustive search)."""
    from recbole_ext.compare import _SeededHyperopt

    space = tmp_path / "space.hyper"
    if algo == "exhaustive":
        space.write_text("learning_rate choice [0.1,0.01,0.001,0.0001]\nn_layers choice [1,2,3]\n")
    else:
        space.write_text("learning_rate loguniform -8.1117,-4.6052\nn_layers choice [1,2,3]\n")

    def proposals(trials, seed):
        seen = []

        def objective(config_dict, config_files):
            seen.append(dict(config_dict))
            score = float(len(seen) % 3)  # scores that would steer a score-driven search
            return {"model": "Fake", "best_valid_score": score, "valid_score_bigger": True,
                    "best_valid_result": {}, "test_result": {}}

        tuner = tuning.make_hyper_tuning(objective, str(space), algo, max_evals=trials, early_stop=trials)
        with _SeededHyperopt(seed):
            tuner.run()
        return seen

    six, eight = proposals(6, 2020), proposals(8, 2020)
    assert len(six) == 6 and len(eight) == 8 and six == eight[:6]
    assert proposals(6, 2021) != six  # the seed, not the budget, fixes the sequence
