"""The study recorder: passwords never shown, studies never written through planted links."""

import pytest

from snnas.errors import CheckpointError, ConfigError, UsageError
from snnas.search._record import StudyRecorder, check_study, mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://me:hunter2@db/x", "postgresql://me:***@db/x"),
        ("mysql+pymysql://root:p%40ss@h:3306/d", "mysql+pymysql://root:***@h:3306/d"),
        ("redis://:secret@h/0", "redis://:***@h/0"),
        ("sqlite:///runs/x.db", "sqlite:///runs/x.db"),
        ("postgresql://me@db/x", "postgresql://me@db/x"),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_mask_url_in_driver_messages():
    url = "postgresql://me:p%40ss@db/x"
    text = "could not connect: postgresql://me:p%40ss@db/x (password p@ss rejected)"
    assert (
        mask_url(url, text) == "could not connect: postgresql://me:***@db/x (password *** rejected)"
    )


def test_unreachable_storage_error_masks_the_password(tmp_path, space):
    url = "postgresql+nosuchdriver://alice:hunter2@127.0.0.1:1/db"
    with pytest.raises(ConfigError) as info:
        StudyRecorder(space, url, tmp_path, "s", "w", multi_objective=False)
    message = str(info.value)
    assert "hunter2" not in message and "alice:***@" in message
    assert message.startswith("--storage: expected a reachable Optuna storage URL")
    assert len(message.splitlines()) == 1


def test_journal_link_is_refused(tmp_path, space):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "optuna.journal").symlink_to(victim)
    with pytest.raises(CheckpointError, match="refusing to write the study through it"):
        StudyRecorder(space, None, tmp_path, "s", "w", multi_objective=False)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("name", ["", "x" * 300, "a\x00b", "new\nline"])
def test_bad_study_names(name):
    with pytest.raises(UsageError, match="--study"):
        check_study(name)


def _event(space, cost, index=0):
    import random

    from snnas.space import policy_json

    policy = space.sample(random.Random(index))
    return {"index": index, "policy": policy_json(policy), "accuracy": 0.5, "reward": 0.5,
            **cost.measures(policy)}  # fmt: skip


def test_a_shared_study_refuses_another_cost(tmp_path, space):
    # Workers of one --study under different costs would put communication ratios and
    # latency ratios (or latencies on different profiles) in one objective column.
    from snnas.search._cost import CostTerm

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    comm, rpi, a57 = (
        CostTerm(space),
        CostTerm(space, "latency", "rpi3b+"),
        CostTerm(space, "latency", "a57x4"),
    )
    first = StudyRecorder(space, url, tmp_path, "s", "comm", True, comm.to_json())
    assert first.sync([_event(space, comm)]) == 1
    for other in (rpi, a57):
        with pytest.raises(ConfigError, match=r"--study: expected .*comm_ratio") as info:
            StudyRecorder(space, url, tmp_path, "s", "w", True, other.to_json())
        assert len(str(info.value).splitlines()) == 1
    # The same cost joins it; a fresh study under the latency cost refuses the others.
    again = StudyRecorder(space, url, tmp_path, "s", "comm2", True, comm.to_json())
    assert again.sync([_event(space, comm, 1)]) == 1
    StudyRecorder(space, url, tmp_path, "lat", "w", True, rpi.to_json())
    for other in (comm, a57):
        with pytest.raises(ConfigError, match="--study"):
            StudyRecorder(space, url, tmp_path, "lat", "w2", True, other.to_json())
    assert [len(t.values) for t in again.study.get_trials()] == [2, 2]


def test_a_study_of_an_older_version_is_a_communication_study(tmp_path, space):
    # Studies written before the cost was recorded hold communication ratios.
    import optuna

    from snnas.search._cost import CostTerm

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
    old.add_trial(optuna.trial.create_trial(values=[0.5, 0.1]))
    StudyRecorder(space, url, tmp_path, "s", "w", True, CostTerm(space).to_json())
    with pytest.raises(ConfigError, match="--study"):
        StudyRecorder(
            space, url, tmp_path, "s", "w", True, CostTerm(space, "latency", "rpi3b+").to_json()
        )


def test_workers_may_name_one_profile_by_different_paths(tmp_path, space):
    from snnas.cost import PROFILES
    from snnas.cost._profile import profile_toml
    from snnas.search._cost import CostTerm

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    paths = [tmp_path / "a" / "pi.toml", tmp_path / "b" / "pi.toml"]
    for path in paths:
        path.parent.mkdir()
        path.write_text(profile_toml(PROFILES["rpi3b+"]))
    for i, path in enumerate(paths):
        cost = CostTerm(space, "latency", str(path)).to_json()
        StudyRecorder(space, url, tmp_path, "s", f"w{i}", True, cost)
