"""Eval harnesses: QA suites, metrics, budget sweeps with a resumable store, scaling-law fits, plots, reports."""
