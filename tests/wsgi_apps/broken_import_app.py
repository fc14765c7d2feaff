"""Imports a module that does not exist."""
import hearth_probe_no_such_module  # noqa: F401

app = None
