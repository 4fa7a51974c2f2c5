"""Rebuild ``data/`` from the byte-for-byte source copies in ``../shared/data``.

Usage::

    python tools/make_datasets.py [--source ../shared/data] [--out data]

Every task becomes one CSV with the columns ``id, sequence, label, split``. Sequences are
written exactly as in the source (iEnhancer keeps its soft-masked lower case; the readers
upper-case on the way in), so the CSVs can be checked against the sources letter for letter.
``data/manifest.json`` records the sha256 of every source file and of every CSV, the row
counts per split and class, and the quirks found (duplicates, non-ACGT letters); the tests
check the shipped CSVs against it, and ``data/README.md`` quotes it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SOURCES = {
    "gue_prom_300_tata": {
        "repository": "wds-seu/DeepGene",
        "commit": "486343e",
        "path": "data/GUE/prom/prom_300_tata",
        "licence": "Apache-2.0",
    },
    "gue_prom_core_all": {
        "repository": "wds-seu/DeepGene",
        "commit": "486343e",
        "path": "data/GUE/prom/prom_core_all",
        "licence": "Apache-2.0",
    },
    "ienhancer_2l": {
        "repository": "lhy0322/iEnhancer-BERT",
        "commit": "6a54f6d",
        "path": "examples/data_process_template/data",
        "licence": "MIT",
    },
    "ensemblesplice_hs3d_bal": {
        "repository": "OluwadareLab/EnsembleSplice",
        "commit": "e04aa5a",
        "path": "ENSdatasets/hs3d_bal",
        "licence": "MIT (stated in the source's code header)",
    },
}

# The GUE files name their validation split "dev"; we keep the name.
GUE_SPLITS = ("train", "dev", "test")


def read_fasta(path: Path) -> list[tuple[str, str]]:
    """(header, sequence) pairs of a FASTA file whose records may span several lines."""
    records: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            records.append((line[1:].strip(), ""))
        elif line.strip():
            header, seq = records[-1]
            records[-1] = (header, seq + line.strip())
    return records


def gue_rows(folder: Path, task: str) -> list[dict]:
    rows = []
    for split in GUE_SPLITS:
        with open(folder / f"{split}.csv", newline="") as fh:
            for i, rec in enumerate(csv.DictReader(fh), start=1):
                rows.append({"id": f"{task}_{split}_{i}", "sequence": rec["sequence"],
                             "label": int(rec["label"]), "split": split})
    return rows


def enhancer_rows(folder: Path, n_classes: int) -> list[dict]:
    """iEnhancer-2L. 2 classes: layer1 enhancer (1) vs non-enhancer (0). 3 classes: the
    enhancers split into layer2's strong / weak, plus layer1's non-enhancers as ``non``."""
    if n_classes == 2:
        files = [("layer1/{split}_enhancers.fa", "enhancer", 1),
                 ("layer1/{split}_nonenhancers.fa", "non", 0)]
    else:
        files = [("layer2/{split}_strong_enhancers.fa", "strong", "strong"),
                 ("layer2/{split}_weak_enhancers.fa", "weak", "weak"),
                 ("layer1/{split}_nonenhancers.fa", "non", "non")]
    rows = []
    for split in ("train", "test"):
        for pattern, tag, label in files:
            for header, seq in read_fasta(folder / pattern.format(split=split)):
                rows.append({"id": f"enh_{split}_{tag}_{header}", "sequence": seq,
                             "label": label, "split": split})
    return rows


def splice_rows(folder: Path) -> list[dict]:
    """HS3D: true donor and acceptor sites, and the decoys of both site types as ``none``.

    Decoys of both kinds map to one ``none`` class, so the probe has to tell a true site from a
    GT or AG that is not one; ``none`` is therefore twice the size of each site class.
    """
    rows = []
    for split, folder_name in (("train", "Train"), ("test", "Test")):
        for site in ("Donor", "Acceptor"):
            for kind in ("Positive", "Negative"):
                path = folder / folder_name / f"{site}_{folder_name}_{kind}.txt"
                label = site.lower() if kind == "Positive" else "none"
                tag = f"{site.lower()}_{'pos' if kind == 'Positive' else 'decoy'}"
                for header, seq in read_fasta(path):
                    number = header.split()[-1]
                    rows.append({"id": f"hs3d_{split}_{tag}_{number}", "sequence": seq,
                                 "label": label, "split": split})
    return rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quirks(rows: list[dict]) -> dict:
    """Duplicates by content (case-insensitive, as the readers see them) and non-ACGT letters."""
    by_split: dict[str, set[str]] = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(r["sequence"].upper())
    seqs = [r["sequence"].upper() for r in rows]
    letters = Counter(c for s in seqs for c in s if c not in "ACGT")
    label_by_seq: dict[str, set] = {}
    for r in rows:
        label_by_seq.setdefault(r["sequence"].upper(), set()).add(str(r["label"]))
    splits = sorted(by_split)
    shared = {f"{a}&{b}": len(by_split[a] & by_split[b])
              for i, a in enumerate(splits) for b in splits[i + 1:]}
    return {
        "rows": len(rows),
        "unique_sequences": len(set(seqs)),
        "sequences_in_two_splits": shared,
        "sequences_with_conflicting_labels": sum(len(v) > 1 for v in label_by_seq.values()),
        "lower_case_rows": sum(r["sequence"] != r["sequence"].upper() for r in rows),
        "non_acgt_letters": dict(sorted(letters.items())),
        "rows_with_non_acgt": sum(any(c not in "ACGT" for c in s) for s in seqs),
        "lengths": sorted({len(s) for s in seqs}) if len({len(s) for s in seqs}) <= 3
        else [min(len(s) for s in seqs), max(len(s) for s in seqs)],
    }


COLUMNS = ["id", "sequence", "label", "split"]


def csv_text(rows: list[dict]) -> str:
    """The canonical CSV text of a task; its sha256 is the task's content digest."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_task(rows: list[dict], path: Path) -> str:
    """Write a task as CSV, or as Parquet when ``path`` ends in .parquet; return its content
    digest (sha256 of the canonical CSV text, so Parquet files are checked by content, not by
    bytes that depend on the pyarrow version)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = csv_text(rows)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        import pandas as pd

        pd.read_csv(io.StringIO(text), dtype=str).to_parquet(tmp, compression="zstd",
                                                              index=False)
    else:
        tmp.write_text(text)
    tmp.replace(path)
    return hashlib.sha256(text.encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "data")
    args = parser.parse_args(argv)
    src: Path = args.source

    tasks = {
        "prom_300_tata": ("gue_prom_300_tata", gue_rows(src / "gue_prom_300_tata", "prom300")),
        # Used by the speed benchmark only; Parquet keeps its 59k rows at 1.5 MB.
        "prom_core_all": ("gue_prom_core_all", gue_rows(src / "gue_prom_core_all", "promcore")),
        "enhancers_2class": ("ienhancer_2l", enhancer_rows(src / "ienhancer_2l", 2)),
        "enhancers_3class": ("ienhancer_2l", enhancer_rows(src / "ienhancer_2l", 3)),
        "splice_3class": ("ensemblesplice_hs3d_bal", splice_rows(src / "ensemblesplice_hs3d_bal")),
    }
    manifest: dict = {"sources": {}, "tasks": {}}
    for name, meta in SOURCES.items():
        files = sorted(p for p in (src / name).rglob("*") if p.is_file())
        manifest["sources"][name] = {
            **meta, "files": {str(p.relative_to(src)): sha256(p) for p in files}}
    for task, (source, rows) in tasks.items():
        path = args.out / (f"{task}.parquet" if task == "prom_core_all" else f"{task}.csv")
        digest = write_task(rows, path)
        counts: dict[str, dict[str, int]] = {}
        for r in rows:
            split = counts.setdefault(r["split"], {})
            split[str(r["label"])] = split.get(str(r["label"]), 0) + 1
        manifest["tasks"][task] = {
            "file": path.name, "source": source, "content_sha256": digest,
            "classes": sorted({str(r["label"]) for r in rows}),
            "counts": {s: dict(sorted(c.items())) for s, c in counts.items()},
            "quirks": quirks(rows),
        }
        print(f"{path}: {len(rows)} rows")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
