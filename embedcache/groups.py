"""Which model group of a store a ``model=`` argument names: a key, a released or recorded name
(a released name also finds its random-weights stand-in), or a checkpoint directory (matched by
the path recorded at build time, else by its parameter digest, which loads its weights).
"""

from __future__ import annotations

import os
from pathlib import Path

from embedcache.errors import StoreError
from embedcache.advice import released_name
from embedcache.store import GroupInfo, ModelGroup, Store

__all__ = ["find_group"]


def find_group(store: Store, model=None, *, array: str | None = None, species: str | None = None) -> ModelGroup:
    """The model group ``model`` names; ``None`` if the store has one (see the module docs).

    ``array``: prefer groups holding it when several match. ``species``: only groups of a
    post-trained NTv3 model conditioned on it. Raises :class:`StoreError` naming what the store
    holds when nothing matches, or the keys to choose from when several do.
    """
    groups = store.groups()
    if not groups:
        raise StoreError(f"the cache {store.path} holds no model yet; build it first with `embedcache build`.")
    about = {g.key: g.about for g in groups}
    if species is not None:
        held = sorted({a.species for a in about.values() if a.species})
        groups = [g for g in groups if about[g.key].species == species]
        if not groups:
            raise StoreError(f"the cache {store.path} holds no model group for species {species!r}; it holds "
                             f"{', '.join(held) or 'none'}. Pass one of those, or build it with --species {species}.")
    if model is None:
        matches = groups
    else:
        text = os.fspath(model)
        matches = ([g for g in groups if g.key == text] or [g for g in groups if about[g.key].name == text]
                   or [g for g in groups if released_name(about[g.key].name) == released_name(text)])
        if not matches and Path(text).is_dir():
            path = str(Path(text).resolve())
            matches = [g for g in groups if _resolved(about[g.key].source) == path]
            if not matches:
                from embedcache.checkpoints import load_checkpoint

                digest = load_checkpoint(text).digest
                matches = [g for g in groups if about[g.key].digest == digest]
    if len(matches) > 1 and array is not None:
        matches = [g for g in matches if array in about[g.key].arrays] or matches
    if not matches:
        known = ", ".join(f"{a.name} (key {a.key})" for a in about.values())
        raise StoreError(
            f"the cache {store.path} holds no model matching {os.fspath(model)!r}; it holds {known}. "
            f"Pass one of those names or keys, or build it: embedcache build INPUT --model "
            f"{os.fspath(model)} --cache {store.path}"
        )
    if len(matches) > 1:
        options = "; ".join(_choice(about[g.key]) for g in matches)
        raise StoreError(
            f"{len(matches)} model groups of {store.path} match "
            f"{'the request' if model is None else repr(os.fspath(model))}: {options}. Pass model=<key> to choose."
        )
    return matches[0]


def _choice(a: GroupInfo) -> str:
    species = f", species {a.species}" if a.species else ""
    return (f"key {a.key}: {a.name}{species}, max_tokens {a.max_tokens}, long {a.long}, alphabet {a.alphabet}, "
            f"store dtype {a.store_dtype}")


def _resolved(path) -> str | None:
    return str(Path(path).resolve()) if path else None
