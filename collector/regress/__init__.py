"""Regression detection: the online detector (pure), attribution, and the scan that runs
it over stored history and keeps the regressions table current."""
