"""What every model family answers, and where families are found.

A *family* is one package (``embedcache.families.nt``, ``embedcache.families.ntv3``, or a
third party's) holding everything of one kind of model: its configuration, tokenizer,
parameter layout on disk, forward pass and pooling. The rest of embedcache (checkpoint
loading, the build request, the engine, the store) asks a family object, never branches on
the family, so a new family is a new package and no edit here.

Two levels:

* the **family class** answers what a checkpoint needs before any model runs (no JAX):
  which checkpoint ``variants`` it runs, the :class:`Layout` s it reads from a directory,
  its ``config_of`` and ``tokenizer_of`` hyperparameters, the ``architecture`` that enters the
  parameter digest and the ``parameter_shapes`` a tree must have;
* a **family object** (``family_class(checkpoint, species=...)``) wraps one loaded checkpoint
  and answers the pipeline (:class:`Family`).

Families are found by :func:`family_class` in :func:`registry`: the built-in ones, then every
entry point of the ``embedcache.families`` group (``name = "package.module:FamilyClass"``),
as xarray finds its backends. A third-party package declares, in its ``pyproject.toml``::

    [project.entry-points."embedcache.families"]
    mymodel = "mymodel_embedcache:MyFamily"
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from embedcache.errors import CheckpointError, InputError

__all__ = ["BUCKET_LADDER", "ENTRY_POINT_GROUP", "Family", "Forward", "Layout", "bucket_lengths",
           "family_class", "family_for", "registry"]

ENTRY_POINT_GROUP = "embedcache.families"
# The built-in families, imported only when asked for (loading a checkpoint must not need JAX).
_BUILTIN = {"nt": "embedcache.families.nt.family:NTFamily", "ntv3": "embedcache.families.ntv3.family:NTv3Family"}


@dataclass(frozen=True)
class Layout:
    """One on-disk checkpoint layout a family reads.

    ``detect(root)`` says, from file names (and at most a header), whether ``root`` holds
    this layout; ``read(root, name)`` reads it into a :class:`embedcache.checkpoints.Checkpoint`.
    """

    name: str
    detect: Callable[[Path], bool]
    read: Callable[[Path, str], Any]


@runtime_checkable
class Family(Protocol):
    """What the pipeline asks of a model family (the object wraps one loaded checkpoint).

    Class level (no JAX, no checkpoint): ``name``, ``variants``, ``layouts``,
    ``config_of(hyperparams, variant)``, ``tokenizer_of(hyperparams, variant)``,
    ``architecture(hyperparams, variant)`` (what enters the parameter digest) and
    ``parameter_shapes(hyperparams, variant)`` (``{(module, param): shape}``).

    Object level:

    * ``count_tokens``, ``encode_batch``, ``prefix`` (tokens that lead every window: CLS),
      ``ladder(max_tokens)`` (the padded lengths batches may have) and ``masks_padding``
      (whether a row may be padded past its own length: v1/v2 mask padded keys, NTv3 does not);
    * ``layer_names``, ``pools``, ``check(layers, pools, attention)``, ``max_tokens``,
      ``default_max_tokens``: what may be asked;
    * ``feature_dim(layer)``, ``attention_size(max_tokens)``, ``attention_stride``: how the
      store sizes each array, and how many positions of a map cover a row's tokens;
    * ``species`` / ``key_extra``: what besides the parameters identifies the outputs;
    * ``attrs()``: the tokenizer and shape facts recorded in the store's model group;
    * ``prepare_params(params, dtype)``, ``filler(length)`` and
      ``compute(params, tokens, n_tokens, *, layers, pools, attention, dtype)``: the jit-able
      forward with pooling, returning ``{"pooled": {"L/pool": (B, D)}, "attention":
      {(layer, head): (B, T, T)}}``, maps zero outside each row's tokens.
    """

    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]]
    layouts: ClassVar[tuple[Layout, ...]]
    config: Any
    tokenizer: Any
    num_layers: int
    pad_id: int
    pools: tuple[str, ...]  # every pooling it offers; ``default_pools`` (optional): those built by default
    prefix: int
    masks_padding: bool
    token_note: str
    max_tokens: int
    default_max_tokens: int
    attention_stride: int
    species: str | None
    key_extra: dict

    @classmethod
    def config_of(cls, hyperparams: Mapping[str, Any], variant: str) -> Any: ...

    @classmethod
    def tokenizer_of(cls, hyperparams: Mapping[str, Any], variant: str) -> Any: ...

    @classmethod
    def architecture(cls, hyperparams: Mapping[str, Any], variant: str) -> dict: ...

    @classmethod
    def parameter_shapes(cls, hyperparams: Mapping[str, Any], variant: str) -> dict: ...

    @property
    def layer_names(self) -> list: ...

    def check(self, layers: Sequence, pools: Sequence[str], attention: Sequence[tuple[int, int]]) -> None: ...

    def count_tokens(self, seqs: Sequence[str]) -> np.ndarray: ...

    def encode_batch(self, seqs: Sequence[str]) -> list: ...

    def ladder(self, max_tokens: int) -> tuple[int, ...]: ...

    def feature_dim(self, layer) -> int: ...

    def attention_size(self, max_tokens: int) -> int: ...

    def attrs(self) -> dict: ...

    def prepare_params(self, params, dtype) -> Any: ...

    def filler(self, length: int) -> np.ndarray: ...

    def compute(self, params, tokens, n_tokens, *, layers: Sequence, pools: Sequence[str],
                attention: Sequence[tuple[int, int]] = (), dtype: Any = None) -> dict: ...


class Forward(Protocol):
    """A family's forward pass (``families/<family>/forward.py: forward``), declared once: the
    pure JAX function its ``compute`` jits. A family's own inputs (NTv3's ``species``) are
    further keyword-only parameters; its docstring says only what is its own (token layout,
    layer names, shapes)."""

    def __call__(self, params: Any, tokens: Any, *, config: Any, layers: Sequence = (),
                 attention: Sequence[tuple[int, int]] = (), logits: bool = False,
                 dtype: Any = ...) -> dict:
        """Run the model on a batch of token ids.

        Parameters
        ----------
        params
            The family's prepared parameter tree (its ``prepare_params``).
        tokens
            ``(B, T)`` int token ids, padded as the family pads.
        config
            The architecture (the family's config).
        layers
            1-based layers whose per-token outputs to return, under ``out["embeddings"][L]``
            (and names the family adds, each under its own key: NTv3's ``"final"``).
        attention
            ``(layer, head)`` pairs, both 1-based, whose attention probabilities to return,
            under ``out["attention"][(layer, head)]``, ``(B, T', T')`` over the positions
            attention runs on.
        logits
            Also run the LM head and return ``out["logits"]`` ``(B, T, alphabet)``.
        dtype
            Compute dtype (``jnp.float32``, at full matmul precision, or ``jnp.bfloat16``);
            outputs are float32.

        Returns
        -------
        dict
            ``{"embeddings": {...}, "attention": {...}}``, ``"logits"`` when asked. Values at
            positions a family masks as padding are unspecified (real ones never depend on
            them).
        """
        ...


def _load(target: str) -> type:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@lru_cache(maxsize=None)
def registry() -> dict[str, type]:
    """``{name: family class}``: the built-in families, then the ``embedcache.families``
    entry points (a plugin may not take a built-in's name)."""
    found = {name: _load(target) for name, target in _BUILTIN.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin must not break the built-in families
            raise CheckpointError(f"the model family plugin {ep.name!r} ({ep.value}) failed to load: "
                                  f"{type(exc).__name__}: {exc}. Fix or uninstall that package.") from exc
    return found


def family_class(variant: str) -> type:
    """The family class that runs checkpoints of ``variant`` (``"v1"``, ``"v2"``, ``"v3"``, a plugin's)."""
    for cls in registry().values():
        if variant in cls.variants:
            return cls
    known = sorted(v for cls in registry().values() for v in cls.variants)
    raise CheckpointError(f"no installed model family runs checkpoints of variant {variant!r} (known: "
                          f"{', '.join(known)}); install the package that provides it.")


def family_for(checkpoint: Any, *, species: str | None = None) -> Family:
    """The family object of a loaded checkpoint (``species`` only for species-conditioned models)."""
    try:
        return family_class(checkpoint.variant)(checkpoint, species=species)
    except CheckpointError as exc:
        raise InputError(str(exc)) from None


# ---- the padded-length ladder families may share -------------------------------------------


def _ladder(top: int = 4096) -> tuple[int, ...]:
    steps, octave = list(range(16, 64, 4)), 64
    while octave < top:
        steps += range(octave, 2 * octave, octave // 8)
        octave *= 2
    return tuple(steps) + (top,)


BUCKET_LADDER = _ladder()


def bucket_lengths(max_tokens: int) -> tuple[int, ...]:
    """The padded lengths used for a run whose longest allowed sequence is ``max_tokens``:
    multiples of 4 up to 64, then eight steps per doubling (padding at most an eighth)."""
    return tuple(b for b in BUCKET_LADDER if b < max_tokens) + (int(max_tokens),)
