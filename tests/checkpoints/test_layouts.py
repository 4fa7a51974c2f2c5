"""The Hugging Face layouts: transformers' ESM layout of v1/v2 is the same model as its JAX copy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_V2
from conftest import FAST, short_seqs

import embedcache.families.nt.forward
from embedcache import EmbeddingCache
from embedcache.checkpoints import load_checkpoint
from embedcache.errors import CheckpointError
from embedcache.families.nt.forward import forward, prepare_params

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

GOLD = np.load(TINY_V2 / "golden.npz")
_LAYER_MODULES = {
    "mha/query": "attention.self.query", "mha/key": "attention.self.key", "mha/value": "attention.self.value",
    "mha/mha_output": "attention.output.dense", "mha_layer_norm": "attention.LayerNorm",
    "fc1": "intermediate.dense", "fc2": "output.dense", "final_layer_norm": "LayerNorm",
}
_HEAD = {
    "emb_layer_norm_after": "esm.encoder.emb_layer_norm_after", "lm_head_fc_1": "lm_head.dense",
    "lm_head_layer_norm": "lm_head.layer_norm", "lm_final_fc": "lm_head.decoder",
}


def _esm_name(module: str, pname: str) -> str:
    """What transformers calls an official parameter (written independently of the loader)."""
    suffix = {"w": "weight", "b": "bias", "scale": "weight", "offset": "bias", "embeddings": "weight"}[pname]
    if module.endswith("/~/embed") and "positional" not in module:
        return "esm.embeddings.word_embeddings.weight"
    m = re.match(r"esm_transformer/attention_layer_(\d+)/~/(.+)$", module)
    if m:
        return f"esm.encoder.layer.{m.group(1)}.{_LAYER_MODULES[m.group(2)]}.{suffix}"
    head = _HEAD[module.rsplit("/", 1)[-1]]
    if head == "lm_head.decoder" and pname == "b":
        return "lm_head.bias"
    return f"{head}.{suffix}"


def write_transformers_layout(ckpt, out: Path, **config_changes) -> Path:
    """tiny_v2's weights as transformers' EsmForMaskedLM saves them, with its config.json."""
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    hp = ckpt.hyperparams
    tensors = {
        _esm_name(module, pname): np.ascontiguousarray(a.T if pname == "w" else a)
        for module, leaves in ckpt.params.items() for pname, a in leaves.items()
    }
    # Buffers and ESM's contact head ride along in real files; they are not NT parameters.
    tensors["esm.contact_head.regression.weight"] = np.zeros((1, 8), np.float32)
    tensors["esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq"] = np.ones(8, np.float32)
    save_file(tensors, str(out / "model.safetensors"))
    config = {
        "architectures": ["EsmForMaskedLM"], "add_bias_fnn": False, "emb_layer_norm_before": False,
        "hidden_size": hp["embed_dim"], "intermediate_size": hp["ffn_embed_dim"], "layer_norm_eps": 1e-12,
        "max_position_embeddings": hp["max_positions"] + 2, "num_attention_heads": hp["attention_heads"],
        "num_hidden_layers": hp["num_layers"], "pad_token_id": 1, "mask_token_id": 2,
        "position_embedding_type": "rotary", "token_dropout": False, "vocab_size": 4107,
        "tie_word_embeddings": False, **config_changes,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


@pytest.fixture(scope="module")
def jax_copy():
    return load_checkpoint(TINY_V2 / "checkpoint")


@pytest.fixture(scope="module")
def esm_dir(jax_copy, tmp_path_factory):
    return write_transformers_layout(jax_copy, tmp_path_factory.mktemp("esm") / "tiny_v2_hf")


def test_same_model_as_the_jax_copy(jax_copy, esm_dir):
    esm = load_checkpoint(esm_dir)
    assert esm.layout == "transformers" and esm.variant == "v2"
    assert esm.digest == jax_copy.digest
    assert esm.params.keys() == jax_copy.params.keys()
    for module, leaves in jax_copy.params.items():
        for pname, a in leaves.items():
            np.testing.assert_array_equal(esm.params[module][pname], a)


def test_golden_outputs_with_the_official_epsilon(jax_copy, esm_dir, monkeypatch):
    esm = load_checkpoint(esm_dir)
    layers = (1, 2)
    out = forward(prepare_params(esm.params), GOLD["tokens"], config=esm.config, layers=layers, logits=True)
    for i, n in enumerate(GOLD["n_real_tokens"]):
        for layer in layers:
            np.testing.assert_allclose(np.asarray(out["embeddings"][layer][i, :n]), GOLD[f"embeddings_{layer}__s{i}"],
                                       atol=1e-4, rtol=1e-4)
    # config.json says layer_norm_eps 1e-12 (transformers' ESM default); the released JAX
    # models use 1e-5, and so do we. Measure what the config's value would change here.
    monkeypatch.setattr(embedcache.families.nt.forward, "_LAYER_NORM_EPS", 1e-12)
    other = forward(prepare_params(esm.params), GOLD["tokens"], config=esm.config, layers=layers)
    n = GOLD["n_real_tokens"]
    diff = max(float(np.abs(np.asarray(other["embeddings"][2][i, :k]) - np.asarray(out["embeddings"][2][i, :k])).max())
               for i, k in enumerate(n))
    assert 0 < diff < 1e-3  # small on these weights (activations ~1); the README gives the figure


def test_a_store_built_from_one_layout_is_reused_by_the_other(jax_copy, esm_dir, tmp_path):
    seqs = short_seqs(6, seed=5)
    cache = EmbeddingCache(tmp_path / "c.zarr")
    first = cache.build(seqs, model=TINY_V2 / "checkpoint", layers=[2], pools=["mean"], **FAST)
    assert first.computed == 6
    again = cache.build(seqs, model=esm_dir, layers=[2], pools=["mean"], **FAST)
    assert (again.computed, again.reused, again.new_rows) == (0, 6, 0)
    assert len(cache.models()) == 1
    np.testing.assert_array_equal(cache.embeddings(seqs, model=esm_dir, layer=2, pool="mean"),
                                  cache.embeddings(seqs, model=TINY_V2 / "checkpoint", layer=2, pool="mean"))


def test_pytorch_pickle_is_refused_naming_the_safetensors_file(esm_dir, tmp_path):
    d = tmp_path / "torch_only"
    d.mkdir()
    (d / "config.json").write_text((esm_dir / "config.json").read_text())
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02not really a torch pickle")
    with pytest.raises(CheckpointError, match="model.safetensors") as err:
        load_checkpoint(d)
    assert "pytorch_model.bin" in str(err.value) and "run" in str(err.value)


def test_foreign_tensors_and_bad_configs_are_named(jax_copy, tmp_path):
    from safetensors.numpy import save_file

    d = write_transformers_layout(jax_copy, tmp_path / "bad", num_hidden_layers=3)
    with pytest.raises(CheckpointError, match="config.json: the configuration says num_layers 3, but the weights hold 2"):
        load_checkpoint(d)
    d = write_transformers_layout(jax_copy, tmp_path / "foreign")
    from safetensors.numpy import load_file

    tensors = load_file(str(d / "model.safetensors"))
    tensors["esm.encoder.layer.0.adapter.weight"] = np.zeros((2, 2), np.float32)
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="adapter"):
        load_checkpoint(d)


# --- released names of every family ----------------------------------------------------------


def _fake_hub_snapshot(cache: Path, repo: str, files: dict[str, Path]) -> Path:
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, src in files.items():
        (snapshot / name).write_bytes(src.read_bytes())
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    return snapshot


def test_ntv3_names_resolve_offline_from_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from embedcache.checkpoints import RELEASED_MODELS, released_models, resolve_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("EMBEDCACHE_HOME", str(tmp_path / "home"))
    src = Path(__file__).parents[1] / "golden" / "ntv3_tiny_post"
    hub = tmp_path / "hf"
    snapshot = _fake_hub_snapshot(hub, RELEASED_MODELS["NTv3_100M_post"],
                                  {f: src / f for f in ("config.json", "model.safetensors")})
    assert resolve_checkpoint("NTv3_100M_post", cache_dir=hub) == snapshot
    ckpt = load_checkpoint("NTv3_100M_post", cache_dir=hub)
    assert (ckpt.name, ckpt.variant) == ("NTv3_100M_post", "v3")
    assert ckpt.digest == load_checkpoint(src).digest
    local = {r["name"]: r["local"] for r in released_models(cache_dir=hub)}
    assert local["NTv3_100M_post"] and not local["NTv3_650M_post"] and not local["50M_multi_species_v2"]
    with pytest.raises(CheckpointError) as err:
        load_checkpoint("NTv3_650M_post", cache_dir=hub)
    for needed in ("InstaDeepAI/NTv3_650M_post", "config.json", "model.safetensors", "offline", "hf download"):
        assert needed in str(err.value)


def test_models_command_lists_every_family(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from cli.embedcache_app import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:-1]}
    assert "nt-v2" in lines["50M_multi_species_v2"] and "6-mer" in lines["50M_multi_species_v2"]
    assert "nt-v1" in lines["500M_human_ref"]
    row = lines["NTv3_8M_pre"].split()
    assert row[1:5] == ["ntv3", "8M", "2", "256"] and "1,048,576" in row and "128" in lines["NTv3_8M_pre"]
    assert {"NTv3_650M_post_131kb", "NTv3_5downsample_pre", "NTv3_100M_pre_8kb"} <= lines.keys()
