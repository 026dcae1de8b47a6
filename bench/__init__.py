"""Benchmarks: every figure is a ratio against a baseline measured in the same run on the same machine.

Run one with `.venv/bin/python -m bench.<name>` or all of them with `.venv/bin/python -m bench.run_all`.
"""
