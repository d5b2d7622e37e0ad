"""``sakd analyze CHECKPOINT``: per layer and in total, firing rates, synaptic operations, the ANN
twin's MACs and the energy estimate of :mod:`sakd.analysis.energy`, on the test split."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Subset, default_collate

from sakd import runs
from sakd.analysis.energy import COUNTING, E_AC_PJ, E_MAC_PJ, OpCounter, as_dict, energy_table
from sakd.analysis.energy_models import estimate
from sakd.analysis.energy_models.registry import COMPONENTS, model_named
from sakd.neurons import FiringRateMonitor
from sakd.errors import ConfigError
from sakd.training.evaluate import checkpoint_and_test_data
from sakd.models import checkpoint as ckpt_io
from sakd.outputs import write_bytes
from sakd.tables import print_table
from sakd.training.runtime import place, resolve_device, resolve_workers

ENERGY_MODEL = "lemaire"  # the memory-aware model shown beside the operations-only figure by default


def analyze_checkpoint(path, images: int | None = None, overrides: list[str] | None = None, device: str = "auto",
                       e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ, batch_size: int | None = None,
                       progress: bool = True, energy_model: str = ENERGY_MODEL,
                       energy_options: dict | None = None) -> dict:
    """Counts and energy of a spiking checkpoint on the first ``images`` test images (all if None):
    the operations-only figure (``e_mac``, ``e_ac``) and, beside it, ``energy_model``'s
    (:mod:`sakd.analysis.energy_models`, with ``energy_options``)."""
    model_named(energy_model, energy_options)  # an unknown model or option fails before anything is read
    state, cfg, data = checkpoint_and_test_data(path, overrides, "analyze")
    spec = state["spec"]
    if not spec.spiking:
        raise ConfigError(f"{state['path']} holds an ANN ({spec.name}); sakd analyze measures a spiking model")
    return _analyze(state, cfg, data, images, device, e_mac, e_ac, batch_size, progress, energy_model,
                    energy_options)


def _analyze(state, cfg, data, images, device, e_mac, e_ac, batch_size, progress, energy_model=ENERGY_MODEL,
             energy_options=None) -> dict:
    spec = state["spec"]
    test = data.test
    if images is not None:
        if not 0 < images <= len(test):
            raise ConfigError(f"--images must lie in 1..{len(test)} (the test split of {cfg.data.name}), got {images}")
        test = Subset(test, range(images))
    dev = resolve_device(device, setting="--device")
    snn, _ = ckpt_io.model_from_checkpoint(state)
    snn = place(snn, dev, cfg.run.channels_last).eval()
    loader = DataLoader(test, batch_size=batch_size or cfg.data.eval_batch_size or cfg.data.batch_size,
                        num_workers=resolve_workers(cfg.data.num_workers), collate_fn=data.collate_fn)
    snn_ops = OpCounter(snn)
    correct = seen = 0
    bar = Progress(TextColumn("analyze"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), transient=True, disable=not progress)
    rates = FiringRateMonitor(snn)
    with torch.inference_mode(), snn_ops, rates, bar:
        for x, y in bar.track(loader, total=len(loader)):
            x, y = x.to(dev), y.to(dev)
            correct += int((snn(x).argmax(1) == y).sum())
            seen += len(y)
            if seen == len(y):  # the ANN twin once, on the first batch
                ann_layers, ann_images = dense_counts(spec, x, dev, cfg.run.channels_last)
    memory = estimate(energy_model, snn_ops.layers, snn_ops.neurons, ann_layers, seen, energy_options, ann_images)
    for rec in ann_layers.values():  # the first batch's counts, scaled to the images the SNN saw
        rec.dense_macs = round(rec.dense_macs * seen / ann_images)
        rec.padded_macs = round(rec.padded_macs * seen / ann_images)
    table = energy_table(snn_ops.layers, ann_layers, seen, e_mac, e_ac, frames=x.shape[0] if x.dim() == 5 else None)
    warning = rates.silence(cfg.run.low_firing_rate)
    return {"checkpoint": state["path"], "model": spec.name, "timesteps": spec.timesteps, "data": cfg.data.name,
            "images": seen, "top1": 100.0 * correct / seen, "firing_rate": rates.mean_rate(),
            "layer_firing_rates": rates.rates(), **table, "energy_model": memory, "counts": as_dict(snn_ops.layers),
            **({"firing_warning": warning} if warning else {})}


def dense_counts(spec, x: torch.Tensor, dev, channels_last: bool) -> tuple[dict, int]:
    """The dense MACs of ``spec``'s ANN twin, layer by layer, on the batch ``x``, and the number of
    images in it (the counts depend on the input size only, not on weights or pixels)."""
    ann = place(spec.replace(spiking=False).build(), dev, channels_last).eval()
    with torch.inference_mode(), OpCounter(ann) as ops:
        ann(x)
    return ops.layers, x.shape[1] if x.dim() == 5 else x.shape[0]


def ann_cost(state, cfg, data, device: str = "auto", e_mac: float = E_MAC_PJ) -> dict:
    """An ANN checkpoint's dense MACs and energy per image (counted on two test images)."""
    spec = state["spec"]
    dev = resolve_device(device, setting="--device")
    x, _ = (data.collate_fn or default_collate)([data.test[i] for i in range(min(2, len(data.test)))])
    layers, images = dense_counts(spec, x.to(dev), dev, cfg.run.channels_last)
    per_image = sum(rec.dense_macs for rec in layers.values()) / images
    padded = sum(rec.padded_macs for rec in layers.values()) / images
    return {"checkpoint": state["path"], "model": spec.name, "spiking": False, "data": cfg.data.name, "e_mac_pj": e_mac,
            "counting": COUNTING, "total": {"ann_macs": per_image, "ann_padded_macs": padded,
                                            "ann_energy_pj": e_mac * per_image}}


def analyze_run(run_dir, images: int | None = None, device: str = "auto", refresh: bool = False,
                progress: bool = True) -> dict:
    """The analysis of a run folder's last checkpoint (SNN: :func:`analyze_checkpoint` on the first
    ``images`` test images; ANN: :func:`ann_cost`), kept in the folder's ``analysis.json`` and
    reused while the checkpoint and ``images`` stay the same."""
    cache, key = Path(run_dir).expanduser() / runs.ANALYSIS, cache_key(run_dir, images)
    if cache.is_file() and not refresh:
        cached = json.loads(cache.read_text())
        if cached.get("cache_key") == key:
            return cached
    state, cfg, data = checkpoint_and_test_data(runs.checkpoint_path(run_dir), None, "analyze")
    if state["spec"].spiking:
        # at most the whole test split; the cache keeps the number asked for, so asking again finds it
        shown = None if images is None else min(images, len(data.test))
        result = _analyze(state, cfg, data, shown, device, E_MAC_PJ, E_AC_PJ, None, progress)
        result["spiking"] = True
    else:
        result = ann_cost(state, cfg, data, device)
    save_analysis(result, run_dir, images)
    return result


def cache_key(run_dir, images: int | None) -> dict | None:
    """What an ``analysis.json`` was computed from: the last checkpoint's size and time, and ``images``."""
    path = runs.checkpoint_path(run_dir)
    if not path.is_file():
        return None
    stat = path.stat()
    return {"checkpoint_bytes": stat.st_size, "checkpoint_mtime_ns": stat.st_mtime_ns, "images": images,
            "counting": COUNTING, "energy_model": ENERGY_MODEL}  # one counted by an earlier rule is made again


def save_analysis(result: dict, run_dir, images: int | None) -> None:
    """Keep ``result`` (default energies, the run's own data) as the run folder's ``analysis.json``."""
    result["cache_key"] = cache_key(run_dir, images)
    write_bytes(Path(run_dir).expanduser() / runs.ANALYSIS, json.dumps(result, indent=2).encode("utf-8"),
                "the analysis")


def print_analysis(result: dict, console: Console | None = None) -> None:
    console = console or Console()
    console.print(
        f"{result['checkpoint']}: {result['model']} (SNN, T={result['timesteps']}), {result['data']} test split, "
        f"{result['images']} images, top-1 {result['top1']:.2f}%, mean firing rate {result['firing_rate']:.4f}"
    )
    headers = ["layer", "input", "rate", "SNN ACs", "SNN MACs", "ANN MACs", "energy"]
    rows = []
    for name, row in result["layers"].items():
        ratio = row["snn_energy_pj"] / row["ann_energy_pj"] if row["ann_energy_pj"] else float("nan")
        rows.append(
            [
                name,
                row["input"],
                f"{row['input_rate']:.4f}",
                f"{row['snn_acs']:,.0f}",
                f"{row['snn_macs']:,.0f}",
                f"{row['ann_macs']:,.0f}",
                f"{ratio:.3f}",
            ]
        )
    t = result["total"]
    rows.append(["total", "", "", f"{t['snn_acs']:,.0f}", f"{t['snn_macs']:,.0f}", f"{t['ann_macs']:,.0f}",
                 f"{t['energy_ratio']:.3f}"])
    silent = " — of a network that does not fire (see the warning below)" if "firing_warning" in result else ""
    print_table(console, headers, rows, left={"layer", "input"}, key="layer",
                title=f"per image (rate: of nonzero inputs; energy: SNN/ANN); E_MAC = {result['e_mac_pj']} pJ, "
                      f"E_AC = {result['e_ac_pj']} pJ (45 nm, Horowitz 2014){silent}")
    console.print(f"energy per image: SNN {t['snn_energy_pj'] / 1e6:.3f} uJ, ANN {t['ann_energy_pj'] / 1e6:.3f} uJ "
                  f"(SNN/ANN {t['energy_ratio']:.3f}, against {result['ratio_against']})")
    if "ann_energy_per_frame_pj" in t:
        console.print(f"the ANN twin on one frame: {t['ann_macs_per_frame']:,.0f} MACs, "
                      f"{t['ann_energy_per_frame_pj'] / 1e6:.3f} uJ")
    console.print(f"counted: {result['counting']}; with padding the ANN has {t['ann_padded_macs']:,.0f} MACs per image")
    print_energy_model(result["energy_model"], console)
    if "firing_warning" in result:
        console.print(f"[yellow]warning[/]: {result['firing_warning']}; the energy ratios above are of a network that "
                      "does not fire, not of a working SNN", highlight=False, soft_wrap=True)


def print_energy_model(memory: dict, console: Console) -> None:
    """The memory-aware figure: per image, energy by component, SNN against ANN."""
    t = memory["total"]
    rows = []
    for component in COMPONENTS:
        snn, ann = t["snn"]["pj"].get(component), t["ann"]["pj"].get(component)
        if snn is None and ann is None:
            continue
        moved = [t[side]["bytes"].get(component) for side in ("snn", "ann")]
        rows.append([component, *(f"{v / 1e6:.3f}" if v is not None else "-" for v in (snn, ann)),
                     *(f"{v / 1e3:,.1f}" if v is not None else "-" for v in moved)])
    rows.append(["total", f"{t['snn_energy_pj'] / 1e6:.3f}", f"{t['ann_energy_pj'] / 1e6:.3f}", "", ""])
    print_table(console, ["component", "SNN uJ", "ANN uJ", "SNN kB moved", "ANN kB moved"], rows, left={"component"},
                key="component", title=f"per image, energy model {memory['model']!r}: {memory['description']}")
    ratio = "-" if t["energy_ratio"] is None else f"{t['energy_ratio']:.3f}"
    console.print(f"with memory ({memory['model']}): SNN {t['snn_energy_pj'] / 1e6:.3f} uJ, ANN "
                  f"{t['ann_energy_pj'] / 1e6:.3f} uJ per image (SNN/ANN {ratio}); assumes: {memory['assumes']}",
                  highlight=False, soft_wrap=True)
