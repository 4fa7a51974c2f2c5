"""The public face of the store: build it, read embeddings and attention maps, export them.

>>> from embedcache import EmbeddingCache
>>> cache = EmbeddingCache("cache.zarr")
>>> cache.build("promoters.csv", model="50M_multi_species_v2", layers=[12],
...             pools=["cls", "mean"], attention=[(1, 4)], max_tokens=512)   # doctest: +SKIP
>>> X = cache.embeddings(sequences, model="50M_multi_species_v2", layer=12, pool="cls")  # doctest: +SKIP

``model=`` accepts a released name, a checkpoint directory, or a model key of the store.
Reading resolves names and keys from the store's own attributes and never loads weights;
a directory is matched by the path recorded at build time, and only when that fails are
its weights loaded to compute their digest. When several model groups match (the same
weights built under different policies), the one holding the requested array is used;
if that is still ambiguous the error lists the keys to choose from.
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from embedcache.sequences.alphabet import DEFAULT_ALPHABET, normalize_many
from embedcache.build import BuildReport, build
from embedcache.request import POOLS, check_choice
from embedcache.errors import MissingRowsError, StoreError
from embedcache.store import ModelGroup, Problem, Store, attention_name, pooled_name
from embedcache.store.index import keys_of_sequences

from embedcache.export import EXPORT_FORMATS

__all__ = ["EmbeddingCache", "EXPORT_FORMATS"]


class EmbeddingCache:
    """A content-addressed cache of Nucleotide Transformer embeddings (a Zarr store).

    Parameters
    ----------
    path
        The store: a directory such as ``"cache.zarr"``, or an fsspec URL such as
        ``"s3://bucket/cache.zarr"``. Created by the first :meth:`build`.
    storage_options
        Options of a URL's filesystem (endpoint, credentials...), beside the usual
        environment variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...).
    """

    def __init__(self, path: str | PathLike, storage_options: dict | None = None):
        self.store = Store(path if isinstance(path, str) and "://" in path else Path(path), storage_options)
        self.path = self.store.path

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"

    # ----------------------------------------------------------------------------------
    # Writing
    # ----------------------------------------------------------------------------------

    def build(self, sequences_or_path, *, model, layers: Sequence[int | str] | None = None,
              pools: Sequence[str] | None = None, attention: Sequence[tuple[int, int]] = (),
              max_tokens: int | None = None, species: str | None = None, **options) -> BuildReport:
        """Compute and store what the cache lacks for some sequences.

        Each unique normalized sequence is computed once per model key, and only the
        arrays its row lacks; everything else is reused.

        Parameters
        ----------
        sequences_or_path
            A sequence file (FASTA, CSV/TSV/Parquet with a ``sequence`` column, BED with
            ``reference=``), several paths, or a list of DNA sequences.
        model
            A released name, a checkpoint directory, or a model key of this store.
        layers
            1-based layers to pool (default: the last layer); NTv3 also has ``"final"``,
            its full-resolution output.
        pools
            ``"cls"`` and/or ``"mean"`` (default: every pooling the model has; NTv3 has no
            CLS, so ``mean`` only).
        attention
            ``(layer, head)`` attention maps to store, both 1-based (NTv3: maps of its core,
            over one position per 2**num_downsamples bases).
        max_tokens
            Tokens per sequence (CLS included) embedded in one pass; default 512 (NTv3:
            bases, default 131,072 or the model's context if shorter).
        species
            The species of a post-trained NTv3 model (part of the model key).
        **options
            ``reference``, ``cache_dir``, ``allow_random_weights``, the rest of the request
            (:class:`~embedcache.request.BuildRequest`) and how to run
            (:class:`~embedcache.request.RunOptions`: ``batch_size``, ``devices``, ``dask``,
            ``shard``...): see :func:`embedcache.build.build`.

        Returns
        -------
        BuildReport
            Computed and reused counts, overall and per array.
        """
        return build(self.store, sequences_or_path, model=model, layers=layers, pools=pools,
                     attention=attention, max_tokens=max_tokens, species=species, **options)

    # ----------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------

    def models(self) -> list[dict]:
        """One summary per model group (name, key, digest, rows, array names, policies),
        from metadata alone."""
        return [group.summary() for group in self.store.groups()]

    def info(self) -> list[dict]:
        """:meth:`models` plus, per group, rows filled per array and bytes stored (reads every mask)."""
        return [group.info() for group in self.store.groups()]

    def progress(self, input_path, *, reference=None) -> list[dict]:
        """How much of an input is done, per model group: its unique sequences, and how many
        of them hold each array (``embedcache info --input``; e.g. while ``--shard`` jobs run).

        Cheap: the input is read once per alphabet policy and looked up in the persisted
        digest index; only the masks of the rows found are read.
        """
        from embedcache.sequences.readers import iter_records
        from embedcache.store import sequence_digest

        out, digests_by_alphabet = [], {}
        for group in self.store.groups():
            alphabet = group.attrs.get("alphabet")
            if alphabet not in digests_by_alphabet:
                digests_by_alphabet[alphabet] = sorted({sequence_digest(s) for df in iter_records(
                    input_path, reference=reference, alphabet=alphabet) for s in df["sequence"]})
            digests = digests_by_alphabet[alphabet]
            rows = np.fromiter(group.index(digests).values(), dtype=np.int64)
            out.append({"key": group.key, "name": group.model_name, "unique": len(digests), "rows": int(rows.size),
                        "arrays": {n: int(group.filled(n, rows).sum()) for n in group.array_names()}})
        return out

    def group(self, model=None, *, array: str | None = None, species: str | None = None) -> ModelGroup:
        """The model group ``model`` names (see the module docs); ``None`` if the store has one.

        Parameters
        ----------
        model
            A model key, a released or recorded model name, a checkpoint directory, or
            ``None`` for the store's only model.
        array
            Prefer groups holding this array when several match.
        species
            Only groups of a post-trained NTv3 model conditioned on this species.
        """
        groups = self.store.groups()
        if not groups:
            raise StoreError(f"the cache {self.path} holds no model yet; build it first with `embedcache build`.")
        if species is not None:
            held = sorted({g.attrs.get("species") for g in groups if g.attrs.get("species")})
            groups = [g for g in groups if g.attrs.get("species") == species]
            if not groups:
                raise StoreError(f"the cache {self.path} holds no model group for species {species!r}; it holds "
                                 f"{', '.join(held) or 'none'}. Pass one of those, or build it with --species {species}.")
        if model is None:
            matches = groups
        else:
            text = os.fspath(model)
            matches = [g for g in groups if g.key == text] or [g for g in groups if g.model_name == text]
            if not matches and Path(text).is_dir():
                path = str(Path(text).resolve())
                matches = [g for g in groups if _resolved(g.attrs.get("source")) == path]
                if not matches:
                    from embedcache.checkpoints import load_checkpoint

                    digest = load_checkpoint(text).digest
                    matches = [g for g in groups if g.attrs.get("param_digest") == digest]
        if len(matches) > 1 and array is not None:
            matches = [g for g in matches if array in g.array_names()] or matches
        if not matches:
            known = ", ".join(f"{g.model_name} (key {g.key})" for g in groups)
            raise StoreError(
                f"the cache {self.path} holds no model matching {os.fspath(model)!r}; it holds {known}. "
                f"Pass one of those names or keys, or build it: embedcache build INPUT --model "
                f"{os.fspath(model)} --cache {self.path}"
            )
        if len(matches) > 1:
            options = "; ".join(
                f"key {g.key}: {g.model_name}{', species ' + g.attrs['species'] if g.attrs.get('species') else ''}, max_tokens {g.attrs.get('max_tokens')}, long "
                f"{g.attrs.get('long')}, alphabet {g.attrs.get('alphabet')}, store dtype {g.attrs.get('store_dtype')}"
                for g in matches
            )
            raise StoreError(
                f"{len(matches)} model groups of {self.path} match "
                f"{'the request' if model is None else repr(os.fspath(model))}: {options}. Pass model=<key> to choose."
            )
        return matches[0]

    def _rows(self, group: ModelGroup, sequences: Iterable[str], array: str, what: str,
              build_hint: str) -> np.ndarray:
        """Rows of the sequences holding ``array``, found through the persisted index."""
        keys = keys_of_sequences(normalize_many(sequences, alphabet=group.attrs.get("alphabet", DEFAULT_ALPHABET)))
        rows = group.rows_of_keys(keys)
        ok = rows >= 0
        if ok.any():
            ok[ok] = group.filled(array, rows[ok])
        missing = np.flatnonzero(~ok)
        if missing.size:
            raise MissingRowsError(
                missing=int(missing.size), total=len(keys), first=int(missing[0]), store=str(self.path),
                model=group.model_name, key=group.key, array=array, what=what,
                build_model=group.attrs.get("source") or group.model_name,
                build_args=f"{build_hint} --max-tokens {group.attrs.get('max_tokens')} "
                           f"--long {group.attrs.get('long')}")
        return rows

    def embeddings(self, sequences: Iterable[str], *, model=None, layer: int | str | None = None,
                   pool: str | None = None, species: str | None = None) -> np.ndarray:
        """Cached embeddings of ``sequences``, one row each, in the caller's order.

        Parameters
        ----------
        sequences
            DNA sequences; normalized by the model group's alphabet policy first, so case
            and ambiguity codes map to the same rows as at build time. Duplicates allowed.
        model
            See :meth:`group`; ``None`` when the store holds one model.
        layer
            1-based layer, or ``"final"`` (NTv3); default the model's last layer.
        pool
            ``"cls"`` or ``"mean"``; default ``"cls"``, or ``"mean"`` for NTv3 (no CLS).
        species
            For a post-trained NTv3 model: the species it was built with.

        Returns
        -------
        numpy.ndarray
            ``(len(sequences), feature_dim)`` float32.

        Raises
        ------
        StoreError
            If some sequences (or this layer and pool) are not in the cache; the message
            says how many and the command that builds them.
        """
        if pool is not None:
            check_choice("pool", pool, POOLS)
        if layer is None or pool is None:
            # The same preference as the read below, so that asking for the default pool never
            # makes a choice between groups ambiguous that the array would have settled.
            probe = None if layer is None else pooled_name(layer, pool or "cls")
            attrs = self.group(model, array=probe, species=species).attrs
            layer = int(attrs["num_layers"]) if layer is None else layer
            pool = pool or ("mean" if attrs.get("variant") == "v3" else "cls")
        name = pooled_name(layer, pool)
        group = self.group(model, array=name, species=species)
        rows = self._rows(group, sequences, name, f"layer {layer} pool {pool}",
                          f"--layers {layer} --pool {pool}")
        if rows.size == 0:
            return np.zeros((0, group.array(name).shape[1]), dtype=np.float32)
        return group.read(name, rows)

    def attention(self, sequence: str, *, model=None, layer: int, head: int,
                  species: str | None = None) -> np.ndarray:
        """The cached attention map of one sequence, ``(n_tokens, n_tokens)`` float32; for
        NTv3, ``(n, n)`` over the core positions that cover it, ``n = ceil(bases / 2**num_downsamples)``.

        Parameters
        ----------
        sequence
            A DNA sequence (normalized as at build time).
        model
            See :meth:`group`.
        layer, head
            Both 1-based. Row ``i`` is query token ``i`` (token 0 is CLS); each row sums to 1.
        species
            For a post-trained NTv3 model: the species it was built with.
        """
        name = attention_name(layer, head)
        group = self.group(model, array=name, species=species)
        (row,) = self._rows(group, [sequence], name, f"attention map {layer}:{head}",
                            f"--attention {layer}:{head}")
        stride = int(group.attrs.get("attention_stride", 1))
        n = -(-int(group.row_array("n_tokens")[row]) // stride)
        return group.read(name, [row])[0, :n, :n]

    def upgrade(self) -> list[str]:
        """Bring a cache written by an older release to this format in place (see
        :func:`embedcache.store.upgrade`); the model keys upgraded."""
        from embedcache.store import upgrade

        return upgrade(self.store)

    def verify(self) -> list[Problem]:
        """Integrity problems of the store (empty when sound); see :meth:`ModelGroup.verify`."""
        return self.store.verify()

    def repair(self, *, lock_timeout: float = 600.0):
        """Mark the rows of damaged chunks not filled, so the next build recomputes exactly
        them; see :func:`embedcache.store.repair.repair_store`. Returns a ``RepairReport``."""
        from embedcache.store.repair import repair_store

        return repair_store(self.store, timeout=lock_timeout)

    def leftovers(self):
        """Objects no commit refers to (from writers that lost their swap or died), never
        data; see :mod:`embedcache.store.gc`."""
        from embedcache.store.gc import leftovers

        return leftovers(self.store)

    def gc(self, *, older_than: float | None = None):
        """Delete leftovers older than ``older_than`` seconds (default one hour: a younger
        one may belong to a commit being written now); what was deleted."""
        from embedcache.store.gc import OLDER_THAN, collect

        return collect(self.store, older_than=OLDER_THAN if older_than is None else older_than)

    # ----------------------------------------------------------------------------------
    # Export
    # ----------------------------------------------------------------------------------

    def export(self, input_path, out, *, model=None, layer: int | str | None = None, pool: str | None = None,
               reference=None, species: str | None = None) -> Path:
        """Write the features of an input file's records, in its order, with their ids.

        Parameters
        ----------
        input_path
            A sequence file (as for :meth:`build`); every record must be in the cache.
        out
            ``.npz`` (arrays ``id``, ``X`` and ``label``/``split`` when the file has them),
            ``.parquet`` (columns ``id``, ``label``, ``split``, ``f0``...) or ``.h5``/``.hdf5``
            (datasets of the same names as the npz).
        model, layer, pool, species
            As for :meth:`embeddings`.
        reference
            Genome FASTA for a BED input.

        Returns
        -------
        Path
            ``out``, written through a temporary file so that a failure leaves nothing.
        """
        from embedcache.export import check_export_path, write_export
        from embedcache.sequences.readers import iter_records

        check_export_path(Path(out))
        group = self.group(model, species=species)
        records = iter_records(input_path, reference=reference, alphabet=group.attrs.get("alphabet"))
        frames = ((df, self.embeddings(df["sequence"], model=group.key, layer=layer, pool=pool)) for df in records)
        return write_export(frames, Path(out))


def _resolved(path) -> str | None:
    return str(Path(path).resolve()) if path else None
