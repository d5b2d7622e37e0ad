"""``sakd export CHECKPOINT --format nir|onnx -o FILE``: a trained SNN out of the framework.

Each format is one function in :data:`EXPORTERS` (``sakd list exporters`` lists them): it gets the
model (eval mode, float32), an example input and the timesteps, builds what it writes from the
model (most from its one-timestep graph, BatchNorm folded: :func:`~sakd.export.graph.step_graph`),
writes the file, checks it (NIR: read back with nir's own reader and compared node by node; ONNX: run in onnxruntime
against the PyTorch forward) and returns what it found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sakd.errors import ConfigError
from sakd.export.graph import has_step_forms, step_graph
from sakd.registry import Registry
from sakd.training.run_folder import Checkpoint

EXPORTERS: Registry = Registry("export format")


@EXPORTERS.register("nir", description="Neuromorphic Intermediate Representation (HDF5), one timestep, BatchNorm folded")
def export_nir(model, example: torch.Tensor, timesteps: int, out: Path, dt: float = 1.0) -> dict:
    from sakd.export.nir_format import require_nir, to_nir, write_nir

    nir = require_nir()
    step = example[0] if example.dim() == 5 else example
    graph = to_nir(step_graph(model), step, dt)
    write_nir(graph, out)
    back = nir.read(str(out))
    same = set(back.nodes) == set(graph.nodes) and sorted(back.edges) == sorted(graph.edges) and all(
        type(back.nodes[k]) is type(v) and all(np.array_equal(np.asarray(a), np.asarray(b))
                                               for a, b in zip(_params(back.nodes[k]), _params(v)))
        for k, v in graph.nodes.items())
    if not same:
        raise ConfigError(f"{out}: nir's reader does not give back the graph that was written")
    kinds = {}
    for node in graph.nodes.values():
        kinds[type(node).__name__] = kinds.get(type(node).__name__, 0) + 1
    return {"nodes": len(graph.nodes), "edges": len(graph.edges), "node_types": kinds, "read_back": True, "dt": dt}


@EXPORTERS.register("onnx", description="ONNX, the T timesteps unrolled, logits averaged, checked with onnxruntime")
def export_onnx_file(model, example: torch.Tensor, timesteps: int, out: Path, **unused) -> dict:
    from sakd.export.onnx_format import export_onnx, run_onnx

    stepwise = has_step_forms(model)  # else the model's own multi-step forward is traced
    export_onnx(step_graph(model) if stepwise else model, example, timesteps, out, unrolled=stepwise)
    batch = torch.randn(*example.shape[:-4], 2, *example.shape[-3:]) if example.dim() == 5 else torch.randn(2, *example.shape[1:])
    with torch.no_grad():
        want = model(batch).numpy()
    got = run_onnx(out, batch)
    return {"graph": "one-step graph unrolled" if stepwise else "multi-step forward traced",
            "onnxruntime_max_abs_diff": float(np.abs(got - want).max()),
            "same_prediction": bool((got.argmax(1) == want.argmax(1)).all())}


def _params(node) -> list:
    return [v for k, v in sorted(vars(node).items()) if k not in ("input_type", "output_type", "metadata")]


def example_input(checkpoint: Checkpoint, input_size: tuple[int, int] | None) -> torch.Tensor:
    """One input the checkpoint's model takes: an image ``[1, C, H, W]`` or frames ``[T, 1, C, H, W]``;
    H, W from ``input_size`` or from the checkpoint's data set."""
    spec, d = checkpoint.spec, checkpoint.config.data
    frames = None
    if input_size is None:
        from sakd.data import open_data

        try:
            data = open_data(d, augment=False, download=False)
        except Exception as exc:
            raise ConfigError(f"give --input-size H W: the checkpoint's data set cannot be read here to learn it ({exc})") from None
        input_size = (data.image_size, data.image_size)
        frames = getattr(data, "frames", None)
    shape = (1, spec.in_channels, *input_size)
    return torch.randn(spec.timesteps, *shape) if frames else torch.randn(*shape)


def export_checkpoint(path, fmt: str, out: str | Path, input_size: tuple[int, int] | None = None, **options) -> dict:
    """Export a spiking checkpoint's student to ``out`` in format ``fmt`` (``options``: the
    format's own, e.g. NIR's ``dt``); returns a summary."""
    exporter = EXPORTERS.get(fmt)
    checkpoint = Checkpoint.load(path)
    spec = checkpoint.spec
    if not spec.spiking:
        raise ConfigError(f"{checkpoint.path} holds an ANN ({spec.name}); sakd export takes a spiking checkpoint")
    model = checkpoint.model().float().eval()
    example = example_input(checkpoint, input_size)
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")  # an export that fails leaves an earlier file as it was
    try:
        summary = exporter(model, example, spec.timesteps, tmp, **options)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"checkpoint": checkpoint.path, "model": spec.name, "timesteps": spec.timesteps, "format": fmt,
            "file": str(out), "input_shape": list(example.shape), **summary}
