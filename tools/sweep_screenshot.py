#!/usr/bin/env python3
"""Regenerate docs/sweep_report.png: a `classify sweep` report as headless Chromium shows it.

The backbone is a seeded random-weights checkpoint (the golden tiny v2 architecture with six
layers), so the page shows the pipeline and the RANDOM WEIGHTS warning, not biology. Run
from the repository root: ``python tools/sweep_screenshot.py [--keep DIR]`` (about a minute
on two cores; needs the `chromium` package).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "prom_300_tata.csv"
OUT = ROOT / "docs" / "sweep_report.png"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Keep the checkpoint, cache and sweep here.")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT))
    from classifiers.runs import sweep_run
    from embedcache import EmbeddingCache

    work = args.keep or Path(tempfile.mkdtemp(prefix="sweep-screenshot-"))
    work.mkdir(parents=True, exist_ok=True)
    hp = json.loads((ROOT / "tests/golden/tiny_v2/hyperparams.json").read_text())
    hp["num_layers"] = 6
    (work / "hp.json").write_text(json.dumps(hp))
    checkpoint = work / "tiny6"
    subprocess.run([sys.executable, str(ROOT / "tests/golden/make_weights.py"),
                    str(work / "hp.json"), str(checkpoint), "--seed", "0"], check=True)
    cache = work / "cache.zarr"
    EmbeddingCache(cache).build(DATA, model=checkpoint, layers=list(range(1, 7)),
                                pools=["cls", "mean"], max_tokens=64, quiet=True)
    sweep = work / "sweep"
    sweep_run(DATA, cache=cache, out=sweep, model="logistic", layers="all",
              pools=["cls", "mean"], force=True,
              command="classify sweep --probe logistic --data data/prom_300_tata.csv "
                      "--cache cache.zarr --layers all --pool cls,mean --out runs/prom_sweep")
    OUT.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", "--hide-scrollbars",
                        "--window-size=1300,2200", f"--screenshot={OUT}",
                        (sweep / "report.html").as_uri()], check=True, capture_output=True)
    print(f"wrote {OUT} (sweep in {sweep})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
