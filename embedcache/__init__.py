"""embedcache: Nucleotide Transformer embeddings, computed once, cached in Zarr."""

from embedcache._version import __version__

__all__ = ["EmbeddingCache", "__version__"]


def __getattr__(name):
    # Lazy so that `import embedcache` (and the CLI's --help) does not import JAX.
    if name == "EmbeddingCache":
        from embedcache.cache import EmbeddingCache

        return EmbeddingCache
    raise AttributeError(f"module 'embedcache' has no attribute {name!r}")
