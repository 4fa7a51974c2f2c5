"""Sequences: alphabet, quality and the readers of input formats."""
