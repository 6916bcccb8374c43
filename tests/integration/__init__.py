"""Integration tests against a real Anvil (see tests/conftest.py)."""
