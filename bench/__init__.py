"""Pivra's benchmarks: ``./scripts/bench [--profile smoke|full]`` (see README, "Benchmarks").

The orchestrator (``bench.cli``) starts the real stack on loopback, seeds it, and drives a separate
load-generator process (``bench.loadgen``) phase by phase (``bench.phase_*``, ``bench.chaos``); it
prints a table of figures against their targets (``bench.table``) and writes them as JSON. For the
reply figures it also starts the floor reference server (``bench/floor/``, ``bench.floor_stack``)
and reports Pivra ÷ floor.
"""
