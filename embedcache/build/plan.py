"""A build's plan: the model and its settled request, and which rows lack which outputs."""

from __future__ import annotations



from dataclasses import replace

import numpy as np

from embedcache.errors import CheckpointError
from embedcache.request import BuildRequest, Output
from embedcache.store import ModelSpec, Store

__all__ = ["plan_rows", "settle"]


def settle(store: Store, model, request: BuildRequest, *, cache_dir, allow_random_weights, checkpoint=None):
    """Load the checkpoint; settle the request against it and the model spec (hence the key).

    A model key of the store brings its own policies and its recorded checkpoint, which
    must still hold the parameters the key was made from. ``checkpoint``: ``model`` already
    loaded by the caller (not loaded again).
    """
    from embedcache.checkpoints import load_checkpoint
    from embedcache.families import family_for

    if isinstance(model, str) and model in store.keys():  # keys() also refuses a foreign store
        group = store.group(model)
        spec = group.spec
        # Random stand-ins are made again from their name; real weights from where they were read.
        recorded = group.model_name if group.attrs.get("random_weights") else group.attrs.get("source")
        if checkpoint is None:
            checkpoint = load_checkpoint(recorded or group.model_name, cache_dir=cache_dir)
        if checkpoint.digest != spec.param_digest:
            raise CheckpointError(
                f"the checkpoint at {checkpoint.source} has parameter digest {checkpoint.digest[:16]}..., "
                f"but model group {model} of {store.path} was built with {spec.param_digest[:16]}...: the "
                "weights changed. Pass the original checkpoint with --model PATH (a new group is made for "
                "new weights), or build into a new cache."
            )
        request = replace(request, **{k: getattr(spec, k) for k in request.spec_fields()})
        family = family_for(checkpoint, species=request.species)
        return checkpoint, family, request.for_model(family), spec
    if checkpoint is None:
        checkpoint = load_checkpoint(model, cache_dir=cache_dir, allow_random_weights=allow_random_weights)
    family = family_for(checkpoint, species=request.species)
    request = request.for_model(family)
    return checkpoint, family, request, ModelSpec(param_digest=checkpoint.digest, **request.spec_fields())


def plan_rows(group, unique: set, outputs: tuple[Output, ...]) -> tuple[dict, dict]:
    """What the model group (``None``: not created yet) lacks of ``outputs`` for the
    ``unique`` digests: ``{digest: (row or None, the outputs it lacks)}`` for those lacking
    any, and per output how many of ``unique`` hold it. Costs what ``unique`` costs."""
    digests = list(unique)
    rows = group.rows_of(digests) if group is not None and digests else np.full(len(digests), -1)
    found = rows >= 0
    lacks = np.ones((len(digests), len(outputs)), dtype=bool)
    if found.any():
        for j, o in enumerate(outputs):
            lacks[found, j] = ~group.filled(o.name, rows[found])
    held = {o: len(digests) - int(lacks[:, j].sum()) for j, o in enumerate(outputs)}
    todo = {}
    for d, row, row_lacks in zip(digests, rows.tolist(), lacks.tolist()):
        if any(row_lacks):
            todo[d] = (row if row >= 0 else None, tuple(o for o, lack in zip(outputs, row_lacks) if lack))
    return todo, held
