"""Fault-injection tests: crashes, reorgs, RPC and CE faults, stuck transactions, shutdown."""
