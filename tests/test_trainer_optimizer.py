"""The Adam/AdamW switches ``adam_betas`` and ``amsgrad`` of the package's trainer wrapper:
for every model (stock SASRec here), each changes the optimiser state and the trained
parameters; defaults give RecBole's optimiser unchanged; bad values are one-line errors."""

import pytest
import torch

from conftest import tiny_config_dict
from recbole_ext import registry
from recbole_ext.config import Config


def make_trainer(tmp_path, model_name="SASRec", **overrides):
    config = Config(
        model_name,
        "synthetic",
        config_dict=tiny_config_dict(checkpoint_dir=str(tmp_path), **overrides),
        read_command_line=False,
    )
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    return registry.get_trainer(config["MODEL_TYPE"], model_name)(config, model)


def train_steps(trainer, steps=6):
    """Gradient steps on a fixed regression whose gradients shrink (where AMSGrad differs)."""
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(32, 4, generator=generator)
    targets = torch.randn(32, 1, generator=generator)
    for step in range(steps):
        trainer.optimizer.zero_grad()
        scale = 10.0 if step < 2 else 0.1
        loss = scale * ((trainer.model(inputs) - targets) ** 2).mean()
        loss.backward()
        trainer.optimizer.step()
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_defaults_are_recboles_optimizer(tmp_path):
    trainer = make_trainer(tmp_path)
    assert type(trainer.optimizer) is torch.optim.Adam
    group = trainer.optimizer.param_groups[0]
    assert group["betas"] == (0.9, 0.999) and group["amsgrad"] is False


def test_adam_betas_change_the_optimizer_and_the_trained_parameters(tmp_path):
    default = train_steps(make_trainer(tmp_path))
    trainer = make_trainer(tmp_path, adam_betas=[0.9, 0.98])
    assert trainer.optimizer.param_groups[0]["betas"] == (0.9, 0.98)
    changed = train_steps(trainer)
    assert not torch.allclose(default, changed)
    # control: the same betas given explicitly reproduce the default run exactly
    assert torch.equal(default, train_steps(make_trainer(tmp_path, adam_betas=[0.9, 0.999])))


@pytest.mark.parametrize("learner", ["adam", "adamw"])
def test_amsgrad_changes_the_optimizer_state_and_the_trained_parameters(tmp_path, learner):
    default_trainer = make_trainer(tmp_path, learner=learner)
    default = train_steps(default_trainer)
    trainer = make_trainer(tmp_path, learner=learner, amsgrad=True)
    changed = train_steps(trainer)
    state = trainer.optimizer.state[next(trainer.model.parameters())]
    assert "max_exp_avg_sq" in state
    assert "max_exp_avg_sq" not in default_trainer.optimizer.state[next(default_trainer.model.parameters())]
    # AMSGrad keeps the largest second moment: after the gradients shrink its steps are smaller
    assert torch.all(state["max_exp_avg_sq"] >= state["exp_avg_sq"])
    assert torch.any(state["max_exp_avg_sq"] > state["exp_avg_sq"])
    assert not torch.allclose(default, changed)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"adam_betas": [0.9]}, "adam_betas must be a list of two floats"),
        ({"adam_betas": [0.9, 1.5]}, "adam_betas must be a list of two floats"),
        ({"amsgrad": "yes"}, "amsgrad( must be True or False|': expected bool)"),
        ({"learner": "sgd", "amsgrad": True}, "apply to learner adam or adamw only"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, **overrides)
