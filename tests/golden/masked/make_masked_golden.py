#!/usr/bin/env python3
"""Masked-LM reference values from the official Nucleotide Transformer (v1/v2), for the llr tests.

Run at test-authoring time, outside the project, in an environment holding the official
code's dependencies (jax 0.6, dm-haiku, jmp, joblib, regex, numpy, typing_extensions,
huggingface_hub) and a checkout of instadeepai/nucleotide-transformer (commit 2dc37b8)::

    python tests/golden/masked/make_masked_golden.py --official /path/to/nucleotide-transformer \\
        --out tests/golden/masked/masked_golden.npz

Nothing of the official code is stored here: it is imported from ``--official`` at run time,
and only numbers are written. For each case a checkpoint in the official on-disk layout is
made by ``tests/golden/make_weights.py`` (deterministic from hyperparameters and seed), loaded
through the official ``get_pretrained_model`` (its download step replaced by reading that
directory), and run on each window with the token holding the window's middle base (found from
the official token strings) replaced by the official ``<mask>`` id. Stored per case:

- ``{case}__logits`` (n_windows, alphabet): LM-head logits at the masked position;
- ``{case}__center`` (n_windows,): that position (CLS at 0);
- ``{case}__ref_token`` (n_windows,): the official token id there before masking;
- ``{case}__alt_token`` (n_windows,): the official id at that position in the alt window
  (the middle base replaced by ``alts[i]``);
- ``windows_json``, ``alts_json``, ``cases_json`` (case -> hyperparameters, seed, model name).

Cases: ``v2`` (the tiny_v2 golden hyperparameters), ``v2_token_dropout`` (the same with
``token_dropout: true``), ``v1`` (learned positions, GELU, FFN biases, token dropout), whose
masked forward rescales the other tokens' embeddings by (1 - 0.1 * 0.8) / (1 - 1 / n_real).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent

V2_HP = json.loads((GOLDEN / "tiny_v2" / "hyperparams.json").read_text())
V1_HP = {"max_positions": 64, "embed_scale": 1.0, "emb_layer_norm_before": False, "attention_heads": 4,
         "embed_dim": 32, "ffn_embed_dim": 64, "num_layers": 2, "add_bias_kv": False, "token_dropout": True,
         "masking_ratio": 0.1, "masking_prob": 0.8, "k_for_kmers": 6}
CASES = {
    "v2": {"hp": V2_HP, "seed": 0, "model_name": "50M_multi_species_v2"},
    "v2_token_dropout": {"hp": {**V2_HP, "token_dropout": True}, "seed": 0, "model_name": "50M_multi_species_v2"},
    "v1": {"hp": V1_HP, "seed": 1, "model_name": "500M_1000G"},
}


def windows_and_alts() -> tuple[list[str], list[str]]:
    """Odd-length windows: plain ACGT of several remainders mod 6, and Ns near the middle."""
    rng = random.Random(19)
    windows = ["".join(rng.choice("ACGT") for _ in range(n)) for n in (5, 13, 41, 61, 97, 121)]
    w = list("".join(rng.choice("ACGT") for _ in range(41)))
    w[17] = "N"  # the middle base (20) starts a short run after an N: single-base tokens
    windows.append("".join(w))
    w = list("".join(rng.choice("ACGT") for _ in range(31)))
    w[3], w[25] = "N", "N"
    windows.append("".join(w))
    alts = []
    for s in windows:
        m = s[len(s) // 2]
        alts.append(rng.choice([b for b in "ACGT" if b != m]))
    return windows, alts


def middle_token(token_strings: list[str], n_bases: int) -> int:
    covered = 0
    for i, tok in enumerate(token_strings):
        covered += 0 if tok.startswith("<") else len(tok)
        if covered > n_bases // 2:
            return i
    raise ValueError("middle base not covered")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of instadeepai/nucleotide-transformer")
    ap.add_argument("--out", type=Path, default=HERE / "masked_golden.npz")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.official))
    import haiku as hk
    import jax
    import joblib
    import nucleotide_transformer.pretrained as pretrained

    windows, alts = windows_and_alts()
    out = {"windows_json": np.array(json.dumps(windows)), "alts_json": np.array(json.dumps(alts)),
           "cases_json": np.array(json.dumps(CASES))}
    for case, spec in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            hp_path = Path(tmp) / "hp.json"
            hp_path.write_text(json.dumps(spec["hp"]))
            subprocess.run([sys.executable, str(GOLDEN / "make_weights.py"), str(hp_path), tmp, "--seed",
                            str(spec["seed"]), "--names", "ondisk"], check=True)
            params = joblib.load(Path(tmp) / "jax_model" / "pytree_ckpt.joblib")
            hyper = json.loads((Path(tmp) / "jax_model" / "hyperparams.json").read_text())
        pretrained.download_ckpt_and_hyperparams = lambda name, p=params, h=hyper: (p, h)
        parameters, forward_fn, tokenizer, _ = pretrained.get_pretrained_model(
            spec["model_name"], max_positions=spec["hp"]["max_positions"])
        apply = jax.jit(hk.transform(forward_fn).apply)
        logits, centers, refs, alt_ids = [], [], [], []
        for seq, alt in zip(windows, alts):
            strings, ids = tokenizer.tokenize(seq)
            c = middle_token(strings, len(seq))
            h = len(seq) // 2
            _, alt_tokens = tokenizer.tokenize(seq[:h] + alt + seq[h + 1:])
            masked = np.array(ids)
            masked[c] = tokenizer.mask_token_id
            result = apply(parameters, jax.random.PRNGKey(0), masked[None])
            logits.append(np.asarray(result["logits"][0, c], dtype=np.float32))
            centers.append(c)
            refs.append(ids[c])
            alt_ids.append(alt_tokens[c])
        out[f"{case}__logits"] = np.stack(logits)
        out[f"{case}__center"] = np.array(centers)
        out[f"{case}__ref_token"] = np.array(refs)
        out[f"{case}__alt_token"] = np.array(alt_ids)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {len(windows)} windows x {len(CASES)} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
