"""Figure 3: parallel coordinates of the searched subnets, coloured by accuracy.

Two panels share the accuracy axis: stage channels (left) and stage depths (right). Darker blue is
more accurate; the teacher's own architecture (the reference) is the red line.
"""

from __future__ import annotations

from pathlib import Path

from sakd.errors import ConfigError
from sakd.nas.search import read_results
from sakd.outputs import written


def plot_results(results: str | Path, out: str | Path | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm
    from matplotlib.colors import Normalize

    rows = read_results(Path(results))
    if not rows:
        raise ConfigError(f"{results} holds no search results")
    out = Path(out) if out else Path(results).with_suffix("")
    acc = [r["top1"] for r in rows]
    lo, hi = min(acc), max(acc)
    span = (hi - lo) or 1.0
    norm = Normalize(lo, hi)
    cmap = cm.get_cmap("Blues") if hasattr(cm, "get_cmap") else matplotlib.colormaps["Blues"]
    stages = len(rows[0]["channels"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for ax, key, label in ((axes[0], "channels", "channels"), (axes[1], "depths", "blocks")):
        values = [sorted({r[key][i] for r in rows}) for i in range(stages)]

        def coords(r, key=key, values=values):  # each stage axis spans its choices evenly; accuracy spans [lo, hi]
            ys = [(values[i].index(r[key][i]) / max(1, len(values[i]) - 1)) for i in range(stages)]
            return ys + [(r["top1"] - lo) / span]

        for r in sorted(rows, key=lambda r: r["top1"]):
            if not r.get("reference"):
                ax.plot(range(stages + 1), coords(r), color=cmap(0.15 + 0.85 * norm(r["top1"])), lw=1.0, alpha=0.8)
        reference = [r for r in rows if r.get("reference")]
        for r in reference:
            ax.plot(range(stages + 1), coords(r), color="red", lw=2.5)
        for i in range(stages + 1):
            ax.axvline(i, color="black", lw=0.8)
            ticks = values[i] if i < stages else [f"{lo:.2f}", f"{(lo + hi) / 2:.2f}", f"{hi:.2f}"]
            for j, t in enumerate(ticks):
                ax.text(i + 0.04, j / max(1, len(ticks) - 1), str(t), fontsize=8, va="center")
        ax.set_xticks(range(stages + 1), [f"stage {i + 1}\n{label}" for i in range(stages)] + ["top-1 (%)"])
        ax.set_yticks([])
        ax.set_xlim(-0.1, stages + 0.4)
        red = f"; red: same as teacher, {reference[0]['top1']:.2f}%" if reference else ""
        ax.set_title(f"{len(rows)} subnets: {label} per stage{red}")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="top-1 (%)")
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        with written(p, "the plot") as tmp:
            fig.savefig(tmp, dpi=150, format=p.suffix[1:])
    plt.close(fig)
    return paths
