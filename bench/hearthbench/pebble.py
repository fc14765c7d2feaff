"""Pebble (Let's Encrypt's ACME test server) on loopback, with pebble-challtestsrv as its DNS
(every name is 127.0.0.1) and its API on a certificate from a throwaway CA. HTTP-01 is
validated on http_port: a server of the caller's (the edge of a stack under test), or, when
none is given, a small static server of its own answering from self.webroot."""
import json
import os
import shutil
import subprocess
import time

from hearthkit.ports import free_port
from hearthkit.procs import SERVER_CPU, Server


class Pebble:
    def __init__(self, work, http_port=None):
        self.work = os.path.join(work, "pebble")
        self.webroot = os.path.join(self.work, "www")
        os.makedirs(self.webroot)
        self.ca = self._make_tls()
        self.servers = []
        self._start(http_port)

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

    def _start(self, http_port):
        acme, dns = free_port(), free_port()
        http = http_port or free_port()
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
            "-defaultIPv6", ""], self.work, cpu=SERVER_CPU, session=True))
        if http_port is None:
            self.servers.append(Server("webroot", [
                "/usr/bin/python3", "-m", "http.server", str(http), "--bind", "127.0.0.1",
                "--directory", self.webroot], self.work, cpu=SERVER_CPU,
                session=True))
        self.servers.append(Server("pebble", [
            shutil.which("pebble"), "-config", f"{self.work}/pebble.json",
            "-dnsserver", f"127.0.0.1:{dns}"], self.work,
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}, cpu=SERVER_CPU,
            session=True))
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
