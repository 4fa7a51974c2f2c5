"""The bundled variant set: files as the manifest records them, counts as the source documents them."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data" / "variants"
MANIFEST = json.loads((DATA / "manifest.json").read_text())


def test_files_match_the_manifest_and_the_readme():
    for name, digest in MANIFEST["files"].items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name
    readme = (DATA / "README.md").read_text()
    for source in MANIFEST["sources"].values():
        assert source["repository"] in readme and source["commit"] in readme and source["path"] in readme


def test_counts_are_the_papers():
    # Findlay et al. 2018: 3,893 SNVs scored; classes FUNC / INT / LOF.
    with gzip.open(DATA / "brca1_findlay2018.vcf.gz", "rt") as fh:
        records = [line.split("\t") for line in fh if not line.startswith("#")]
    assert len(records) == MANIFEST["records"] == 3893
    classes = [dict(kv.split("=") for kv in r[7].strip().split(";"))["FUNC_CLASS"] for r in records]
    assert {c: classes.count(c) for c in set(classes)} == MANIFEST["func_class"] == {"FUNC": 2821, "INT": 249, "LOF": 823}
    assert len({r[2] for r in records}) == 3893  # ids unique
    positions = [int(r[1]) for r in records]
    assert positions == sorted(positions) and [min(positions), max(positions)] == MANIFEST["grch38_range"]
