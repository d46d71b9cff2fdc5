"""The package version: one definition, below every layer (files, checkpoints and exports record it)."""
__version__ = "0.1.0"
