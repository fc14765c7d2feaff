"""Raises while it is imported."""
raise RuntimeError("probe failure at import")
