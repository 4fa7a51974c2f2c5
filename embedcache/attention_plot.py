"""Attention heatmaps of cached maps: what ``embedcache attention-plot`` draws.

Matplotlib's object API (``matplotlib.figure.Figure``, Agg), no global pyplot state: works on
a headless machine and inside threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

import numpy as np
from matplotlib.figure import Figure

from embedcache.families.nt.tokenizer import tokenizer_for
from embedcache.sequences.alphabet import normalize

__all__ = ["attention_figure", "attention_heatmap", "save_png"]


def attention_heatmap(matrix: np.ndarray, *, tokens: Sequence[str] | None = None,
                      title: str = "Attention") -> Figure:
    """One attention map (query rows × key columns), labelled with the tokens when given.

    Parameters
    ----------
    matrix : ndarray of shape (n, n)
        Attention weights; row ``i`` is query token ``i`` (token 0 is CLS).
    tokens : sequence of str, optional
        Token strings for the axes (k-mers); for short sequences only, else unreadable.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = matrix.shape[0]
    side = min(12.0, max(4.5, 0.28 * n + 2)) if tokens is not None else 6.0
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", interpolation="nearest", vmin=0)
    if tokens is not None:
        ax.set_xticks(range(n), tokens, rotation=90, fontsize=7, family="monospace")
        ax.set_yticks(range(n), tokens, fontsize=7, family="monospace")
    ax.set(xlabel="key token", ylabel="query token", title=title)
    fig.colorbar(image, ax=ax, label="attention weight", shrink=0.8)
    return fig


def attention_figure(cache, sequence: str, *, layer: int, head: int, model=None,
                            label_tokens_up_to: int = 64) -> Figure:
    """The heatmap of one cached attention map of a sequence, with k-mer tokens on the axes.

    Parameters
    ----------
    cache : embedcache.EmbeddingCache
        The store holding the map (``embedcache build --attention LAYER:HEAD``).
    sequence : str
        The DNA sequence (normalized here as at build time).
    layer, head : int
        Both 1-based.
    model : str, optional
        Model name or key; default the store's only model.
    label_tokens_up_to : int
        Label the axes with the token strings (``<cls>``, k-mers, single bases) when the
        sequence has at most this many tokens; longer ones get plain indices.

    Returns
    -------
    matplotlib.figure.Figure
    """
    matrix = cache.attention(sequence, model=model, layer=layer, head=head)
    info = cache.group(model).about
    n = matrix.shape[0]
    tokens = None
    if n <= label_tokens_up_to:
        tokens = _token_strings(info, sequence, n)
    title = (f"{info.name} (key {info.key}): layer {layer}, head {head} "
             f"(1-based), {n} tokens")
    if info.random_weights:
        title = f"RANDOM WEIGHTS (no biology) · {title}"
    return attention_heatmap(matrix, tokens=tokens, title=title)


def _token_strings(info, sequence: str, n: int) -> list[str] | None:
    """The first ``n`` token strings (``<cls>``, k-mers, single bases) of a k-mer model's row;
    ``None`` (plain indices) for a model whose map positions are not tokens (NTv3's core
    positions each cover 2**num_downsamples bases)."""
    tok = info.tokenizer or {}
    if tok.get("variant") not in ("v1", "v2"):
        return None
    tokenizer = tokenizer_for(tok["variant"], int(tok["k"]))
    seq = normalize(sequence, alphabet=info.alphabet)
    # A truncated row holds the first n tokens; label exactly those.
    return tokenizer.token_strings(tokenizer.encode(seq)[:n])


def save_png(fig: Figure, path: str | PathLike, *, dpi: int = 110) -> None:
    """Write a figure as PNG."""
    fig.savefig(path, format="png", dpi=dpi)
