"""Splits: the file's own split first, else stratified or grouped; folds; train–test overlap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from classifiers.splits import assign_splits, cv_folds, shared_with_train
from embedcache.errors import InputError


def task(n=200, seed=0, with_groups=False):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": [f"s{i}" for i in range(n)],
                       "sequence": ["".join(rng.choice(list("ACGT"), 12)) for _ in range(n)],
                       "label": rng.choice([0, 1], n, p=[0.7, 0.3])})
    if with_groups:
        df["chrom"] = rng.choice([f"chr{i}" for i in range(1, 23)], n)
    return df


def test_file_split_column_is_used_and_dev_is_validation():
    df = task(9)
    df["split"] = ["train", "Train", "dev", "valid", "test", "TEST", "train", "validation", "test"]
    got = assign_splits(df)
    assert got.tolist() == ["train", "train", "validation", "validation", "test", "test",
                            "train", "validation", "test"]


def test_validation_is_carved_from_train_stratified_when_the_file_has_none():
    df = task(400)
    df["split"] = np.where(np.arange(400) < 300, "train", "test")
    got = assign_splits(df, validation_size=0.2, seed=1)
    assert (got[300:] == "test").all()
    val = df[got == "validation"]
    assert len(val) == 60
    assert val["label"].mean() == pytest.approx(df[:300]["label"].mean(), abs=0.02)


def test_random_split_is_stratified_and_seeded():
    df = task(500)
    a, b, c = (assign_splits(df, seed=s) for s in (3, 3, 4))
    assert a.equals(b) and not a.equals(c)
    counts = a.value_counts()
    assert counts["test"] == 100 and counts["validation"] == 40 and counts["train"] == 360
    for split in ("train", "validation", "test"):
        assert df[a == split]["label"].mean() == pytest.approx(df["label"].mean(), abs=0.02)


def test_grouped_split_never_lets_a_group_straddle():
    df = task(600, with_groups=True)
    got = assign_splits(df, group_by="chrom", seed=2)
    groups = {s: set(df.loc[got == s, "chrom"]) for s in ("train", "validation", "test")}
    assert groups["train"] and groups["validation"] and groups["test"]
    assert not groups["train"] & groups["test"]
    assert not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    assert 0.1 < (got == "test").mean() < 0.3


def test_separate_test_file_comes_first():
    train, test = task(100, seed=1), task(30, seed=2)
    got = assign_splits(train, test_table=test)
    assert len(got) == 130 and (got[100:] == "test").all() and (got[:100] != "test").all()
    assert (got[:100] == "validation").sum() == 10


def test_a_test_split_and_a_test_file_together_are_refused():
    df = task(10)
    df["split"] = ["train"] * 8 + ["test"] * 2
    with pytest.raises(InputError, match="separate test file"):
        assign_splits(df, test_table=task(5), source="tasks.csv")


@pytest.mark.parametrize("values, message", [
    (["train"] * 6 + ["holdout"] * 4, r"holds \['holdout'\]"),
    (["train"] * 6 + ["dev"] * 4, "no test rows"),
])
def test_bad_split_columns_name_the_file_and_the_fix(values, message):
    df = task(10)
    df["split"] = values
    with pytest.raises(InputError, match=message) as err:
        assign_splits(df, source="tasks.csv")
    assert "tasks.csv" in str(err.value)


def test_too_few_rows_to_stratify_is_a_clear_error():
    df = task(6)
    df["label"] = [0, 0, 0, 0, 0, 1]
    with pytest.raises(InputError, match="too few rows"):
        assign_splits(df, source="tiny.csv")


def test_cv_folds_partition_the_rows_and_are_stratified():
    df = task(300)
    folds = cv_folds(df["label"], n_folds=5, seed=0)
    tests = np.concatenate([t for _, t in folds])
    assert sorted(tests) == list(range(300))
    for train, test in folds:
        assert not set(train) & set(test)
        assert df["label"].iloc[test].mean() == pytest.approx(df["label"].mean(), abs=0.03)
    other = cv_folds(df["label"], n_folds=5, seed=1)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


def test_grouped_cv_folds_keep_groups_whole():
    df = task(300, with_groups=True)
    for train, test in cv_folds(df["label"], n_folds=4, seed=0, groups=df["chrom"]):
        assert not set(df["chrom"].iloc[train]) & set(df["chrom"].iloc[test])


def test_cv_refuses_more_folds_than_a_class_has_rows():
    with pytest.raises(InputError, match="fewer than the 5 folds"):
        cv_folds([0, 0, 0, 0, 0, 0, 1, 1, 1], n_folds=5)


def test_shared_with_train_is_by_content():
    got = shared_with_train(["ACGT", "GGGG"], ["TTTT", "ACGT", "GGGG", "acgt"])
    assert got.tolist() == [False, True, True, False]
