"""Tables readable at 80 columns (``sakd compare``, ``sakd analyze``): no line wider than the
terminal, no cell broken or cut short; and ``data.num_workers: auto`` follows the machine."""

import io

import pytest
from rich.console import Console

from sakd.tables import print_table


def rendered(width, *args, **kwargs) -> list[str]:
    buf = io.StringIO()
    print_table(Console(width=width, file=buf, color_system=None), *args, **kwargs)
    return buf.getvalue().splitlines()


def whole(cells, lines):
    return all(any(c in line for line in lines) for c in cells)


@pytest.mark.parametrize("n_rows", [1, 3, 12])
def test_a_wide_table_is_turned_at_80_columns_with_every_cell_whole(n_rows):
    headers = ["run", "data", "model", "mode", "T", "epochs", "top-1 best", "top-1 last", "top-5 last", "rate",
               "SOPs/img", "energy/img", "vs ANN"]
    rows = [[f"cifar100-resnet19-sakd-{i}", "cifar100", "resnet19", "SAKD-SNN", "4", "300/300", f"{79 + i / 10:.2f}",
             "79.31", "95.02", "0.183", "1,234.56 M", "1,111.11 uJ", "0.214"] for i in range(n_rows)]
    lines = rendered(80, headers, rows, title="runs", left={"run"}, key="run")
    assert max(map(len, lines)) <= 80
    assert whole([c for r in rows for c in r] + headers, lines)
    assert len(rendered(300, headers, rows, key="run")) == n_rows + 4  # wide enough: one line a row


def test_a_table_that_fits_with_a_lighter_frame_keeps_one_line_a_row():
    headers = ["layer", "input", "rate", "SNN ACs", "SNN MACs", "ANN MACs", "energy"]
    rows = [["layer2.0.downsample.0", "spikes", "0.4260", "2,669,979", "36,044", "2,607,296", "0.214"]] * 5
    lines = rendered(80, headers, rows, left={"layer", "input"})
    assert max(map(len, lines)) <= 80 and whole(rows[0] + headers, lines)
    assert sum("layer2.0.downsample.0" in line for line in lines) == 5


def test_compare_of_three_runs_at_80_columns(trio):
    from sakd.compare import compare

    buf = io.StringIO()
    rows = compare(list(trio.values()), console=Console(width=80, file=buf, color_system=None))
    lines = buf.getvalue().splitlines()
    assert max(map(len, lines)) <= 80
    assert whole([f"{r['best_top1']:.2f}" for r in rows] + ["top-1 best", "SAKD-SNN"], lines)


@pytest.mark.parametrize("cores, processes, workers", [(1, 1, 0), (2, 1, 1), (4, 1, 3), (16, 1, 8), (16, 8, 1)])
def test_auto_workers_follow_the_cores(monkeypatch, cores, processes, workers):
    import os

    from sakd.training.runtime import resolve_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert resolve_workers("auto", processes) == workers
    assert resolve_workers(3) == 3


def test_num_workers_defaults_to_auto_in_every_packaged_config():
    from sakd.training.config import load_config, packaged_configs

    assert load_config(None).data.num_workers == "auto"
    fixed = {name: load_config(name).data.num_workers for name in packaged_configs()}
    assert all(w in ("auto", 0) for w in fixed.values()), fixed
