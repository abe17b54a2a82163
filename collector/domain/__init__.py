"""The domain: what a benchmark is (specs, results), the metric catalogue, the series
vocabulary, the history records and statistics. Pure: no I/O, no argparse, no SQL, no torch."""
