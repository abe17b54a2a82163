"""Adapters: the outside world (config files, worker processes, package environments,
stores, HTTP, locks, the host)."""
