"""Emulated edge links for ``snnas run PLAN --local --link-rate RATE``.

Every device process runs in a network namespace of its own (``snnas<pid>r<rank>``: the
launcher's pid and the device), joined by a veth pair (``sn<pid>v<rank>`` on the host side,
``snnas0`` inside) to one bridge (``snb<pid>``): a star, as devices on one access point or
switch. Each device's egress (its ``snnas0``) goes through a token bucket filter (``tc qdisc
add dev snnas0 root tbf rate RATE burst BURST latency LATENCY``), so every device sends at
most RATE, to any peer. The bridge holds the launcher's address (``10.213.<k>.254/24``, the
first free ``k``), where its store listens; device R is ``10.213.<k>.<R+1>``, and gloo
binds to ``snnas0`` (``GLOO_SOCKET_IFNAME``). Everything is removed at the end, on failure
and on interruption (deleting a namespace deletes its veth pair and qdisc). A launcher killed
with SIGKILL cannot clean up: a watchdog process (started first, in a session of its own)
waits for the launcher's end of a pipe to close and then removes them; and the next
``--link-rate`` run removes whatever a dead launcher still left (names carry its pid). It
needs Linux, root and iproute2 (``ip``, ``tc``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from snnas.errors import RuntimeFailure, UsageError, shorten

__all__ = ["IFACE", "Links", "parse_rate"]

#: The device's interface inside its namespace.
IFACE = "snnas0"
#: Rates accepted by ``--link-rate`` (bits per second): 64 kbit/s .. 100 Gbit/s.
MIN_RATE, MAX_RATE = 64_000, 100_000_000_000
_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(bit|kbit|mbit|gbit)")
#: The queue a tbf holds before it drops (``latency``); TCP backs off from there.
LATENCY_MS = 100
_LOCK = "/run/snnas-links.lock"
#: The watchdog (``python -I -S -c``: no site, no snnas, no torch): it waits for the end of
#: its standard input (the launcher ended, however) and deletes the namespaces and links given
#: as ``KIND NAME`` pairs, killing whatever still runs in a namespace first.
_WATCHDOG = """
import os, signal, subprocess, sys
sys.stdin.buffer.read()
args = sys.argv[1:]
for kind, name in zip(args[::2], args[1::2]):
    if kind == "netns":
        found = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in found.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    else:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
"""
_OURS = re.compile(r"^(?:snnas(\d+)r\d+|snb(\d+)|sn(\d+)[vp]\d+)$")


def parse_rate(text: str) -> int:
    """``20mbit`` -> 20_000_000 bits per second (``bit``, ``kbit``, ``mbit``, ``gbit``; case
    does not matter); anything else, or a rate outside 64kbit .. 100gbit, is a usage error."""
    expected = "a rate such as 20mbit, 300mbit or 1gbit (bit, kbit, mbit, gbit), 64kbit..100gbit"
    match = _RATE.fullmatch(text.strip().lower()) if len(text) < 40 else None
    if match is None:
        raise UsageError("--link-rate", expected, text)
    rate = float(match.group(1)) * _UNITS[match.group(2)]
    if not MIN_RATE <= rate <= MAX_RATE:
        raise UsageError("--link-rate", expected, text)
    return round(rate)


def _run(*argv: str) -> str:
    """Run one iproute2 command; its failure is a :class:`RuntimeFailure` naming it."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        error = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeFailure(
            f"emulated links: {' '.join(argv)} failed ({shorten(error[-1] if error else '?', 200)})"
        )
    return result.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _setup_lock() -> Iterator[None]:
    """One launcher at a time picks a subnet and sweeps leftovers."""
    fd = os.open(_LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass
class Links:
    """The namespaces, veth pairs, bridge and qdiscs of one run."""

    rate: int  # bits per second, each device's egress
    devices: int
    text: str = ""  # as the user wrote it
    pid: int = field(default_factory=os.getpid)
    subnet: int | None = None  # k of 10.213.k.0/24, once created
    made: list[tuple[str, str]] = field(default_factory=list)  # ("netns"|"link", name)
    watchdog: subprocess.Popen[bytes] | None = None

    @classmethod
    def parse(cls, text: str, devices: int) -> Links:
        """``--link-rate`` for a run of ``devices`` processes."""
        rate = parse_rate(text)
        if devices > 250:
            raise UsageError("--link-rate", "a plan of at most 250 devices", devices)
        return cls(rate, devices, text.strip().lower())

    @property
    def burst(self) -> int:
        """Bytes the bucket holds: 1 ms at the rate, at least 32 KiB (so a payload of a few
        packets is not held back; larger bursts let a whole payload through at memory
        speed at high rates)."""
        return max(32 * 1024, self.rate // 8 // 1000)

    @property
    def store_host(self) -> str:
        """The launcher's address on the bridge."""
        return f"10.213.{self.subnet}.254"

    def namespace(self, rank: int) -> str:
        return f"snnas{self.pid}r{rank}"

    def namespace_path(self, rank: int) -> str:
        """The file ``setns`` opens to enter device ``rank``'s namespace."""
        return f"/run/netns/{self.namespace(rank)}"

    def env(self, rank: int) -> dict[str, str]:
        """What device ``rank``'s process needs in its environment."""
        return {"GLOO_SOCKET_IFNAME": IFACE}

    def describe(self) -> dict[str, Any]:
        """The links, as ``runtime.json`` records them."""
        return {
            "rate": self.text,
            "rate_bit_s": self.rate,
            "burst_bytes": self.burst,
            "latency_ms": LATENCY_MS,
            "topology": "star: one network namespace per device, veth pairs to one bridge, "
            "tbf on each device's egress",
        }

    @staticmethod
    def check_possible() -> None:
        """One line saying what is missing where links cannot be emulated."""
        if not sys.platform.startswith("linux"):
            raise RuntimeFailure(
                f"--link-rate needs Linux (network namespaces), not {sys.platform}"
            )
        if os.geteuid() != 0:
            raise RuntimeFailure(
                "--link-rate needs root (it creates network namespaces, veth pairs and tbf "
                "qdiscs): run as root, or drop --link-rate"
            )
        missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
        if missing:
            raise RuntimeFailure(
                f"--link-rate needs iproute2's {' and '.join(missing)} on the PATH "
                "(e.g. apt-get install iproute2)"
            )

    def create(self) -> None:
        """Make the bridge, and per device its namespace, veth pair and qdisc."""
        bridge = f"snb{self.pid}"
        every = [("netns", self.namespace(r)) for r in range(self.devices)]
        every += [("link", f"sn{self.pid}v{r}") for r in range(self.devices)]
        every += [("link", bridge)]
        self.watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, *(x for pair in every for x in pair)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # neither Ctrl-C nor the launcher's death stops it
        )
        with _setup_lock():
            sweep_stale()
            self.subnet = _free_subnet()
            _run("ip", "link", "add", bridge, "type", "bridge")
            self.made.append(("link", bridge))
            _run("ip", "addr", "add", f"{self.store_host}/24", "dev", bridge)
            _run("ip", "link", "set", bridge, "up")
        rate, burst = str(self.rate), str(self.burst)
        for rank in range(self.devices):
            ns, host, peer = self.namespace(rank), f"sn{self.pid}v{rank}", f"sn{self.pid}p{rank}"
            _run("ip", "netns", "add", ns)
            self.made.append(("netns", ns))
            _run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            self.made.append(("link", host))
            _run("ip", "link", "set", host, "master", bridge, "up")
            _run("ip", "link", "set", peer, "netns", ns)
            _run("ip", "-n", ns, "link", "set", peer, "name", IFACE)
            _run("ip", "-n", ns, "addr", "add", f"10.213.{self.subnet}.{rank + 1}/24", "dev", IFACE)
            _run("ip", "-n", ns, "link", "set", IFACE, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("tc", "-n", ns, "qdisc", "add", "dev", IFACE, "root", "tbf", "rate", f"{rate}bit",
                 "burst", burst, "latency", f"{LATENCY_MS}ms")  # fmt: skip

    def remove(self) -> None:
        """Delete everything :meth:`create` made (what is already gone is skipped)."""
        for kind, name in reversed(self.made):
            argv = ("ip", "netns", "del", name) if kind == "netns" else ("ip", "link", "del", name)
            subprocess.run(argv, capture_output=True, check=False)
        self.made.clear()
        if self.watchdog is not None:  # nothing left for it to do: it ends
            if self.watchdog.stdin is not None:
                self.watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.watchdog.wait(timeout=30)
            self.watchdog = None


def _free_subnet() -> int:
    """The first ``k`` with no address of ``10.213.k.0/24`` on this machine."""
    used = set(re.findall(r"inet 10\.213\.(\d+)\.", _run("ip", "-4", "-o", "addr", "show")))
    for k in range(256):
        if str(k) not in used:
            return k
    raise RuntimeFailure("emulated links: every subnet 10.213.k.0/24 is in use")


def _pid_of(name: str) -> int | None:
    match = _OURS.match(name)
    if match is None:
        return None
    return int(next(g for g in match.groups() if g is not None))


def ours(pid: int | None = None) -> list[tuple[str, str]]:
    """Namespaces and links named as this module names them (of launcher ``pid``, or of
    any launcher)."""
    found: list[tuple[str, str]] = []
    for line in _run("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        if _pid_of(name) is not None and pid in (None, _pid_of(name)):
            found.append(("netns", name))
    for line in _run("ip", "-o", "link", "show").splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        if _pid_of(name) is not None and pid in (None, _pid_of(name)):
            found.append(("link", name))
    return found


def sweep_stale() -> None:
    """Remove what launchers that no longer run left behind (a launcher killed with
    SIGKILL); only names this module makes, of dead pids."""
    for kind, name in ours():
        pid = _pid_of(name)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        argv = ("ip", "netns", "del", name) if kind == "netns" else ("ip", "link", "del", name)
        subprocess.run(argv, capture_output=True, check=False)
