"""How long ``sakd analyze`` takes, against the plain evaluation of the same images.

A ResNet-19 SNN (T=4, the paper's CIFAR model) is saved as a checkpoint whose config reads N
synthetic 32x32 images (the dense work does not depend on pixel values; the spike-driven counts are
exact whatever the rates). Measured in one process: the wall time of ``analyze_checkpoint``
(forward + exact operation counts + firing rates + the ANN twin's count) and of ``evaluate`` (the
forward of ``sakd eval``: top-1, loss, firing rates) on the same N images, once each (whole runs
of minutes vary by 10-20% on a shared VM), and what counting costs, precisely: one batch forward
with the counters against the same forward with only the firing-rate monitor that evaluation has,
interleaved, ratio of medians. The machine's dense matrix-multiply rate bounds the forward:
``N x T x (the ANN's MACs) x 2 / FLOP/s`` seconds is printed beside it.

    python benchmarks/analyze_speed.py                        # ResNet-19, 1,000 images (2-CPU VM: ~6 min)
    python benchmarks/analyze_speed.py --quick                # resnet_tiny, 64 images (a smoke test)
    python benchmarks/analyze_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import interleaved, machine  # noqa: E402

from sakd.analysis.analyze import analyze_checkpoint  # noqa: E402
from sakd.analysis.energy import OpCounter  # noqa: E402
from sakd.neurons import FiringRateMonitor  # noqa: E402
from sakd.training.evaluate import checkpoint_and_test_data  # noqa: E402
from sakd.models import checkpoint as ckpt_io  # noqa: E402
from sakd.models.registry import ModelSpec  # noqa: E402
from sakd.training import load_config  # noqa: E402
from sakd.training.evaluate import evaluate  # noqa: E402
from sakd.training.runtime import place, resolve_device  # noqa: E402


def save_checkpoint(folder: Path, model: str, images: int, size: int, batch: int) -> Path:
    cfg = load_config(
        "cifar10/resnet19_snn",
        [
            f"model.name={model}",
            "data.name=synthetic",
            "data.num_workers=0",
            f"data.batch_size={batch}",
            f"data.options={{image_size: {size}, train_size: 10, test_size: {images}}}",
        ],
    )
    torch.manual_seed(0)
    spec = ModelSpec(name=model, spiking=True, num_classes=10, timesteps=4)
    net = spec.build()
    path = folder / "last.pt"
    ckpt_io.atomic_save(ckpt_io.payload(spec, net, config=cfg.to_dict(), epoch=0, history=[]), path)
    return path


def matmul_flops(device: torch.device, seconds: float = 3.0) -> float:
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * 2048**3 * n / (time.perf_counter() - start)


def warm_up(path: Path, device: torch.device) -> None:
    """One small forward, so that neither timing pays for compiling the neuron kernels."""
    model, _ = ckpt_io.model_from_checkpoint(path)
    with torch.inference_mode():
        place(model, device, True).eval()(torch.randn(2, 3, 16, 16, device=device))


def counting_overhead(path: Path, device: torch.device, repeats: int) -> float:
    """Forward of one batch with the operation counters and firing-rate monitor, over the same
    forward with the monitor alone (what evaluation runs): interleaved, ratio of medians."""
    state, cfg, data = checkpoint_and_test_data(path, None, "analyze")
    model, _ = ckpt_io.model_from_checkpoint(state)
    model = place(model, device, cfg.run.channels_last).eval()
    x, _ = next(iter(DataLoader(data.test, batch_size=min(32, len(data.test)), collate_fn=data.collate_fn)))
    x = x.to(device)

    def counted():
        with torch.inference_mode(), OpCounter(model), FiringRateMonitor(model):
            model(x)

    def monitored():
        with torch.inference_mode(), FiringRateMonitor(model):
            model(x)

    t = interleaved({"counted": counted, "monitored": monitored}, device, warmup=1, repeats=repeats)
    return t["counted"] / t["monitored"]


def time_eval(path: Path, device: torch.device) -> float:
    """``sakd eval``'s work, loading included (as in :func:`time_analyze`)."""
    start = time.perf_counter()
    state, cfg, data = checkpoint_and_test_data(path, None, "eval")
    model, _ = ckpt_io.model_from_checkpoint(state)
    loader = DataLoader(data.test, batch_size=cfg.data.batch_size, collate_fn=data.collate_fn)
    evaluate(place(model, device, cfg.run.channels_last), loader, device)
    return time.perf_counter() - start


def time_analyze(path: Path, device: torch.device) -> tuple[float, dict]:
    start = time.perf_counter()
    result = analyze_checkpoint(path, device=str(device), progress=False)
    return time.perf_counter() - start, result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet19")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7, help="interleaved batch forwards for the counting overhead")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="resnet_tiny, 64 images of 16x16, 1 round")
    p.add_argument("--out", help="JSON results (default: benchmarks/results/analyze_speed-<device>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.images, args.image_size, args.repeats = "resnet_tiny", 64, 16, 2
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp), args.model, args.images, args.image_size, args.batch)
        warm_up(path, device)
        analyze_s, result = time_analyze(path, device)
        print(f"analyze: {analyze_s:.1f} s", flush=True)
        eval_s = time_eval(path, device)
        print(f"eval: {eval_s:.1f} s", flush=True)
        overhead = counting_overhead(path, device, args.repeats)
        print(f"counting overhead on one batch: {overhead:.3f}x", flush=True)
    flops = matmul_flops(device)
    ann_macs = result["total"]["ann_macs"]
    bound = args.images * 4 * ann_macs * 2 / flops
    out = {
        "machine": machine(device), "model": args.model, "timesteps": 4, "images": args.images,
        "image_size": args.image_size, "batch": args.batch, "repeats": args.repeats,
        "analyze_s": analyze_s, "eval_s": eval_s, "analyze_over_eval": analyze_s / eval_s,
        "counting_overhead": overhead,
        "ann_macs_per_image": ann_macs, "matmul_flop_per_s": flops,
        "dense_forward_bound_s": bound, "firing_rate": result["firing_rate"],
        "goal_s": 60.0, "goal_met": analyze_s < 60.0,
    }
    print(
        f"{args.model} SNN (T=4), {args.images} images of {args.image_size}x{args.image_size} on {device}: "
        f"analyze {out['analyze_s']:.1f} s, plain evaluation {out['eval_s']:.1f} s "
        f"(analyze/eval {out['analyze_over_eval']:.2f}x; counting itself {overhead:.3f}x per batch); "
        "dense forward at this machine's matmul rate "
        f"({flops / 1e9:.0f} GFLOP/s): {bound:.1f} s; goal < 60 s: {'met' if out['goal_met'] else 'missed'}"
    )
    dest = Path(args.out) if args.out else Path(__file__).parent / "results" / f"analyze_speed-{device.type}.json"
    if not args.quick or args.out:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(out, indent=2))
        print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
