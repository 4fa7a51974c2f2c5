"""NTv3 against the official outputs (tests/golden/ntv3_tiny*), through the real checkpoint loader.

Tolerances are the goldens' READMEs': atol 1e-4 + rtol 1e-4 for embeddings and logits,
atol 1e-5 (+ rtol 1e-4) for attention probabilities.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from embedcache.sequences.alphabet import normalize
from embedcache.checkpoints import load_checkpoint, random_checkpoint
from embedcache.errors import AlphabetError, CheckpointError
from embedcache.families.ntv3.config import NTv3Config, NTv3Tokenizer
from embedcache.families.ntv3.forward import forward as _forward
from embedcache.families.ntv3.forward import prepare_params

GOLDEN = Path(__file__).parents[1] / "golden"


def forward(params, tokens, *, config, layers=(), attention=(), species=None, logits=False):
    """The forward, compiled once per request and shape (eager dispatch is many times slower)."""
    key = (id(config), tuple(layers), tuple(attention), species is None, logits)
    if key not in _COMPILED:
        def run(p, t, s):
            return _forward(p, t, config=config, layers=layers, attention=attention, species=s, logits=logits)
        _COMPILED[key] = (config, jax.jit(run))  # keeps config alive so its id stays unique
    return _COMPILED[key][1](params, np.asarray(tokens), None if species is None else np.asarray(species))


_COMPILED: dict = {}
HEADS = (1, 2, 3, 4)


def _runs(g) -> list[tuple[str, int, int | None]]:
    """(key suffix, input index, species token) of every golden run."""
    out = []
    for key in g.files:
        if key.startswith("tokens__"):
            suffix = key[len("tokens"):]
            i = int(suffix.split("__s")[1].split("__")[0])
            species = int(suffix.split("__sp")[1]) if "__sp" in suffix else None
            out.append((suffix, i, species))
    return out


@pytest.mark.parametrize("case", ["ntv3_tiny", "ntv3_tiny_post"])
def test_matches_the_official_outputs_through_the_loader(case):
    ckpt = load_checkpoint(GOLDEN / case)
    assert (ckpt.variant, ckpt.layout) == ("v3", "ntv3-hub")
    cfg, tok = ckpt.config, ckpt.tokenizer()
    params = prepare_params(ckpt.params, cfg)
    g = np.load(GOLDEN / case / "golden.npz")
    inputs = json.loads(str(g["sequences_json"]))
    runs = _runs(g)
    assert len(runs) == (17 if case.endswith("post") else 8)
    species_seen = set()
    for suffix, i, species in runs:
        # Our alphabet policy (upper-casing) reproduces the ids the goldens were computed from.
        ids = tok.encode_padded(normalize(inputs[i]["sequence"]))
        np.testing.assert_array_equal(ids, g["tokens" + suffix])
        out = forward(
            params, ids[None], config=cfg, layers=[1, 2, "final"],
            attention=[(layer, h) for layer in (1, 2) for h in HEADS],
            species=None if species is None else np.array([species]), logits=True,
        )
        for layer in (1, 2):
            np.testing.assert_allclose(out["embeddings"][layer][0], g[f"embeddings_{layer}{suffix}"], atol=1e-4, rtol=1e-4)
            maps = np.stack([out["attention"][(layer, h)][0] for h in HEADS])
            np.testing.assert_allclose(maps, g[f"attn_all_heads_layer_{layer}{suffix}"], atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(out["final"][0], g["embedding" + suffix], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(out["logits"][0], g["logits" + suffix], atol=1e-4, rtol=1e-4)
        species_seen.add(species)
    assert species_seen == ({6, 7, 8} if case.endswith("post") else {None})


def test_official_attention_keys_map_to_our_1_based_heads():
    """The official key attention_map_layer_L_number_m is 0-based head m+1, clamped."""
    ckpt = load_checkpoint(GOLDEN / "ntv3_tiny")
    cfg = ckpt.config
    g = np.load(GOLDEN / "ntv3_tiny" / "golden.npz")
    ids = g["tokens__s4"]
    out = forward(prepare_params(ckpt.params, cfg), ids[None], config=cfg,
                  attention=[(1, 1), (1, 2), (2, 3), (2, 4)])
    for (layer, number), head in {(1, -1): 1, (1, 0): 2, (2, 1): 3, (2, 3): 4}.items():
        np.testing.assert_allclose(out["attention"][(layer, head)][0],
                                   g[f"attention_map_layer_{layer}_number_{number}__s4"], atol=1e-5, rtol=1e-4)


def test_species_is_required_by_post_trained_models_and_listed_when_wrong():
    cfg = load_checkpoint(GOLDEN / "ntv3_tiny_post").config
    assert cfg.species == ["arabidopsis", "human", "mouse"]
    assert cfg.species_token("mouse") == 7
    for bad in (None, "dog", "<pad>"):
        with pytest.raises(ValueError, match="arabidopsis, human, mouse"):
            cfg.species_token(bad)
    pre = load_checkpoint(GOLDEN / "ntv3_tiny").config
    assert pre.species_token(None) is None
    with pytest.raises(ValueError, match="not species-conditioned"):
        pre.species_token("human")


def test_tokenizer_one_token_per_base_and_n_padding():
    tok = NTv3Tokenizer(3)
    np.testing.assert_array_equal(tok.encode("ATCGN"), [6, 7, 8, 9, 10])
    np.testing.assert_array_equal(tok.encode_padded("ACG"), [6, 8, 9, 10, 10, 10, 10, 10])
    assert [tok.padded_length(n) for n in (0, 1, 8, 9, 300)] == [8, 8, 8, 16, 304]
    # Soft-masked and IUPAC letters embed as their bases / N under our policy ...
    np.testing.assert_array_equal(tok.encode(normalize("acgTRy")), [6, 8, 9, 7, 10, 10])
    # ... where the official tokenizer gives <unk> (0): the golden records it.
    g = np.load(GOLDEN / "ntv3_tiny" / "golden.npz")
    assert set(json.loads(str(g["raw_official_ids_json"]))[6]) == {0}
    # Anything else is refused, never silently <unk>.
    with pytest.raises(AlphabetError, match="position 3"):
        tok.encode("AC-T")
    with pytest.raises(AlphabetError):
        normalize("ACUT", record="r1")


def _tiny_config(**changes) -> dict:
    base = json.loads((GOLDEN / "ntv3_tiny" / "config.json").read_text())
    return {**base, **changes}


def _random_model(tmp_path: Path, config: dict, seed: int = 0):
    """A checkpoint directory in the NTv3 hub layout with random weights, read back by the loader."""
    from safetensors.numpy import save_file

    from embedcache.families.ntv3.config import parameter_shapes

    cfg = NTv3Config.from_hub_config(config)
    rng = np.random.default_rng(seed)
    tensors = {}
    for (module, pname), shape in parameter_shapes(cfg).items():
        scale = 1.0 / np.sqrt(np.prod(shape[1:])) if len(shape) > 1 else 0.05
        tensors[f"core.{module}.{pname}"] = (rng.standard_normal(shape) * scale
                                              + (1.0 if pname == "weight" and "layer_norm" in module else 0.0)
                                              ).astype(np.float32)
    d = tmp_path / f"model{seed}"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(d / "model.safetensors"))
    return load_checkpoint(d)


CONFIGS = {
    "2 downsamples, repeat+conv": _tiny_config(num_downsamples=2, deconv_upsample_type="repeat+conv"),
    "5 downsamples, equal widths": _tiny_config(num_downsamples=5, conv_init_embed_dim=32, embed_dim=32),
    "post-trained, repeat+conv": {**json.loads((GOLDEN / "ntv3_tiny_post" / "config.json").read_text()),
                                  "deconv_upsample_type": "repeat+conv"},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_outputs_do_not_depend_on_batch_composition(name, tmp_path):
    ckpt = _random_model(tmp_path, CONFIGS[name])
    cfg, tok = ckpt.config, ckpt.tokenizer()
    params = prepare_params(ckpt.params, cfg)
    rng = np.random.default_rng(1)
    block = cfg.block
    # Three sequences of one padded length (the only batches the engine forms), one of them N-rich.
    lengths = [3 * block - 1, 2 * block + 1, 3 * block]
    seqs = ["".join(rng.choice(list("ACGTN" if i == 1 else "ACGT"), n)) for i, n in enumerate(lengths)]
    species = np.array([cfg.species_token("human")] * 3) if cfg.conditioned else None
    batch = np.stack([tok.encode_padded(s) for s in seqs])
    layers = [1, 2, "final"]
    together = forward(params, batch, config=cfg, layers=layers, attention=[(2, 3)], species=species)
    for i, seq in enumerate(seqs):
        alone = forward(params, tok.encode_padded(seq)[None], config=cfg, layers=layers, attention=[(2, 3)],
                        species=None if species is None else species[i:i + 1])
        for layer in (1, 2):
            np.testing.assert_allclose(together["embeddings"][layer][i], alone["embeddings"][layer][0], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(together["final"][i], alone["final"][0], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(together["attention"][(2, 3)][i], alone["attention"][(2, 3)][0], atol=1e-5, rtol=1e-4)
    # Shapes: core layers at one position per block, "final" at base resolution, stem width.
    p = batch.shape[1]
    assert together["embeddings"][1].shape == (3, p // block, cfg.embed_dim)
    assert together["final"].shape == (3, p, cfg.conv_init_embed_dim)
    assert together["attention"][(2, 3)].shape == (3, p // block, p // block)
    np.testing.assert_allclose(together["attention"][(2, 3)].sum(-1), 1.0, atol=1e-5)


def test_species_changes_the_outputs_and_pre_trained_refuses_species(tmp_path):
    ckpt = load_checkpoint(GOLDEN / "ntv3_tiny_post")
    cfg = ckpt.config
    params = prepare_params(ckpt.params, cfg)
    ids = ckpt.tokenizer().encode_padded("ACGT" * 10)[None]
    a, b = (forward(params, ids, config=cfg, layers=["final"], species=np.array([s]))["final"]
            for s in (6, 7))
    assert np.abs(a - b).max() > 0.1
    with pytest.raises(ValueError, match="species"):
        forward(params, ids, config=cfg, layers=["final"])


def test_the_8m_architecture_runs_and_has_its_released_size():
    ckpt = random_checkpoint("NTv3_8M_pre")
    n = sum(a.size for leaves in ckpt.params.values() for a in leaves.values())
    # 7,692,475 with the LM head (2,827), which embedding runs do not need.
    assert n == 7_692_475 - 2_827
    cfg = ckpt.config
    assert (cfg.block, cfg.filters[0], cfg.filters[-1], cfg.num_layers) == (128, 256, 256, 2)
    out = forward(prepare_params(ckpt.params, cfg), ckpt.tokenizer().encode_padded("ACGT" * 70)[None],
                  config=cfg, layers=[2, "final"])
    assert out["embeddings"][2].shape == (1, 3, 256) and out["final"].shape == (1, 384, 256)
    assert np.isfinite(out["final"]).all()


def test_bad_requests_and_bad_files_are_refused(tmp_path):
    ckpt = load_checkpoint(GOLDEN / "ntv3_tiny")
    cfg = ckpt.config
    params = prepare_params(ckpt.params, cfg)
    with pytest.raises(ValueError, match="layers 1..2 and 'final'"):
        forward(params, np.full((1, 8), 10), config=cfg, layers=[3])
    with pytest.raises(ValueError, match="heads 1..4"):
        forward(params, np.full((1, 8), 10), config=cfg, attention=[(1, 5)])
    with pytest.raises(ValueError, match="multiple of 8"):
        forward(params, np.full((1, 12), 10), config=cfg, layers=[1])
    # A config that does not match the weights names what is wrong.
    d = tmp_path / "mismatch"
    shutil.copytree(GOLDEN / "ntv3_tiny", d)
    (d / "config.json").write_text(json.dumps(_tiny_config(num_layers=3)))
    with pytest.raises(CheckpointError, match=r"config.json: the configuration says num_layers 3, but the weights hold 2 \(transformer_blocks. 0..1\)"):
        load_checkpoint(d)


def test_family_pools_the_covered_positions_and_answers_the_pipeline():
    from embedcache.errors import InputError
    from embedcache.families.ntv3.family import NTv3Family

    ckpt = load_checkpoint(GOLDEN / "ntv3_tiny_post")
    with pytest.raises(InputError, match="arabidopsis, human, mouse"):
        NTv3Family(ckpt)
    fam = NTv3Family(ckpt, species="mouse")
    assert fam.key_extra == {"species": "mouse"} and fam.layer_names == [1, 2, "final"]
    with pytest.raises(InputError, match="no CLS token"):
        fam.check([1], ["cls", "mean"], [])
    with pytest.raises(InputError, match="layers 1..2"):
        fam.check([4], ["mean"], [])
    seqs = ["ACGTTGCA" * 3 + "ACG", "GATTACA" * 3 + "CCCC"]  # 27 and 25 bases: one padded length, 32
    assert [fam.padded_length(len(s)) for s in seqs] == [32, 32] and fam.positions(27, 1) == 4
    assert {p: list(r) for p, r in fam.plan([27, 25, 5]).items()} == {8: [2], 32: [0, 1]}
    cfg = fam.config
    params = prepare_params(ckpt.params, cfg)
    tokens = np.stack([fam.tokenizer.encode_padded(s) for s in seqs])
    got = jax.jit(lambda p, t, n: fam.compute(p, t, n, layers=[2, "final"], attention=[(1, 3)]))(
        params, tokens, np.array([len(s) for s in seqs]))
    g = np.load(GOLDEN / "ntv3_tiny_post" / "golden.npz")
    for i, s in enumerate(seqs):
        alone = forward(params, tokens[i:i + 1], config=cfg, layers=[2, "final"], attention=[(1, 3)],
                        species=np.array([7]))
        n, t = len(s), fam.positions(len(s), 2)
        np.testing.assert_allclose(got["pooled"]["final/mean"][i], alone["final"][0, :n].mean(0), atol=1e-5)
        np.testing.assert_allclose(got["pooled"]["2/mean"][i], alone["embeddings"][2][0, :t].mean(0), atol=1e-5)
        a = np.asarray(got["attention"][(1, 3)][i])
        np.testing.assert_allclose(a[:t, :t], alone["attention"][(1, 3)][0, :t, :t], atol=1e-5)
        assert not a[t:].any() and not a[:, t:].any()
    # The golden input 3 (100 bases) with mouse: pooled final = mean of the official rows.
    ids = g["tokens__s3__sp7"]
    one = fam.compute(params, ids[None], np.array([100]), layers=["final"])
    np.testing.assert_allclose(one["pooled"]["final/mean"][0], g["embedding__s3__sp7"][:100].mean(0), atol=1e-4, rtol=1e-4)
