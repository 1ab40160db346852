"""Device profiles: op-shape keys, the TOML file format, and what the cost model reads."""

import dataclasses

import pytest

from snnas.cost import PROFILES, DeviceProfile, OpShape, get_profile
from snnas.cost._profile import OpStats, profile_name, profile_toml, read_profile
from snnas.errors import ConfigError, UsageError
from snnas.space import load_space
from tests.conftest import SPACES

MEASURED = DeviceProfile(
    name="here",
    flops=1.25e10,
    bandwidth_bps=2.5e9,
    link_latency_s=3.1e-5,
    source='snnas profile on "x86_64"\nsecond line',
    op_overhead_s=4e-5,
    send_s=1.5e-5,
    recv_s=2.5e-5,
    cores=2,
    table=(("block 16-64 m16 g1 s1 32x32", 1.2e-3), ("stem 3-16 32x32", 1.0000000000000002e-4)),
    stats=(("block 16-64 m16 g1 s1 32x32", OpStats(50, 1.3e-3, 2e-5)),),
)


def test_keys_of_the_paper_network():
    arch = load_space(SPACES / "sep_resnext56_4x16d_g4.toml").arch
    assert OpShape.of_stem(arch).key == "stem 3-16 32x32"
    # Block 6 opens stage 1: 64 -> 128 channels per device, stride 2, 16 x 2 x 4 / 4 = 32
    # bottleneck channels and one 3x3 group (cardinality 4 over 4 devices) per device.
    assert OpShape.of_block(arch, 6).key == "block 64-128 m32 g1 s2 32x32"
    assert OpShape.of_block(arch, 6, scale=2).key == "block 64-128 m64 g2 s2 32x32"
    assert OpShape.of_head(arch).key == "head 256-100 8x8"
    assert OpShape.of_stem(arch).macs() == arch.stem_macs()
    assert OpShape.of_head(arch).macs() == arch.head_macs()
    for b in arch.blocks:
        assert OpShape.of_block(arch, b.index).macs() == arch.block_macs(b)


@pytest.mark.parametrize(
    "key",
    [
        "block 64-128 m32 g1 s2 32x32",
        "stem 3-16 32x32",
        "head 256-100 8x8",
    ],
)
def test_keys_round_trip(key):
    shape = OpShape.parse(key)
    assert shape is not None and shape.key == key


@pytest.mark.parametrize(
    "key",
    [
        "block 64-128 m32 g3 s2 32x32",  # 32 channels in 3 groups
        "block 64-128 m32 g1 s0 32x32",  # stride 0
        "block 064-128 m32 g1 s2 32x32",  # two spellings of one shape
        "block 0-128 m32 g1 s2 32x32",
        "stem 3-16 0x32",
        "stem 3-16 99999x32",
        "head 256-100",
        "conv 3-16 32x32",
        "block 64-128 m32 g1 s2 32x32 ",
        "",
    ],
)
def test_bad_keys(key):
    assert OpShape.parse(key) is None


def test_op_s_reads_the_table_else_the_flop_rate():
    block = OpShape.parse("block 16-64 m16 g1 s1 32x32")
    other = OpShape.parse("block 16-64 m16 g1 s1 16x16")
    assert block is not None and other is not None
    assert MEASURED.op_s(block, 10**6) == 1.2e-3
    assert MEASURED.op_s(other, 10**6) == pytest.approx(4e-5 + 2e6 / 1.25e10)
    assert MEASURED.transfer_s(0) == 0.0
    assert MEASURED.transfer_s(1000) == pytest.approx(3.1e-5 + 8000 / 2.5e9)


def test_file_round_trip(tmp_path):
    path = tmp_path / "here.toml"
    path.write_text(profile_toml(MEASURED, "measured here\nby a test"))
    back = read_profile(path)
    assert back == MEASURED
    assert back.stats == MEASURED.stats
    assert get_profile(str(path)) == MEASURED
    assert path.read_text().startswith("# measured here\n# by a test\nformat = ")


def test_hand_written_file_defaults(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text("flops = 1e9\nbandwidth_bps = 1e8\n")
    board = get_profile(str(path))
    assert (board.name, board.link_latency_s, board.send_s, board.cores) == ("board", 0, 0, None)
    assert board.table == () and board.stats == ()
    assert board.source == str(path)


def test_shipped_profiles_stay():
    assert get_profile("rpi3b+") is PROFILES["rpi3b+"]
    assert get_profile("a57x4").flops == 2.3e9
    with pytest.raises(UsageError, match="--profile: expected one of rpi3b\\+, a57x4"):
        get_profile("tpu")
    with pytest.raises(UsageError, match="--device"):
        get_profile("tpu", "--device")


def _entry(**fields: object) -> str:
    body = "".join(f"{k} = {v}\n" for k, v in fields.items())
    return f"flops = 1e9\nbandwidth_bps = 1e8\n\n[[ops]]\n{body}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _entry(key='"stem 3-16 32x32"', seconds="0"),
            ":6: ops[0].seconds: expected a number in (0, 3,600], found 0",
        ),
        (
            _entry(key='"stem 3-16 32x32"', seconds="1e-3", count="1.5"),
            ":7: ops[0].count: expected an integer in [1, 1,000,000,000], found 1.5",
        ),
        (
            _entry(key='"stem 3-16 32x32"', secs="1"),
            ":6: ops[0].secs: expected one of key, seconds, count, mean, std, found <unknown",
        ),
        (
            _entry(key='"stem 3-16 32x32"'),
            ":4: ops[0].seconds: expected a number in (0, 3,600], found <missing>",
        ),
        (
            _entry(key='"conv 3x3"', seconds="1e-3"),
            ":5: ops[0].key: expected an op shape, 'block C_IN-C_OUT",
        ),
        (
            _entry(key='"stem 3-16 32x32"', seconds="1e-3")
            + '\n[[ops]]\nkey = "stem 3-16 32x32"\nseconds = 2e-3\n',
            ":9: ops[1].key: expected each op shape once (first at ops[0])",
        ),
        ("flops = 1e9\nbandwidth_bps = 1e8\nflops = 2e9\n", ":3: <document>: expected valid"),
        ("flops = 1e9\nbandwidth_bps = 1e8\ncores = 0\n", ":3: cores: expected an integer in"),
        ("flops = 1e9\nbandwidth_bps = 1e8\nsend_s = nan\n", ":3: send_s: expected a finite"),
        ('format = "v2"\nflops = 1e9\nbandwidth_bps = 1e8\n', ":1: format: expected one of"),
        ("flops = 1e9\nbandwidth_bps = 1e8\nops = 3\n", ":3: ops: expected an array of tables"),
    ],
)
def test_bad_files_name_line_and_key(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_profile(path)
    assert f"{path}{message}" in str(err.value)


def test_profiles_compare_by_figures_not_by_how_measured():
    assert dataclasses.replace(MEASURED, stats=()) == MEASURED
    assert dataclasses.replace(MEASURED, send_s=0.0) != MEASURED


def test_the_paper_network_on_two_devices():
    """``sep_resnext56_4x16d_g2.toml``: the plain network is the g4 file's (the paper's
    ResNeXt-56 4x16d); split in two, each device holds half of every block."""
    from snnas.models import ResNeXt, SepResNeXt

    g2 = load_space(SPACES / "sep_resnext56_4x16d_g2.toml")
    g4 = load_space(SPACES / "sep_resnext56_4x16d_g4.toml")
    assert g2.groups == 2 and g2.arch.alpha == 2 and g2.num_points == 9
    assert g2.arch.params(separable=False) == g4.arch.params(separable=False) == 2_234_548
    assert g2.arch.params() == sum(p.numel() for p in SepResNeXt(g2).parameters()) == 2_282_804
    assert sum(p.numel() for p in ResNeXt(g2.network).parameters()) == 2_234_548
    assert g2.arch.params_per_device() == (1_154_484, 1_128_320)
    # A device does twice a g4 device's share of every block with an identity shortcut
    # (the projections are per device, the same in both).
    for b2, b4 in zip(g2.arch.blocks, g4.arch.blocks, strict=True):
        if not b2.projection:
            assert g2.arch.block_macs(b2) == 2 * g4.arch.block_macs(b4)
    assert sum(map(g2.arch.block_macs, g2.arch.blocks)) == 168_296_448


@pytest.mark.parametrize(
    ("stem", "name"),
    [
        ("pi\x07\x1b[2J", "pi[2J"),
        ("\x00\n", "profile"),
        ("x" * 300, "x" * 100),
        ("é [/x]", "é [/x]"),
    ],
)
def test_names_from_file_names_read_back(tmp_path, stem, name):
    assert profile_name(stem) == name
    path = tmp_path / "p.toml"
    path.write_text(profile_toml(dataclasses.replace(MEASURED, name=profile_name(stem))))
    assert read_profile(path).name == name
