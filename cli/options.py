"""Options both command lines share: ``KEY=VALUE`` items, the cache location with its
``--storage-option`` s, opened the same way in ``embedcache`` and ``classify``, and layer
selections (``--layer``, ``--layers``)."""

from __future__ import annotations

import json

import typer

__all__ = ["STORAGE_HELP", "key_values", "layer_option", "open_cache", "storage_options"]

STORAGE_HELP = ("fsspec option of a URL cache as KEY=VALUE (repeatable; dotted keys nest, e.g. "
                "client_kwargs.region_name=eu-west-1); credentials and endpoint also come from the usual "
                "environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).")


def key_values(items: list[str], option: str, *, typed=json.loads) -> dict:
    """``KEY=VALUE`` items as ``{key: value}``, each value through ``typed`` (JSON by default;
    a value it refuses stays text); a malformed or repeated key is a usage error naming ``option``."""
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{option} takes KEY=VALUE, not {item!r}", param_hint=option)
        if key in out:
            raise typer.BadParameter(f"{option} {key} is given twice; give each once", param_hint=option)
        try:
            out[key] = typed(text.strip())
        except ValueError:
            out[key] = text.strip()  # plain text
    return out


def storage_options(items: list[str]) -> dict:
    """``--storage-option`` items as fsspec's nested options (dotted keys nest)."""
    out: dict = {}
    for key, value in key_values(items, "--storage-option").items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def open_cache(location: str, items: list[str]):
    """The :class:`~embedcache.EmbeddingCache` at a path or URL, with its storage options."""
    from embedcache import EmbeddingCache

    return EmbeddingCache(location, storage_options=storage_options(items))


def layer_option(single: bool = False):
    """A Typer callback parsing ``--layers`` (``12``, ``1,6,final``, ``1-6``, ``all``) or one
    ``--layer`` with the library's one parser (:mod:`embedcache.util.ranges`), refused while
    options are parsed (exit 2)."""

    def parse(text: str | None):
        from embedcache.errors import InputError
        from embedcache.util.ranges import parse_layer, parse_layers

        if text is None or not text.strip():
            return None
        try:
            return parse_layer(text) if single else parse_layers(text)
        except InputError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parse
