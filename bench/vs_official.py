"""`embedcache build` against the official Nucleotide Transformer forward pass, side by side.

Set-up (the official code is imported at run time from its own checkout and environment; it
is never part of this project, whose licence differs):

    git clone https://github.com/instadeepai/nucleotide-transformer /work/scratch-official
    python3 -m venv /work/official-venv
    /work/official-venv/bin/pip install jax dm-haiku jmp joblib regex numpy typing_extensions huggingface_hub

Run (no other benchmark at the same time):

    flock /tmp/embedcache-bench.lock python bench/vs_official.py /work/scratch-official \\
        --official-python /work/official-venv/bin/python [--repeats 5]

Two sets of sequences, 50M_multi_species_v2 architecture with random weights, float32:

1. 256 x 300 bp. The official side gets its best case: sequences sorted by length, batches of
   32 padded to their longest row by its own tokenizer, a jitted forward returning only the
   layer-12 embeddings (so XLA drops the LM head), already compiled. Ours is a whole
   ``EmbeddingCache.build`` (read, normalize, hash, tokenize, write to a new store; layer 12,
   cls and mean pooling), compilation excluded too. Target: ours >= 1.05x its throughput, and
   padded/real tokens <= 1.10.
2. 256 sequences of 50-1,000 bp, same rules. Target: >= 1.0x.

Passes alternate (official, ours, official, ...) and the medians are compared, so the
machine's load hits both alike. Compile seconds are printed apart. Last, the persistent
compilation cache: seconds until the first batch of a shape is computed, in a fresh process
with an empty cache folder and then in a second fresh process (target < 2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded here

MODEL = "50M_multi_species_v2"

# The official side, run by the official environment's Python: JSON lines on stdin/stdout.
WORKER = r'''
import json, sys, time, dataclasses
sys.path.insert(0, sys.argv[1])
import haiku as hk, jax, jax.numpy as jnp, numpy as np
from nucleotide_transformer.model import NucleotideTransformerConfig, build_nucleotide_transformer_fn
from nucleotide_transformer.tokenizers import NucleotidesKmersTokenizer
hp = json.loads(sys.argv[2])
tok = NucleotidesKmersTokenizer(k_mers=6, prepend_cls_token=True)
names = {f.name for f in dataclasses.fields(NucleotideTransformerConfig)}
cfg = NucleotideTransformerConfig(alphabet_size=len(tok.vocabulary), pad_token_id=tok.pad_token_id,
    mask_token_id=tok.mask_token_id, embeddings_layers_to_save=(hp["num_layers"],),
    **{k: v for k, v in hp.items() if k in names})
fn = hk.transform(build_nucleotide_transformer_fn(cfg, model_name="nucleotide_transformer"))
params = fn.init(jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32))
key = "embeddings_%d" % hp["num_layers"]
forward = jax.jit(lambda p, t: fn.apply(p, None, t)[key])
batches, seen = [], set()
for line in sys.stdin:
    msg = json.loads(line)
    if msg["op"] == "load":
        order = sorted(range(len(msg["seqs"])), key=lambda i: len(msg["seqs"][i]))
        seqs = [msg["seqs"][i] for i in order]
        batches = [jnp.asarray([ids for _, ids in tok.batch_tokenize(seqs[s:s + msg["batch"]])], jnp.int32)
                   for s in range(0, len(seqs), msg["batch"])]
        t0 = time.perf_counter()
        for b in batches:
            if b.shape not in seen:
                seen.add(b.shape)
                forward(params, b).block_until_ready()
        real = sum(len(tok.tokenize(s)[1]) for s in seqs)
        padded = sum(b.size for b in batches)
        out = {"compile_s": time.perf_counter() - t0, "real": real, "padded": padded, "shapes": len(seen)}
    else:
        t0 = time.perf_counter()
        for b in batches:
            forward(params, b).block_until_ready()
        out = {"seconds": time.perf_counter() - t0}
    print(json.dumps(out), flush=True)
'''


class Official:
    def __init__(self, checkout: str, python: str, hp: dict):
        self.proc = subprocess.Popen([python, "-c", WORKER, checkout, json.dumps(hp)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def ask(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the official worker stopped; see its error above")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def random_seqs(n: int, lo: int, hi: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=int(rng.integers(lo, hi + 1)))) for _ in range(n)]


def compare(name: str, seqs: list[str], official: Official, checkpoint: Path, tmp: Path, repeats: int,
            target: float) -> float:
    from embedcache import EmbeddingCache
    from embedcache.checkpoints import load_checkpoint
    from embedcache.engine import Embedder
    from embedcache.request import BuildRequest

    info = official.ask(op="load", seqs=seqs, batch=32)
    # Ours: compile every shape the build will use (kept in the on-disk cache), timed apart.
    ckpt = load_checkpoint(checkpoint)
    tokens = ckpt.tokenizer().encode_batch(seqs)
    probe = Embedder(ckpt, BuildRequest(layers=(12,), max_tokens=512))
    for _ in probe.embed(tokens):
        pass
    stats = probe.stats
    kw = dict(model=checkpoint, layers=[12], pools=["cls", "mean"], quiet=True)
    theirs, ours = [], []
    for r in range(repeats):
        theirs.append(official.ask(op="run")["seconds"])
        t0 = time.perf_counter()
        report = EmbeddingCache(tmp / f"{name}_{r}.zarr").build(seqs, **kw)
        ours.append(time.perf_counter() - t0)
        assert report.computed == len(set(seqs))
    t_off, t_ours = statistics.median(theirs), statistics.median(ours)
    ratio = t_off / t_ours
    print(f"\n{name}: {len(seqs)} sequences, {repeats} interleaved passes, medians")
    print(f"  official forward (tight padding, batch 32, jitted): {len(seqs) / t_off:8.1f} seq/s  "
          f"padded/real tokens {info['padded'] / info['real']:.3f}  compile {info['compile_s']:.1f} s "
          f"({info['shapes']} shapes)")
    print(f"  embedcache build (hash + tokenize + write):        {len(seqs) / t_ours:8.1f} seq/s  "
          f"padded/real tokens {stats.padded_tokens / stats.real_tokens:.3f}  compile "
          f"{stats.compile_seconds:.1f} s ({len(stats.compiled_shapes)} shapes)")
    print(f"  ratio build / official: {ratio:.2f}x  (target >= {target:.2f}x: {'MET' if ratio >= target else 'NOT MET'})")
    return ratio


FIRST_BATCH = r'''
import sys
sys.path.insert(0, sys.argv[1])
from embedcache.checkpoints import load_checkpoint
from embedcache.engine import Embedder
from embedcache.request import BuildRequest
import numpy as np
ckpt = load_checkpoint(sys.argv[2])
emb = Embedder(ckpt, BuildRequest(layers=(12,), max_tokens=512))
list(emb.embed([np.full(51, 7, np.int32)] * 64))
print(emb.stats.compile_seconds)  # trace + compile (or load), until the batch is dispatched
'''


def compile_cache_figure(tmp: Path, checkpoint: Path) -> None:
    env = {**os.environ, "EMBEDCACHE_COMPILE_CACHE": str(tmp / "xla-cache")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    runs = [float(subprocess.run([sys.executable, "-c", FIRST_BATCH, str(ROOT), str(checkpoint)], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()[-1]) for _ in range(2)]
    print("\npersistent compilation cache: seconds from a ready engine until its first 64 x 52 batch starts computing")
    print(f"  fresh process, empty cache: {runs[0]:.1f} s; fresh process, same cache: {runs[1]:.1f} s "
          f"(target < 2 s: {'MET' if runs[1] < 2 else 'NOT MET'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkout", help="a checkout of github.com/instadeepai/nucleotide-transformer")
    ap.add_argument("--official-python", default=sys.executable, help="Python of an environment with its dependencies")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sequences", type=int, default=256)
    args = ap.parse_args()
    import jax

    from build_cache import NT50M_V2_HP, write_checkpoint

    from embedcache.checkpoints import RELEASED_ARCHITECTURES, convert_checkpoint, normalize_hyperparams

    print(f"jax {jax.__version__} ({jax.default_backend()}), {os.cpu_count()} CPUs; model {MODEL}, random weights, float32")
    official = Official(args.checkout, args.official_python, normalize_hyperparams(RELEASED_ARCHITECTURES[MODEL]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("EMBEDCACHE_COMPILE_CACHE", str(tmp / "bench-xla-cache"))
        try:
            # Ours reads a checkpoint directory (seeded random weights), as with released weights.
            ckpt = convert_checkpoint(write_checkpoint(tmp / "nt50m", NT50M_V2_HP))
            for name, lo, hi, seed, target in (("300 bp", 300, 300, 0, 1.05), ("50-1000 bp", 50, 1000, 1, 1.0)):
                compare(name, random_seqs(args.sequences, lo, hi, seed), official, ckpt, tmp, args.repeats, target)
        finally:
            official.close()
        compile_cache_figure(tmp, ckpt)


if __name__ == "__main__":
    main()
