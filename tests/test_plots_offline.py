"""``dvc plots show`` works offline: the page it writes renders its plots with no network.

DVC's default HTML page loads Vega, Vega-Lite and vega-embed from a CDN (blank offline); the project's
``.dvc/config`` sets ``plots.html_template`` to reports/vega/dvc_plots.html, which inlines them
(scripts/vendor_vega.sh). In a minimal DVC project (git, the project's ``.dvc/config``, the template at
the same place, a ``plots:`` section like dvc.yaml's, small CSVs), the real ``dvc plots show`` writes
the page (the default ``dvc_plots/`` and ``-o`` elsewhere); headless Chromium (no network needed:
``file://``) renders it: each plot's div holds vega-embed's ``marks`` canvas/svg, and a screenshot shows
the plots' line colour. Without Chromium the render test fails under ``CI`` (.ci/run installs it) and
is skipped otherwise.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT

PLOTS_YAML = """\
plots:
- cots:
    title: Number of CoTs k
    template: linear
    x: cots
    y:
      reports/figures/cots.csv:
      - cot5
      - cot5_se
- self_evals:
    title: Number of self-evaluations m per CoT
    template: linear
    x: self_evals
    y:
      reports/figures/self_evals.csv:
      - cot5_se
"""
PLOT_IDS = ["cots", "self_evals"]
LINE_RGB = (0x94, 0x5D, 0xD6)  # DVC's colour of the workspace revision (the spec's rev scale)


def _template_setting() -> tuple[str, Path]:
    """``plots.html_template`` from the project's .dvc/config and the file it names (relative to .dvc/)."""
    from configobj import ConfigObj

    value = ConfigObj(str(ROOT / ".dvc" / "config")).get("plots", {}).get("html_template")
    assert value, ".dvc/config sets no plots.html_template: `dvc plots show` would load Vega from a CDN"
    assert not os.path.isabs(value), f"plots.html_template must be relative to .dvc/, not {value}"
    return value, (ROOT / ".dvc" / value).resolve()


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env.pop("DVC_ROOT", None)
    return env


def _run(cmd: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """The pages ``dvc plots show`` writes in a minimal project: default output and ``-o plots_out``."""
    value, template = _template_setting()
    assert template.is_file(), f"plots.html_template = {value} names no file ({template})"
    proj = tmp_path_factory.mktemp("plots") / "proj"
    (proj / ".dvc").mkdir(parents=True)
    _run(["git", "init", "-q"], proj)
    shutil.copy(ROOT / ".dvc" / "config", proj / ".dvc" / "config")
    dest = (proj / ".dvc" / value).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, dest)
    (proj / "dvc.yaml").write_text(PLOTS_YAML, encoding="utf-8")
    figs = proj / "reports" / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    (figs / "cots.csv").write_text("cots,cot5,cot5_se\n1,40.0,42.5\n2,45.0,48.0\n3,47.5,52.0\n5,50.0,55.5\n")
    (figs / "self_evals.csv").write_text("self_evals,cot5_se\n1,48.0\n2,51.0\n3,55.5\n")
    dvc = [sys.executable, "-m", "dvc"]
    _run(dvc + ["plots", "show"], proj)
    _run(dvc + ["plots", "show", "-o", "plots_out"], proj)
    return {"default": proj / "dvc_plots" / "index.html", "-o": proj / "plots_out" / "index.html"}


def test_template_is_offline():
    """The configured template fills DVC's plot placeholder and neither asks DVC for its CDN scripts
    (``{scripts}``) nor loads any script from the network; it inlines the three libraries."""
    _, template = _template_setting()
    text = template.read_text(encoding="utf-8")
    assert "{plot_divs}" in text
    assert "{scripts}" not in text, "the template's {scripts} brings back DVC's CDN <script src=...> tags"
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I), "the template loads a script from a file or URL"
    for lib in ("vega", "vega-lite", "vega-embed"):
        assert f"/* {lib} (BSD-3-Clause) */" in text, f"{lib} is not inlined (run scripts/vendor_vega.sh)"
    assert len(text) < 1_500_000, f"the template is {len(text)} bytes"


def _remote_scripts(html: str) -> list[str]:
    return re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]*)", html, re.I)


def test_dvc_plots_show_page_loads_no_remote_script(pages):
    for kind, page in pages.items():
        html = page.read_text(encoding="utf-8")
        assert not _remote_scripts(html), f"{kind} page loads scripts from the network: {_remote_scripts(html)}"
        assert "cdn.jsdelivr.net" not in html, f"{kind} page names DVC's CDN"
        ids = re.findall(r'<div id\s*=\s*"([^"]+)"', html)
        assert ids == PLOT_IDS, f"{kind} page's plot divs: {ids}"


def _chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    msg = "headless Chromium is not installed (apt-get install chromium; .ci/run does): cannot render the page"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _chromium_run(chromium: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
           *args, page.as_uri()]
    return _run(cmd, page.parent, timeout=120)


def _plot_segments(dom: str) -> dict[str, str]:
    """Each plot div's markup in the rendered DOM (from its start tag to the next plot div's)."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<div id="([^"]+)"[^>]*class="[^"]*vega-embed', dom)]
    end = dom.rfind("</body>")  # the page's own: vega-embed's code has one in a string
    ends = [s for s, _ in starts[1:]] + [end if end > 0 else len(dom)]
    return {pid: dom[s:e] for (s, pid), e in zip(starts, ends)}


def _line_pixels(png: Path) -> tuple[int, int]:
    """(pixels near the plots' line colour, pixels that are not white) in a screenshot."""
    from PIL import Image

    with Image.open(png) as im:
        data = im.convert("RGB").getdata()
    near = sum(1 for c in data if sum((a - b) ** 2 for a, b in zip(c, LINE_RGB)) <= 60 ** 2)
    return near, sum(1 for c in data if c != (255, 255, 255))


def test_dvc_plots_show_page_renders_offline(pages, tmp_path):
    chromium = _chromium()
    for kind, page in pages.items():
        dom = _chromium_run(chromium, page, tmp_path / f"profile-{kind}", "--dump-dom").stdout
        plots = _plot_segments(dom)
        assert list(plots) == PLOT_IDS, f"{kind} page: vega-embed rendered {list(plots)}, not {PLOT_IDS}"
        for pid, markup in plots.items():
            marks = re.search(r'<(canvas|svg)\b[^>]*\bclass="marks"[^>]*>', markup)
            assert marks, f"{kind} page: plot {pid!r} has no vega <canvas/svg class=\"marks\">"
            size = dict(re.findall(r'\b(width|height)="(\d+(?:\.\d+)?)', marks.group(0)))
            # DVC's linear template is 300 x 300 (plus axes, title, legend)
            assert float(size.get("width", 0)) >= 300 and float(size.get("height", 0)) >= 300, (
                f"{kind} page: plot {pid!r} is drawn {size}")
    shot = tmp_path / "plots.png"
    _chromium_run(chromium, pages["default"], tmp_path / "profile-shot", "--window-size=1000,900",
                  f"--screenshot={shot}")
    assert shot.is_file(), "Chromium wrote no screenshot"
    near, inked = _line_pixels(shot)
    # Both plots' lines (three, 2 px wide, some 300 px long) are ~2,000 pixels of the line colour;
    # the legends' symbols alone are a few hundred; a blank page has none.
    assert inked >= 5000, f"the screenshot has only {inked} non-white pixels (a blank page?)"
    assert near >= 800, f"the screenshot has {near} pixels of the plots' line colour (blank plots?)"
