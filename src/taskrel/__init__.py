"""taskrel: learn how tasks relate in multi-task learning, and act on it."""

__version__ = "0.1.0"
