"""Row 9: one certificate for two names from the same Pebble, by certd, Certbot and lego, each
from a fresh state (account registration included), each timed with /usr/bin/time for wall
time and peak RSS on the client core. A small static server answers Pebble's HTTP-01
requests from the shared webroot, so no client's own server is part of the figure."""
import itertools
import os
import subprocess

from hearthkit import pebble
from hearthkit.procs import SERVER_CPU, client_argv


class Pebble(pebble.Pebble):
    """Pebble with a webroot server of its own, issuing for certd, Certbot and lego in turn."""

    def __init__(self, work):
        # nonces are never refused here: a retry would be part of the figure
        super().__init__(os.path.join(work, "pebble"), challenges="python", nonce_reject=0,
                         cpu=SERVER_CPU)
        self.serial = itertools.count(1)

    def issue(self, client, build):
        """One issuance by `client` (certd, certbot or lego) for two fresh names; returns
        {"wall_s", "rss_kib"} or raises with the client's output."""
        n = next(self.serial)
        state = os.path.join(self.dir, f"{client}-{n}")
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
