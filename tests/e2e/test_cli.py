"""The command line all four programs share (shared/cli.c): one version, help from the flag
tables, and flags bounded by the config schema exactly as the YAML file is."""
import re
import subprocess

import pytest
from hearthkit import SOURCE, binary

PROGRAMS = {name: binary(name, name) for name in ("edge", "appserver", "certd")}
PROGRAMS["hearth"] = binary("supervisor", "hearth")  # the supervisor: the command users type
EXIT_USAGE = 2


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=10)


def project_version():
    with open(f"{SOURCE}/meson.build") as f:
        return re.search(r"version: '([^']+)'", f.read()).group(1)


def test_version_is_the_build_version_in_all_four():
    lines = {}
    for name, path in PROGRAMS.items():
        r = run(path, "--version")
        assert r.returncode == 0, r.stderr
        lines[name] = r.stdout.splitlines()[0]
    version = project_version()
    assert lines == {name: f"{name} (hearth) {version}" if name != "hearth" else
                     f"hearth {version}" for name in PROGRAMS}
    # the appserver also names the module ABI it speaks, on a line of its own
    extra = run(PROGRAMS["appserver"], "-V").stdout.splitlines()[1]
    assert re.fullmatch(r"module ABI \d+\.\d+", extra)


@pytest.mark.parametrize("name,flags", [
    ("edge", ["--config FILE", "--server-name NAME", "--max-header-size SIZE",
              "[edge.max_header_size]"]),
    ("appserver", ["-w, --workers N", "-b, --bind ADDR", "--pythonpath DIR",
                   "[appserver.workers]"]),
    ("certd", ["--issue DOMAIN", "-d, --domain DOMAIN", "--key-type T", "[certd.key_type]"]),
    ("hearth", ["-c, --config FILE", "-s, --socket PATH", "--json", "hearth restart NAME"]),
])
def test_help_lists_the_flags(name, flags):
    r = run(PROGRAMS[name], "--help")
    assert r.returncode == 0 and r.stderr == ""
    for flag in flags + ["-h, --help", "-V, --version"]:
        assert flag in r.stdout, flag


def test_edge_header_size_flag_takes_the_schemas_bound(tmp_path):
    """256 was accepted by the flag while the file refused it; now both refuse it, in the same
    words."""
    r = run(PROGRAMS["edge"], "--http", "127.0.0.1:1", "--max-header-size", "256")
    assert r.returncode == EXIT_USAGE
    assert r.stderr == "edge: --max-header-size: expected a size from 1k to 1m, got '256'\n"
    cfg = tmp_path / "h.yaml"
    cfg.write_text("edge:\n  max_header_size: 256\n")
    r = run(PROGRAMS["edge"], "--config", str(cfg), "--check")
    assert r.returncode == EXIT_USAGE
    assert r.stderr.endswith(
        "key 'edge.max_header_size': expected a size from 1k to 1m, got '256'\n")


def test_appserver_out_of_range_flag_is_a_usage_error():
    r = run(PROGRAMS["appserver"], "--workers", "5000", "app.so")
    assert r.returncode == EXIT_USAGE
    assert "--workers: expected auto or an integer from 0 to 1024, got '5000'" in r.stderr


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_unknown_flag_is_named(name):
    r = run(PROGRAMS[name], "--no-such-flag")
    assert r.returncode == EXIT_USAGE
    assert r.stderr == f"{name}: unknown flag '--no-such-flag' (see --help)\n"
