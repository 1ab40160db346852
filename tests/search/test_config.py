import pytest

from snnas.errors import ConfigError
from snnas.search import load_search_config


def test_defaults_per_dataset():
    digits = load_search_config("digits")
    assert (digits.iterations, digits.train_steps, digits.eval_batch_size) == (10, 120, 180)
    cifar = load_search_config("cifar100")
    # The paper: 60 iterations of one pass, 500 controller steps, 100 samples.
    assert (cifar.iterations, cifar.train_steps, cifar.strategy_steps, cifar.samples) == (
        60,
        0,
        500,
        100,
    )


def test_file_then_overrides(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        '[search]\niterations = 3\nmilestones = [0.5]\n[reward]\nmode = "penalized"\n'
        "lambda = 0.2\n[strategy.reinforce]\nlr = 0.003\n"
    )
    config = load_search_config(
        "digits", path, ["search.samples=7", "strategy.evolution.population=8", "reward.budget=0.2"]
    )
    assert (config.iterations, config.samples, config.milestones) == (3, 7, (0.5,))
    assert (config.reward, config.reward_lambda, config.budget) == ("penalized", 0.2, 0.2)
    assert config.strategy == {"reinforce": {"lr": 0.003}, "evolution": {"population": 8}}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[search]\niteration = 3\n", "search.iteration"),
        ("[search]\niterations = 0\n", "search.iterations"),
        ('[search]\nlr = "fast"\n', "search.lr"),
        ('[reward]\nmode = "speed"\n', "reward.mode"),
        ("[strategy.reinforc]\nlr = 1\n", "strategy.reinforc"),
        ("[extra]\n", "extra"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_search_config("digits", path)
    assert info.value.key == key
    assert str(path) in str(info.value)


def test_bad_overrides():
    with pytest.raises(ConfigError, match="--set"):
        load_search_config("digits", None, ["iterations=3"])
    with pytest.raises(ConfigError, match=r"search\.samples"):
        load_search_config("digits", None, ["search.samples=many"])


def test_shipped_configs_spell_out_the_defaults():
    from dataclasses import replace

    from tests.conftest import ROOT

    digits = load_search_config("digits", ROOT / "configs" / "search_digits.toml")
    assert replace(digits, strategy={}) == load_search_config("digits")
    assert digits.strategy["reinforce"]["hidden"] == 100
    paper = load_search_config("cifar100", ROOT / "configs" / "search_paper.toml")
    assert paper == load_search_config("cifar100")
    # ...and the strategy tables repeat the constructors' defaults.
    import inspect

    from snnas.search import STRATEGIES

    for name, options in digits.strategy.items():
        signature = inspect.signature(STRATEGIES[name].__init__).parameters
        assert {k: signature[k].default for k in options} == options, name
