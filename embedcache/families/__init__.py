"""Model families: what the engine, the store and the CLI ask of a model, answered per family.

Each family module holds its tokenizer, config and parameter layout (``nt``: v1/v2 6-mer
models, forward in :mod:`embedcache.families.nt.forward`; ``ntv3``: single-base U-Net, forward in
:mod:`.ntv3_forward`). A family object wraps a loaded checkpoint and answers what the
pipeline asks, so the request, the engine and the build need not branch on the family
(:func:`family_for` picks it):

* ``count_tokens``, ``encode_batch``, ``prefix`` (tokens that lead every window: CLS),
  ``ladder(max_tokens)`` and ``masks_padding``: how sequences become padded rows, which padded
  lengths batches may have, and whether a row may be padded past its own bucket (v1/v2: yes,
  padded keys are masked; v3: no, only its one padded length defines its outputs);
* ``layer_names``, ``pools``, ``check(layers, pools, attention)``, ``max_tokens``,
  ``default_max_tokens``: what may be asked;
* ``feature_dim(layer)``, ``attention_size(max_tokens)``, ``attention_stride``: how the
  store sizes each array, and how many positions of a map cover a row's tokens;
* ``species`` / ``key_extra``: a post-trained NTv3's species, part of the model key;
* ``prepare_params``, ``filler(length)`` and ``compute(params, tokens, n_tokens, ...)``: the
  jit-able forward with pooling.
"""

from __future__ import annotations

from typing import Any

from embedcache.errors import InputError
from embedcache.families.nt.family import NTFamily
from embedcache.families.ntv3.family import NTv3Family

__all__ = ["NTFamily", "NTv3Family", "family_for"]



def family_for(checkpoint: Any, *, species: str | None = None):
    """The family object of a loaded checkpoint (``species`` only for post-trained NTv3)."""
    if checkpoint.variant == "v3":
        return NTv3Family(checkpoint, species=species)
    if species is not None:
        raise InputError(f"{checkpoint.name} is a Nucleotide Transformer {checkpoint.variant}: it takes no "
                         "species (--species is for post-trained NTv3 models); drop --species.")
    return NTFamily(checkpoint)
