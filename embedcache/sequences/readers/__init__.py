"""Readers of input formats, one module per format."""
