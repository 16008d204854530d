"""The package's version, in a module of its own: pyproject.toml reads it from here (hatch),
the client sends it as ``User-Agent: strongroom-python/<version>``, and neither has to
import the package to get it."""

__version__ = "0.1.0"
