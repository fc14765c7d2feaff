"""certd under test: its path and exit codes, a run that fails on any sanitizer report, its flags
for a Pebble, and what to read from the certificates and the webroot it leaves."""
import os
import subprocess

from . import binary
from .certs import openssl

CERTD = binary("certd", "certd")
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOTHING = 0, 1, 2, 3


def no_sanitizer_report(text):
    # in an -Db_sanitize=address,undefined build, any report fails the test
    assert "runtime error:" not in text and "Sanitizer" not in text, text


def run(args, cwd, timeout=60):
    """certd (or another command) run to its end; fails on any sanitizer report."""
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    no_sanitizer_report(r.stderr)
    return r


def certd_args(pebble, state, *extra, server=None):
    """certd's flags for pebble (or, with server, a directory URL in front of it)."""
    return [CERTD, "--server", server or pebble.directory, "--ca-bundle", pebble.ca,
            "--webroot", str(pebble.webroot), "--cert-dir", str(state / "certs"),
            "--agree-tos", "--email", "admin@example.com", *extra]


def certd_config(pebble, state):
    """The start of a hearth.yaml whose state_dir is state and whose certd section uses
    pebble (a config file's tests add their own keys and sites)."""
    return (f"state_dir: {state}\ncertd:\n  server: {pebble.directory}\n"
            f"  ca_bundle: {pebble.ca}\n  agree_tos: true\n  webroot: {pebble.webroot}\n")


def cert_text(path):
    """openssl's text form of the certificate in file path."""
    return openssl("x509", "-in", path, "-noout", "-text", text=True).stdout


def cert_serial(path):
    """The serial number of the certificate in file path, as openssl prints it (hex)."""
    return openssl("x509", "-in", path, "-noout", "-serial", text=True).stdout.strip().split("=")[1]


def pubkey_of_cert(path):
    return openssl("x509", "-in", path, "-noout", "-pubkey", text=True).stdout


def pubkey_of_key(path):
    return openssl("pkey", "-in", path, "-pubout", text=True).stdout


def challenge_files(pebble):
    """The challenge files left in pebble's webroot."""
    d = pebble.webroot / ".well-known" / "acme-challenge"
    return [f for f in os.listdir(d) if not f.startswith(".")] if d.exists() else []
