"""Tidemark: freshness, completeness and contract SLIs measured on the stream itself."""

__version__ = "0.1.0"
