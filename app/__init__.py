"""Agora: the service around the pure `domain` package."""

__version__ = "0.1.0"
