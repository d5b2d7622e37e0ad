"""The energy table of the docs and README: every energy model (``sakd list energy-models``) on
the quickstart's trained SNNs and on ResNet-19 at T=4, SNN against its ANN twin, so the ratio
with and without memory traffic stands side by side, counted once per network.

* **quickstart**: the SNN baseline and the SAKD student of one fresh ``sakd quickstart`` (seed 0,
  trained), every test image (360), through ``sakd analyze``'s counting.
* **ResNet-19, T=4**: the paper's CIFAR network at 32x32, weights at initialisation, BatchNorm
  statistics from 4 batches of the images counted (a network that has seen no data fires at no
  meaningful rate; this one fires at the rate printed, which training changes): N synthetic
  images (normal, per pixel).

    python benchmarks/energy.py                         # quickstart + ResNet-19 on 32 images (~4 min, 2 CPUs)
    python benchmarks/energy.py --runs Q                # reuse a quickstart's runs folder (Q/snn, Q/sakd)

Writes ``benchmarks/results/energy.json`` and ``energy.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import machine  # noqa: E402

from sakd.analysis.analyze import dense_counts  # noqa: E402
from sakd.analysis.energy import OpCounter  # noqa: E402
from sakd.analysis.energy_models import ENERGY_MODELS, estimate  # noqa: E402
from sakd.models import checkpoint as ckpt_io  # noqa: E402
from sakd.models.registry import ModelSpec  # noqa: E402
from sakd.neurons import FiringRateMonitor  # noqa: E402
from sakd.runs import checkpoint_path  # noqa: E402
from sakd.training.evaluate import checkpoint_and_test_data  # noqa: E402
from sakd.training.quickstart import quickstart  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def price(name: str, snn: torch.nn.Module, batches, spec: ModelSpec) -> dict:
    """Count ``snn`` (and its ANN twin, on the first batch) over ``batches`` once; price by every model."""
    snn.eval()
    counter, rates, seen = OpCounter(snn), FiringRateMonitor(snn), 0
    with torch.inference_mode(), counter, rates:
        for x in batches:
            snn(x)
            if not seen:
                ann_layers, ann_images = dense_counts(spec, x, torch.device("cpu"), False)
            seen += x.shape[1] if x.dim() == 5 else x.shape[0]
    models = {m: estimate(m, counter.layers, counter.neurons, ann_layers, seen, ann_images=ann_images)
              for m in model_names()}
    row = {"network": name, "images": seen, "timesteps": spec.timesteps, "firing_rate": rates.mean_rate()}
    for m, r in models.items():
        t = r["total"]
        row[m] = {"snn_uj": t["snn_energy_pj"] / 1e6, "ann_uj": t["ann_energy_pj"] / 1e6,
                  "ratio": t["energy_ratio"], "snn_memory_share": t["snn_memory_share"],
                  "ann_memory_share": t["ann_memory_share"],
                  "snn_pj_by_component": t["snn"]["pj"], "ann_pj_by_component": t["ann"]["pj"]}
    return row


def quickstart_rows(runs: Path) -> list[dict]:
    rows = []
    for role, label in (("snn", "quickstart SNN baseline"), ("sakd", "quickstart SNN + SAKD")):
        state, cfg, data = checkpoint_and_test_data(checkpoint_path(runs / role), None, "analyze")
        snn, _ = ckpt_io.model_from_checkpoint(state)
        loader = torch.utils.data.DataLoader(data.test, batch_size=120, collate_fn=data.collate_fn)
        rows.append(price(label, snn, (x for x, _ in loader), state["spec"]))
    return rows


def resnet19_row(images: int) -> dict:
    torch.manual_seed(0)
    spec = ModelSpec(name="resnet19", spiking=True, num_classes=10, timesteps=4)
    snn = spec.build()
    batches = [torch.randn(8, 3, 32, 32) for _ in range(images // 8)]
    for m in snn.modules():  # BatchNorm statistics of the images (a plain average), weights as initialised
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    snn.train()
    with torch.no_grad():
        for x in batches[:4]:
            snn(x)
    return price("ResNet-19 (init, BN calibrated), 32x32", snn, batches, spec)


def model_names() -> list[str]:
    """Operations only first, then the models that count memory."""
    return sorted(ENERGY_MODELS.names(), key=lambda m: (m != "ops", m))


def markdown(rows: list[dict]) -> str:
    names = model_names()
    head = "| network | firing rate | " + " | ".join(f"{m}: SNN / ANN (uJ), ratio" for m in names) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(names)]
    for r in rows:
        cells = [f"{r[m]['snn_uj']:.3f} / {r[m]['ann_uj']:.3f}, **{r[m]['ratio']:.3f}**" for m in names]
        lines.append(f"| {r['network']} ({r['images']} images, T={r['timesteps']}) | {r['firing_rate']:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=None, help="a quickstart's runs folder (default: run a fresh quickstart)")
    p.add_argument("--images", type=int, default=32, help="ResNet-19's images (a multiple of 8)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    if args.runs:
        runs = Path(args.runs)
    else:
        runs = Path(quickstart(tempfile.mkdtemp(prefix="sakd-energy-"), None, [])["output_dir"])
    rows = quickstart_rows(runs) + [resnet19_row(args.images)]
    result = {"command": " ".join(["python benchmarks/energy.py", *(argv if argv is not None else sys.argv[1:])]),
              "models": {m: ENERGY_MODELS.describe()[m]
                                                                    for m in model_names()},
              "rows": rows, "machine": machine(torch.device("cpu")), "seconds": time.perf_counter() - start}
    (RESULTS / "energy.json").write_text(json.dumps(result, indent=2))
    table = markdown(rows)
    (RESULTS / "energy.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
