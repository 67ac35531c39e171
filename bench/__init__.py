"""Pivra's benchmarks: ``./scripts/bench [--profile smoke|full]`` (see README, "Benchmarks").

The orchestrator (``bench.cli``) starts the real stack on loopback, seeds it, and drives a separate
load-generator process (``bench.loadgen``) phase by phase; it prints a table of figures against
their targets and writes them as JSON.
"""
