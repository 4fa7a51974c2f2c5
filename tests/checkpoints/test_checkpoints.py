"""Checkpoint resolution, safe loading, conversion and the parameter digest."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
from conftest import TINY_V1_HP, TINY_V2, TINY_V2_HP, make_weights, write_checkpoint
from typer.testing import CliRunner

from embedcache import checkpoints
from embedcache.checkpoints import (
    CONVERTED_FILE,
    PICKLE_FILE,
    RELEASED_MODELS,
    convert_checkpoint,
    load_checkpoint,
    parameter_digest,
    resolve_checkpoint,
)
from embedcache.errors import CheckpointError, UnsafeCheckpointError

EMBED = "esm_transformer/~/embed"
POSITIONS = "esm_transformer/~/esm_learned_positional_embeddings/~/embed"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    """No test may reach the hub; embedcache's home is private to each test."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("EMBEDCACHE_HOME", str(tmp_path / "embedcache_home"))


@pytest.fixture
def golden_copy(tiny_v2_checkpoint, tmp_path) -> Path:
    """A writable copy of the golden checkpoint directory."""
    return Path(shutil.copytree(tiny_v2_checkpoint, tmp_path / "tiny_v2"))


def _arrays(ckpt):
    return {f"{m}:{n}": a for m, leaves in ckpt.params.items() for n, a in leaves.items()}


def _dump(params, directory: Path, hyperparams=TINY_V2_HP, **joblib_kwargs) -> Path:
    (directory / "jax_model").mkdir(parents=True, exist_ok=True)
    (directory / "jax_model" / "hyperparams.json").write_text(json.dumps(hyperparams))
    joblib.dump(params, directory / PICKLE_FILE, **joblib_kwargs)
    return directory


# --- loading ------------------------------------------------------------------------------


def test_golden_checkpoint_loads_with_the_manifest_arrays(tiny_v2_checkpoint):
    manifest = json.loads((TINY_V2 / "weights_manifest.json").read_text())["params"]
    ckpt = load_checkpoint(tiny_v2_checkpoint)

    assert ckpt.variant == "v2"
    assert ckpt.name == "checkpoint"
    for key, value in TINY_V2_HP.items():
        assert ckpt.hyperparams[key] == value
    assert ckpt.hyperparams["key_dim"] == 16
    arrays = _arrays(ckpt)
    assert sorted(arrays) == sorted(manifest)
    for key, array in arrays.items():
        assert array.dtype == np.float32
        assert list(array.shape) == manifest[key]["shape"]
        assert hashlib.sha256(array.tobytes()).hexdigest() == manifest[key]["sha256"], key
    assert len(ckpt.digest) == 64 and int(ckpt.digest, 16) >= 0


def test_config_and_tokenizer_follow_the_checkpoint(tiny_v2_checkpoint):
    ckpt = load_checkpoint(tiny_v2_checkpoint)
    config = ckpt.config
    assert (config.num_layers, config.embed_dim, config.attention_heads) == (2, 64, 4)
    assert config.alphabet_size == ckpt.params[EMBED]["embeddings"].shape[0] == 4107
    assert ckpt.tokenizer().model_alphabet_size == 4107


def test_jax_model_directory_itself_is_accepted(tiny_v2_checkpoint):
    assert resolve_checkpoint(tiny_v2_checkpoint / "jax_model") == tiny_v2_checkpoint.absolute()
    assert load_checkpoint(tiny_v2_checkpoint / "jax_model").name == "checkpoint"


def test_renamed_form_gives_identical_arrays_and_digest(tiny_v2_checkpoint, tmp_path):
    renamed = write_checkpoint(tmp_path / "renamed", TINY_V2_HP, seed=0, names="renamed",
                               model_name="50M_multi_species_v2")
    on_disk_keys = joblib.load(renamed / PICKLE_FILE).keys()
    assert any(k.startswith("nucleotide_transformer50M_multi_species_v2") for k in on_disk_keys)
    assert any("self_attention" in k for k in on_disk_keys)

    golden, other = load_checkpoint(tiny_v2_checkpoint), load_checkpoint(renamed)
    assert other.digest == golden.digest
    a, b = _arrays(golden), _arrays(other)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_digest_changes_with_the_weights_and_the_architecture(tiny_v2_checkpoint, tmp_path):
    golden = load_checkpoint(tiny_v2_checkpoint)
    reseeded = load_checkpoint(write_checkpoint(tmp_path / "seed1", TINY_V2_HP, seed=1))
    assert reseeded.digest != golden.digest

    # Same arrays, one architecture flag changed that the shapes do not show.
    assert parameter_digest({**golden.hyperparams, "token_dropout": True}, "v2", golden.params) != golden.digest
    # Spelling out a default is not a different architecture.
    sparse = {k: v for k, v in golden.hyperparams.items() if k != "key_dim"}
    assert parameter_digest(sparse, "v2", golden.params) == golden.digest


def test_v1_checkpoint_loads_with_learned_positions_and_defaults(tiny_v1_checkpoint):
    ckpt = load_checkpoint(tiny_v1_checkpoint)
    assert ckpt.variant == "v1"
    assert ckpt.hyperparams["positional_embedding"] == "learned"
    assert ckpt.hyperparams["add_bias_ffn"] is True
    assert ckpt.hyperparams["ffn_activation_name"] == "gelu-no-approx"
    assert ckpt.hyperparams["key_dim"] == 32 // 4
    assert ckpt.params[EMBED]["embeddings"].shape == (4**6 + 9, 32)
    assert ckpt.params[POSITIONS]["embeddings"].shape == (TINY_V1_HP["max_positions"] + 2, 32)
    assert ckpt.params["esm_transformer/attention_layer_1/~/fc1"]["b"].shape == (64,)


def test_variant_comes_from_the_embedding_table(tmp_path):
    # Learned positions (no rotary) but a v2-sized vocabulary: the table decides.
    params = make_weights.build_params(TINY_V1_HP, seed=3, variant="v2")
    ckpt = load_checkpoint(_dump(params, tmp_path / "v2vocab", TINY_V1_HP))
    assert ckpt.variant == "v2"
    assert ckpt.params[EMBED]["embeddings"].shape[0] == 4**6 + 11


def test_compressed_joblib_loads(tiny_v2_checkpoint, tmp_path):
    golden = load_checkpoint(tiny_v2_checkpoint)
    raw = joblib.load(tiny_v2_checkpoint / PICKLE_FILE)  # trusted golden file
    compressed = _dump(raw, tmp_path / "compressed", compress=3)
    assert load_checkpoint(compressed).digest == golden.digest


def test_mismatched_parameters_are_listed(tiny_v2_checkpoint, tmp_path):
    params = joblib.load(tiny_v2_checkpoint / PICKLE_FILE)
    del params["esm_transformer/attention_layer_1/~/fc2"]["w"]
    params["esm_transformer/~/extra"] = {"w": np.zeros(3, np.float32)}
    params["esm_transformer/attention_layer_0/~/mha/query"]["w"] = np.zeros((64, 32), np.float32)

    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_dump(params, tmp_path / "bad"))
    message = str(err.value)
    assert str(tmp_path / "bad" / PICKLE_FILE) in message
    assert "missing esm_transformer/attention_layer_1/~/fc2:w (128, 64)" in message
    assert "unexpected esm_transformer/~/extra:w" in message
    assert "wrong shape esm_transformer/attention_layer_0/~/mha/query:w is (64, 32), expected (64, 64)" in message


def test_hyperparams_that_do_not_fit_the_weights(tiny_v2_checkpoint, tmp_path):
    params = joblib.load(tiny_v2_checkpoint / PICKLE_FILE)
    with pytest.raises(CheckpointError, match=r"says num_layers 3, but the weights hold 2 \(attention_layer_ 0..1\)"):
        load_checkpoint(_dump(params, tmp_path / "three", {**TINY_V2_HP, "num_layers": 3}))


def test_missing_hyperparameter_is_named(tiny_v2_checkpoint, tmp_path):
    params = joblib.load(tiny_v2_checkpoint / PICKLE_FILE)
    hp = {k: v for k, v in TINY_V2_HP.items() if k != "embed_dim"}
    with pytest.raises(CheckpointError, match=r"hyperparams\.json lacks the hyperparameters \['embed_dim'\]"):
        load_checkpoint(_dump(params, tmp_path / "nohp", hp))


@pytest.mark.parametrize("leaf", [np.arange(4, dtype=np.int32), "text"])
def test_non_float_leaf_is_refused(tiny_v2_checkpoint, tmp_path, leaf):
    params = joblib.load(tiny_v2_checkpoint / PICKLE_FILE)
    params["esm_transformer/~/embed"]["embeddings"] = leaf
    with pytest.raises(CheckpointError, match="esm_transformer/~/embed:embeddings is .*not a floating-point array"):
        load_checkpoint(_dump(params, tmp_path / "ints"))


def test_missing_and_corrupt_files(tiny_v2_checkpoint, tmp_path):
    empty = tmp_path / "empty"
    (empty / "jax_model").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(empty)

    no_hp = tmp_path / "no_hp"
    (no_hp / "jax_model").mkdir(parents=True)
    shutil.copy(tiny_v2_checkpoint / PICKLE_FILE, no_hp / PICKLE_FILE)
    with pytest.raises(CheckpointError, match="hyperparams.json"):
        load_checkpoint(no_hp)

    truncated = _dump({}, tmp_path / "truncated")
    data = (tiny_v2_checkpoint / PICKLE_FILE).read_bytes()
    (truncated / PICKLE_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable joblib checkpoint"):
        load_checkpoint(truncated)


# --- the restricted unpickler -------------------------------------------------------------


class _Payload:
    """Creates a marker file when unpickled by an unrestricted loader."""

    def __init__(self, marker: Path, how: str):
        self.marker, self.how = str(marker), how

    def __reduce__(self):
        if self.how == "os.system":
            return os.system, (f"touch {self.marker}",)
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


def _malicious_file(directory: Path, payload: _Payload, form: str) -> Path:
    tree = {EMBED: {"embeddings": np.zeros((4, 4), np.float32)}, "evil": {"x": payload}}
    if form == "pickle":
        directory.joinpath("jax_model").mkdir(parents=True)
        directory.joinpath("jax_model", "hyperparams.json").write_text(json.dumps(TINY_V2_HP))
        directory.joinpath(PICKLE_FILE).write_bytes(pickle.dumps(tree))
    elif form == "object-array":
        holder = np.empty(1, dtype=object)
        holder[0] = payload
        _dump({EMBED: {"embeddings": holder}}, directory)
    else:
        _dump(tree, directory, **({"compress": 3} if form == "joblib-compressed" else {}))
    return directory


@pytest.mark.parametrize("how", ["os.system", "exec"])
@pytest.mark.parametrize("form", ["pickle", "joblib", "joblib-compressed", "object-array"])
def test_malicious_pickle_is_refused_before_it_runs(tmp_path, how, form):
    marker = tmp_path / "pwned"
    directory = _malicious_file(tmp_path / "evil", _Payload(marker, how), form)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(directory)
    assert not marker.exists()
    assert str(directory / PICKLE_FILE) in str(err.value)
    assert "embedcache convert" in str(err.value)
    if form != "object-array":
        assert ("posix.system" if how == "os.system" else "builtins.exec") in str(err.value)


def test_the_malicious_payload_is_real(tmp_path):
    """Guards the test above: an ordinary unpickler does run the payload."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Payload(marker, "exec")))
    assert marker.exists()


# --- conversion ---------------------------------------------------------------------------


def test_convert_in_place_round_trips_and_never_unpickles_again(golden_copy):
    original = load_checkpoint(golden_copy)
    out = convert_checkpoint(golden_copy)
    assert out == golden_copy
    assert (golden_copy / CONVERTED_FILE).is_file()
    assert not [p for p in (golden_copy / "jax_model").iterdir() if p.name.endswith(".tmp")]

    # A pickle that would fail to load proves the converted copy is what is read.
    (golden_copy / PICKLE_FILE).write_bytes(b"not a pickle")
    converted = load_checkpoint(golden_copy)
    (golden_copy / PICKLE_FILE).unlink()
    again = load_checkpoint(golden_copy)

    for ckpt in (converted, again):
        assert (ckpt.name, ckpt.variant, ckpt.digest) == (original.name, original.variant, original.digest)
        assert ckpt.hyperparams == original.hyperparams
        a, b = _arrays(original), _arrays(ckpt)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # The stored digest is the one the arrays hash to.
    assert parameter_digest(again.hyperparams, again.variant, again.params) == original.digest


def test_convert_to_another_directory(golden_copy, tmp_path):
    out = convert_checkpoint(golden_copy, tmp_path / "converted")
    assert sorted(p.name for p in (out / "jax_model").iterdir()) == ["hyperparams.json", "params.safetensors"]
    ckpt = load_checkpoint(out)
    assert ckpt.name == "tiny_v2"  # the source's name travels with the copy
    assert ckpt.digest == load_checkpoint(golden_copy).digest


def test_interrupted_conversion_leaves_nothing(golden_copy, monkeypatch):
    import safetensors.numpy

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", crash)
    before = sorted(p.name for p in (golden_copy / "jax_model").iterdir())
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(golden_copy)
    assert sorted(p.name for p in (golden_copy / "jax_model").iterdir()) == before


def _rewrite_metadata(path: Path, **changes) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), {**meta, **changes})


def test_unknown_converted_version_is_refused(golden_copy):
    convert_checkpoint(golden_copy)
    _rewrite_metadata(golden_copy / CONVERTED_FILE, embedcache_format_version="99")
    with pytest.raises(CheckpointError, match=r"version '99'; this release knows version '1'"):
        load_checkpoint(golden_copy)


def test_stale_or_damaged_converted_copy_is_refused(golden_copy):
    convert_checkpoint(golden_copy)
    hp_path = golden_copy / "jax_model" / "hyperparams.json"
    hp_path.write_text(json.dumps({**TINY_V2_HP, "token_dropout": True}))
    with pytest.raises(CheckpointError, match="stale"):
        load_checkpoint(golden_copy)

    hp_path.write_text(json.dumps(TINY_V2_HP))
    data = (golden_copy / CONVERTED_FILE).read_bytes()
    (golden_copy / CONVERTED_FILE).write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match="params.safetensors is damaged"):
        load_checkpoint(golden_copy)


# --- released names and the Hugging Face cache --------------------------------------------


def _fake_hub_cache(cache: Path, name: str, source: Path) -> Path:
    repo = RELEASED_MODELS[name]
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    shutil.copytree(source / "jax_model", snapshot / "jax_model")
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    return snapshot


def test_released_name_resolves_from_the_local_hub_cache(tiny_v2_checkpoint, tmp_path):
    snapshot = _fake_hub_cache(tmp_path / "hf", "50M_multi_species_v2", tiny_v2_checkpoint)
    assert resolve_checkpoint("50M_multi_species_v2", cache_dir=tmp_path / "hf") == snapshot
    ckpt = load_checkpoint("50M_multi_species_v2", cache_dir=tmp_path / "hf")
    assert ckpt.name == "50M_multi_species_v2"
    assert ckpt.digest == load_checkpoint(tiny_v2_checkpoint).digest


@pytest.mark.parametrize("name, k", [("1B_agro_nt", 6), ("codon_nt", 3), ("50M_3mer_multi_species_v2", 3)])
def test_agront_and_codon_nt_resolve_by_name_offline(name, k, tmp_path, monkeypatch):
    """AgroNT and Codon-NT (also under the official code's other name) resolve like the others:
    from the local Hugging Face cache, with the hub offline, to the same model as the directory."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = write_checkpoint(tmp_path / "src", {**TINY_V2_HP, "k_for_kmers": k}, seed=5)
    canonical = checkpoints.ALIASES.get(name, name)
    snapshot = _fake_hub_cache(tmp_path / "hf", canonical, source)
    assert resolve_checkpoint(name, cache_dir=tmp_path / "hf") == snapshot
    ckpt = load_checkpoint(name, cache_dir=tmp_path / "hf")
    assert ckpt.name == canonical and ckpt.digest == load_checkpoint(source).digest
    assert ckpt.tokenizer().k == k


def test_models_command_lists_agront_and_codon_nt(monkeypatch, tmp_path):
    from cli.embedcache_app import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:-1] if line.strip()}
    assert "AgroNT" in lines["1B_agro_nt"] and "6-mer" in lines["1B_agro_nt"]
    assert "Codon-NT" in lines["codon_nt"] and "3-mer" in lines["codon_nt"]


def test_offline_without_a_copy_says_what_to_download(tmp_path):
    cache = tmp_path / "empty_hf"
    with pytest.raises(CheckpointError) as err:
        load_checkpoint("500M_human_ref", cache_dir=cache)
    message = str(err.value)
    for needed in ("InstaDeepAI/nucleotide-transformer-500m-human-ref", "jax_model/hyperparams.json",
                   "jax_model/pytree_ckpt.joblib", str(cache), "hf download", "--model PATH", "offline"):
        assert needed in message


def test_converted_copy_in_home_is_preferred(tiny_v2_checkpoint, tmp_path):
    hub = tmp_path / "hf"
    _fake_hub_cache(hub, "50M_multi_species_v2", tiny_v2_checkpoint)
    out = convert_checkpoint("50M_multi_species_v2", cache_dir=hub)
    assert out == checkpoints.embedcache_home() / "checkpoints" / "50M_multi_species_v2"

    shutil.rmtree(hub)  # the hub copy is gone; the converted one answers
    assert resolve_checkpoint("50M_multi_species_v2", cache_dir=hub) == out
    ckpt = load_checkpoint("50M_multi_species_v2", cache_dir=hub)
    assert ckpt.name == "50M_multi_species_v2"
    assert ckpt.digest == load_checkpoint(tiny_v2_checkpoint).digest


def test_unknown_name_lists_the_released_ones(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint("70M_imaginary")
    assert "'70M_imaginary'" in str(err.value)
    for name in RELEASED_MODELS:
        assert name in str(err.value)


# --- command line ---------------------------------------------------------------------------


def test_cli_convert_prints_where_and_the_digest(golden_copy, tmp_path):
    from cli.embedcache_app import app

    result = CliRunner().invoke(app, ["convert", str(golden_copy), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "out" / CONVERTED_FILE) in result.output
    assert f"digest {load_checkpoint(golden_copy).digest}" in result.output


def test_cli_convert_unknown_model_is_a_checkpoint_error():
    from cli.embedcache_app import app

    result = CliRunner().invoke(app, ["convert", "70M_imaginary"])
    assert isinstance(result.exception, CheckpointError)


# --- random weights for running the pipeline without the released weights ------------------


def test_random_checkpoint_is_the_released_architecture_and_deterministic():
    from embedcache.checkpoints import RELEASED_ARCHITECTURES, parameter_shapes, random_checkpoint

    a = random_checkpoint("50M_multi_species_v2")
    b = load_checkpoint("random-50M_multi_species_v2")
    assert a.random_weights and a.name == "random-50M_multi_species_v2" and a.variant == "v2"
    assert a.digest == b.digest
    assert random_checkpoint("50M_multi_species_v2", seed=1).digest != a.digest
    expected = parameter_shapes(RELEASED_ARCHITECTURES["50M_multi_species_v2"], "v2")
    got = {(m, n): v.shape for m, leaves in a.params.items() for n, v in leaves.items()}
    assert got == expected
    w = a.params["esm_transformer/attention_layer_0/~/fc1"]["w"]
    assert w.dtype == np.float32 and abs(float(w.std()) - 512 ** -0.5) < 1e-3


def test_missing_weights_fall_back_on_random_weights_only_when_allowed(tmp_path, monkeypatch):
    from embedcache.checkpoints import RandomWeightsWarning

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EMBEDCACHE_HOME", str(tmp_path / "home"))
    with pytest.raises(CheckpointError, match="not available"):
        load_checkpoint("50M_multi_species_v2", cache_dir=tmp_path / "hub")
    with pytest.warns(RandomWeightsWarning, match="RANDOM WEIGHTS"):
        ckpt = load_checkpoint("50M_multi_species_v2", cache_dir=tmp_path / "hub", allow_random_weights=True)
    assert ckpt.random_weights and ckpt.name.startswith("random-")
    # a released model without a recorded architecture still fails loudly
    with pytest.raises(CheckpointError):
        load_checkpoint("500M_human_ref", cache_dir=tmp_path / "hub", allow_random_weights=True)
