"""Use cases: what the commands and the Python API do (run a cycle, confirm, A/B, bisect,
rerun, scan, select stored runs, serve), composed from the adapters, the presentation and
the domain."""
