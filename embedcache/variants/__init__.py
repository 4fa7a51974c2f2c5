"""Variant effect scoring over the cache: windows, alleles and scores (embedcache variants)."""
