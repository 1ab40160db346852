"""snnas search fixes a parity space's parity decisions to the most protective choice: its
reward does not score them, so sampling them only multiplies the policies (issue 15)."""

import pytest

from snnas._run import RunDir
from snnas.search import load_search_config, run_search
from snnas.search._protective import searched_space
from snnas.space import space_from_text
from snnas.train import Accelerator
from snnas.train._finetuned import with_parity_choices
from tests.conftest import SMALL_TOML
from tests.train.parity_fixture import PARITY_TOML, small_digits

CPU = Accelerator.pick("cpu")
PARITY = space_from_text(PARITY_TOML)
TINY = [
    "search.iterations=1",
    "search.train_steps=2",
    "search.strategy_steps=6",
    "search.samples=6",
    "search.topk=2",
    "search.rescore=3",
    "strategy.reinforce.batch=3",
]


def test_the_searched_space_keeps_labels_with_one_protective_choice():
    narrow = searched_space(PARITY)
    assert narrow.labels == PARITY.labels
    parity = [d for d in narrow.decisions if d.kind in ("encode", "encoder")]
    assert parity and all(len(d.choices) == 1 for d in parity)
    assert {d.choices[0] for d in parity if d.kind == "encode"} == {100.0}
    assert [d.choices[0] for d in parity if d.kind == "encoder"] == ["sum"]
    # The parity decisions contributed this factor to the size; the rest is unchanged.
    factor = 1
    for d in PARITY.decisions:
        if d.kind in ("encode", "encoder"):
            factor *= len(d.choices)
    assert narrow.size * factor == PARITY.size and factor == 3**PARITY.num_points * 2
    # The same choice snnas parity train takes by default.
    data_only = {
        d.label: d.choices[0] for d in PARITY.decisions if d.kind not in ("encode", "encoder")
    }
    assert with_parity_choices(PARITY, data_only) == narrow.validate(
        with_parity_choices(PARITY, data_only)
    )
    # Scored, or without parity decisions, the space is searched whole.
    assert searched_space(PARITY, scored=True) is PARITY
    plain = space_from_text(SMALL_TOML)
    assert searched_space(plain) is plain


@pytest.mark.parametrize("strategy", ["random", "reinforce"])
def test_search_never_samples_parity_decisions(tmp_path, digits, strategy):
    data = small_digits(digits, train=64, evaluate=32)
    config = load_search_config("digits", None, TINY)
    result = run_search(PARITY, data, config, strategy, RunDir(tmp_path / "s"), accel=CPU)
    assert len(result.events) == 12
    for event in result.events:
        policy = event["policy"]
        encodes = [v for k, v in policy.items() if k.endswith(".encode")]
        assert encodes and set(encodes) == {100.0}, policy
        assert policy["encoder"] == "sum", policy
    assert result.best_policy["encoder"] == "sum"
