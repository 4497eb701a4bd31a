"""Benchmarks: every figure measured beside its anchor in the same run, reported as a ratio.

Run with ``make bench``; prints a table and writes JSON to ``bench/results/``.
"""
