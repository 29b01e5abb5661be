"""Benchmark scripts; run them from the repository root as modules, e.g. ``python -m bench.engine --help``.

Each prints its figures and writes a JSON report; ``main(argv)`` also returns the report, so the tests run
every script in process on the tiny model.
"""
