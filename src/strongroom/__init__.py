"""strongroom: a self-hosted secrets service for automation."""

__version__ = "0.1.0"
