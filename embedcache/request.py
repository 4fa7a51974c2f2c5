"""The build request: what a build computes and under which policies, one immutable value.

It is validated in two steps, each once: :class:`BuildRequest` itself checks the option values
that need no model (poolings, alphabet, long-sequence policy, dtypes, token counts), so a typo
fails before any checkpoint is read; :meth:`BuildRequest.for_model` checks layers, heads and
``max_tokens`` against the model's architecture and fills the default layer. The store's array
names are derived from the request's :class:`Output` values (never parsed back to drive the
computation).

Nothing here assumes a model family: :meth:`BuildRequest.for_model` asks the family object
(:mod:`embedcache.families`) which layers, pools and maps exist, how many tokens it takes,
and whether a CLS token leads each window.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

from embedcache.sequences.alphabet import ALPHABET_POLICIES, DEFAULT_ALPHABET
from embedcache.errors import InputError
from embedcache.store import COMPUTE_DTYPES, LONG_POLICIES, STORE_DTYPES, attention_name, pooled_name
from embedcache.util.ranges import ALL, layer_order, parse_layers

__all__ = ["CHOICES", "DEFAULT_POOL", "POOLS", "BuildRequest", "Output", "RunOptions", "Shard", "check_choice",
           "check_devices", "split_settings"]

POOLS = ("cls", "mean", "center", "mlm")
#: The pooling every read defaults to: ``embeddings()``, ``export``, ``classify`` (fit, cv,
#: sweep). ``mean`` exists for every family (NTv3 has no CLS) and is in every default build
#: (a build computes all of its family's poolings unless ``--pool`` narrows them).
DEFAULT_POOL = "mean"
# The options with a fixed set of values, by their command-line names.
CHOICES = {"--pool": POOLS, "--alphabet": ALPHABET_POLICIES, "--long": LONG_POLICIES,
           "--dtype": COMPUTE_DTYPES, "--store-dtype": STORE_DTYPES}


def check_choice(option: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else an :class:`InputError` naming the option."""
    if value not in allowed:
        raise InputError(f"{option} {value!r} is not one of: {', '.join(allowed)}; fix {option}.")
    return value


def check_devices(value) -> int | None:
    """``--devices N`` (``devices=N``) as a count: the build uses the first N local devices of
    JAX's default backend; ``None`` for all of them. Anything but an integer >= 1 is an
    :class:`InputError` naming ``--devices``; whether N devices exist is the engine's to say
    (:func:`embedcache.engine.local_devices`)."""
    if value is None:
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise InputError(f"--devices takes a number of devices N >= 1 (the first N local accelerators), not "
                         f"{value!r}; leave it out to use them all, or pick devices with CUDA_VISIBLE_DEVICES.")
    return int(text)


@dataclass(frozen=True)
class Output:
    """One stored array: a pooled embedding (``pool`` set) or an attention map (``head`` set)."""

    layer: int | str
    pool: str | None = None
    head: int | None = None

    @property
    def name(self) -> str:
        return pooled_name(self.layer, self.pool) if self.pool else attention_name(self.layer, self.head)


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` of the unique sequences (``--shard I/N``, 0-based).

    A sequence belongs to the shard ``int(digest[:16], 16) % count``: by content, not by its
    position in a file, so N jobs over the same inputs (in any order, split into any files)
    cover every unique sequence exactly once, and need no merge step.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        index, count = _int("--shard", self.index), _int("--shard", self.count)
        if count < 1 or not 0 <= index < count:
            raise InputError(f"--shard {index}/{count} is out of range: pass --shard I/N with N >= 1 and "
                             "0 <= I < N (e.g. --shard $SLURM_ARRAY_TASK_ID/64 for an array 0-63).")
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "count", count)

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"I/N"`` as a :class:`Shard`; anything else is an :class:`InputError` naming ``--shard``."""
        index, sep, count = str(text).strip().partition("/")
        if not sep:
            raise InputError(f"--shard takes I/N (this job's share, 0 <= I < N), not {text!r}; e.g. --shard 0/4.")
        return cls(index.strip(), count.strip())

    @staticmethod
    def index_of(digest: str, count: int) -> int:
        """The shard I (of N = ``count``) that computes the sequence of this (hex sha256) digest."""
        return int(digest[:16], 16) % count

    def owns(self, digest: str) -> bool:
        """Whether the sequence of this (hex sha256) digest is this shard's to compute."""
        return self.index_of(digest, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class BuildRequest:
    """What to compute and how; option values are checked on construction.

    Parameters
    ----------
    layers
        1-based layers to pool, and ``"final"`` for NTv3, as a sequence or a selection string
        (``"1-6,final"``, ``"all"``: :func:`embedcache.util.ranges.parse_layers`); ``None`` for
        the model's last (see :meth:`for_model`, which also expands ``all``).
    pools
        Any of ``"cls"`` (position 0) and ``"mean"`` (real tokens after CLS); ``None`` for
        the family's default poolings (v1/v2: ``cls`` and ``mean``; NTv3: ``mean``, it has no CLS);
        ``center`` (the token holding the middle base) on request.
    attention
        ``(layer, head)`` maps, both 1-based.
    max_tokens
        Tokens per sequence (CLS included) embedded in one pass; ``None`` for the model
        family's default (512 for v1/v2, a whole NTv3 context).
    alphabet, long, window_overlap
        Alphabet and long-sequence policies (:mod:`embedcache.build`); ``window_overlap``
        defaults to ``max_tokens // 8`` under ``long="tile"``.
    dtype, store_dtype
        Compute dtype (``float32``, ``bfloat16``) and stored dtype (``float32``, ``float16``).
    shard
        ``(i, n)``, ``"i/n"`` or a :class:`Shard`: compute only that share of the unique
        sequences (the others are left to the other shards); ``None`` for all of them.
    species
        The species of a post-trained NTv3 model (part of the model key).
    """

    layers: tuple[int | str, ...] | None = None
    pools: tuple[str, ...] | None = None
    attention: tuple[tuple[int, int], ...] = ()
    max_tokens: int | None = None
    alphabet: str = DEFAULT_ALPHABET
    long: str = "error"
    window_overlap: int | None = None
    dtype: str = "float32"
    store_dtype: str = "float32"
    shard: Shard | None = None
    species: str | None = None
    settled: bool = False  # set by for_model: checked against a model family, defaults filled in

    def __post_init__(self) -> None:
        shard = self.shard
        if shard is not None and not isinstance(shard, Shard):
            shard = Shard.parse(shard) if isinstance(shard, str) else _shard_pair(shard)
        object.__setattr__(self, "shard", shard)
        pools = None if self.pools is None else tuple(self.pools)
        for option, values in (("--pool", pools or ()), ("--alphabet", [self.alphabet]), ("--long", [self.long]),
                               ("--dtype", [self.dtype]), ("--store-dtype", [self.store_dtype])):
            for v in values:
                check_choice(option, v, CHOICES[option])
        max_tokens = None if self.max_tokens is None else _int("--max-tokens", self.max_tokens)
        if max_tokens is not None and max_tokens < 2:
            raise InputError(f"--max-tokens {max_tokens} is too small: CLS and at least one token (2 or more).")
        overlap = self.window_overlap
        if self.long != "tile":
            overlap = 0  # only tiling has windows; a stray value must not split the model key
        elif overlap is not None:
            overlap = _int("--window-overlap", overlap)
        attention = tuple(sorted({(_int("--attention", l), _int("--attention", h)) for l, h in self.attention}))
        # An empty list asks for no pooled layer (attention maps only); an empty selection string is a typo.
        empty = not isinstance(self.layers, str) and self.layers is not None and len(self.layers) == 0
        layers = None if self.layers is None else () if empty else parse_layers(self.layers)
        if layers is not None and not layers and not attention:
            raise InputError("nothing to compute: pass layers (--layers) and/or attention maps (--attention)")
        if layers and pools is not None and not pools:
            raise InputError("layers were requested with no pooling; pass --pool cls, mean and/or center")
        for name, value in (("pools", None if pools is None else tuple(p for p in POOLS if p in pools)), ("layers", layers),
                            ("attention", attention), ("max_tokens", max_tokens), ("window_overlap", overlap)):
            object.__setattr__(self, name, value)

    def for_model(self, family) -> "BuildRequest":
        """This request checked against a model family object (:func:`embedcache.families.family_for`):
        layers, pools, maps, ``max_tokens`` and species; the defaults filled in. A build does this
        once (:func:`embedcache.build.plan.settle`) and hands the settled request on as it is."""
        layers = (family.num_layers,) if self.layers is None else self.layers
        if ALL in layers:
            layers = tuple(sorted((set(layers) - {ALL}) | set(family.layer_names), key=layer_order))
        # A family may store fewer poolings by default than it offers (``center`` on request).
        pools = tuple(getattr(family, "default_pools", family.pools)) if self.pools is None else self.pools
        family.check(layers, pools if layers else (), self.attention)
        max_tokens = family.default_max_tokens if self.max_tokens is None else self.max_tokens
        if max_tokens > family.max_tokens:
            raise InputError(
                f"--max-tokens {max_tokens} is more than the model takes ({family.max_tokens} tokens"
                f"{family.token_note}); pass --max-tokens {family.max_tokens} or less."
            )
        if max_tokens <= family.prefix:
            raise InputError(f"--max-tokens {max_tokens} is too small for this model: pass {family.prefix + 1} or more.")
        overlap, window = self.window_overlap, max_tokens - family.prefix
        if self.long == "tile":
            overlap = max_tokens // 8 if overlap is None else overlap
            if not 0 <= overlap < window:
                raise InputError(f"--window-overlap {overlap} must be in [0, {window}) for --max-tokens {max_tokens}.")
        return replace(self, layers=layers, pools=pools, max_tokens=max_tokens, window_overlap=overlap,
                       species=family.species, settled=True)

    @property
    def outputs(self) -> tuple[Output, ...]:
        """The arrays requested, pooled first (layer by layer), then attention maps."""
        if self.layers is None:
            raise ValueError("the default layer is the model's: call for_model(family) first")
        pooled = [Output(layer, pool=p) for layer in self.layers for p in self.pools]
        return tuple(pooled + [Output(layer, head=h) for layer, h in self.attention])

    def spec_fields(self) -> dict:
        """The policies that are part of the model key (:class:`embedcache.store.ModelSpec`)."""
        return {k: getattr(self, k)
                for k in ("max_tokens", "alphabet", "long", "window_overlap", "dtype", "store_dtype", "species")}


def _shard_pair(value) -> Shard:
    try:
        index, count = value
    except (TypeError, ValueError):
        raise InputError(f"shard takes (i, n) or 'i/n' (--shard I/N), not {value!r}") from None
    return Shard(index, count)


def _int(option: str, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{option} takes integers, not {value!r}") from None


# Padded tokens per batch and per device when nothing else is said: what fits a CPU's caches
# and an accelerator's memory for the released models.
TOKENS_PER_DEVICE = {"cpu": 4096, "accelerator": 32768}


@dataclass(frozen=True)
class RunOptions:
    """How a build runs (none of it changes what is computed, so none of it is in the model key).

    Parameters
    ----------
    batch_size
        Cap on rows per batch (``--batch-size``); ``None``: as many as the token budget allows.
    token_budget
        Padded tokens per batch; ``None``: :data:`TOKENS_PER_DEVICE` per device (CPU 4,096,
        accelerators 32,768).
    devices
        Split each batch over the first N local devices (``--devices``); ``None``: all.
    dask
        A ``distributed.Client``, a scheduler address, or ``"local"``/``"local:N"``: embed on Dask
        workers, this process writing the store (:mod:`embedcache.engine.dask`).
    lock_timeout
        Seconds to wait for another writer before :class:`~embedcache.errors.StoreLockedError`.
    chunk_size
        Records per chunk read from a file.
    quiet
        No progress output.
    """

    batch_size: int | None = None
    token_budget: int | None = None
    devices: int | None = None
    dask: object = None
    lock_timeout: float = 10.0
    chunk_size: int = 10_000
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", check_devices(self.devices))
        for option, value in (("--batch-size", self.batch_size), ("--token-budget", self.token_budget)):
            if value is not None and _int(option, value) < 1:
                raise InputError(f"{option} {value} must be 1 or more.")
        if self.dask is not None and self.devices is not None:
            raise InputError("--devices is for a build on this machine; with --dask each worker uses one device: "
                             "start one worker per device (e.g. dask-cuda's LocalCUDACluster) and drop --devices.")

    def budget(self, n_devices: int, on_cpu: bool) -> int:
        """Padded tokens per batch over ``n_devices`` devices."""
        if self.token_budget is not None:
            return int(self.token_budget)
        return n_devices * TOKENS_PER_DEVICE["cpu" if on_cpu else "accelerator"]


def split_settings(settings: dict) -> tuple[BuildRequest, RunOptions]:
    """``build(**settings)``'s keywords as one :class:`BuildRequest` and one :class:`RunOptions`
    (each checks its values); an unknown keyword is a ``TypeError`` listing the known ones."""
    req = {f.name for f in fields(BuildRequest)} - {"settled"}
    run = {f.name for f in fields(RunOptions)}
    unknown = sorted(settings.keys() - req - run)
    if unknown:
        raise TypeError(f"build() got unexpected keyword argument(s) {unknown}; it takes the request's "
                        f"{sorted(req)} and the run's {sorted(run)}")
    # A layer selection may be a string ("1-6,final", "all"): BuildRequest parses it.
    request = {k: (tuple(v) if k in ("layers", "pools", "attention") and v is not None and not isinstance(v, str)
                   else v)
               for k, v in settings.items() if k in req}
    return BuildRequest(**request), RunOptions(**{k: v for k, v in settings.items() if k in run})
