"""Thin adapters that keep other tools' scripts working on the collector: each maps its
tool's configuration onto our specs (through the same translation the config loader uses)
and our results back onto its tool's fields. Nothing here measures anything itself."""
