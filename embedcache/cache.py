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

from os import PathLike
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from embedcache.sequences.alphabet import normalize_many
from embedcache.build import BuildReport, build
from embedcache.advice import advice_for_group
from embedcache.request import DEFAULT_POOL, POOLS, check_choice
from embedcache.errors import MissingRowsError
from embedcache.store import GroupInfo, ModelGroup, Problem, Store, attention_name, pooled_name
from embedcache.util.ranges import parse_layer
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
            ``"cls"``, ``"mean"`` and/or ``"center"`` (the token holding the sequence's middle
            base; NTv3: the position covering it). Default ``cls`` and ``mean`` (NTv3 has no
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

    def score_variants(self, variants=None, *, reference, model, **options):
        """Zero-shot variant effect scores, one row per ALT allele: ``id, chrom, pos, ref, alt,
        flank``, ``llr``, ``cosine_L{L}_{P}``, ``l2_L{L}_{P}`` (and ``label``). The windows are
        built through :meth:`build`. Options (``flank``, ``layers``, ``pools``, ``scores``,
        ``strands``, ``label_field``, ``ref_mismatch``, ``saturate``, ``max_tokens``, build
        options): :func:`embedcache.variants.score.score_variants`."""
        from embedcache.variants.score import score_variants

        return score_variants(self, variants, reference=reference, model=model, **options)

    def variant_features(self, variants, *, reference, **options):
        """``(X, table)``: ``alt - ref`` or ``[ref, alt]`` pooled embeddings of the windows
        :meth:`score_variants` embedded, read from the cache (nothing computed); options:
        :func:`embedcache.variants.features.variant_features`."""
        from embedcache.variants.features import variant_features

        return variant_features(self, variants, reference=reference, **options)

    # ----------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------

    def models(self) -> list[GroupInfo]:
        """One :class:`~embedcache.store.GroupInfo` per model group (name, key, digest, rows,
        arrays, policies), from metadata alone."""
        return [group.about for group in self.store.groups()]

    def info(self) -> list[GroupInfo]:
        """:meth:`models` with, per group, rows filled per array (layers by number) and bytes
        stored (reads every mask)."""
        return [group.info() for group in self.store.groups()]

    def progress(self, input_path, *, reference=None, shards: int | None = None) -> list[dict]:
        """How much of an input is done, per model group: its unique sequences, and how many
        of them hold each array (``embedcache info --input``; e.g. while ``--shard`` jobs run).
        Cheap: the input is looked up in the persisted digest index.

        Parameters
        ----------
        input_path, reference
            A sequence file (and the genome of a BED file), as for :meth:`build`.
        shards
            The N of ``build --shard I/N``: each group's summary then also lists, under
            ``"shards_left"``, the shard indices I (as :class:`embedcache.request.Shard`
            assigns sequences) holding a sequence that lacks a row or any of the group's arrays.
        """
        from embedcache.coverage import input_coverage

        return input_coverage(self.store, input_path, reference=reference, shards=shards)

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
        from embedcache.groups import find_group

        return find_group(self.store, model, array=array, species=species)

    def _rows(self, group: ModelGroup, sequences: Iterable[str], array: str, what: str, outputs: dict) -> np.ndarray:
        """Rows of the sequences holding ``array``, found through the persisted index; else a
        :class:`MissingRowsError` saying what is missing and the build (``outputs``: its
        ``layers``/``pools`` or ``attention``) that adds it."""
        seqs = normalize_many(sequences, alphabet=group.about.alphabet)
        rows = group.rows_of_keys(keys_of_sequences(seqs))
        ok = rows >= 0
        absent = int((~ok).sum())
        held = array in group.array_names()
        if ok.any():
            ok[ok] = group.filled(array, rows[ok]) if held else False
        missing = np.flatnonzero(~ok)
        if missing.size:
            first = int(missing[0])
            raise MissingRowsError(
                missing=int(missing.size), absent=absent, total=len(rows), first=first, store=str(self.path),
                model=group.model_name, key=group.key, what=what, held=held and bool(group.filled(array).any()),
                first_sequence=seqs[first], advice=advice_for_group(group.about, **outputs))
        return rows

    def _read_choice(self, model, layer, pool, species) -> tuple[ModelGroup, int | str, str]:
        """The group, layer and pooling a read of ``layer``/``pool`` (``None``: the defaults) means."""
        if pool is not None:
            check_choice("pool", pool, POOLS)
        layer = None if layer is None else parse_layer(layer, option="layer")
        pool = pool or DEFAULT_POOL
        if layer is None:
            # The same preference as the read below, so that asking for the default layer never
            # makes a choice between groups ambiguous that the array would have settled.
            layer = int(self.group(model, species=species).about.num_layers)
        return self.group(model, array=pooled_name(layer, pool), species=species), layer, pool

    def provenance(self, *, model=None, layer: int | str | None = None, pool: str | None = None,
                   species: str | None = None) -> dict:
        """What a read of these arguments resolves to, as every export records it: model key
        and name, parameter digest, random-weights flag, layer, pooling, store and versions."""
        from embedcache._version import __version__

        group, layer, pool = self._read_choice(model, layer, pool, species)
        a = group.about
        return {"model_key": a.key, "model_name": a.name, "param_digest": a.digest,
                "random_weights": bool(a.random_weights), "layer": layer, "pool": pool, "species": a.species,
                "max_tokens": a.max_tokens, "store": str(self.path), "embedcache_version": __version__}

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
            ``"cls"`` or ``"mean"``; default :data:`embedcache.request.DEFAULT_POOL` (``"mean"``,
            which every family has and every default build holds).
        species
            For a post-trained NTv3 model: the species it was built with.

        Returns
        -------
        numpy.ndarray
            ``(len(sequences), feature_dim)`` float32.

        Raises
        ------
        MissingRowsError
            If some sequences (or this layer and pool) are not in the cache; the message
            says which and the ``cache.build(...)`` call that adds them.
        """
        group, layer, pool = self._read_choice(model, layer, pool, species)
        name = pooled_name(layer, pool)
        rows = self._rows(group, sequences, name, f"layer {layer} {pool} pooling",
                          {"layers": [layer], "pools": [pool]})
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
        (row,) = self._rows(group, [sequence], name, f"attention map {layer}:{head} (layer {layer}, head {head})",
                            {"attention": [(int(layer), int(head))]})
        stride = group.about.attention_stride
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
        """Write the features of an input file's records, in its order, with their ids and provenance.

        Parameters
        ----------
        input_path
            A sequence file (as for :meth:`build`); every record must be in the cache.
        out
            ``.npz`` (arrays ``id``, ``X``, and the record columns), ``.parquet`` (columns
            ``id``, the record columns, ``f0``...) or ``.h5``/``.hdf5`` (datasets named as in
            the npz). The record columns are what the reader gives besides the sequence:
            ``label``/``split`` of a table; ``chrom``, ``start``, ``end``, ``strand`` and the
            task columns of a BED file.
        model, layer, pool, species
            As for :meth:`embeddings`.
        reference
            Genome FASTA for a BED input.

        Returns
        -------
        Path
            ``out``, written through a temporary file so that a failure leaves nothing. Its
            provenance (:meth:`provenance`: model key and name, parameter digest,
            random-weights flag, layer, pooling, store, package version, and the input) is in
            the Parquet key-value metadata under ``embedcache`` (JSON), in the HDF5 file's
            root attributes, or in the sidecar ``<out>.json`` of an npz.
        """
        from embedcache.export import check_export_path, write_export
        from embedcache.sequences.readers import iter_records

        chosen = self.provenance(model=model, layer=layer, pool=pool, species=species)
        chosen.update(input=str(input_path), reference=None if reference is None else str(reference))
        key, layer, pool = chosen["model_key"], chosen["layer"], chosen["pool"]
        check_export_path(Path(out))
        records = iter_records(input_path, reference=reference, alphabet=self.group(key).about.alphabet)

        def frames():
            for df in records:
                try:
                    yield df, self.embeddings(df["sequence"], model=key, layer=layer, pool=pool)
                except MissingRowsError as exc:
                    raise exc.for_source(input_path, reference=reference, ids=df["id"]) from None

        return write_export(frames(), Path(out), chosen)
