"""Running a model over planned batches: the planner (:mod:`.planner`), local devices
(:mod:`.local`) and Dask workers (:mod:`.dask`)."""

from embedcache.engine.local import EmbeddingBatch, Embedder, enable_compile_cache, local_devices
from embedcache.engine.planner import Planner
from embedcache.families.base import BUCKET_LADDER, bucket_lengths

__all__ = ["BUCKET_LADDER", "EmbeddingBatch", "Embedder", "Planner", "bucket_lengths", "enable_compile_cache",
           "local_devices"]
