#!/usr/bin/python3
"""Sums the individual test cases behind meson's test log: each C unit test prints
"suite: N passed, N failed" and pytest prints "N passed, N failed", so the total counts cases,
not executables. A test that failed without saying how many cases failed counts as one."""
import json
import re
import sys

passed = failed = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        t = json.loads(line)
        out = (t.get("stdout") or "") + "\n" + (t.get("stderr") or "")
        p = sum(int(n) for n in re.findall(r"(\d+) passed", out))
        f = sum(int(n) for n in re.findall(r"(\d+) failed", out))
        f += sum(int(n) for n in re.findall(r"(\d+) errors?\b", out))
        ok = t.get("result") == "OK"
        if not ok and f == 0:
            f = 1
        if ok and p == 0:
            p = 1
        passed += p
        failed += f
print(f"{passed} {failed}")
