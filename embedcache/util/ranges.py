"""Layer selections as both command lines write them: ``12``, ``1,6,12``, ``1-6``, ``1-6,final``, ``all``.

One parser for ``embedcache build --layers``, ``embedcache export --layer``, ``classify
--layer/--layers`` and the Python API, so a selection means the same everywhere. Parsing
needs no model (a typo fails before any checkpoint is read); :func:`resolve_layers` then
expands ``all`` and checks the bounds against the model's layers.

>>> parse_layers("1-3,final")
(1, 2, 3, 'final')
>>> resolve_layers(parse_layers("all"), [1, 2, 3, "final"])
(1, 2, 3, 'final')
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from embedcache.errors import InputError

__all__ = ["ALL", "FINAL", "array_order", "format_layers", "format_ranges", "layer_order", "parse_layer", "parse_layers", "resolve_layers"]

ALL = "all"
FINAL = "final"  # NTv3's full-resolution output
_ITEM = re.compile(r"(\d+)(?:\s*-\s*(\d+))?")
_FORMS = "a layer (12), a list (1,6,12), a range (1-6), 'final' (NTv3) or 'all'"


def layer_order(layer) -> tuple:
    """Sort key: layers by number (``layer_2`` before ``layer_10``), ``final`` last."""
    return (1, 0) if layer == FINAL else (0, int(layer))


def array_order(name: str) -> tuple:
    """Sort key of store array names: pooled layers by number (``layer_2_cls`` before
    ``layer_10_cls``, ``final`` last), then attention maps by layer and head."""
    kind, _, rest = name.partition("_")
    layer, _, last = rest.partition("_")
    if kind == "layer":
        return (0, layer_order(layer if layer == FINAL else int(layer)), last)
    if kind == "attention" and layer.isdigit() and last.isdigit():
        return (1, (0, int(layer)), int(last))
    return (2, (0, 0), name)


def parse_layers(spec, *, option: str = "--layers") -> tuple[int | str, ...]:
    """A layer selection as a sorted tuple of 1-based ints, ``"final"`` and ``"all"``.

    Parameters
    ----------
    spec
        A string (``"1-6,final"``), an int, or a sequence of those.
    option
        The option named in messages.

    Raises
    ------
    InputError
        Anything that is not a layer, a range, ``final`` or ``all``; an empty selection.
    """
    items: Iterable = [spec] if isinstance(spec, (str, int)) else spec
    out: set = set()
    for item in items:
        parts = str(item).split(",") if isinstance(item, str) else [item]
        for part in parts:
            text = str(part).strip().lower()
            if not text:
                continue
            if text in (ALL, FINAL):
                out.add(text)
                continue
            match = _ITEM.fullmatch(text)
            low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
            if isinstance(part, bool) or not match or low > high:
                raise InputError(f"{option}: {str(part).strip()!r} is not a layer; give {_FORMS}. "
                                 "Layers are 1-based.")
            out.update(range(low, high + 1))
    if not out:
        raise InputError(f"{option} is empty; give {_FORMS}.")
    return tuple(sorted((x for x in out if x != ALL), key=layer_order)) + ((ALL,) if ALL in out else ())


def parse_layer(spec, *, option: str = "--layer") -> int | str:
    """One layer: an int or ``"final"``."""
    layers = parse_layers(spec, option=option)
    if len(layers) != 1 or layers[0] == ALL:
        raise InputError(f"{option} takes one layer (e.g. 12, or final for NTv3), not {spec!r}.")
    return layers[0]


def resolve_layers(layers: Sequence, available: Sequence, *, option: str = "--layers",
                   model: str = "the model") -> tuple[int | str, ...]:
    """``layers`` (from :func:`parse_layers`) with ``all`` expanded to ``available`` (the model's
    addressable layers, e.g. ``[1, ..., 12]`` or ``[1, 2, "final"]``), checked against them."""
    chosen = set(layers)
    if ALL in chosen:
        chosen = (chosen - {ALL}) | set(available)
    missing = sorted(chosen - set(available), key=layer_order)
    if missing:
        numbers = [a for a in available if a != FINAL]
        span = f"1-{max(numbers)}" if numbers else "none"
        extra = " and final" if FINAL in available else ""
        raise InputError(f"{option}: {', '.join(map(str, missing))} is outside {model}'s layers {span}{extra}; "
                         "pick among those ('all' takes every one).")
    return tuple(sorted(chosen, key=layer_order))


def format_layers(layers) -> str:
    """Layers as runs, ``final`` last: ``[1, 2, 3, 6, "final"]`` -> ``"1-3, 6, final"``."""
    layers = list(layers)
    numbers = [layer for layer in layers if layer != FINAL]
    return ", ".join(([format_ranges(numbers)] if numbers else []) + ([FINAL] if FINAL in layers else []))


def format_ranges(numbers, *, most: int | None = None) -> str:
    """Integers as runs: ``[1, 2, 3, 5]`` -> ``"1-3, 5"``; past ``most`` runs, the rest is
    counted (``"..., (N rows)"``)."""
    numbers = sorted(int(n) for n in numbers)
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    if most is not None and len(parts) > most:
        return ", ".join(parts[:most]) + f", ... ({len(numbers)} rows)"
    return ", ".join(parts)
