"""What a build did: :class:`BuildReport`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["BuildReport"]


@dataclass
class BuildReport:
    """What a build did.

    Attributes
    ----------
    cache, model_key, model_name
        Where it wrote, and which model group.
    random_weights
        True when the model is a random-weight stand-in for a released one: the pipeline
        ran, but the embeddings carry no biology.
    records
        Records read from all inputs, duplicates included.
    unique
        Distinct normalized sequences among them.
    computed
        Unique sequences the model ran on (some or all of their arrays were missing).
    reused
        Unique sequences that already held every requested array: the model did not run.
    others
        Unique sequences left to the other shards (``shard=``): this job neither computed
        nor checked them.
    shard
        ``"i/n"`` when the build took one share of the sequences, else ``None``.
    new_rows
        Rows appended to the store (sequences it did not hold at all).
    arrays
        Per array name, ``{"computed": n, "reused": m}`` over the unique sequences.
    tokens
        Tokens the model ran on (CLS included, every window counted).
    truncated, tiled
        Unique sequences shortened or cut into windows by the long-sequence policy.
    seconds
        Wall time of the build.
    write_seconds
        Of that, the time spent committing rows to the store (waiting for the commit lock included).
    """

    cache: str
    model_key: str
    model_name: str
    random_weights: bool = False
    records: int = 0
    unique: int = 0
    computed: int = 0
    reused: int = 0
    others: int = 0
    shard: str | None = None
    new_rows: int = 0
    arrays: dict = field(default_factory=dict)
    tokens: int = 0
    truncated: int = 0
    tiled: int = 0
    seconds: float = 0.0
    write_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A few lines for people."""
        lines = [
            f"model {self.model_name} (key {self.model_key}) in {self.cache}",
            f"{self.records} records, {self.unique} unique sequences: {self.computed} computed, "
            f"{self.reused} reused; {self.new_rows} new rows; {self.tokens} tokens in {self.seconds:.1f} s",
        ]
        if self.shard:
            lines.insert(1, f"shard {self.shard}: {self.computed} computed, {self.reused} reused, "
                            f"{self.others} left to other shards")
        if self.random_weights:
            lines.insert(0, f"RANDOM WEIGHTS: {self.model_name} is the released architecture with seeded "
                            "random weights; these embeddings carry no biology.")
        if self.truncated or self.tiled:
            lines.append(f"long sequences: {self.truncated} truncated, {self.tiled} tiled")
        for name, counts in sorted(self.arrays.items()):
            lines.append(f"  {name}: {counts['computed']} computed, {counts['reused']} reused")
        return "\n".join(lines)
