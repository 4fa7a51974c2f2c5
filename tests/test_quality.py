"""Duplicate ids naming different sequences are counted and named, across chunks."""

import warnings

import numpy as np
import pandas as pd
import pytest

from embedcache.quality import DuplicateIdWarning, IdConflicts, duplicate_id_conflicts


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
