"""Regression detection: the online step detector, output changes, attribution. Pure:
no I/O (the scan that reads a store is a use case, collector/usecases/scan.py)."""
