"""Forward-pass throughput: length buckets vs padding to 512, and FLOP/s vs a plain matmul.

Run:  python bench/embed_throughput.py [--sequences 256] [--repeats 3] [--dtype float32]

All figures come from one run on one machine, side by side:

1. sequences/s of the 50M_multi_species_v2 architecture (seeded random weights) on 300-bp sequences, bucketed as `embedcache build` does, against
   every sequence padded to 512 tokens (what the official tokenizer does). Target >= 10x.
2. achieved FLOP/s of the bucketed forward pass (FLOPs of the padded batches actually
   executed) against a plain jitted float32 matmul of the same width (D = 512) with as
   many rows as a batch has tokens. Target >= 70%.
3. compile time, reported apart (warm-up calls are not timed).
On a GPU, also bfloat16 throughput and model FLOP utilisation against the chip's peak.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embedcache.checkpoints import random_checkpoint  # noqa: E402
from embedcache.request import BuildRequest
from embedcache.engine import Embedder  # noqa: E402

# Dense bf16 peak of the chips we may meet, for model FLOP utilisation.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_all(embedder: Embedder, arrays) -> None:
    for _ in embedder.embed(arrays):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=256, help="300-bp sequences per timed pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default=None, help="float32 (default on CPU) or bfloat16")
    args = ap.parse_args()
    backend = jax.default_backend()
    device = jax.devices()[0]
    print(f"backend={backend} device={device.device_kind} jax={jax.__version__}")

    ckpt = random_checkpoint("50M_multi_species_v2")
    cfg = ckpt.config
    tok = ckpt.tokenizer()
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=300)) for _ in range(args.sequences)]
    arrays = tok.encode_batch(seqs)
    n_tok = len(arrays[0])
    # The official tokenizer pads every sequence to max_positions: pad ids are masked keys,
    # so the executed work is that of a (rows, 512) batch.
    padded = [np.concatenate([a, np.full(512 - len(a), cfg.pad_token_id, np.int32)]) for a in arrays]
    n_padded = max(8, args.sequences // 8)

    results = {}
    for dtype in ([args.dtype] if args.dtype else (["float32", "bfloat16"] if backend == "gpu" else ["float32"])):
        bucketed = Embedder(ckpt, BuildRequest(layers=(12,), pools=("cls", "mean"), max_tokens=512, dtype=dtype))
        compile_b = bucketed.warmup([64 if n_tok <= 64 else 512])
        padded_e = Embedder(ckpt, BuildRequest(layers=(12,), pools=("cls", "mean"), max_tokens=512, dtype=dtype))
        compile_p = padded_e.warmup([512])
        t_b = timed(lambda: run_all(bucketed, arrays), args.repeats)
        t_p = timed(lambda: run_all(padded_e, padded[:n_padded]), args.repeats)
        sps_b, sps_p = len(arrays) / t_b, n_padded / t_p
        executed = bucketed.stats.padded_tokens / bucketed.stats.sequences  # padded tokens per sequence
        bucket_len = executed  # one bucket for equal-length inputs
        flops = cfg.flops_per_token(int(round(bucket_len))) * executed * len(arrays)
        achieved = flops / t_b
        results[dtype] = dict(sps_bucketed=sps_b, sps_padded=sps_p, achieved=achieved,
                              compile_b=compile_b, compile_p=compile_p, embedder=bucketed)
        print(f"\n[{dtype}] 300-bp sequences ({n_tok} tokens with CLS) with 50M_multi_species_v2 architecture")
        print(f"  compile: bucketed {compile_b:.1f} s, padded-512 {compile_p:.1f} s (not in the timings)")
        print(f"  bucketed   : {sps_b:9.1f} seq/s  (median of {args.repeats}, {len(arrays)} seqs, "
              f"padded length {bucket_len:.0f})")
        print(f"  padded 512 : {sps_p:9.1f} seq/s  (median of {args.repeats}, {n_padded} seqs)")
        print(f"  speed-up   : {sps_b / sps_p:9.2f} x   (target >= 10x)")
        print(f"  forward    : {achieved / 1e9:9.1f} GFLOP/s achieved")

    # A plain jitted matmul of the model's width, as many rows as a bucketed batch has tokens.
    # Timed interleaved with forward passes, and the ratio taken pair by pair: on a shared,
    # noisy machine a ratio of two figures measured minutes apart means little.
    d = cfg.embed_dim
    for dtype, res in results.items():
        jd = jnp.float32 if dtype == "float32" else jnp.bfloat16
        embedder = res["embedder"]
        rows = embedder.planner.token_budget
        x = jnp.asarray(rng.standard_normal((rows, d)), jd)
        w = jnp.asarray(rng.standard_normal((d, d)), jd)
        mm = jax.jit(lambda a, b: jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST))
        mm(x, w).block_until_ready()
        reps = 30
        one_batch = arrays[: rows // 64]
        flops_batch = cfg.flops_per_token(64) * 64 * len(one_batch)
        ratios, mm_rates, fw_rates = [], [], []
        for _ in range(max(args.repeats, 5)):
            t_mm = timed(lambda: [mm(x, w).block_until_ready() for _ in range(reps)], 1) / reps
            t_fw = timed(lambda: run_all(embedder, one_batch), 1)
            mm_rates.append(2 * rows * d * d / t_mm)
            fw_rates.append(flops_batch / t_fw)
            ratios.append(fw_rates[-1] / mm_rates[-1])
        print(f"\n[{dtype}] plain jitted matmul ({rows} x {d}) @ ({d} x {d}): "
              f"{statistics.median(mm_rates) / 1e9:.1f} GFLOP/s (median)")
        print(f"  forward pass, one full batch ({len(one_batch)} x 64 tokens): "
              f"{statistics.median(fw_rates) / 1e9:.1f} GFLOP/s (median)")
        print(f"  forward / matmul FLOP/s: {statistics.median(ratios):.1%} median of {len(ratios)} interleaved "
              f"pairs (min {min(ratios):.1%}, max {max(ratios):.1%})   (target >= 70%)")
        if backend == "gpu":
            peak = next((v for k, v in PEAK_BF16.items() if k in device.device_kind), None)
            if peak:
                print(f"  model FLOP utilisation vs {peak / 1e12:.0f} TFLOP/s bf16 peak: {res['achieved'] / peak:.1%}")


if __name__ == "__main__":
    main()
