"""Variant effect scoring over the cache: windows, alleles and scores (``embedcache variants``).

:func:`~embedcache.variants.score.score_variants` (``EmbeddingCache.score_variants``) scores a
variant set; :func:`~embedcache.variants.features.variant_features` reads probe features.
"""

from embedcache.variants.score import ScoreRun, score_variants, write_scores

__all__ = ["ScoreRun", "score_variants", "write_scores"]
