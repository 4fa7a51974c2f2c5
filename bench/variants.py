"""Saturation mutagenesis cost: forwards per variant against the naive plan, variants/s, rerun cost.

Run:  python bench/variants.py [--length 1000] [--flank N] [--model 50M_multi_species_v2]
                               [--layer 12] [--max-tokens 1000]

Every SNV of a region of the bundled BRCA1 reference (3 per base) is scored three ways, each
into its own fresh cache:

(a) all scores (``llr``, ``cosine``, ``l2``; ``mean`` pooling of one layer): per position one
    reference window, three alt windows and one masked forward: 5 forwards per 3 variants,
    1.67 per variant (target <= 1.7) against the naive plan's 3 (a ref, an alt and a masked
    forward per variant);
(b) ``llr`` alone: one masked forward per position, 0.33 per variant (target <= 0.34);
(c) (a) run again on its filled cache: no forward (target 0), timed against a fully cached
    ``EmbeddingCache.build`` of the same windows (target: the rerun costs no more than that
    build plus the scoring).

Forwards are counted from the build reports (rows computed), not assumed. The default model
is the 50M_multi_species_v2 architecture (random weights when the released ones are not in the
Hugging Face cache: the timings are real, the scores carry no biology). On a CPU, shorten the
region or the flank (``--length 200 --flank 100``); the counts do not depend on either.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENOME = ROOT / "data" / "variants" / "chr17_brca1_grch38.fa.gz"
START = 43_045_705  # the first SGE variant of the bundled set


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=1000, help="bases saturated")
    ap.add_argument("--flank", type=int, default=None, help="default: the largest that fits --max-tokens")
    ap.add_argument("--model", default="50M_multi_species_v2")
    ap.add_argument("--layer", default="12")
    ap.add_argument("--max-tokens", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=None)
    args = ap.parse_args(argv)

    from embedcache import EmbeddingCache
    from embedcache.variants.score import ScoreRun

    region = f"chr17:{START}-{START + args.length - 1}"
    layer = args.layer if args.layer == "final" else int(args.layer)
    common = dict(reference=GENOME, model=args.model, flank=args.flank, layers=[layer], pools=["mean"],
                  max_tokens=args.max_tokens, quiet=True, allow_random_weights=True,
                  **({} if args.batch_size is None else {"batch_size": args.batch_size}))
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, scores in (("all", ["llr", "cosine", "l2"]), ("llr", ["llr"])):
            cache = EmbeddingCache(Path(tmp) / f"{name}.zarr")
            t0 = time.perf_counter()
            table = cache.score_variants(saturate=region, scores=scores, **common)
            seconds = time.perf_counter() - t0
            run = ScoreRun.of(table)
            forwards = run.computed + run.masked_forwards
            results[name] = (cache, table, run)
            print(f"({'a' if name == 'all' else 'b'}) {name:>3} scores: {len(table)} variants, flank {run.flank}, "
                  f"{run.computed} windows embedded + {run.masked_forwards} masked = {forwards} forwards, "
                  f"{forwards / len(table):.3f} per variant (naive plan: 3.000), {seconds:.1f} s, "
                  f"{len(table) / seconds:.1f} variants/s (compilation included)")
        cache, table, _ = results["all"]
        t0 = time.perf_counter()
        again = cache.score_variants(saturate=region, scores=["llr", "cosine", "l2"], **common)
        rerun = time.perf_counter() - t0
        run = ScoreRun.of(again)
        windows = sorted(set(_windows(again, common)))
        t0 = time.perf_counter()
        report = cache.build(windows, model=args.model, layers=[layer], pools=["mean"], max_tokens=args.max_tokens,
                             quiet=True, allow_random_weights=True)
        cached_build = time.perf_counter() - t0
        print(f"(c) rerun: {run.computed + run.masked_forwards} forwards, {rerun:.2f} s; a fully cached build of "
              f"its {len(windows)} distance windows: {report.computed} computed, {cached_build:.2f} s")
    return 0


def _windows(table, common):
    """The ref and alt windows of the table's alleles, cut again (for the cached-build comparison)."""
    from embedcache.sequences.readers.bed import open_genome
    from embedcache.sequences.alphabet import normalize
    from embedcache.variants.windows import variant_windows

    with open_genome(common["reference"]) as genome:
        contig = genome["chr17"]
        n = len(contig)
        for pos, ref, alt, h in zip(table.pos, table.ref, table.alt, table.flank):  # h after any shrinking for Ns
            w = variant_windows(lambda a, b: normalize(str(contig[a:b])), int(pos) - 1, n, ref, alt, int(h))
            yield w.ref
            yield w.alt


if __name__ == "__main__":
    raise SystemExit(main())
