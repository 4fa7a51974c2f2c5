"""Evaluation of variant scores: AUROC/AUPRC equal scikit-learn's on the output columns, intervals, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from classifiers.variant_eval import evaluate_variant_scores, write_variant_report
from embedcache.variants.labels import binary_labels
from embedcache.errors import InputError


def scored_table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    table = pd.DataFrame({
        "id": [f"v{i}" for i in range(n)],
        "cosine_L2_mean": rng.random(n) + 0.5 * y,
        "llr": -rng.random(n) - 0.8 * y,
        "label": np.where(y, "LOF", "FUNC").astype(object),
    })
    table.loc[[3, 7], "label"] = None  # missing labels
    table.loc[[10, 11, 12], "llr"] = np.nan  # indels: no llr
    return table


def test_metrics_equal_scikit_learn_on_the_columns_with_the_damaging_sign():
    table = scored_table()
    ev = evaluate_variant_scores(table, ["cosine_L2_mean", "llr"], positive="LOF", n_resamples=300)
    labelled = table[table.label.notna()]
    y = (labelled.label == "LOF").to_numpy()
    assert ev["n_missing_label"] == 2 and ev["n_variants"] == 300
    cos = ev["scores"]["cosine_L2_mean"]
    assert cos["auroc"] == pytest.approx(roc_auc_score(y, labelled.cosine_L2_mean), abs=1e-12)
    assert cos["auprc"] == pytest.approx(average_precision_score(y, labelled.cosine_L2_mean), abs=1e-12)
    ok = labelled.llr.notna().to_numpy()
    assert ev["scores"]["llr"]["auroc"] == pytest.approx(roc_auc_score(y[ok], -labelled.llr[ok]), abs=1e-12)
    assert ev["scores"]["llr"]["n_without_score"] == 3 and ev["scores"]["llr"]["n"] == 295
    for m in ev["scores"].values():
        low, high = m["intervals"]["auroc"]
        assert low < m["auroc"] < high and m["auroc"] > 0.7  # the planted signal
    again = evaluate_variant_scores(table, ["cosine_L2_mean"], positive="LOF", n_resamples=300)
    assert again["scores"]["cosine_L2_mean"]["intervals"] == cos["intervals"]  # seeded


def test_labels_must_be_binary_unless_a_positive_class_is_named():
    pos, has = binary_labels(["1", "0", None, "1.0", "false"])
    assert pos.tolist() == [True, False, False, True, False] and has.tolist() == [True, True, False, True, True]
    with pytest.raises(InputError, match=r"labels 'FUNC', 'LOF' are not 0/1.*--positive FUNC"):
        binary_labels(["LOF", "FUNC"])
    # A --positive no label has (e.g. a table whose labels are already 0/1) is a mistake, not "all negative".
    with pytest.raises(InputError, match=r"v.csv: no label equals --positive 'pathogenic' \(labels seen: '0', '1'\)"):
        binary_labels(["1", "0", None], "pathogenic", source="v.csv")


def test_report_files(tmp_path):
    table = scored_table()
    ev = evaluate_variant_scores(table, ["cosine_L2_mean", "llr"], positive="LOF", n_resamples=100)
    files = write_variant_report(tmp_path / "rep", table, ev, positive="LOF",
                                 provenance={"model": "tiny", "random_weights": True})
    record = json.loads(files["metrics"].read_text())
    assert record["variant_scores"]["scores"]["llr"]["auroc"] == pytest.approx(ev["scores"]["llr"]["auroc"])
    html = files["report"].read_text()
    assert "random weights show the pipeline, not biology" in html and "-llr" in html
    assert html.count("data:image/png;base64,") == 2
    assert files["roc"].read_bytes()[:4] == b"\x89PNG"
