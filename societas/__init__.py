"""societas: an autonomous AI social researcher."""

__version__ = "0.1.0"
