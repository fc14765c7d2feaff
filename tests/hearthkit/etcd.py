"""etcd for the tests: one member or a cluster of N, each with a data directory of its own,
started and waited for until every member is healthy; etcdctl against it (auth turned on with
users of its own, revisions, compaction); a throwaway PKI for its TLS with client
certificates.

On loopback each member takes free ports. For the multi-host test, hosts gives each member an
address and wrap(i) a command prefix to run it with (["ip", "netns", "exec", "h1"]); the
members then listen on etcd's usual ports, 2379 and 2380, and health is asked through
etcdctl run the same way."""
import json
import os
import ssl
import subprocess
import time
import urllib.request

from .certs import make_ca, make_leaf
from .ports import free_port
from .procs import stop_all, wait_until

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"


class EtcdTLS:
    """Paths of a test PKI for etcd in folder d: the CA, the members' certificate (for
    127.0.0.1, localhost and hosts) and a client certificate."""

    def __init__(self, d, hosts=()):
        os.makedirs(d, exist_ok=True)
        ca = make_ca(d)
        sans = ["IP:127.0.0.1", "DNS:localhost"] + [f"IP:{h}" for h in hosts]
        self.ca = ca[0]
        # the gateway inside each member dials the member's gRPC with this certificate too
        self.cert, self.key = make_leaf(d, ca, "etcd", sans=sans, usage="serverAuth,clientAuth")
        # without a common name: etcd's gateway refuses a client certificate that has one (etcd
        # would take it for a user name on gRPC, and the gateway cannot pass it on)
        self.client_cert, self.client_key = make_leaf(
            d, ca, "hearth-client", usage="clientAuth", subject="/O=hearth test client",
            sans=["DNS:hearth-client"])


class Member:
    def __init__(self, name, host, client_port, peer_port, data_dir, scheme):
        self.name, self.host, self.data_dir = name, host, data_dir
        self.client_url = f"{scheme}://{host}:{client_port}"
        self.peer_url = f"http://{host}:{peer_port}"
        self.proc = None


class Etcd:
    """members etcd members in workdir, started by procs (a hearthkit Processes, which stops
    them); tls: an EtcdTLS (clients must then present its client certificate); token_ttl: how
    long (s) an unused auth token lives (etcd's default is 300)."""

    def __init__(self, workdir, procs, members=1, tls=None, token_ttl=None, hosts=None,
                 wrap=None):
        self.workdir, self.procs, self.tls, self.wrap = str(workdir), procs, tls, wrap
        self.token_ttl = token_ttl
        self.root_password = None  # set once auth is on: etcdctl then logs in as root
        scheme = "https" if tls else "http"
        self.members = []
        for i in range(members):
            host = hosts[i] if hosts else "127.0.0.1"
            ports = (2379, 2380) if hosts else (free_port(), free_port())
            self.members.append(Member(f"m{i}", host, *ports,
                                       os.path.join(self.workdir, f"etcd-m{i}"), scheme))
        self.cluster_token = f"hearth-test-{os.getpid()}-{time.monotonic_ns()}"

    @property
    def endpoints(self):
        return [m.client_url for m in self.members]

    def argv(self, i):
        m = self.members[i]
        cluster = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        argv = [ETCD, "--name", m.name, "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.cluster_token, "--logger", "zap",
                "--log-outputs", "stderr"]
        if self.tls:
            argv += ["--cert-file", self.tls.cert, "--key-file", self.tls.key,
                     "--trusted-ca-file", self.tls.ca, "--client-cert-auth"]
        if self.token_ttl:
            argv += ["--auth-token-ttl", str(self.token_ttl)]
        return (self.wrap(i) if self.wrap else []) + argv

    def start(self, timeout=20):
        """Every member, then waits until all are healthy."""
        for i in range(len(self.members)):
            self.start_member(i)
        self.wait_healthy(timeout=timeout)
        return self

    def start_member(self, i):
        """Member i (again: a stopped member restarts from its data directory)."""
        m = self.members[i]
        m.proc = self.procs.start(self.argv(i), name=f"etcd-{m.name}")
        return m.proc

    def stop_member(self, i, timeout=5):
        self.members[i].proc.stop(timeout)

    def stop(self, timeout=1):
        """Every member at once; those not gone after timeout are killed (a member without
        quorum can take long over a SIGTERM)."""
        stop_all([m.proc for m in self.members if m.proc], timeout)

    def _get_json(self, i, path, body=None):
        """GET (or POST body to) member i's path; the JSON answer, None when unreachable."""
        ctx = None
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls.ca)
            ctx.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        try:
            with urllib.request.urlopen(self.members[i].client_url + path, data=body,
                                        timeout=1, context=ctx) as r:
                return json.load(r)
        except (OSError, ValueError):
            return None

    def healthy(self, i):
        if self.wrap:
            return self.etcdctl("endpoint", "health", member=i,
                                endpoints=[self.members[i].client_url],
                                check=False).returncode == 0
        return (self._get_json(i, "/health") or {}).get("health") == "true"

    def leader(self, i):
        """The leader member i follows (its ID), 0 when it has none, None when unreachable."""
        if self.wrap:
            r = self.etcdctl("endpoint", "status", "-w", "json", member=i, check=False,
                             endpoints=[self.members[i].client_url])
            return json.loads(r.stdout)[0]["Status"].get("leader", 0) if r.returncode == 0 \
                else None
        status = self._get_json(i, "/v3/maintenance/status", b"{}")
        return None if status is None else int(status.get("leader", 0))

    def wait_healthy(self, members=None, timeout=20):
        """Waits until every member of members (all by default) says it is healthy (it has a
        leader); a member that exits first fails with its log."""
        for i in members if members is not None else range(len(self.members)):
            p = self.members[i].proc
            wait_until(lambda: p.poll() is not None or self.healthy(i), timeout=timeout,
                       interval=0.05, what=f"etcd member {i} to be healthy")
            assert p.poll() is None, p.log_tail()

    def etcdctl(self, *args, member=0, endpoints=None, check=True, user=None):
        """etcdctl (API 3) against endpoints (all by default), run like member's etcd; as root
        once auth is on (or as user, "name:password"). Returns the CompletedProcess."""
        argv = [ETCDCTL, "--endpoints", ",".join(endpoints or self.endpoints),
                "--dial-timeout", "3s", "--command-timeout", "5s"]
        if self.tls:
            argv += ["--cacert", self.tls.ca, "--cert", self.tls.client_cert,
                     "--key", self.tls.client_key]
        if user or self.root_password:
            argv += ["--user", user or f"root:{self.root_password}"]
        argv = (self.wrap(member) if self.wrap else []) + argv + [str(a) for a in args]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                           env=dict(os.environ, ETCDCTL_API="3"))
        if check and r.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(map(str, args))}: {r.stderr}{r.stdout}")
        return r

    def enable_auth(self, users, prefix="/", root_password="root-secret"):
        """etcd auth on: root, and each of users (name: password) with a role of its own that
        may read and write every key under prefix."""
        self.etcdctl("user", "add", "root", f"--new-user-password={root_password}")
        for name, password in users.items():
            self.etcdctl("role", "add", name)
            self.etcdctl("role", "grant-permission", name, "readwrite", prefix, "--prefix=true")
            self.etcdctl("user", "add", name, f"--new-user-password={password}")
            self.etcdctl("user", "grant-role", name, name)
        self.etcdctl("auth", "enable")
        self.root_password = root_password

    def put(self, key, value):
        """Writes key; returns the store's revision after it."""
        out = self.etcdctl("put", key, value, "-w", "json").stdout
        return int(json.loads(out)["header"]["revision"])

    def compact(self, revision):
        self.etcdctl("compact", revision)
