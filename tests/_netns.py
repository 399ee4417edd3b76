"""A network namespace for RPC tests and benchmarks: a veth pair with HOST_IP on this side
and NS_IP inside, and ``tc netem`` to add a round trip (root, ``ip`` and ``tc`` needed:
:func:`available` says whether this machine permits it)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

NS, HOST_IP, NS_IP = "lbrpc", "10.77.0.1", "10.77.0.2"


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def available() -> bool:
    """Whether ``ip netns`` works here (a namespace is made and removed again)."""
    if not shutil.which("ip"):
        return False
    probe = subprocess.run(["ip", "netns", "add", NS + "probe"], capture_output=True, timeout=30)
    subprocess.run(["ip", "netns", "del", NS + "probe"], capture_output=True, timeout=30)
    return probe.returncode == 0


@contextlib.contextmanager
def namespace() -> Iterator[None]:
    """A network namespace with a veth pair: HOST_IP here, NS_IP there."""
    _sh("ip", "netns", "add", NS)
    try:
        _sh("ip", "link", "add", "lbrpc0", "type", "veth", "peer", "name", "lbrpc1")
        _sh("ip", "link", "set", "lbrpc1", "netns", NS)
        _sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", "lbrpc0")
        _sh("ip", "link", "set", "lbrpc0", "up")
        _sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/24", "dev", "lbrpc1")
        _sh("ip", "netns", "exec", NS, "ip", "link", "set", "lbrpc1", "up")
        _sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
        yield
    finally:
        subprocess.run(["ip", "link", "del", "lbrpc0"], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=30)


def set_delay(ms: float) -> bool:
    """``ms`` more round trip between here and the namespace (on this side's veth); False
    when this kernel has no netem."""
    subprocess.run(["tc", "qdisc", "del", "dev", "lbrpc0", "root"], capture_output=True, timeout=30)
    if ms <= 0:
        return True
    added = subprocess.run(["tc", "qdisc", "add", "dev", "lbrpc0", "root", "netem", "delay", f"{ms}ms"],
                           capture_output=True, timeout=30)
    return added.returncode == 0  # False: no netem here
