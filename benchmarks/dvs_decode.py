"""DVS-CIFAR10 decode throughput: AEDAT 2.0 decoding, framing + resizing, and cached loads.

Writes synthetic files in the original release's binary layout, sized like the real ones
(about 87,000 events, ~700 KB each), and times the data set's own code paths. Prints a table and
writes JSON to benchmarks/results/dvs_decode-<host>.json.

    python benchmarks/dvs_decode.py [--files 200] [--events 87000]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_dvs import CLASSES, write_aedat2  # noqa: E402  (the tests' writer of the real layout)

from sakd.data import build_dataset  # noqa: E402
from sakd.data.events import read_aedat2_cifar10dvs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="files in all (spread over the 10 classes)")
    parser.add_argument("--events", type=int, default=87_000, help="events per file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per_class = max(1, args.files // len(CLASSES))
        for c in CLASSES:
            for i in range(per_class):
                t = np.sort(rng.integers(0, 1_300_000, args.events))
                write_aedat2(root / c / f"cifar10_{c}_{i}.aedat", t, *rng.integers(0, 128, (2, args.events)),
                             rng.integers(0, 2, args.events))
        files = sorted(root.glob("*/*.aedat"))
        n_events = len(files) * args.events
        mb = sum(f.stat().st_size for f in files) / 1e6

        t0 = time.perf_counter()
        for f in files:
            read_aedat2_cifar10dvs(f)
        decode = time.perf_counter() - t0

        data = build_dataset("dvs_cifar10", root=str(root), augment=False)
        t0 = time.perf_counter()
        for ds in (data.train, data.test):
            for i in range(len(ds)):
                ds[i]
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for ds in (data.train, data.test):
            for i in range(len(ds)):
                ds[i]
        cached = time.perf_counter() - t0

    rows = {
        "decode AEDAT 2.0": (decode, n_events / decode),
        "decode + 4 frames + resize 48 + cache write (epoch 1)": (first, n_events / first),
        "cached frames (epoch 2+)": (cached, n_events / cached),
    }
    print(f"{len(files)} files, {args.events:,} events each, {mb:.0f} MB, {platform.processor() or platform.machine()}")
    print(f"{'path':<56} {'seconds':>8} {'events/s':>14} {'files/s':>9}")
    for name, (sec, eps) in rows.items():
        print(f"{name:<56} {sec:>8.2f} {eps:>14,.0f} {len(files) / sec:>9.1f}")
    print(f"epoch 2+ is {first / cached:.1f}x faster than epoch 1 (same run, side by side)")
    out = Path(__file__).parent / "results" / f"dvs_decode-{platform.node() or 'host'}.json"
    out.write_text(json.dumps({"files": len(files), "events_per_file": args.events, "megabytes": mb,
                               "machine": platform.machine(), "cpus": __import__("os").cpu_count(),
                               **{k: {"seconds": s, "events_per_s": e} for k, (s, e) in rows.items()}}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
