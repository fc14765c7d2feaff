"""Several hearth hosts on one machine, for the cluster tests (issue 16): each host is a network
namespace with its own address on a bridge in the root namespace, its own etcd member (the three
make one etcd cluster) and the whole stack under its own supervisor; Pebble and
pebble-challtestsrv run in the root namespace on the bridge's address.

    10.X.Y.254  bridge hk<tag>b, Pebble (API, management), the test's clients
    10.X.Y.k    host k (namespace hk-<pid>-<seq>-hk, its end of veth hk<tag>vk is eth0):
                etcd on :2379 (peers :2380), the edge on :80 and :443, the appserver, certd

The namespaces, their names and their removal are netns.py's. Cluster.close() always leaves
nothing: the stacks, etcd and Pebble stop, then every process left in the namespaces, the
namespaces, the bridge and the veths go.

Orders are counted from Pebble's own log (PebbleRecord): what reached the CA, written by the
CA, whatever any host logged or failed to log before it was killed."""
import base64
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import binary
from .certs import make_test_pki
from .netns import Net, in_ns, ns_pids
from .pebble import Pebble
from .procs import Server, stop_all, wait_until

HTTP_PORT, HTTPS_PORT = 80, 443  # inside each namespace: the same on every host
ETCD_CLIENT, ETCD_PEER = 2379, 2380
SUPERVISOR = binary("supervisor", "hearth")


class EtcdView:
    """The test's own look at etcd through the v3 JSON gateway, from the root namespace: each
    call tries the endpoints in turn (a cut or stopped member does not answer)."""

    def __init__(self, endpoints, prefix="/hearth/", timeout=2.0):
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self.timeout = timeout  # a member that lost its leader answers after an election

    def _call(self, path, body):
        timeout, last = self.timeout, None
        for ep in self.endpoints:
            req = urllib.request.Request(ep + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    return json.loads(r.read())
            except (OSError, urllib.error.URLError, ValueError) as e:
                last = e
        raise OSError(f"no etcd endpoint answered {path}: {last}")

    def range(self, key, prefix=False):
        """{key: (value bytes, mod_revision)} of key, or of every key under it with prefix."""
        full = (self.prefix + key).encode()
        body = {"key": base64.b64encode(full).decode()}
        if prefix:
            end = full[:-1] + bytes([full[-1] + 1])
            body["range_end"] = base64.b64encode(end).decode()
        out = {}
        for kv in self._call("/v3/kv/range", body).get("kvs", []):
            k = base64.b64decode(kv["key"]).decode()[len(self.prefix):]
            out[k] = (base64.b64decode(kv.get("value", "")), int(kv.get("mod_revision", 0)))
        return out

    def put_leased(self, key, value, ttl):
        """Writes key with a lease of its own (ttl s); returns the lease, for revoke()."""
        lease = self._call("/v3/lease/grant", {"TTL": ttl})["ID"]
        self._call("/v3/kv/put", {"key": base64.b64encode((self.prefix + key).encode()).decode(),
                                  "value": base64.b64encode(value.encode()).decode(),
                                  "lease": lease})
        return lease

    def revoke(self, lease):
        self._call("/v3/lease/revoke", {"ID": lease})

    def get(self, key):
        """The value of key (bytes), or None."""
        got = self.range(key)
        return got[key][0] if key in got else None

    def cert_serial(self, name):
        """The serial of the certificate stored for name (certs/NAME's chain), or None."""
        value = self.get(f"certs/{name}")
        if value is None:
            return None
        chain = json.loads(value)["chain"].encode()
        return x509.load_pem_x509_certificate(chain).serial_number


def etcd_health(address):
    """Whether the member at address has a leader and a quorum (its /health)."""
    try:
        with urllib.request.urlopen(f"http://{address}:{ETCD_CLIENT}/health", timeout=1) as r:
            return json.loads(r.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


class Host:
    """One host: its namespace, address, folder (work/hK), etcd member and stack."""

    def __init__(self, cluster, k):
        self.cluster, self.k = cluster, k
        self.name = f"h{k + 1}"
        self.ns = cluster.net.namespaces[k]
        self.ip = cluster.net.addresses[k]
        self.dir = cluster.work / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "hearth.yaml"
        self.state = self.dir / "state"
        self.access_log = self.dir / "access.log"
        self.etcd = None
        self.supervisor = None

    # --- etcd ---------------------------------------------------------------------------------
    def start_etcd(self):
        net = self.cluster.net
        peers = ",".join(f"h{i + 1}=http://{a}:{ETCD_PEER}" for i, a in enumerate(net.addresses))
        argv = ["etcd", "--name", self.name, "--data-dir", self.dir / "etcd",
                "--listen-client-urls", f"http://{self.ip}:{ETCD_CLIENT}",
                "--advertise-client-urls", f"http://{self.ip}:{ETCD_CLIENT}",
                "--listen-peer-urls", f"http://{self.ip}:{ETCD_PEER}",
                "--initial-advertise-peer-urls", f"http://{self.ip}:{ETCD_PEER}",
                "--initial-cluster", peers, "--initial-cluster-state", "new",
                "--initial-cluster-token", net.bridge,
                # elections in half a second: a lost member is noticed within the test
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--logger", "zap", "--log-level", "warn"]
        self.etcd = Server(f"etcd-{self.name}", in_ns(self.ns, argv), str(self.dir))
        return self.etcd

    def stop_etcd(self, kill=False):
        """This member stops (SIGKILL with kill): with two of three gone, etcd has no quorum."""
        if kill:
            self.etcd.kill_tree(signal.SIGKILL)
        self.etcd.stop(timeout=5)

    # --- the stack ----------------------------------------------------------------------------
    def write_config(self, names=None):
        """The host's hearth.yaml, with a site for each of names (the cluster's by default);
        with none, one site of the cluster's internal CA (an edge with HTTPS needs a site)."""
        c = self.cluster
        names = c.names if names is None else names
        sites = "".join(f"  - name: {n}\n    tls: acme\n" for n in names) or \
            "  - name: warmup.test\n    tls: internal\n"
        endpoints = ", ".join(f"http://{a}:{ETCD_CLIENT}" for a in c.net.addresses)
        self.config.write_text(
            f"run_dir: {self.dir}/run\nstate_dir: {self.state}\nlog_level: {c.log_level}\n"
            f"edge:\n  workers: 1\n  http: [\"0.0.0.0:{HTTP_PORT}\"]\n"
            f"  https: [\"0.0.0.0:{HTTPS_PORT}\"]\n  access_log: {self.access_log}\n"
            f"appserver:\n  modules: [{binary('examples', 'hello.so')}]\n  workers: 1\n"
            f"certd:\n  server: {c.pebble.directory}\n  ca_bundle: {c.pebble.ca}\n"
            "  agree_tos: true\n  email: admin@example.com\n"
            f"  check_interval: 1s\n  renew_remaining_fraction: {c.renew_fraction}\n"
            "supervisor:\n  stop_timeout: 2s\n  restart_delay: 50ms\n"
            "  restart_delay_max: 400ms\n  max_restarts: 10\n"
            f"cluster:\n  etcd: [{endpoints}]\n  host: {self.name}\n"
            f"  secret_key_file: {c.secret}\n  lock_ttl: {c.lock_ttl}\n"
            f"  challenge_wait: {c.challenge_wait}\n  timeout: {c.etcd_timeout}\n"
            "sites:\n" + sites)

    def start_stack(self):
        if not self.config.exists():
            self.write_config()
        env = {"HEARTH_LIBEXEC_DIR": str(self.cluster.libexec)}
        self.supervisor = Server(f"stack-{self.name}", in_ns(self.ns, [SUPERVISOR, "start", "-c",
                                                                      self.config]),
                                 str(self.dir), env=env)
        return self.supervisor

    def ctl(self, *args):
        return subprocess.run([SUPERVISOR, *args, "-c", str(self.config)], capture_output=True,
                              text=True, timeout=15)

    def settled(self):
        r = self.ctl("status", "--json")
        if r.returncode != 0:
            return False
        return all(c["state"] in ("running", "fatal", "disabled")
                   for c in json.loads(r.stdout)["components"])

    def answers_http(self):
        """The edge answers plain HTTP on the host's address (from the root namespace)."""
        try:
            with socket.create_connection((self.ip, HTTP_PORT), timeout=1) as s:
                s.sendall(f"GET / HTTP/1.1\r\nHost: {self.cluster.names[0]}\r\n"
                          "Connection: close\r\n\r\n".encode())
                return s.recv(64).startswith(b"HTTP/1.1 ")
        except OSError:
            return False

    def wait_up(self, timeout=20):
        def up():
            if self.supervisor.poll() is not None:
                raise RuntimeError(f"{self.name}'s supervisor exited:\n{self.log_tail()}")
            return self.settled() and self.answers_http()
        wait_until(up, timeout=timeout, what=f"{self.name}'s stack")

    def kill_supervisor(self):
        """SIGKILL to the supervisor alone: its components (each in a session of its own) go
        on without it, as on a host whose supervisor crashed."""
        self.supervisor.kill_tree(signal.SIGKILL)
        self.supervisor.wait()

    def kill_all(self):
        """SIGKILL to every process in the host's namespace but its etcd member: what is left
        of a stack whose supervisor died goes too."""
        keep = self.etcd.pid if self.etcd is not None and self.etcd.poll() is None else None

        def gone():
            pids = [p for p in ns_pids(self.ns) if p != keep]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return not pids
        wait_until(gone, timeout=5, interval=0.05, what=f"{self.name}'s processes to go")
        if self.supervisor is not None:
            self.supervisor.wait()

    def stop_stack(self):
        if self.supervisor is not None:
            self.supervisor.stop(timeout=10)

    def log(self):
        return self.supervisor.log() if self.supervisor else ""

    def log_tail(self, n=30):
        return self.supervisor.log_tail(n) if self.supervisor else ""

    def run(self, *argv, timeout=60):
        """A command in this host's namespace, to its end."""
        return subprocess.run(in_ns(self.ns, argv), capture_output=True, text=True,
                              timeout=timeout)

    # --- what the host serves and stores --------------------------------------------------------
    def served_cert(self, name, timeout=1.0):
        """The certificate the host's edge presents for name (SNI), unverified: an
        x509.Certificate, or None when the handshake fails."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((self.ip, HTTPS_PORT), timeout=timeout) as raw:
                with ctx.wrap_socket(raw, server_hostname=name) as s:
                    return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))
        except (OSError, ssl.SSLError):
            return None

    def served_serial(self, name):
        cert = self.served_cert(name)
        return cert.serial_number if cert else None

    def stored(self, name):
        """(certificate, private key) of name in the host's cert store (certd/store.c:
        CERT_DIR/NAME/fullchain.pem and privkey.pem), or None."""
        d = self.state / "certs" / name
        try:
            chain = (d / "fullchain.pem").read_bytes()
            key = (d / "privkey.pem").read_bytes()
        except OSError:
            return None
        return (x509.load_pem_x509_certificate(chain),
                serialization.load_pem_private_key(key, password=None))

    def stored_pair_matches(self, name):
        """None when nothing is stored; else whether the stored key is the certificate's."""
        got = self.stored(name)
        if got is None:
            return None
        cert, key = got
        fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)

    def stored_serial(self, name):
        got = self.stored(name)
        return got[0].serial_number if got else None

    def challenge_hits(self):
        """Lines of the edge's access log where Pebble's validator fetched a challenge."""
        try:
            text = self.access_log.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines()
                if "/.well-known/acme-challenge/" in ln and "Pebble" in ln]


class PebbleRecord:
    """What Pebble's log says reached it: the orders ("Added order") and the certificates it
    issued ("Issued certificate serial S for order O"), each certificate's names from Pebble's
    management API. A mark() taken before an event and counts(mark) after it give the orders
    and certificates in between."""

    def __init__(self, pebble):
        self.pebble = pebble
        self.names_of = {}  # serial (hex) -> [names]

    def _log(self):
        return self.pebble.pebble.log()

    def orders(self):
        return re.findall(r'Added order "([^"]+)"', self._log())

    def issued(self):
        """[(serial int, [names])] in the order Pebble issued them."""
        out = []
        for serial in re.findall(r"Issued certificate serial ([0-9a-f]+) for order", self._log()):
            if serial not in self.names_of:
                pem = json.loads(self.pebble.mgmt_get(f"/cert-status-by-serial/{serial}"))
                cert = x509.load_pem_x509_certificate(pem["Certificate"].encode())
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                self.names_of[serial] = san.value.get_values_for_type(x509.DNSName)
            out.append((int(serial, 16), self.names_of[serial]))
        return out

    def validations(self):
        """[(name, token)] of the HTTP-01 checks Pebble made, in order (one per challenge:
        Pebble logs each of its three concurrent fetches)."""
        seen = []
        for pair in re.findall(r"Attempting to validate w/ HTTP: http://([^:/]+):\d+"
                               r"/\.well-known/acme-challenge/([\w-]+)", self._log()):
            if pair not in seen:
                seen.append(pair)
        return seen

    def mark(self):
        return (len(self.orders()), len(self.issued()), len(self.validations()))

    def since(self, mark):
        """(orders since mark, {name: [serials issued since mark]}, {name: [tokens validated
        since mark]})."""
        orders = len(self.orders()) - mark[0]
        per_name, tokens = {}, {}
        for serial, names in self.issued()[mark[1]:]:
            for n in names:
                per_name.setdefault(n, []).append(serial)
        for name, token in self.validations()[mark[2]:]:
            tokens.setdefault(name, []).append(token)
        return orders, per_name, tokens


class ChallengeSteer(threading.Thread):
    """Keeps Pebble's HTTP-01 checks off the ordering host: it polls etcd's locks/ every few
    milliseconds and, as soon as a host holds NAME's lock (long before that host can ask the CA
    to validate: an order and its authorizations come first), points NAME's A record at another
    live host. self.holders: [(monotonic time, name, holder)] as seen."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.holders = []
        self.pointed = {}  # name -> the host its A record names
        self.done = threading.Event()
        self.errors = 0

    def point(self, name, host):
        self.cluster.pebble.add_a(name, [host.ip])
        self.pointed[name] = host.name

    def run(self):
        last = {}
        while not self.done.wait(0.005):
            live = self.cluster.live_endpoints()
            try:
                view = EtcdView(live, self.cluster.prefix, 0.5)
                locks = view.range("locks/", prefix=True)
                # DNS names a host once its certd mirrors challenges (docs/cluster.md: a new
                # host goes into DNS last): registered in hosts/
                joined = {k[len("hosts/"):] for k in view.range("hosts/", prefix=True)}
            except OSError:
                self.errors += 1
                continue
            for key, (value, _) in locks.items():
                name, holder = key[len("locks/"):], value.decode(errors="replace")
                if last.get(name) == holder:
                    continue
                last[name] = holder
                self.holders.append((time.monotonic(), name, holder))
                live = [h for h in self.cluster.live_hosts() if h.name in joined]
                if self.pointed.get(name) == holder or \
                        self.pointed.get(name) not in [h.name for h in live]:
                    others = [h for h in live if h.name != holder]
                    if others:
                        self.point(name, others[0])
            for name in list(last):
                if f"locks/{name}" not in locks:
                    del last[name]

    def holder_since(self, t0, name):
        """The first host seen holding name's lock after monotonic time t0, or None."""
        for t, n, h in self.holders:
            if t >= t0 and n == name:
                return h
        return None

    def stop(self):
        self.done.set()
        self.join(timeout=5)


class HttpsLoop(threading.Thread):
    """Requests in a loop from the root namespace: https://NAME/ for each name in turn, over the
    hosts in turn (a new connection each, SNI NAME, verified against Pebble's root), counting
    answers and failures. Hosts leave the loop with drop(host) (one the test takes down) and
    come back with add(host)."""

    def __init__(self, cluster, hosts=None):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.hosts = list(hosts or cluster.hosts)
        self.ctx = ssl.create_default_context(cadata=cluster.pebble_roots())
        self.ok = 0
        self.failures = []  # (host, name, what)
        self.done = threading.Event()
        self.lock = threading.Lock()

    def drop(self, host):
        with self.lock:
            self.hosts = [h for h in self.hosts if h is not host]

    def add(self, host):
        with self.lock:
            if host not in self.hosts:
                self.hosts.append(host)

    def one(self, host, name):
        with socket.create_connection((host.ip, HTTPS_PORT), timeout=3) as raw:
            with self.ctx.wrap_socket(raw, server_hostname=name) as s:
                s.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                          .encode())
                head = s.recv(64)
        if not head.startswith(b"HTTP/1.1 200"):
            raise OSError(f"answer {head[:20]!r}")

    def run(self):
        i = 0
        while not self.done.is_set():
            with self.lock:
                hosts = list(self.hosts)
            if not hosts:
                time.sleep(0.01)
                continue
            host = hosts[i % len(hosts)]
            name = self.cluster.names[(i // len(hosts)) % len(self.cluster.names)]
            i += 1
            try:
                with self.lock:
                    if host not in self.hosts:
                        continue  # dropped while this request was being chosen
                self.one(host, name)
                self.ok += 1
            except (OSError, ssl.SSLError) as e:
                with self.lock:
                    if host in self.hosts:  # a host dropped mid-request does not count
                        self.failures.append((host.name, name, repr(e)))
            time.sleep(0.005)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join(timeout=10)

    def summary(self):
        return f"{self.ok} answered, {len(self.failures)} failed {self.failures[:5]}"


class Cluster:
    """Three hosts (or count), an etcd cluster across them, Pebble on the bridge, and the
    stacks, all made by start() and removed by close() whatever happened in between.
    validity: Pebble's certificate lifetime in seconds (None: its 5 years); renew_fraction:
    certd.renew_remaining_fraction (with validity 40 and 0.8, a certificate is due 8 s after
    it was issued); lock_ttl, challenge_wait and etcd_timeout (cluster.timeout): the cluster
    map's, the timeout a sixth of the lock's TTL as with the defaults (5 s, 30 s)."""

    prefix = "/hearth/"

    def __init__(self, work, names, count=3, validity=None, renew_fraction=0.3333,
                 lock_ttl="3s", challenge_wait="3s", etcd_timeout="500ms", log_level="info"):
        self.work = work
        self.names = list(names)
        self.validity = validity
        self.renew_fraction = renew_fraction
        self.lock_ttl, self.challenge_wait, self.log_level = lock_ttl, challenge_wait, log_level
        self.etcd_timeout = etcd_timeout
        self.net = Net(count)
        self.hosts = []
        self.pebble = None
        self.steer = None
        self.cut_hosts = set()
        self.secret = work / "cluster.key"
        self.libexec = work / "libexec"
        self.etcd = EtcdView([f"http://{a}:{ETCD_CLIENT}" for a in self.net.addresses],
                             self.prefix)

    # --- making it -------------------------------------------------------------------------------
    def start(self, stacks=True):
        try:
            self.net.up()
            self.hosts = [Host(self, k) for k in range(len(self.net.namespaces))]
            self._write_shared_files()
            for h in self.hosts:
                h.start_etcd()
            self.pebble = Pebble(self.work / "pebble", http_port=HTTP_PORT,
                                 tls=make_test_pki(self.work / "pebble-tls",
                                                   f"IP:{self.net.gateway}"),
                                 validity=self.validity, address=self.net.gateway,
                                 default_ip=self.hosts[-1].ip, authz_reuse=0)
            self.record = PebbleRecord(self.pebble)
            self.wait_etcd_healthy(self.hosts)
            self.steer = ChallengeSteer(self)
            for name in self.names:
                self.steer.point(name, self.hosts[-1])
            self.steer.start()
            if stacks:
                self.start_stacks()
        except BaseException:
            self.close()
            raise
        return self

    def _write_shared_files(self):
        self.secret.write_bytes(os.urandom(32))
        os.chmod(self.secret, 0o600)
        # certd with a short failure backoff (its flag; the supervisor passes none): a renewal
        # that failed while etcd was down is tried again within seconds, not a minute
        self.libexec.mkdir(exist_ok=True)
        for name in ("edge", "appserver", "certd"):
            extra = " --retry-min 1s --retry-max 2s" if name == "certd" else ""
            path = self.libexec / name
            path.write_text(f'#!/bin/sh\nexec {binary(name, name)}{extra} "$@"\n')
            os.chmod(path, 0o755)

    def start_stacks(self, hosts=None):
        hosts = hosts or self.hosts
        for h in hosts:
            h.start_stack()
        for h in hosts:
            h.wait_up()

    def wait_etcd_healthy(self, hosts, timeout=30):
        def healthy():
            for h in hosts:
                if h.etcd.poll() is not None:
                    raise RuntimeError(f"etcd {h.name} exited:\n{h.etcd.log_tail()}")
            return all(etcd_health(h.ip) for h in hosts)
        wait_until(healthy, timeout=timeout, interval=0.1, what="etcd's members to be healthy")

    # --- faults ------------------------------------------------------------------------------------
    def cut_link(self, host):
        self.net.cut(host.k)
        self.cut_hosts.add(host.name)

    def restore_link(self, host):
        self.net.restore(host.k)
        self.cut_hosts.discard(host.name)

    def live_hosts(self):
        """The hosts on the network (their stack may be dead: see the test's own bookkeeping)."""
        return [h for h in self.hosts if h.name not in self.cut_hosts]

    def live_endpoints(self):
        return [f"http://{h.ip}:{ETCD_CLIENT}" for h in self.live_hosts()
                if h.etcd is not None and h.etcd.poll() is None]

    # --- looking at it -----------------------------------------------------------------------------
    def pebble_roots(self):
        """Pebble's root (what a client trusts: the edge sends the intermediate), PEM text."""
        return self.pebble.root_pem().decode()

    def view(self):
        return EtcdView(self.live_endpoints(), self.prefix)

    def wait_serving(self, hosts, name, old=None, timeout=20):
        """Polls etcd and hosts until each host serves one same certificate for name, other
        than old; returns (its serial, {host name or "etcd": monotonic time it was first seen
        there, "poll": how long the last round of polls took: the times' resolution}), etcd's
        time being when certs/NAME first held it."""
        seen, in_etcd = {}, {}
        want, polled = [None], [time.monotonic()]

        def all_serve():
            seen["poll"] = time.monotonic() - polled[0]  # how long one round takes
            polled[0] = time.monotonic()
            stored = self._etcd_serial(name)
            if isinstance(stored, int) and stored != old:
                in_etcd.setdefault(stored, time.monotonic())
            for h in hosts:
                s = h.served_serial(name)
                if s is None or s == old or (want[0] is not None and s != want[0]):
                    seen.pop(h.name, None)
                    continue
                want[0] = want[0] or s
                seen.setdefault(h.name, time.monotonic())
            return all(h.name in seen for h in hosts)
        try:
            wait_until(all_serve, timeout=timeout, interval=0.02, what="")
        except TimeoutError:
            served = {h.name: h.served_serial(name) for h in hosts}
            raise AssertionError(
                f"not every host of {[h.name for h in hosts]} served one new certificate for "
                f"{name} within {timeout} s (old: {old}; served: {served}; etcd: "
                f"{self._etcd_serial(name)})\n{self.logs()}") from None
        if want[0] in in_etcd:
            seen["etcd"] = in_etcd[want[0]]
        return want[0], seen

    def _etcd_serial(self, name):
        try:
            return self.view().cert_serial(name)
        except (OSError, ValueError, KeyError) as e:
            return repr(e)  # for a message; a number is a serial

    def orderer(self, name):
        """The host that published name's certificate (certs/NAME's "host")."""
        return json.loads(self.view().get(f"certs/{name}"))["host"]

    def token_servers(self, token):
        """The hosts whose edge answered Pebble's check of token."""
        return [h.name for h in self.hosts if any(token in ln for ln in h.challenge_hits())]

    def mismatched_on_disk(self, name):
        """Hosts whose cert store holds a certificate with another certificate's key."""
        return [h.name for h in self.hosts if h.stored_pair_matches(name) is False]

    def logs(self, n=40):
        """The last lines of every host's stack log and of Pebble's: for a failure's message."""
        out = []
        for h in self.hosts:
            out.append(f"--- {h.name} stack\n{h.log_tail(n)}")
        if self.pebble and self.pebble.pebble:
            out.append(f"--- pebble\n{self.pebble.pebble.log_tail(15)}")
        return "\n".join(out)

    # --- removing it -------------------------------------------------------------------------------
    def close(self):
        if self.steer:
            self.steer.stop()
        stop_all([h.supervisor for h in self.hosts if h.supervisor], timeout=5)
        for h in self.hosts:  # its data goes with the test: no need for a graceful stop
            if h.etcd and h.etcd.poll() is None:
                h.etcd.kill_tree(signal.SIGKILL)
                h.etcd.wait()
        if self.pebble:
            self.pebble.stop()
        self.net.down()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
