"""Long contexts with NTv3: a 100-kb sequence through the NTv3_8M_pre architecture (random weights).

Run:  flock /tmp/embedcache-bench.lock python bench/ntv3_long.py [--kb 100] [--repeats 3]

Side by side in one run, on this machine:

1. the 100-kb sequence (N-padded to a multiple of 128): compile time, median forward time
   (core layers 1-2 and `final`, the full-resolution output), and peak resident memory of the
   process (ru_maxrss) before and after;
2. the same at 10 kb, for the scaling ratio: time per base at 100 kb / at 10 kb (the U-Net is
   linear in length except the core's attention over length/128 positions).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embedcache.checkpoints import random_checkpoint  # noqa: E402
from embedcache.families.ntv3.forward import forward, prepare_params  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run(params, cfg, tok, n_bases: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), n_bases))
    ids = tok.encode_padded(seq)[None]
    fn = jax.jit(lambda p, t: forward(p, t, config=cfg, layers=[1, 2, "final"]))
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(params, ids))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(params, ids))
        times.append(time.perf_counter() - t0)
    assert np.isfinite(np.asarray(out["final"])).all()
    return {"bases": n_bases, "padded": ids.shape[1], "compile_s": compile_s, "median_s": statistics.median(times),
            "final_shape": tuple(out["final"].shape), "core_shape": tuple(out["embeddings"][2].shape)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ckpt = random_checkpoint("NTv3_8M_pre")
    cfg, tok = ckpt.config, ckpt.tokenizer()
    params = prepare_params(ckpt.params, cfg)
    print(f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}; model {ckpt.name} "
          f"({sum(a.size for m in ckpt.params.values() for a in m.values()):,} parameters, "
          f"{cfg.num_downsamples} downsamples)")
    base_mb = peak_mb()
    short = run(params, cfg, tok, 10_000, args.repeats)
    short_mb = peak_mb()
    long = run(params, cfg, tok, args.kb * 1000, args.repeats)
    long_mb = peak_mb()
    for r, mb in ((short, short_mb), (long, long_mb)):
        print(f"{r['bases']:>9,} bp (padded {r['padded']:,}): compile {r['compile_s']:.1f} s, "
              f"forward median {r['median_s']:.2f} s ({r['bases'] / r['median_s'] / 1e3:.1f} kb/s), "
              f"core {r['core_shape']}, final {r['final_shape']}, peak RSS {mb:,.0f} MB")
    ratio = (long["median_s"] / long["bases"]) / (short["median_s"] / short["bases"])
    print(f"peak RSS before any run {base_mb:,.0f} MB; growth for {args.kb} kb {long_mb - base_mb:,.0f} MB")
    print(f"time per base, {args.kb} kb / 10 kb: {ratio:.2f} (1.0 = linear in length)")


if __name__ == "__main__":
    main()
