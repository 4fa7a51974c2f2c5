"""The loaded checkpoint, its parameter digest, and the check of a tree against its architecture."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from embedcache.errors import CheckpointError
from embedcache.families.base import family_class

__all__ = ["Checkpoint", "parameter_digest", "expected_shapes", "check_architecture"]

_DIGEST_TAG = b"embedcache-checkpoint-digest/1\n"


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded Nucleotide Transformer checkpoint (any family, any layout).

    Attributes
    ----------
    name
        The released name, the directory's name, or the name recorded in a converted copy.
    source
        The directory it was read from.
    hyperparams
        The architecture: for v1/v2 the official ``hyperparams.json`` with defaults filled in
        (:func:`embedcache.families.nt.config.normalize_hyperparams`), for v3
        :meth:`NTv3Config.to_dict`.
    variant
        ``"v1"``, ``"v2"`` (6-mer families) or ``"v3"`` (NTv3).
    params
        ``{module_path: {param_name: float32 ndarray}}``: for v1/v2 the on-disk names of the
        official JAX checkpoints, for v3 the hub names without ``core.``.
    digest
        Hex SHA-256 of architecture and parameters (:func:`parameter_digest`): the
        model's key in the cache, whatever layout the weights came in.
    random_weights
        True for random-weight stand-ins (see ``random_checkpoint``); their embeddings
        carry no biology.
    layout
        The on-disk layout read: ``"jax"``, ``"converted"``, ``"transformers"``, ``"ntv3-hub"``
        or ``"random"``. Not part of the model's identity.
    """

    name: str
    source: str
    hyperparams: dict
    variant: str
    params: dict = field(repr=False)
    digest: str
    random_weights: bool = False
    layout: str = "jax"

    @property
    def config(self):
        """The model configuration, as its family reads it (e.g. ``NTConfig``, ``NTv3Config``)."""
        return family_class(self.variant).config_of(self.hyperparams, self.variant)

    def tokenizer(self):
        """The tokenizer of this checkpoint's vocabulary."""
        return family_class(self.variant).tokenizer_of(self.hyperparams, self.variant)


def parameter_digest(hyperparams: Mapping[str, Any], variant: str, params: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """SHA-256 of a model's architecture and parameters: its key in the cache.

    Parameters
    ----------
    hyperparams
        Architecture; defaults are filled in first, so a file that spells out a default
        and one that leaves it out give the same digest.
    variant
        ``"v1"``, ``"v2"`` or ``"v3"``.
    params
        ``{module_path: {param_name: ndarray}}`` with the canonical names.

    Returns
    -------
    str
        64 hex digits. Covers every parameter's name, dtype, shape and bytes, in sorted
        name order, so it does not depend on how the tree was ordered or named on disk.
    """
    h = hashlib.sha256(_DIGEST_TAG)
    architecture = {"hyperparams": family_class(variant).architecture(hyperparams, variant), "variant": variant}
    h.update(json.dumps(architecture, sort_keys=True).encode() + b"\n")
    for module in sorted(params):
        for name in sorted(params[module]):
            array = np.ascontiguousarray(params[module][name])
            h.update(f"{module}:{name}|{array.dtype.str}|{array.shape}\n".encode())
            h.update(array)
    return h.hexdigest()


def expected_shapes(hyperparams: Mapping[str, Any], variant: str) -> dict[tuple[str, str], tuple[int, ...]]:
    """``{(module, param): shape}`` the architecture implies, for any family."""
    return family_class(variant).parameter_shapes(hyperparams, variant)


def check_architecture(params, hyperparams, variant: str, source, *, extra_ok: tuple[str, ...] = ()) -> None:
    """Raise :class:`CheckpointError` listing every missing, unexpected or misshapen parameter.

    ``extra_ok`` names module prefixes that may be present beyond what the forward reads
    (NTv3's LM and functional-track heads).
    """
    expected = expected_shapes(hyperparams, variant)
    found = {(m, n): tuple(a.shape) for m, leaves in params.items() for n, a in leaves.items()}
    unexpected = [k for k in found.keys() - expected.keys() if not k[0].startswith(extra_ok or ("\0",))]
    problems = [f"missing {m}:{n} {expected[(m, n)]}" for m, n in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected {m}:{n} {found[(m, n)]}" for m, n in sorted(unexpected)]
    problems += [
        f"wrong shape {m}:{n} is {found[(m, n)]}, expected {expected[(m, n)]}"
        for m, n in sorted(expected.keys() & found.keys())
        if expected[(m, n)] != found[(m, n)]
    ]
    if problems:
        shown = problems[:30] + ([f"... and {len(problems) - 30} more"] if len(problems) > 30 else [])
        raise CheckpointError(
            f"{source} does not match its configuration ({hyperparams['num_layers']} layers, "
            f"embed_dim {hyperparams['embed_dim']}, variant {variant}):\n  " + "\n  ".join(shown)
            + "\nThe weights and the configuration file must come from the same model; fetch both again."
        )
