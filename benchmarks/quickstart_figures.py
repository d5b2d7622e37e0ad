"""The README's quickstart figures, recorded from one fresh ``sakd quickstart``: its table (wall
times included), the three runs compared with SOPs and energy, the student's per-layer energy
table, Figure 4's similarity over every test image, and the figure itself.

    python benchmarks/quickstart_figures.py            # ~2-3 min on 2 CPU cores (idle machine)

Writes ``benchmarks/results/{quickstart,compare-quickstart,analyze-quickstart-sakd,figure4-quickstart}.json``
and ``docs/figure4-quickstart.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import machine  # noqa: E402

from sakd.analysis.analyze import analyze_checkpoint  # noqa: E402
from sakd.analysis.figure4 import figure4_data, plot_figure4  # noqa: E402
from sakd.compare import compare  # noqa: E402
from sakd.training.quickstart import quickstart  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NOTE = "the three runs of one `sakd quickstart` (seed 0; the README's quickstart table)"


def record(name: str, command: str, result) -> None:
    (RESULTS / f"{name}.json").write_text(json.dumps({"command": command, "note": NOTE, "result": result}, indent=2))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=None, help="where the quickstart runs go (default: a temporary folder)")
    args = p.parse_args(argv)
    out = Path(args.runs or tempfile.mkdtemp(prefix="sakd-quickstart-"))
    start = time.perf_counter()
    summaries = quickstart(str(out), None, [])
    q = Path(summaries["output_dir"])
    runs = [str(q / r) for r in ("teacher", "snn", "sakd")]
    record("quickstart", "sakd quickstart", {**summaries, "machine": machine(torch.device("cpu"))})
    record(
        "compare-quickstart", "sakd compare Q/teacher Q/snn Q/sakd --analyze --json FILE", compare(runs, analyze=True)
    )
    record("analyze-quickstart-sakd", "sakd analyze Q/sakd --json FILE", analyze_checkpoint(runs[2], progress=False))
    data = figure4_data(*runs, images=360)
    record("figure4-quickstart", "sakd visualize --teacher Q/teacher --baseline Q/snn --student Q/sakd --images 360 "
           "--no-plot --json FILE", data.summary())
    shown = figure4_data(*runs, images=4)
    png = plot_figure4(shown, Path(tempfile.mkdtemp()) / "figure4")[0]
    shutil.copy(png, Path(__file__).resolve().parents[1] / "docs" / "figure4-quickstart.png")
    print(f"recorded from {q} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
