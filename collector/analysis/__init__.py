"""Computation over results: compare two sides, findings, summaries, combining
repetitions, output drift. Pure: no I/O."""
