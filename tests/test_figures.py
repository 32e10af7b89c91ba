"""The report's figures (pipeline/stages/figures.py): PNG size and dpi, the SVG copy, the same bytes for
the same inputs, full titles inside the figure, legends off the data, percent axes from 0 to 100,
written values (a 0 and a missing value told apart), error bars; and the report writing, keeping and
linking the SVGs. Matplotlib (Agg) only: no dvc, no MLflow."""
from __future__ import annotations

import math
import struct
import xml.etree.ElementTree as ET

import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

import pipeline.tracking as tracking
from pipeline.core.spec import load_params
from pipeline.stages import figures, report
from support import ROOT

LONG_TITLE = ("Accuracy of distilled T5-base students against standard fine-tuning and standard distillation "
              "on SVAMP, CQA and ANLI1 with and without self-evaluation")  # 150 characters
GROUPS = ["svamp", "cqa", "anli1"]
BARS = {"standard_ft": [(93.7, None), (0.0, None), (None, None)],
        "cot5_se": [(41.2, None), (None, None), (100.0, None)]}
LINES = {"cot5": [(45.0, 7.07), (None, None), (30.0, 2.0)], "cot5_se": [(40.0, 3.0), (42.0, 1.0), (None, None)]}


def chunks(png: bytes) -> dict[bytes, bytes]:
    """The PNG's chunks by type (parsed by hand: length, type, data, CRC)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = {}, 8
    while i < len(png):
        (n,), kind = struct.unpack(">I", png[i:i + 4]), png[i + 4:i + 8]
        out[kind] = png[i + 8:i + 8 + n]
        i += 12 + n
    return out


def bar_fig(title=LONG_TITLE, series=BARS, **kw):
    return figures.render("bar", title, "dataset", GROUPS, series, "accuracy (%)", **kw)


def line_fig(title=LONG_TITLE, series=LINES, **kw):
    return figures.render("line", title, "cots", ["1", "2", "3"], series, "accuracy (%)", **kw)


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_png_pixel_size_and_dpi(tmp_path):
    fig = bar_fig()
    png, _ = figures.save(fig, tmp_path / "main.png")
    c = chunks(png.read_bytes())
    width, height = struct.unpack(">II", c[b"IHDR"][:8])
    x_ppm, y_ppm, unit = struct.unpack(">IIB", c[b"pHYs"])
    assert unit == 1 and x_ppm == y_ppm  # pixels per metre
    assert round(x_ppm * 0.0254) == figures.DPI >= 150
    w_in, h_in = fig.get_size_inches()
    assert (width, height) == (round(w_in * figures.DPI), round(h_in * figures.DPI))
    assert width >= 900 and height >= 500
    assert b"tEXt" not in c or b"Software" not in c[b"tEXt"]  # no version stamp in the bytes


def test_the_svg_copy_parses_and_holds_no_date(tmp_path):
    png, svg = figures.plot(tmp_path / "cots.png", "line", "k CoTs", "cots", ["1", "2", "3"], LINES, "accuracy (%)")
    assert svg == tmp_path / "cots.svg" and png.exists()
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.find(".//{http://www.w3.org/2000/svg}path") is not None
    assert "<dc:date>" not in svg.read_text()
    assert not list(tmp_path.glob("*.tmp*")) and sorted(p.name for p in tmp_path.iterdir()) == ["cots.png", "cots.svg"]


@pytest.mark.parametrize("kind", ["bar", "line"])
def test_the_same_inputs_give_the_same_bytes(tmp_path, kind):
    series = BARS if kind == "bar" else LINES
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        figures.plot(d / "t.png", kind, LONG_TITLE, "x", GROUPS, series, "accuracy (%)")
    assert (a / "t.png").read_bytes() == (b / "t.png").read_bytes()
    assert (a / "t.svg").read_bytes() == (b / "t.svg").read_bytes()


@pytest.mark.parametrize("make", [bar_fig, line_fig])
def test_a_long_title_is_whole_and_inside_the_figure(make):
    assert len(LONG_TITLE) == 150
    fig = make()
    title = fig._suptitle
    assert title.get_text().replace("\n", " ") == LONG_TITLE  # wrapped between words, not cut
    assert "\n" in title.get_text()
    box, frame, ax = title.get_window_extent(fig.canvas.get_renderer()), fig.bbox, fig.axes[0].bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert box.y0 >= ax.y1  # above the axes


@pytest.mark.parametrize("make", [bar_fig, line_fig])
def test_the_legend_covers_no_data(make):
    fig = make()
    ax = fig.axes[0]
    legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["standard_ft", "cot5_se"] if make is bar_fig \
        else ["cot5", "cot5_se"]
    assert not legend.overlaps(ax.bbox)  # all data lies within the axes
    for bar in ax.patches:
        assert not legend.overlaps(bar.get_window_extent())
    for line in ax.lines:
        for x, y in ax.transData.transform(line.get_xydata()):
            assert math.isnan(y) or not legend.contains(x, y)
    for t in ax.texts:
        assert not legend.overlaps(t.get_window_extent())


def test_percent_axes_run_from_0_to_100_and_counts_to_their_max():
    small = {"a": [(0.2, None), (0.5, None), (None, None)]}
    for fig in (bar_fig(series=small), line_fig(series=small)):
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        assert low == 0 and 100 <= high <= 110 and list(ax.get_yticks()) == [0, 20, 40, 60, 80, 100]
    counts = figures.render("bar", "counts", "dataset", ["svamp", "cqa"], {"luna": [(49.0, None), (3.0, None)]},
                            "se_evaluations (count)", percent=False)
    assert counts.axes[0].get_ylim() == pytest.approx((0, 1.1 * 49))
    assert texts(counts.axes[0]) == ["49", "3"]


def test_values_are_written_and_a_zero_is_not_a_missing_value():
    ax = bar_fig().axes[0]
    assert texts(ax) == ["93.7", "0.0", figures.MISSING, "41.2", figures.MISSING, "100.0"]
    at = {t.get_text(): t.xy for t in ax.texts}
    assert at["0.0"][1] == 0 and at[figures.MISSING][1] == 0 and at["93.7"][1] == pytest.approx(93.7)
    assert [p.get_height() for p in ax.patches[:2]] == [93.7, 0.0]
    assert math.isnan(ax.patches[2].get_height())
    assert ax.get_ylim()[1] > 100  # room for the value written on a 100% bar
    ax = line_fig().axes[0]
    assert texts(ax) == ["45.0", figures.MISSING, "30.0", "40.0", "42.0", figures.MISSING]


def test_error_bars_where_a_cell_has_several_seeds():
    ax = line_fig().axes[0]
    bars = [c for c in ax.containers if c.has_yerr]
    assert len(bars) == 2
    segments = bars[0].lines[2][0].get_segments()  # one per point: 2 x std, none where the point is missing
    assert [round(float(s[1][1] - s[0][1]), 2) if len(s) else None for s in segments] == [14.14, None, 4.0]
    with_std = bar_fig(series={"a": [(50.0, 5.0), (40.0, None), (None, None)]}).axes[0]
    errorbar = [c for c in with_std.containers if isinstance(c, BarContainer)][0].errorbar
    assert errorbar is not None and [len(s) for s in errorbar.lines[2][0].get_segments()] == [2, 0, 0]  # none for one seed
    assert with_std.texts[0].xy[1] == 55.0  # the value above the error bar
    assert all(not c.has_yerr for c in bar_fig().axes[0].containers if isinstance(c, ErrorbarContainer))
    assert [c.errorbar for c in bar_fig().axes[0].containers] == [None, None]  # one seed: no error bar


def test_the_report_writes_keeps_and_links_an_svg_per_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking, "sync_runs", lambda params, items: {})
    monkeypatch.setattr(tracking, "log_report", lambda *a, **kw: "fake-run-id", raising=False)
    params = load_params(ROOT / "profiles" / "offline.yaml")
    report.FIGURES.mkdir(parents=True)
    (report.FIGURES / "gone.svg").write_text("<svg/>")
    out = report.run(params)
    assert not (report.FIGURES / "gone.svg").exists()
    for name in params.tables:
        svg = report.FIGURES / f"{name}.svg"
        assert svg in out and (report.FIGURES / f"{name}.png") in out
        ET.parse(svg)
        assert f"(../figures/{name}.svg)" in (report.TABLES / f"{name}.md").read_text()
        assert f"[svg](../figures/{name}.svg)" in report.INDEX.read_text()


def test_cost_figure_plots_accuracy_against_cost_and_names_the_missing_cells(tmp_path):
    series = {"cot5": [(0.10, 40.0, "1"), (0.50, 55.0, "5")], "cot5_se": [(0.30, 45.0, "1"), (None, 60.0, "5")]}
    fig = figures.render_cost(LONG_TITLE, series, "teacher_usd (USD)", "accuracy (%)", "cots")
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines["cot5"].get_xdata()) == [0.10, 0.50] and list(lines["cot5"].get_ydata()) == [40.0, 55.0]
    assert list(lines["cot5_se"].get_xdata()) == [0.30]  # the cell without a cost is not drawn ...
    texts = [t.get_text() for t in ax.texts]
    assert any("n/a: cot5_se cots=5" in t for t in texts)  # ... and is named
    assert "cots=5: 55.0" in texts
    assert ax.get_ylim() == (0, 108.0) and ax.get_xlim()[1] == pytest.approx(1.25 * 0.50)
    png, svg = figures.save(fig, tmp_path / "cost.png")
    assert png.read_bytes() == figures.save(figures.render_cost(LONG_TITLE, series, "teacher_usd (USD)", "accuracy (%)",
                                                                "cots"), tmp_path / "again.png")[0].read_bytes()
