"""bench/run's parts: the shared material, the servers on both sides, the load generators, the
rows and the table. Processes, ports, certificates and Pebble come from the helper package the
tests use too, tests/hearthkit, put on sys.path here."""
import os
import sys

_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
