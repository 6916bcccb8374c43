"""Unit tests: pure logic, no node, no network."""
