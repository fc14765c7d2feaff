"""Pebble (Let's Encrypt's ACME test server) on loopback, with pebble-challtestsrv as its DNS
(every name is 127.0.0.1) and its API on a certificate from a throwaway CA (or from tls, a
folder as certs.make_test_pki makes). It validates HTTP-01 on http_port (a free one unless
given), where the answer comes from
  challenges=None: the caller's own server (the edge of a stack under test),
  challenges="edge": the real edge serving self.webroot, as certd sees it in the stack,
  challenges="python": a small static server on self.webroot, so that no hearth server is part
  of a benchmark's figure.
nonce_reject: the percentage of good nonces Pebble refuses (certd must retry them); cpu: the
core every process is pinned to (the benchmarks' server core). address: where Pebble's API and
management interface listen (the cluster tests' bridge); default_ip: what challtestsrv answers
for a name add_a() did not set; authz_reuse: Pebble's percentage of reused authorizations
(None: its default, 50)."""
import json
import pathlib
import shutil
import ssl
import urllib.request

from . import PYTHON
from .certs import make_test_pki
from .edge import start_edge
from .ports import free_port, port_open
from .procs import Processes, wait_until


class Pebble:
    def __init__(self, work, http_port=None, challenges=None, tls=None, validity=None, eab=None,
                 nonce_reject=20, cpu=None, build=None, address="127.0.0.1",
                 default_ip="127.0.0.1", authz_reuse=None):
        self.dir = pathlib.Path(work)
        self.webroot = self.dir / "www"
        self.webroot.mkdir(parents=True, exist_ok=True)
        self.tls = pathlib.Path(tls) if tls else make_test_pki(self.dir / "tls", "DNS:localhost",
                                                               "IP:127.0.0.1")
        self.ca = str(self.tls / "ca.pem")  # what a client trusts Pebble's API with
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.port, self.mgmt, self.dns = free_port(), free_port(), free_port()
        self.dns_mgmt = free_port()  # challtestsrv's management API (add_a)
        self.http_port = http_port or free_port()
        self.address, self.default_ip = address, default_ip
        self.directory = f"https://{address}:{self.port}/dir"
        self.nonce_reject, self.authz_reuse = nonce_reject, authz_reuse
        self.procs = Processes(self.dir, cpu=cpu, session=True)
        self.pebble = None
        config = {"pebble": {
            "listenAddress": f"{address}:{self.port}",
            "managementListenAddress": f"{address}:{self.mgmt}",
            "certificate": str(self.tls / "cert.pem"), "privateKey": str(self.tls / "key.pem"),
            "httpPort": self.http_port, "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab), "externalAccountMACKeys": eab or {}}}
        if validity:
            config["pebble"]["certificateValidityPeriod"] = validity
        self.config = self.dir / "pebble.json"
        self.config.write_text(json.dumps(config))
        try:
            self._start_dns()
            self._start_challenges(challenges, build)
            self.start_ca()
        except BaseException:
            self.stop()
            raise

    def _start_dns(self):
        # challtestsrv answers Pebble's DNS queries: every name is default_ip (127.0.0.1)
        self.procs.start([shutil.which("pebble-challtestsrv") or "pebble-challtestsrv",
                          "-dns01", f"127.0.0.1:{self.dns}", "-http01", "", "-https01", "",
                          "-tlsalpn01", "", "-management", f"127.0.0.1:{self.dns_mgmt}",
                          "-defaultIPv4", self.default_ip, "-defaultIPv6", ""],
                         name="challtestsrv")

    def _start_challenges(self, challenges, build):
        """self.challenge_server: the process answering HTTP-01, or None (the caller's)."""
        self.challenge_server = None
        if challenges == "edge":
            self.challenge_server = start_edge(
                self.procs, "--acme-webroot", str(self.webroot), http=self.http_port,
                https=None, name="www", build=build).proc
        elif challenges == "python":
            self.challenge_server = self.procs.start(
                [PYTHON, "-m", "http.server", str(self.http_port), "--bind", "127.0.0.1",
                 "--directory", str(self.webroot)], name="webroot")
        elif challenges is not None:
            raise ValueError(f"challenges={challenges!r}: None, 'edge' or 'python'")

    def start_ca(self):
        """Pebble itself (again, after stop_ca()), waited for until its API listens."""
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(self.nonce_reject)}
        if self.authz_reuse is not None:
            env["PEBBLE_AUTHZREUSE"] = str(self.authz_reuse)
        self.pebble = self.procs.start(
            [shutil.which("pebble") or "pebble", "-config", str(self.config),
             "-dnsserver", f"127.0.0.1:{self.dns}"], name="pebble", env=env)
        try:
            wait_until(lambda: not self.pebble.alive() or
                       (port_open(self.port, self.address) and
                        port_open(self.mgmt, self.address)), timeout=20, what="pebble")
            up = self.pebble.alive()
        except TimeoutError:
            up = False
        if not up:
            raise RuntimeError("pebble did not come up:\n" + self.pebble.log_tail())

    def stop_ca(self):
        """Pebble alone stops (a CA that is down); challtestsrv and the challenges stay."""
        self.pebble.stop(timeout=5)

    def stop(self):
        self.procs.stop_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def mgmt_get(self, path):
        with urllib.request.urlopen(f"https://{self.address}:{self.mgmt}{path}", context=self.ctx,
                                    timeout=5) as r:
            return r.read()

    def root_pem(self):
        """The root certificate Pebble issues under (it makes a new one at each start)."""
        return self.mgmt_get("/roots/0")

    def cert_status(self, serial):
        return json.loads(self.mgmt_get(f"/cert-status-by-serial/{serial}"))

    def add_a(self, name, addresses):
        """challtestsrv answers A queries for name with addresses (Pebble's HTTP-01 check
        connects to the first one) from now on, instead of what it answered before."""
        host = name.rstrip(".") + "."
        self._dns_mgmt("/clear-a", {"host": host})  # add-a appends to the addresses it has
        self._dns_mgmt("/add-a", {"host": host, "addresses": list(addresses)})

    def _dns_mgmt(self, path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{self.dns_mgmt}{path}",
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
