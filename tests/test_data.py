"""The datasets shipped in data/: columns, counts, classes, digests, and their reproduction."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SHARED_DATA = ROOT.parent / "shared" / "data"
MANIFEST = json.loads((DATA / "manifest.json").read_text())

# Counts from the sources' own documentation (../shared/data/README.md), not from our manifest,
# so a conversion that drops or doubles rows fails here.
EXPECTED_COUNTS = {
    "prom_300_tata": {"train": 4904, "dev": 613, "test": 613},
    "prom_core_all": {"train": 47356, "dev": 5920, "test": 5920},
    "enhancers_2class": {"train": 1484 * 2, "test": 200 * 2},
    "enhancers_3class": {"train": 742 * 2 + 1484, "test": 100 * 2 + 200},
    "splice_3class": {"train": 2200 * 4, "test": 550 * 4},
}
EXPECTED_CLASSES = {
    "prom_300_tata": ["0", "1"],
    "prom_core_all": ["0", "1"],
    "enhancers_2class": ["0", "1"],
    "enhancers_3class": ["non", "strong", "weak"],
    "splice_3class": ["acceptor", "donor", "none"],
}


def read_task(name: str) -> pd.DataFrame:
    path = DATA / MANIFEST["tasks"][name]["file"]
    if path.suffix == ".parquet":
        return pd.read_parquet(path).astype(str)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def canonical_digest(df: pd.DataFrame) -> str:
    return hashlib.sha256(df.to_csv(index=False, lineterminator="\n").encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_task_file_matches_manifest_and_source_counts(name):
    df = read_task(name)
    assert list(df.columns) == ["id", "sequence", "label", "split"]
    assert df["id"].is_unique
    assert df["split"].value_counts().to_dict() == EXPECTED_COUNTS[name]
    assert sorted(df["label"].unique()) == EXPECTED_CLASSES[name]
    counts = {s: g["label"].value_counts().sort_index().to_dict() for s, g in df.groupby("split")}
    assert counts == MANIFEST["tasks"][name]["counts"]
    assert canonical_digest(df) == MANIFEST["tasks"][name]["content_sha256"]
    assert df["sequence"].str.fullmatch(r"[ACGTNHacgtn]+").all()


def test_three_class_tasks_are_the_two_class_tasks_refined():
    two, three = read_task("enhancers_2class"), read_task("enhancers_3class")
    # Strong + weak enhancers are exactly the enhancer set of layer 1, per split.
    for split in ("train", "test"):
        enh = sorted(two.query("split == @split and label == '1'")["sequence"])
        sw = sorted(three.query("split == @split and label in ['strong', 'weak']")["sequence"])
        assert enh == sw


def test_readme_records_the_source_digests():
    readme = (DATA / "README.md").read_text()
    for source in MANIFEST["sources"].values():
        assert source["repository"] in readme and source["commit"] in readme
    for task in MANIFEST["tasks"].values():
        assert task["file"] in readme


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data (the source copies) is absent")
def test_manifest_source_digests_match_the_shared_sha256sums():
    sums = {}
    for line in (SHARED_DATA / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    recorded = {path: digest for s in MANIFEST["sources"].values()
                for path, digest in s["files"].items()}
    assert recorded == sums


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data (the source copies) is absent")
def test_make_datasets_reproduces_data(tmp_path):
    spec = importlib.util.spec_from_file_location("make_datasets", ROOT / "tools" / "make_datasets.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with io.StringIO() as sink:
        import contextlib

        with contextlib.redirect_stdout(sink):
            assert tool.main(["--source", str(SHARED_DATA), "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "manifest.json").read_text()) == MANIFEST
    for task in MANIFEST["tasks"].values():
        if task["file"].endswith(".csv"):
            assert (tmp_path / task["file"]).read_bytes() == (DATA / task["file"]).read_bytes()
