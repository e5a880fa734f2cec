"""Veil: self-hosted, privacy-first custom computer vision."""

__version__ = "0.1.0"
