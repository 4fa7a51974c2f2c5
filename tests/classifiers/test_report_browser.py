"""The report as a user sees it: fit, cv and sweep reports rendered by headless Chromium,
every image decoded and no link pointing nowhere."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import planted_task, write_feature_store
from classifiers.runs import cross_validate, fit_run, sweep_run

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))),
                None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install "
    "chromium; .ci/run installs it)")

# Appended to a copy of the report: after the page has loaded, record what the browser made
# of every image and link, where --dump-dom will print it.
_CHECK = """<script>
window.addEventListener('load', () => {
  const images = [...document.images].map(i => ({alt: i.alt, complete: i.complete,
                                                  width: i.naturalWidth}));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  const out = document.createElement('pre');
  out.id = 'browser-check';
  out.textContent = JSON.stringify({images, links, ids});
  document.body.appendChild(out);
});
</script>"""


def chromium_flags(profile: Path) -> list[str]:
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}"]


def seen_by_chromium(report: Path, tmp_path: Path) -> dict:
    page = report.with_name(".browser-check.html")
    page.write_text(report.read_text().replace("</body>", _CHECK + "</body>"))
    try:
        result = subprocess.run(
            [*chromium_flags(tmp_path / "profile"), "--virtual-time-budget=10000", "--dump-dom",
             page.as_uri()], capture_output=True, text=True, timeout=180)
    finally:
        page.unlink()
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"Chromium did not run the page's check (exit {result.returncode}): " \
                  f"{result.stderr[-2000:]}"
    return json.loads(html.unescape(found[1]))


def assert_renders(report: Path, tmp_path: Path, min_images: int) -> None:
    seen = seen_by_chromium(report, tmp_path)
    assert len(seen["images"]) >= min_images
    assert len(seen["images"]) == report.read_text().count("<img ")
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 0, f"image {image['alt']!r} did not load"
    for href in seen["links"]:
        if href.startswith("#"):
            assert href[1:] in seen["ids"], f"link {href} has no target"
        else:
            assert not re.match(r"[a-z]+://", href) or href.startswith("file://"), href
            target = Path(href.removeprefix("file://"))
            target = target if target.is_absolute() else report.parent / target
            assert target.exists(), f"link {href} points nowhere"


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    table, feats = planted_task(n=160)
    write_feature_store(d / "cache.zarr", table["sequence"], feats)
    table.to_csv(d / "task.csv", index=False)
    return d


def test_fit_report_renders(task, tmp_path):
    fit_run(task / "task.csv", cache=task / "cache.zarr", out=tmp_path / "fit", model="mlp",
            layer=2, n_bootstrap=50, params={"max_epochs": 2})
    assert_renders(tmp_path / "fit" / "report.html", tmp_path, min_images=4)


def test_cv_report_renders(task, tmp_path):
    cross_validate(task / "task.csv", cache=task / "cache.zarr", out=tmp_path / "cv",
                   model="logistic", layer=2, folds=3)
    assert_renders(tmp_path / "cv" / "report.html", tmp_path, min_images=1)


def test_sweep_report_renders(task, tmp_path):
    sweep_run(task / "task.csv", cache=task / "cache.zarr", out=tmp_path / "sweep",
              model="logistic", layers="1-2", pools=["mean"], n_bootstrap=50)
    assert_renders(tmp_path / "sweep" / "report.html", tmp_path, min_images=2)
