"""The collector's version: a leaf module, so that anything may import it."""

__version__ = "0.1.0"
