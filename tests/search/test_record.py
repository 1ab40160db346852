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
