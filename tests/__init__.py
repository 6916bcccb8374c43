"""ce-bridge's test suite; a package so that tests import their helpers as ``tests.builders``."""
