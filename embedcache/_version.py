"""The package version, importable without the package's lazy attributes (no import cycle)."""

__version__ = "0.1.0"
