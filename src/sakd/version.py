"""The package's version (one place; ``sakd --version``, reports and the package metadata read it)."""

__version__ = "0.1.0"
