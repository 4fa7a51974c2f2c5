"""Duplicate ids naming different sequences are counted and named, across chunks."""

import warnings

import pandas as pd
import pytest

from embedcache.sequences.quality import DuplicateIdWarning, IdConflicts, duplicate_id_conflicts


def test_conflicts_across_chunks_are_counted_once_and_named():
    c = IdConflicts("x.fa")
    c.update(["a", "b", "c"], ["ACGT", "CCCC", "GGGG"])
    c.update(["a", "b", "d"], ["ACGT", "CCCA", "TTTT"])   # a: same sequence again (fine); b: different
    c.update(["b", "c", "c"], ["AAAA", "GGGT", "GGGA"])   # b again (counted once), c differs twice
    assert c.count == 2 and c.examples == ["b", "c"]
    text = c.message()
    assert text.startswith("x.fa: 2 id(s)") and "'b', 'c'" in text and "unique id" in text
    with pytest.warns(DuplicateIdWarning, match="x.fa: 2 id"):
        c.warn()


def test_clean_input_is_silent_and_examples_are_capped():
    clean = duplicate_id_conflicts(pd.DataFrame({"id": ["a", "b"], "sequence": ["AC", "AC"]}), "t.csv")
    assert clean.message() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean.warn()
    ids = [f"r{i}" for i in range(20)]
    many = IdConflicts("big.csv")
    many.update(ids + ids, ["A"] * 20 + ["C"] * 20)
    assert many.count == 20 and len(many.examples) == 5


def test_build_and_classify_warn(tmp_path, jax_compile_cache):
    import subprocess
    import sys
    from pathlib import Path

    from classifiers.features import read_task

    task = tmp_path / "t.csv"
    pd.DataFrame({"id": ["d1", "d1", "d2"], "sequence": ["ACGT", "TTTT", "CCCC"], "label": [0, 1, 0]}).to_csv(
        task, index=False)
    with pytest.warns(DuplicateIdWarning, match=r"t.csv: 1 id\(s\) .*'d1'"):
        table = read_task(task)
    assert len(table) == 3  # warned, not refused
    # On the command line it reads as a warning, not as a Python warning line.
    from embedcache import EmbeddingCache

    root = Path(__file__).parents[2]
    with pytest.warns(DuplicateIdWarning, match=r"t.csv: 1 id\(s\)"):  # the build warns too
        EmbeddingCache(tmp_path / "c.zarr").build(str(task), model=str(root / "tests/golden/tiny_v2/checkpoint"),
                                                  max_tokens=64, quiet=True)
    done = subprocess.run([sys.executable, "-m", "cli.classify_app", "fit", "--probe", "logistic", "--data",
                           str(task), "--cache", str(tmp_path / "c.zarr"), "--out", str(tmp_path / "run")],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert "warning: " in done.stderr and "'d1'" in done.stderr and "DuplicateIdWarning" not in done.stderr
