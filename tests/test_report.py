"""``sakd report`` (one self-contained HTML file) and the energy columns of ``sakd compare``: the page
loads nothing from outside, holds every section with numbers equal to the run folders' own, and
the analysis it needs is cached in each run folder and reused."""

import html
import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sakd import runs
from sakd.analysis.analyze import analyze_run
from sakd.cli import main
from sakd.compare import compare


class Page(HTMLParser):
    """Tags, ids, classes, external references and the text of tables and <pre> of a page."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.ids, self.classes, self.refs, self.tables, self.pres = [], set(), [], [], [], []
        self._cell, self._pre = None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.ids.add(a.get("id"))
        self.classes += (a.get("class") or "").split()
        self.refs += [a[k] for k in ("src", "href") if k in a]
        if tag == "table":
            self.tables.append((a.get("class"), []))
        elif tag == "tr":
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "pre":
            self._pre = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][1][-1].append(self._cell)
            self._cell = None
        elif tag == "pre":
            self.pres.append(self._pre)
            self._pre = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._pre is not None:
            self._pre += data

    def table(self, cls):
        return [rows for c, rows in self.tables if c == cls]


def test_report_of_three_runs(trio, tmp_path, capsys):
    pytest.importorskip("pytorch_grad_cam")
    run_dirs = [trio["teacher"], trio["baseline"], trio["student"]]
    out = tmp_path / "report.html"
    assert main(["report", *run_dirs, "-o", str(out), "--images", "40", "--figure-images", "2"]) == 0
    text = out.read_text()
    page = Page(text)
    # self-contained: no scripts, no style sheets or images from elsewhere
    assert "script" not in page.tags and "link" not in page.tags
    assert page.refs and all(r.startswith("data:image/png;base64,") for r in page.refs)
    assert {"summary", "overlay", "figure4"} <= page.ids and page.classes.count("run") == 3
    assert page.tags.count("svg") == 1 + 3 + 2  # the overlay, each run's curves, the SNNs' firing rates

    summary = page.table("summary")[0]
    for row in summary[1:]:
        name = row[0]
        run = next(r for r in run_dirs if Path(r).name == name)
        records = [json.loads(line) for line in (Path(run) / runs.METRICS).read_text().splitlines()]
        assert row[7].startswith(f"{records[-1]['test/top1']:.2f} (ep. {records[-1]['epoch']})")
        assert row[6].startswith(f"{max(r['test/top1'] for r in records):.2f}")
        analysis = json.loads((Path(run) / runs.ANALYSIS).read_text())
        if row[3] == "ANN":
            assert row[11] == f"{analysis['total']['ann_energy_pj'] / 1e6:,.2f}" and row[10] == "-"
        else:
            assert analysis["images"] == 40
            assert row[10] == f"{analysis['total']['snn_acs'] / 1e6:,.2f} M"
            assert row[12] == f"{analysis['total']['energy_ratio']:.3f}"
    energy = page.table("energy")
    assert len(energy) == 2 and energy[0][-1][0] == "total" and len(energy[0]) == 1 + 10 + 1  # resnet_tiny: 10 layers
    memory = page.table("memory")  # beside it, the default energy model that counts memory traffic
    assert len(memory) == 2 and [r[0] for r in memory[0][1:]] == [
        "ops", "addressing", "weights", "inputs", "potentials", "outputs", "total"]
    student = json.loads((Path(run_dirs[2]) / runs.ANALYSIS).read_text())["energy_model"]
    assert student["model"] == "lemaire" and memory[1][-1][1] == f"{student['total']['snn_energy_pj'] / 1e6:.3f}"
    firing = page.table("firing")
    assert len(firing) == 2 and all(len(t) == 1 + 7 for t in firing)  # 7 spiking layers
    assert len(page.table("similarity")[0]) == 3  # header, SNN w/o KD, SNN with SAKD
    configs = [(Path(r) / runs.CONFIG).read_text() for r in run_dirs]
    assert sorted(page.pres) == sorted(configs)

    # the analysis is cached: a second report reuses it, and compare shows its columns
    stamps = {r: (Path(r) / runs.ANALYSIS).stat().st_mtime_ns for r in run_dirs}
    assert main(["report", trio["baseline"], trio["student"], "-o", str(tmp_path / "two.html"), "--images", "40"]) == 0
    assert stamps == {r: (Path(r) / runs.ANALYSIS).stat().st_mtime_ns for r in run_dirs}
    two = Page((tmp_path / "two.html").read_text())
    assert "figure4" not in two.ids and "figure4-note" in two.ids
    rows = compare(run_dirs)
    assert [r["sops"] is not None for r in rows] == [False, True, True]
    assert all(r["energy_uj"] > 0 for r in rows) and rows[1]["energy_ratio"] < 1


def test_compare_analyze_fills_the_energy_columns(tmp_path, capsys, trio):
    from conftest import fresh_copy

    run = fresh_copy(trio["baseline"], tmp_path)
    assert main(["compare", run, "--json", str(tmp_path / "a.json")]) == 0
    assert "run with --analyze" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.json").read_text())[0]["sops"] is None
    assert main(["compare", run, "--analyze", "--images", "30", "--json", str(tmp_path / "b.json")]) == 0
    row = json.loads((tmp_path / "b.json").read_text())[0]
    analysis = json.loads((Path(run) / runs.ANALYSIS).read_text())
    assert row["analysis_images"] == 30 and row["sops"] == analysis["total"]["snn_acs"] > 0
    # more images than the test split holds: all of them, and asking again reuses the analysis
    (Path(run) / runs.ANALYSIS).unlink()
    assert main(["compare", run, "--analyze", "--images", "100000", "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())[0]["analysis_images"] == 256
    stamp = (Path(run) / runs.ANALYSIS).stat().st_mtime_ns
    assert analyze_run(run, 100000)["images"] == 256  # what sakd report asks for: found, not recomputed
    assert (Path(run) / runs.ANALYSIS).stat().st_mtime_ns == stamp
    # a newer checkpoint makes the analysis stale: the columns empty again
    last = Path(run) / runs.LAST
    last.write_bytes(last.read_bytes())
    assert compare([run])[0]["sops"] is None
    # sakd analyze on a run folder keeps its result for compare
    assert main(["analyze", run, "--images", "20"]) == 0
    assert compare([run])[0]["analysis_images"] == 20


def test_report_without_grad_cam_says_why_figure4_is_missing(trio, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    out = tmp_path / "r.html"
    assert main(["report", *trio.values(), "-o", str(out), "--images", "40"]) == 0
    page = Page(out.read_text())
    assert "figure4" not in page.ids and 'it needs grad-cam (pip install "sakd[vis]")' in html.unescape(out.read_text())
    assert (
        main(["report", *trio.values(), "-o", str(out), "--teacher", trio["teacher"], "--baseline", trio["baseline"]])
        == 2
    )


def test_report_errors(trio, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", trio["student"], "--teacher", trio["teacher"], "-o", str(out)]) == 2
    assert "Figure 4 needs both --teacher and --baseline" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "-o", str(out)]) == 2
    assert "is not a sakd run folder" in capsys.readouterr().err
    assert not out.exists()
    out.write_text("an earlier report")
    assert main(["report", trio["student"], "--teacher", trio["teacher"], "--baseline", trio["teacher"],
                 "-o", str(out)]) == 2
    assert "the baseline must be an SNN" in capsys.readouterr().err
    assert out.read_text() == "an earlier report"  # nothing already written is lost


def test_report_and_compare_skip_what_is_not_a_finished_run_and_refuse_mixed_image_counts(trio, tmp_path, capsys):
    """``DIR/*`` holds a run that failed before its first checkpoint and other files: report skips
    them with a line each; compare refuses to set energy counted on 20 images beside energy counted
    on 40 unless told, and says on how many images the figures were counted."""
    import shutil

    from conftest import fresh_copy

    runs_dir = tmp_path / "runs"
    a, b = fresh_copy(trio["baseline"], runs_dir / "a"), fresh_copy(trio["student"], runs_dir / "b")
    failed = runs_dir / "failed"
    failed.mkdir()
    shutil.copy(Path(a) / runs.CONFIG, failed / runs.CONFIG)
    (failed / runs.METRICS).write_text("")
    (runs_dir / "notes.txt").write_text("not a run")
    out = tmp_path / "r.html"
    everything = sorted(str(p) for p in runs_dir.glob("*/*")) + [str(failed), str(runs_dir / "notes.txt")]
    assert main(["report", *everything, "-o", str(out), "--images", "20"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"skipped: {failed} has no last.pt (the run stopped before its first checkpoint)" in err
    assert f"skipped: {runs_dir / 'notes.txt'} is not a sakd run folder" in err
    assert out.is_file()

    (a_run,) = [p for p in everything if p.startswith(str(a))]
    (b_run,) = [p for p in everything if p.startswith(str(b))]
    assert main(["analyze", b_run, "--images", "40", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["compare", a_run, b_run]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "counted on different numbers of test images" in err and ": 20, " in err
    assert main(["compare", a_run, b_run, "--mixed-images"]) == 0
    assert "counted on 20 / 40 test images (different counts" in " ".join(capsys.readouterr().out.split())
    assert main(["compare", a_run, b_run, str(failed), "--analyze", "--images", "30", "--device", "cpu"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "counted on 30 test images" in printed and "failed" in printed  # a failed run's metrics are a row
