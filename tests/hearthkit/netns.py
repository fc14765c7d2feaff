"""Network namespaces for the cluster tests: a Net is a bridge in the root namespace and one
namespace per host behind a veth on it, each host with its own address in a private /24.

Every name made here carries the test process's pid (and a counter), and the /24 is picked
among those no interface or route uses, so the gcc and the sanitizer runs of the suite, side by
side, never meet. Net.down() removes every process inside the namespaces, the namespaces, the
veths and the bridge; what a killed run left behind is removed by the next one (its pid is
gone).

Needs root and iproute2 (the cluster tests also etcd and Pebble): require_cluster_tools() fails
a test when something is missing as root or in CI (HEARTH_CI=1), and skips it only for a user
who is not root."""
import os
import re
import shutil
import signal
import subprocess
import time
import zlib

import pytest

TAG = "hk"  # every namespace, bridge and veth made here starts with it
_seq = [0]


def require_cluster_tools():
    """Fails the calling test when namespaces cannot be made here, unless the user is not root
    and this is not CI (HEARTH_CI=1): then it skips, saying why."""
    missing = [t for t in ("ip", "etcd", "pebble", "pebble-challtestsrv") if not shutil.which(t)]
    why = None
    if os.geteuid() != 0:
        why = "the cluster test makes network namespaces: it needs root"
    elif missing:
        why = f"the cluster test needs {', '.join(missing)} (tools/debian-packages.txt)"
    if why is None:
        return
    if os.geteuid() == 0 or os.environ.get("HEARTH_CI"):
        pytest.fail(why + " (in CI and as root this test must run, not skip)", pytrace=False)
    pytest.skip(why)


def run_ip(*args, ns=None, check=True):
    argv = ["ip"] + (["-n", ns] if ns else []) + [str(a) for a in args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


def _b36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, d = divmod(n, 36)
        out = digits[d] + out
        if n == 0:
            return out


def _pid_alive(pid):
    return os.path.exists(f"/proc/{pid}")


def remove_stale():
    """Namespaces and links of clusters whose test process is gone (a run killed before its
    teardown): theirs to remove, never those of a run still going."""
    for line in run_ip("netns", "list", check=False).splitlines():
        m = re.match(rf"({TAG}-(\d+)-\d+-h\d+)", line)
        if m and not _pid_alive(int(m.group(2))):
            kill_namespace(m.group(1))
    for line in run_ip("-o", "link", "show", check=False).splitlines():
        m = re.match(rf"\d+: ({TAG}([0-9a-z]+)-[0-9a-z]+[bv]\d*)[@:]", line)
        if m and not _pid_alive(int(m.group(2), 36)):
            run_ip("link", "del", m.group(1), check=False)


def ns_pids(ns):
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                         timeout=10).stdout
    return [int(p) for p in out.split()]


def kill_namespace(ns):
    """SIGKILL to every process in ns, then the namespace itself."""
    for _ in range(20):
        pids = ns_pids(ns)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _subnet_used(prefix):
    text = run_ip("-4", "-o", "addr", "show") + run_ip("-4", "route", "show", "table", "all")
    return f"{prefix}." in text


def pick_subnet(seed):
    """A private 10.X.Y/24 that nothing here uses yet, from seed (the run's pid, its counter)."""
    h = zlib.crc32(seed.encode())
    for i in range(256):
        x = 128 + (h + i * 7919) % 120
        y = ((h >> 8) + i * 31) % 256
        prefix = f"10.{x}.{y}"
        if not _subnet_used(prefix):
            return prefix
    raise RuntimeError("no free 10.X.Y.0/24 for the cluster")


class Net:
    """The bridge, the namespaces and their veths. up() makes them (raising with ip's words on
    failure, after removing what it made); down() removes them and every process inside."""

    def __init__(self, count=3):
        _seq[0] += 1
        pid, seq = os.getpid(), _seq[0]
        tag = f"{_b36(pid)}-{_b36(seq)}"
        self.prefix = pick_subnet(f"{pid}-{seq}")
        self.gateway = f"{self.prefix}.254"
        self.bridge = f"{TAG}{tag}b"
        self.namespaces = [f"{TAG}-{pid}-{seq}-h{k}" for k in range(1, count + 1)]
        self.veths = [f"{TAG}{tag}v{k}" for k in range(1, count + 1)]
        self.addresses = [f"{self.prefix}.{k}" for k in range(1, count + 1)]

    def up(self):
        remove_stale()
        try:
            run_ip("link", "add", self.bridge, "type", "bridge")
            run_ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            run_ip("link", "set", self.bridge, "up")
            for ns, veth, addr in zip(self.namespaces, self.veths, self.addresses):
                run_ip("netns", "add", ns)
                run_ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                run_ip("link", "set", veth, "master", self.bridge, "up")
                run_ip("addr", "add", f"{addr}/24", "dev", "eth0", ns=ns)
                run_ip("link", "set", "eth0", "up", ns=ns)
                run_ip("link", "set", "lo", "up", ns=ns)
        except BaseException:
            self.down()
            raise

    def cut(self, k):
        """Host k (0-based) off the network: its veth's end in the root namespace goes down."""
        run_ip("link", "set", self.veths[k], "down")

    def restore(self, k):
        run_ip("link", "set", self.veths[k], "up")

    def down(self):
        for ns in self.namespaces:
            kill_namespace(ns)
        for link in self.veths + [self.bridge]:
            run_ip("link", "del", link, check=False)

    def leftovers(self):
        """What of this Net is still there (after down(): nothing)."""
        names = run_ip("netns", "list", check=False) + run_ip("-o", "link", "show", check=False)
        return [n for n in self.namespaces + self.veths + [self.bridge] if n in names]


def in_ns(ns, argv):
    return ["ip", "netns", "exec", ns] + [str(a) for a in argv]
