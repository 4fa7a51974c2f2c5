"""A write that the file system refuses ends in one line naming the path, and nothing after it (issue 18)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import TINY_BUILD_ARGS

ROOT = Path(__file__).resolve().parents[2]


def test_file_size_limit_names_the_cache_and_nothing_follows(tmp_path):
    rng = np.random.default_rng(0)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), size=80))}\n" for i in range(200)))
    cache = tmp_path / "cache.zarr"

    # The limit is set in the child itself (no preexec_fn: this process may run JAX's threads):
    # any file past 20 kB then fails with EFBIG (Python ignores SIGXFSZ).
    launcher = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)); "
                "sys.argv = sys.argv[1:]; runpy.run_module('cli.embedcache_app', run_name='__main__')")
    done = subprocess.run(
        [sys.executable, "-c", launcher, "embedcache", "build", str(fasta), "--cache", str(cache), *TINY_BUILD_ARGS,
         "--attention", "1:1,2:2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"},
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (f"error: {cache}: File too large. A file reached the largest size allowed (the shell's "
                        "`ulimit -f`, or the file system's own limit): raise the limit or put the cache on another "
                        "file system, then rerun; rows committed so far are kept and the rerun resumes.")
    # Rows committed before the limit was met (if the machine is slow enough for a timed commit).
    assert len(lines) == 2 and re.fullmatch(r"this build committed \d+ new row\(s\) to the cache; they are kept\.", lines[1])
