import pytest

from snnas.space import load_space
from tests.conftest import SPACES


def test_table1_parameter_counts():
    s = load_space(SPACES / "sep_resnext56_8x16d_g4.toml")
    plain, sep = s.arch.params(separable=False), s.arch.params(separable=True)
    # The paper's Table 1: 4.39M and 4.54M.
    assert plain == 4_394_676
    assert sep == 4_539_444
    assert abs(plain / 4.39e6 - 1) < 0.01 and abs(sep / 4.54e6 - 1) < 0.01


def test_other_parameter_counts_are_pinned():
    s = load_space(SPACES / "sep_resnext56_4x16d_g4.toml")
    assert (s.arch.params(False), s.arch.params(True)) == (2_234_548, 2_379_316)
    s = load_space(SPACES / "sep_resnext110_8x16d_g4.toml")
    assert (s.arch.params(False), s.arch.params(True)) == (8_808_372, 8_969_268)
    s = load_space(SPACES / "quickstart.toml")
    assert (s.arch.params(False), s.arch.params(True)) == (10_538, 20_618)


def test_params_per_device_sum_to_total():
    s = load_space(SPACES / "sep_resnext56_4x16d_g4.toml")
    per = s.arch.params_per_device()
    assert sum(per) == s.arch.params(True)
    assert per[1] == per[2] == per[3] < per[0]


def test_points_every_alpha_blocks_and_aggregation():
    s = load_space(SPACES / "sep_resnext56_4x16d_g4.toml")
    pts = s.arch.points
    assert [p.block for p in pts] == [1, 3, 5, 7, 9, 11, 13, 15, 17]
    # The paper's alpha: a transfer is added alpha - 1 blocks after it is sent (alpha = 1 is
    # synchronous), never past the last block of its stage.
    assert [p.aggregate_block for p in pts] == [2, 4, 5, 8, 10, 11, 14, 16, 17]
    assert [(p.channels, p.size) for p in pts] == [(64, 32)] * 3 + [(128, 16)] * 3 + [(256, 8)] * 3
    assert s.overlap == 1


def test_overlap_setting_keeps_the_other_reading(write_space):
    text = (SPACES / "sep_resnext56_4x16d_g4.toml").read_text()
    path = write_space(text.replace("\nalpha = 2", "\nalpha = 2\noverlap = 2"))
    s = load_space(path)
    # overlap = alpha: the reading that landed first (one more block of overlap).
    assert [p.aggregate_block for p in s.arch.points] == [3, 5, 5, 9, 11, 11, 15, 17, 17]
    assert s.hash != load_space(SPACES / "sep_resnext56_4x16d_g4.toml").hash


def test_alpha_one_is_synchronous():
    s = load_space(SPACES / "quickstart.toml")
    assert s.alpha == 1 and s.overlap == 0
    assert all(p.aggregate_block == p.block for p in s.arch.points)


def test_overlap_is_range_checked(write_space):
    from snnas.errors import ConfigError

    text = (SPACES / "sep_resnext56_4x16d_g4.toml").read_text()
    with pytest.raises(
        ConfigError, match=r"split.overlap: expected an integer in \[0, 5\], found 6"
    ):
        load_space(write_space(text.replace("\nalpha = 2", "\nalpha = 2\noverlap = 6")))
    with pytest.raises(
        ConfigError, match=r"split.overlap: expected an integer in \[0, 5\], found -1"
    ):
        load_space(write_space(text.replace("\nalpha = 2", "\nalpha = 2\noverlap = -1")))
