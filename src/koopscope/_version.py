"""The one place the koopscope version is written (pyproject reads the same string)."""

__version__ = "0.1.0"
