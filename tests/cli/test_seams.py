"""Where one command hands over to the next (issue 21): a BED task goes through build, classify,
export and attention-plot with the same reader; a missing output's advice is a command that
runs when pasted; exports carry their provenance; both tools use one vocabulary."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import classify_app, embedcache_app
from conftest import TINY_V2
from embedcache import EmbeddingCache, __version__
from embedcache.request import Shard
from embedcache.sequences.alphabet import reverse_complement
from embedcache.store import sequence_digest

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

ROOT = Path(__file__).resolve().parents[2]
CKPT = str(TINY_V2 / "checkpoint")
runner = CliRunner()


def run_cli(module, args, monkeypatch, capsys):
    """A console script's main() in-process (as `run_app` runs it): (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [module.app.info.name, *map(str, args)])
    monkeypatch.setenv("COLUMNS", "220")
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    captured = capsys.readouterr()
    return (exit_info.value.code or 0), captured.out, captured.err


def advice(stderr: str) -> str:
    """The command an error suggests (the rest of its line after 'Build them with: ')."""
    (line,) = [l for l in stderr.splitlines() if "Build them with: " in l]
    return line.split("Build them with: ", 1)[1]


def paste(command: str, env: dict) -> subprocess.CompletedProcess:
    """Run a suggested `embedcache ...` command as a user pasting it into a shell would."""
    words = shlex.split(command)
    assert words[0] == "embedcache"
    script = Path(sys.executable).parent / "embedcache"
    exe = [str(script)] if script.exists() else [sys.executable, "-m", "cli.embedcache_app"]
    return subprocess.run([*exe, *words[1:]], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def bed_task(tmp_path_factory):
    """A genome of two contigs and 30 regions on both strands, with a header naming the task
    columns label, split and gene after strand."""
    d = tmp_path_factory.mktemp("bed")
    rng = np.random.default_rng(5)
    contigs = {c: "".join(rng.choice(list("ACGT"), 1500)) for c in ("chr1", "chr2")}
    (d / "genome.fa").write_text("".join(f">{c}\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n"
                                         for c, s in contigs.items()))
    lines = ["#chrom\tstart\tend\tname\tscore\tstrand\tlabel\tsplit\tgene"]
    regions = []
    for i in range(30):
        chrom = "chr1" if i % 3 else "chr2"
        start = int(rng.integers(0, 1400))
        end = start + int(rng.integers(30, 90))
        strand = "-" if i % 4 == 0 else "+"
        split = "test" if i % 5 == 0 else "train"
        lines.append(f"{chrom}\t{start}\t{end}\tr{i}\t0\t{strand}\t{i % 2}\t{split}\tg{i % 7}")
        seq = contigs[chrom][start:end]
        regions.append((f"r{i}", chrom, start, end, strand, reverse_complement(seq) if strand == "-" else seq))
    (d / "regions.bed").write_text("\n".join(lines) + "\n")
    return d, regions


def test_a_bed_task_goes_from_build_to_classify_export_and_plot(bed_task, tmp_path, monkeypatch, capsys,
                                                                jax_compile_cache):
    d, regions = bed_task
    bed, genome, cache = d / "regions.bed", d / "genome.fa", tmp_path / "c.zarr"
    common = ["--reference", genome]
    code, out, err = run_cli(embedcache_app, ["build", bed, *common, "--model", CKPT, "--cache", cache,
                                              "--max-tokens", "64", "--layers", "1", "--pool", "mean", "--quiet"],
                             monkeypatch, capsys)
    assert code == 0, err
    assert "30 records" in out

    # classify reads the same BED through the same reader: the missing layer 2 is named, and
    # the advice runs when pasted (BED, --reference and the checkpoint directory included).
    fit = ["fit", "--data", bed, *common, "--cache", cache, "--model", CKPT, "--probe", "logistic",
           "--layer", "2", "--pool", "mean", "--out", tmp_path / "run", "--bootstrap", "20"]
    code, out, err = run_cli(classify_app, fit, monkeypatch, capsys)
    assert code == 2 and not (tmp_path / "run").exists()
    assert "30 of 30 sequences are in the cache" in err and "but layer 2 mean pooling was never built" in err
    assert "first: id r0" in err
    suggested = advice(err)
    assert shlex.split(suggested)[2:5] == [str(bed), "--reference", str(genome)]
    assert f"--model {CKPT}" in suggested and "--layers 2 --pool mean" in suggested
    pasted = paste(suggested, jax_compile_cache)
    assert pasted.returncode == 0, pasted.stderr
    code, out, err = run_cli(classify_app, fit, monkeypatch, capsys)
    assert code == 0, err
    assert "warning" not in err  # the new spelling warns of nothing
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run["features"]["layer"] == 2 and run["features"]["pool"] == "mean"
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    # The BED's split column was used: its test rows are the test split.
    assert sorted(predictions.loc[predictions["split"] == "test", "id"]) == sorted(
        f"r{i}" for i in range(30) if i % 5 == 0)
    # The sweep reads it too, and its hint is a fit in the same vocabulary, BED and genome included.
    code, out, err = run_cli(classify_app, ["sweep", "--data", bed, *common, "--cache", cache, "--model", CKPT,
                                            "--layers", "1-2", "--pool", "mean", "--out", tmp_path / "sweep",
                                            "--bootstrap", "20"], monkeypatch, capsys)
    assert code == 0, err
    hint = shlex.split(next(l for l in out.splitlines() if l.startswith("fit it with: ")).removeprefix("fit it with: "))
    assert hint[:2] == ["classify", "fit"] and "--probe" in hint and hint[hint.index("--reference") + 1] == str(genome)
    assert hint[hint.index("--model") + 1] == CKPT
    code, out, err = run_cli(classify_app, hint[1:], monkeypatch, capsys)
    assert code == 0 and "warning" not in err, err
    code, out, err = run_cli(classify_app, ["predict", tmp_path / "run", "--data", bed, *common,
                                            "--out", tmp_path / "scores.csv"], monkeypatch, capsys)
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "scores.csv")["id"]) == [r[0] for r in regions]

    # Exports keep the BED's coordinates and task columns, and say what the defaults chose.
    want = EmbeddingCache(cache).embeddings([r[5] for r in regions], layer=2, pool="mean")
    for suffix in (".parquet", ".h5", ".npz"):
        target = tmp_path / f"features{suffix}"
        code, out, err = run_cli(embedcache_app, ["export", "--cache", cache, "--input", bed, *common,
                                                  "--out", target], monkeypatch, capsys)
        assert code == 0, err
        assert out.startswith(f"wrote {target}: layer 2, pool mean, model checkpoint (key ")
        if suffix == ".parquet":
            table = pq.read_table(target)
            meta = json.loads(table.schema.metadata[b"embedcache"])
            frame = table.to_pandas()
            X = frame[[f"f{j}" for j in range(want.shape[1])]].to_numpy()
        elif suffix == ".h5":
            with h5py.File(target) as f:
                meta = dict(f.attrs)
                frame = pd.DataFrame({c: [v.decode() if isinstance(v, bytes) else v for v in f[c][:]]
                                      for c in ("id", "chrom", "start", "end", "strand", "label", "split", "gene")})
                X = f["X"][:]
        else:
            meta = json.loads(Path(str(target) + ".json").read_text())
            with np.load(target) as z:
                frame = pd.DataFrame({c: z[c] for c in z.files if c != "X"})
                X = z["X"]
        np.testing.assert_array_equal(X, want)
        assert list(frame["id"]) == [r[0] for r in regions]
        assert list(frame["chrom"]) == [r[1] for r in regions] and list(frame["strand"]) == [r[4] for r in regions]
        assert [int(v) for v in frame["start"]] == [r[2] for r in regions]
        assert list(frame["gene"]) == [f"g{i % 7}" for i in range(30)] and set(frame["split"]) == {"train", "test"}
        group = EmbeddingCache(cache).models()[0]
        assert meta["model_key"] == group.key and meta["model_name"] == "checkpoint"
        assert meta["param_digest"] == group.digest and not meta["random_weights"]
        assert int(meta["layer"]) == 2 and meta["pool"] == "mean"
        assert meta["store"] == str(cache) and meta["embedcache_version"] == __version__

    # attention-plot reads the BED too; the missing map is named, and its advice runs.
    plot = ["attention-plot", "--cache", cache, "--input", bed, *common, "--sequence-id", "r4",
            "--layer", "1", "--head", "2", "--out", tmp_path / "a.png"]
    code, out, err = run_cli(embedcache_app, plot, monkeypatch, capsys)
    assert code == 2 and "attention map 1:2" in err and "was never built" in err and "first: id r4" in err
    suggested = advice(err)
    assert "--attention 1:2" in suggested and f"--reference {genome}" in suggested
    pasted = paste(suggested, jax_compile_cache)
    assert pasted.returncode == 0, pasted.stderr
    code, out, err = run_cli(embedcache_app, plot, monkeypatch, capsys)
    assert code == 0, err
    assert (tmp_path / "a.png").stat().st_size > 0


def test_old_classify_spellings_still_work_with_a_warning(bed_task, tmp_path, monkeypatch, capsys):
    d, _ = bed_task
    cache = tmp_path / "c.zarr"
    code, _, err = run_cli(embedcache_app, ["build", d / "regions.bed", "--reference", d / "genome.fa", "--model",
                                            CKPT, "--cache", cache, "--max-tokens", "64", "--quiet"],
                           monkeypatch, capsys)
    assert code == 0, err
    old = ["fit", "--model", "logistic", "--backbone", CKPT, "--data", d / "regions.bed", "--reference",
           d / "genome.fa", "--cache", cache, "--out", tmp_path / "old", "--bootstrap", "20", "--pool", "mean"]
    code, _, err = run_cli(classify_app, old, monkeypatch, capsys)
    assert code == 0, err
    assert "--model logistic names a probe" in err and "--backbone is now --model" in err
    run = json.loads((tmp_path / "old" / "metrics.json").read_text())
    assert run["model"]["kind"] == "logistic" and run["features"]["backbone"]["name"] == "checkpoint"
    code, _, err = run_cli(classify_app, [*old[:5], "--model", CKPT, *old[5:], "--force"], monkeypatch, capsys)
    assert code == 2 and "give the language model once" in err


def test_a_random_weight_stand_in_is_named_as_typed_and_its_advice_runs(tmp_path, monkeypatch, capsys):
    import embedcache.checkpoints as checkpoints
    from conftest import TINY_V2_HP

    # A small "released" architecture, so that the stand-in is quick (in-process: the monkeypatch
    # is the release list a user's embedcache would hold).
    monkeypatch.setitem(checkpoints.RELEASED_ARCHITECTURES, "tiny_v2", TINY_V2_HP)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(1)
    task = tmp_path / "task.csv"
    pd.DataFrame({"id": [f"s{i}" for i in range(20)], "label": [i % 2 for i in range(20)],
                  "sequence": ["".join(rng.choice(list("ACGT"), 40)) for _ in range(20)]}).to_csv(task, index=False)
    cache = tmp_path / "c.zarr"
    with pytest.warns(checkpoints.RandomWeightsWarning):
        built = runner.invoke(embedcache_app.app, ["build", str(task), "--cache", str(cache), "--model", "tiny_v2",
                                                   "--max-tokens", "64", "--layers", "1", "--quiet",
                                                   "--allow-random-weights"])
    assert built.exit_code == 0, built.output
    # The released name finds its stand-in wherever a model is named: Python, classify, export.
    X = EmbeddingCache(cache).embeddings(pd.read_csv(task)["sequence"], model="tiny_v2", layer=1)
    assert X.shape == (20, 64)
    fit = ["fit", "--data", task, "--cache", cache, "--model", "tiny_v2", "--probe", "logistic", "--layer", "2",
           "--pool", "mean", "--out", tmp_path / "run", "--bootstrap", "20"]
    code, _, err = run_cli(classify_app, fit, monkeypatch, capsys)
    assert code == 2 and "first: id s0" in err
    suggested = advice(err)
    assert "random weights" not in suggested
    assert "--model tiny_v2" in suggested and suggested.endswith("--allow-random-weights")
    with pytest.warns(checkpoints.RandomWeightsWarning):
        pasted = runner.invoke(embedcache_app.app, shlex.split(suggested)[1:])
    assert pasted.exit_code == 0, pasted.output
    code, _, err = run_cli(classify_app, fit, monkeypatch, capsys)
    assert code == 0, err
    exported = runner.invoke(embedcache_app.app, ["export", "--cache", str(cache), "--input", str(task),
                                                  "--model", "tiny_v2", "--out", str(tmp_path / "x.h5")])
    assert exported.exit_code == 0, exported.output
    assert "RANDOM WEIGHTS" in exported.stdout
    with h5py.File(tmp_path / "x.h5") as f:
        assert bool(f.attrs["random_weights"]) and f.attrs["model_name"] == "random-tiny_v2"


def test_python_advice_is_python_that_runs(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.zarr")
    sequences = ["ACGTACGTTTGACCA", "GGGATTACAACGT", "TTTTCCCCAAAAGGGG"]
    cache.build(sequences[:1], model=CKPT, layers=[1], max_tokens=64, quiet=True)
    with pytest.raises(Exception) as err:
        cache.embeddings(sequences, layer=2)
    message = str(err.value)
    assert "3 of 3 sequences lack layer 2 mean pooling" in message and "2 are not in the cache at all" in message
    call = message.split("Build them with: ", 1)[1]
    assert call.startswith(f"EmbeddingCache({str(cache.path)!r}).build(sequences, model={CKPT!r}")
    eval(call, {"EmbeddingCache": EmbeddingCache, "sequences": sequences})  # the advice, pasted
    assert cache.embeddings(sequences, layer=2).shape == (3, 64)


def test_build_takes_layer_ranges_and_info_lists_unfinished_shards(tmp_path):
    rng = np.random.default_rng(2)
    seqs = ["".join(rng.choice(list("ACGT"), 30)) for _ in range(16)]
    fasta = tmp_path / "s.fa"
    fasta.write_text("".join(f">q{i}\n{s}\n" for i, s in enumerate(seqs)))
    cache = tmp_path / "c.zarr"
    args = ["build", str(fasta), "--cache", str(cache), "--model", CKPT, "--max-tokens", "64", "--quiet"]
    assert runner.invoke(embedcache_app.app, [*args, "--layers", "all", "--shard", "1/3"]).exit_code == 0
    assert runner.invoke(embedcache_app.app, [*args, "--layers", "1-2", "--shard", "2/3"]).exit_code == 0
    (m,) = EmbeddingCache(cache).models()
    assert m.arrays == ("layer_1_cls", "layer_1_mean", "layer_2_cls", "layer_2_mean")
    shard0 = [s for s in seqs if Shard(0, 3).owns(sequence_digest(s))]
    assert shard0  # the test needs work left in shard 0
    shown = runner.invoke(embedcache_app.app, ["info", str(cache), "--input", str(fasta), "--shards", "3"])
    assert shown.exit_code == 0, shown.output
    assert "shards with work left (1 of 3): 0" in shown.stdout
    assert f"{16 - len(shard0)} in the cache" in shown.stdout
    refused = runner.invoke(embedcache_app.app, ["info", str(cache), "--shards", "3"])
    assert refused.exit_code == 2 and "--input" in refused.output
    bad = runner.invoke(embedcache_app.app, [*args, "--layers", "1-x"])
    assert bad.exit_code == 2 and "not a layer" in bad.output and not any(cache.glob("*/layer_1_x*"))
