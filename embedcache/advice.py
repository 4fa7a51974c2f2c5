"""The build that adds what a read found missing, said the way the reader asked.

A read that finds rows, a layer, a pooling or an attention map missing raises
:class:`embedcache.errors.MissingRowsError` carrying a :class:`BuildAdvice`: the model as a
user can type it (a released name or a checkpoint directory, never a display name such as
"random weights, seed 0"), the options that make the same model key (``--max-tokens``,
``--long``, and the other policies where they differ from the defaults), the outputs to add,
and, where the reader knows them, the input files and the genome a BED file needs. In Python
the advice is a ``cache.build(...)`` call; on the command line it is an ``embedcache build``
command that runs when pasted.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace

__all__ = ["BuildAdvice", "advice_for_group", "released_name"]

# Python keyword -> command-line option, in the order a command shows them.
_OPTIONS = {"layers": "--layers", "pools": "--pool", "attention": "--attention", "max_tokens": "--max-tokens",
            "long": "--long", "alphabet": "--alphabet", "dtype": "--dtype", "store_dtype": "--store-dtype",
            "species": "--species"}


@dataclass(frozen=True)
class BuildAdvice:
    """A build that adds missing outputs, renderable as Python or as a command.

    Parameters
    ----------
    model
        The model as a user types it: a released name or a checkpoint directory.
    options
        ``cache.build`` keywords (``layers``, ``pools``, ``attention``, ``max_tokens``, ``long``,
        ``alphabet``, ``dtype``, ``store_dtype``, ``species``); values as Python holds them.
    allow_random_weights
        The model group holds seeded random weights standing in for the released model.
    inputs
        The input files the reader read (empty: the caller's sequences).
    reference
        The genome FASTA a BED input was cut from.
    """

    model: str
    options: dict = field(default_factory=dict)
    allow_random_weights: bool = False
    inputs: tuple[str, ...] = ()
    reference: str | None = None

    def for_inputs(self, inputs, reference=None) -> "BuildAdvice":
        """The same advice, naming ``inputs`` (a path or several) and the ``reference`` genome."""
        inputs = (inputs,) if isinstance(inputs, (str, bytes)) or hasattr(inputs, "__fspath__") else inputs
        return replace(self, inputs=tuple(str(i) for i in inputs),
                       reference=None if reference is None else str(reference))

    def python(self, store: str) -> str:
        """``EmbeddingCache(store).build(...)``: a call that adds the missing outputs."""
        source = (repr(self.inputs[0]) if len(self.inputs) == 1 else repr(list(self.inputs))) if self.inputs \
            else "sequences"
        kwargs = [f"model={self.model!r}", *(f"{k}={v!r}" for k, v in self.options.items() if v is not None)]
        if self.reference is not None:
            kwargs.append(f"reference={self.reference!r}")
        if self.allow_random_weights:
            kwargs.append("allow_random_weights=True")
        return f"EmbeddingCache({store!r}).build({source}, {', '.join(kwargs)})"

    def command(self, store: str) -> str:
        """``embedcache build ...``: a command that runs when pasted (``INPUT`` if the input is unknown)."""
        words = ["embedcache", "build", *(self.inputs or ["INPUT"])]
        if self.reference is not None:
            words += ["--reference", self.reference]
        words += ["--model", self.model, "--cache", str(store)]
        for key, option in _OPTIONS.items():
            value = self.options.get(key)
            if value is not None:
                words += [option, _option_text(key, value)]
        if self.allow_random_weights:
            words.append("--allow-random-weights")
        return " ".join(words[:2] + ["INPUT"] + [shlex.quote(w) for w in words[3:]]) if not self.inputs \
            else shlex.join(words)


def _option_text(key: str, value) -> str:
    if key == "attention":
        return ",".join(f"{layer}:{head}" for layer, head in value)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def released_name(name: str) -> str:
    """A model name as released: aliases resolved, a random stand-in's ``random-`` prefix dropped."""
    from embedcache.checkpoints import RANDOM_PREFIX
    from embedcache.checkpoints.resolve import ALIASES

    name = str(name).removeprefix(RANDOM_PREFIX)
    return ALIASES.get(name, name)


def advice_for_group(info, **outputs) -> BuildAdvice:
    """The advice that adds ``outputs`` (``layers``/``pools``, or ``attention``) to the model
    group ``info`` (a :class:`~embedcache.store.GroupInfo`): the same model, and the policies
    that make the same key."""
    from embedcache.checkpoints.resolve import RELEASED
    from embedcache.sequences.alphabet import DEFAULT_ALPHABET

    random = bool(info.random_weights)
    if random or released_name(info.name) in RELEASED:
        model = released_name(info.name) if random else info.name
    else:
        model = info.source or info.name  # a checkpoint directory, as it was read
    options = {**outputs, "max_tokens": info.max_tokens, "long": info.long}
    for key, default in (("alphabet", DEFAULT_ALPHABET), ("dtype", "float32"), ("store_dtype", "float32")):
        if getattr(info, key) not in (None, default):
            options[key] = getattr(info, key)
    if info.species:
        options["species"] = info.species
    return BuildAdvice(model=model, options=options, allow_random_weights=random)
