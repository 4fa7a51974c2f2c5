"""Saving and loading fitted probes: identical predictions, no pickle, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError

from classifiers import (
    ESTIMATORS,
    MLPClassifier,
    ModelFileError,
    ModelVersionError,
    load_estimator,
    make_estimator,
    save_estimator,
)
from embedcache.errors import InputError

FAST = {"mlp": {"max_epochs": 2}, "logistic": {}, "xgboost": {"n_estimators": 10},
        "layer-weighted": {"max_epochs": 2}}
FILES = {
    "mlp": ["model.json", "params.safetensors"],
    "logistic": ["model.json", "params.safetensors"],
    "xgboost": ["booster.json", "model.json"],
    "layer-weighted": ["model.json", "params.safetensors"],
}


def _task(n_classes, labels, n=90, n_features=5):
    rng = np.random.RandomState(n_classes)
    X = rng.normal(size=(n, n_features))
    y = np.arange(n) % n_classes
    X[:, 0] += 2.0 * y
    if labels == "str":
        return X, np.array(["alpha", "beta", "gamma"], dtype=object)[y]
    return X, y


@pytest.fixture(scope="module")
def fitted():
    """One fitted probe per kind, binary and three-class, integer and string labels."""
    out = {}
    for kind in ESTIMATORS:
        for n_classes in (2, 3):
            for labels in ("int", "str"):
                X, y = _task(n_classes, labels)
                out[kind, n_classes, labels] = make_estimator(kind, **FAST[kind]).fit(X, y), X
    return out


@pytest.mark.parametrize("labels", ["int", "str"])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("kind", list(ESTIMATORS))
def test_loaded_probe_predicts_identically(fitted, tmp_path, kind, n_classes, labels):
    est, X = fitted[kind, n_classes, labels]
    save_estimator(est, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == FILES[kind]
    loaded = load_estimator(tmp_path / "model")

    assert type(loaded) is type(est)
    assert loaded.get_params() == est.get_params()
    assert_array_equal(loaded.classes_, est.classes_)
    assert loaded.classes_.dtype == est.classes_.dtype
    assert loaded.n_features_in_ == est.n_features_in_
    assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    assert_array_equal(loaded.predict(X), est.predict(X))
    if hasattr(est, "decision_function"):
        assert_array_equal(loaded.decision_function(X), est.decision_function(X))
    # The loaded probe is still checked like a fitted one.
    with pytest.raises(ValueError, match="features"):
        loaded.predict(X[:, :2])


def test_manifest_records_what_and_how(fitted, tmp_path):
    est, _ = fitted["mlp", 2, "str"]
    save_estimator(est, tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())
    assert manifest["encoding"] == "embedcache.classifier"
    assert manifest["version"] == 1
    assert manifest["kind"] == "mlp"
    assert manifest["params"]["hidden_layer_sizes"] == [128, 64]
    assert manifest["classes"] == ["alpha", "beta"]
    assert manifest["n_features_in"] == 5
    assert {"embedcache", "numpy", "scikit-learn", "jax", "optax"} <= set(manifest["versions"])
    loaded = load_estimator(tmp_path / "m")
    assert loaded.history_ == est.history_
    assert loaded.best_epoch_ == est.best_epoch_
    assert loaded.get_params()["hidden_layer_sizes"] == (128, 64)


@pytest.mark.parametrize("kind", list(ESTIMATORS))
def test_no_pickle_in_the_files(fitted, tmp_path, kind):
    save_estimator(fitted[kind, 3, "int"][0], tmp_path / "m")
    for path in (tmp_path / "m").iterdir():
        data = path.read_bytes()
        # Pickle protocol 2+ streams start with PROTO (0x80); joblib writes pickles too.
        assert not data.startswith(b"\x80"), path.name


def test_feature_names_survive(tmp_path):
    X, y = _task(2, "int")
    frame = pd.DataFrame(X, columns=[f"dim_{i}" for i in range(X.shape[1])])
    est = make_estimator("logistic").fit(frame, y)
    save_estimator(est, tmp_path / "m")
    loaded = load_estimator(tmp_path / "m")
    assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame.set_axis([f"other_{i}" for i in range(X.shape[1])], axis=1))


def test_a_saved_model_is_replaced_whole(fitted, tmp_path):
    mlp, X = fitted["mlp", 2, "int"]
    booster, _ = fitted["xgboost", 2, "int"]
    save_estimator(mlp, tmp_path / "m")
    save_estimator(booster, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == FILES["xgboost"]
    assert_array_equal(load_estimator(tmp_path / "m").predict_proba(X), booster.predict_proba(X))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging or retired copies left


def test_an_interrupted_save_leaves_the_earlier_model(fitted, tmp_path, monkeypatch):
    first, X = fitted["logistic", 2, "int"]
    save_estimator(first, tmp_path / "m")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(MLPClassifier, "_save_state", crash)
    with pytest.raises(OSError, match="disk full"):
        save_estimator(fitted["mlp", 3, "int"][0], tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert_array_equal(load_estimator(tmp_path / "m").predict_proba(X), first.predict_proba(X))


def test_refuses_to_save_over_other_files(fitted, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"notes\.txt.*new or empty directory"):
        save_estimator(fitted["mlp", 2, "int"][0], tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_refuses_unfitted_and_foreign_estimators(tmp_path):
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(NotFittedError):
        save_estimator(make_estimator("mlp"), tmp_path / "m")
    with pytest.raises(TypeError, match="Only embedcache probes"):
        save_estimator(LogisticRegression(), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_unknown_version_names_known_ones_and_the_way_out(fitted, tmp_path):
    save_estimator(fitted["mlp", 2, "int"][0], tmp_path / "m")
    manifest_path = tmp_path / "m" / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = 7
    manifest["versions"]["embedcache"] = "9.0"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelVersionError) as info:
        load_estimator(tmp_path / "m")
    message = str(info.value)
    assert "version 7" in message and "reads version(s) 1" in message
    assert "Re-fit" in message and "embedcache 9.0" in message
    assert str(manifest_path) in message


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelFileError, match=r"model\.json not found"):
        load_estimator(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"encoding": "something.else", "version": 1}))
    with pytest.raises(ModelFileError, match="not an embedcache classifier"):
        load_estimator(tmp_path)


@pytest.mark.parametrize(
    "kind, name, damage",
    [
        ("mlp", "model.json", lambda p: p.write_text('{"encoding": "embedcache.classifier", ')),
        ("mlp", "params.safetensors", lambda p: p.write_bytes(p.read_bytes()[:40])),
        ("mlp", "params.safetensors", lambda p: p.unlink()),
        ("logistic", "params.safetensors", lambda p: p.write_bytes(b"\x00" * 16)),
        ("xgboost", "booster.json", lambda p: p.write_text(p.read_text()[:200])),
        ("xgboost", "booster.json", lambda p: p.unlink()),
    ],
)
def test_damaged_or_missing_file_is_named(fitted, tmp_path, kind, name, damage):
    save_estimator(fitted[kind, 2, "int"][0], tmp_path / "m")
    damage(tmp_path / "m" / name)
    with pytest.raises(ModelFileError, match="re-fit") as info:
        load_estimator(tmp_path / "m")
    assert str(tmp_path / "m" / name) in str(info.value)


def test_arrays_that_do_not_match_the_manifest_are_refused(fitted, tmp_path):
    from safetensors.numpy import load_file, save_file

    save_estimator(fitted["mlp", 3, "int"][0], tmp_path / "m")
    path = tmp_path / "m" / "params.safetensors"
    arrays = load_file(str(path))
    arrays["output.weight"] = arrays["output.weight"][:, :2].copy()
    save_file(arrays, str(path))
    with pytest.raises(ModelFileError, match="do not fit 5 features and 3 classes"):
        load_estimator(tmp_path / "m")


@pytest.mark.parametrize("kind", ["mlp", "logistic", "xgboost"])
def test_models_saved_by_the_previous_release_still_load(kind):
    from pathlib import Path

    golden = Path(__file__).parents[1] / "golden" / "classifier_v1"
    expected = json.loads((golden / "expected.json").read_text())
    loaded = load_estimator(golden / kind)
    assert loaded.classes_.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(loaded.predict_proba(np.array(expected["X"])), expected[kind],
                               rtol=1e-6, atol=1e-7)
