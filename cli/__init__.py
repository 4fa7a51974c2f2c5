"""Thin Typer command lines over the `embedcache` and `classifiers` libraries."""
