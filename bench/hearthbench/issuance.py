"""Row 9: one certificate for two names from the same Pebble, by certd, Certbot and lego, each
from a fresh state (account registration included), each timed with /usr/bin/time for wall
time and peak RSS on the client core. A small static server answers Pebble's HTTP-01
requests from the shared webroot, so no client's own server is part of the figure."""
import itertools
import json
import os
import shutil
import subprocess
import time

from .procs import Server, client_argv, free_port


class Pebble:
    def __init__(self, work):
        self.work = os.path.join(work, "pebble")
        self.webroot = os.path.join(self.work, "www")
        os.makedirs(self.webroot)
        self.ca = self._make_tls()
        self.serial = itertools.count(1)
        self.servers = []
        self._start()

    def _openssl(self, *args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)

    def _make_tls(self):
        """A CA, and a certificate for 127.0.0.1 it signs that Pebble serves its API with."""
        d = self.work
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "2",
                      "-subj", "/CN=bench-ca")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", f"{d}/key.pem", "-out", f"{d}/csr.pem", "-subj", "/CN=localhost")
        with open(f"{d}/san.ext", "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        self._openssl("x509", "-req", "-in", f"{d}/csr.pem", "-CA", f"{d}/ca.pem", "-CAkey",
                      f"{d}/ca.key", "-CAcreateserial", "-out", f"{d}/cert.pem", "-days", "2",
                      "-extfile", f"{d}/san.ext")
        return f"{d}/ca.pem"

    def _start(self):
        acme, http, dns = free_port(), free_port(), free_port()
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{acme}",
            "managementListenAddress": f"127.0.0.1:{free_port()}",
            "certificate": f"{self.work}/cert.pem", "privateKey": f"{self.work}/key.pem",
            "httpPort": http, "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}
        with open(f"{self.work}/pebble.json", "w") as f:
            json.dump(config, f)
        # challtestsrv answers Pebble's DNS queries: every name is 127.0.0.1
        self.servers.append(Server("challtestsrv", [
            shutil.which("pebble-challtestsrv"), "-dns01", f"127.0.0.1:{dns}", "-http01", "",
            "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{free_port()}",
            "-defaultIPv6", ""], self.work))
        self.servers.append(Server("webroot", [
            "/usr/bin/python3", "-m", "http.server", str(http), "--bind", "127.0.0.1",
            "--directory", self.webroot], self.work))
        self.servers.append(Server("pebble", [
            shutil.which("pebble"), "-config", f"{self.work}/pebble.json",
            "-dnsserver", f"127.0.0.1:{dns}"], self.work,
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}))
        self.directory = f"https://127.0.0.1:{acme}/dir"
        deadline = time.monotonic() + 20
        while subprocess.run(["curl", "-sf", "--cacert", self.ca, "-o", "/dev/null",
                              self.directory]).returncode != 0:
            if time.monotonic() > deadline or not all(s.alive() for s in self.servers):
                raise RuntimeError("pebble did not come up:\n" + self.servers[-1].log_tail())
            time.sleep(0.1)

    def stop(self):
        for s in reversed(self.servers):
            s.stop()

    def issue(self, client, build):
        """One issuance by `client` (certd, certbot or lego) for two fresh names; returns
        {"wall_s", "rss_kib"} or raises with the client's output."""
        n = next(self.serial)
        state = os.path.join(self.work, f"{client}-{n}")
        os.makedirs(state)
        name = f"{client}{n}.example.com"
        argv, env = getattr(self, "_" + client)(build, state, name, f"www.{name}")
        timing = os.path.join(state, "time")
        done = subprocess.run(client_argv(["/usr/bin/time", "-f", "%e %M", "-o", timing] + argv),
                              capture_output=True, text=True, timeout=180,
                              env=dict(os.environ, **env))
        if done.returncode != 0:
            raise RuntimeError(f"{client} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        with open(timing) as f:
            wall, rss = f.read().split()[-2:]
        return {"wall_s": float(wall), "rss_kib": int(rss)}

    def _certd(self, build, state, name, alias):
        return ([os.path.join(build, "certd", "certd"), "--issue", name, "-d", alias,
                 "--server", self.directory, "--ca-bundle", self.ca, "--webroot", self.webroot,
                 "--cert-dir", os.path.join(state, "certs"), "--agree-tos",
                 "--email", "bench@example.com"], {})

    def _certbot(self, build, state, name, alias):
        return (["certbot", "certonly", "--webroot", "-w", self.webroot, "-d", name, "-d", alias,
                 "--server", self.directory, "--agree-tos", "-m", "bench@example.com",
                 "--non-interactive", "--key-type", "ecdsa",
                 "--config-dir", f"{state}/config", "--work-dir", f"{state}/work",
                 "--logs-dir", f"{state}/logs"], {"REQUESTS_CA_BUNDLE": self.ca})

    def _lego(self, build, state, name, alias):
        return (["lego", "--server", self.directory, "--email", "bench@example.com",
                 "--accept-tos", "--domains", name, "--domains", alias, "--http",
                 "--http.webroot", self.webroot, "--key-type", "ec256", "--path", state, "run"],
                {"LEGO_CA_CERTIFICATES": self.ca})
