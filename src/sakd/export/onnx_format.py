"""ONNX export: the one-timestep graph (BatchNorm folded) unrolled over the T timesteps.

The ONNX model takes what the PyTorch model takes (images ``[B, C, H, W]``, directly encoded, or
frames ``[T, B, C, H, W]``) and returns the logits ``[B, K]``, the mean over the timesteps. Each
neuron's membrane is an intermediate tensor carried from one unrolled step to the next (no state
outside the graph; for LIF ``H = λ·V + X``, ``S = Cast(H >= V_th)``, ``V = H·(1 - S)``), each
neuron's own one-step form. A model whose neuron has no one-step form is traced over its whole
multi-step forward instead (the T steps then unrolled by the tracer, BatchNorm kept as ONNX's own
operator). The batch size is dynamic; T is fixed by the checkpoint. :func:`run_onnx` runs the file in onnxruntime.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import fx, nn

from sakd.errors import ConfigError
from sakd.export.graph import has_step_forms, reset, step_graph
from sakd.export.registry import EXPORTERS
from sakd.outputs import written


class Unrolled(nn.Module):
    """The one-step graph run ``timesteps`` times from a rested state; logits averaged."""

    def __init__(self, gm: fx.GraphModule, timesteps: int, frames: bool):
        super().__init__()
        self.gm, self.timesteps, self.frames = gm, timesteps, frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reset(self.gm)
        total = None
        for t in range(self.timesteps):
            out = self.gm(x[t] if self.frames else x)
            total = out if total is None else total + out
        reset(self.gm)
        return total / self.timesteps


class FixedAdaptiveAvgPool(nn.Module):
    """``AdaptiveAvgPool2d`` for one input size, as two averaging matrices (ONNX pools adaptively
    only to sizes that divide the input: torchvision's VGG pools 1x1 maps of 32x32 images to 7x7)."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]):
        super().__init__()
        self.register_buffer("rows", _bins(in_hw[0], out_hw[0]))
        self.register_buffer("cols", _bins(in_hw[1], out_hw[1]).T.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows.to(x.dtype) @ x @ self.cols.to(x.dtype)


def _bins(n: int, m: int) -> torch.Tensor:
    """``[m, n]``: output bin i averages inputs floor(i*n/m) .. ceil((i+1)*n/m) - 1, as PyTorch's."""
    w = torch.zeros(m, n)
    for i in range(m):
        a, b = (i * n) // m, -(-((i + 1) * n) // m)
        w[i, a:b] = 1.0 / (b - a)
    return w


def fix_adaptive_pools(net: nn.Module, example: torch.Tensor) -> None:
    """Replace, in ``net``, every ``AdaptiveAvgPool2d`` whose output size does not divide its
    input size on ``example`` by :class:`FixedAdaptiveAvgPool` (the same values)."""
    pools = {n: m for n, m in net.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)}
    sizes: dict[str, tuple] = {}

    def seen(name):
        def hook(module, inputs, output) -> None:
            sizes[name] = (tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]))
        return hook

    handles = [m.register_forward_hook(seen(n)) for n, m in pools.items()]
    try:
        with torch.no_grad():
            net(example)
    finally:
        for h in handles:
            h.remove()
    for name, (hw_in, hw_out) in sizes.items():
        if any(i % o for i, o in zip(hw_in, hw_out)):
            parent, _, leaf = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, leaf, FixedAdaptiveAvgPool(hw_in, hw_out))


def require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError('ONNX export needs onnx and onnxruntime: pip install "sakd[export]"') from None


def export_onnx(gm: nn.Module, example: torch.Tensor, timesteps: int, path: str | Path, opset: int = 17,
                unrolled: bool = True) -> Path:
    """Write the one-step graph ``gm`` unrolled over ``timesteps`` (or, ``unrolled=False``, the
    model ``gm`` itself, traced over its multi-step forward: for neurons without a one-step form)
    for inputs shaped like ``example`` (batch dimension dynamic)."""
    require_onnx()
    frames = example.dim() == 5
    net = (Unrolled(gm, timesteps, frames) if unrolled else copy.deepcopy(gm)).eval()
    fix_adaptive_pools(net, example)
    batch_axis = 1 if frames else 0
    path = Path(path)
    import onnx

    with written(path, "the ONNX file") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice: it still exports exactly
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {batch_axis: "batch"}, "logits": {0: "batch"}},
        )
        onnx.checker.check_model(onnx.load(str(tmp)))
    return path


def run_onnx(path: str | Path, x: torch.Tensor) -> np.ndarray:
    """The logits onnxruntime computes for ``x`` (CPU)."""
    require_onnx()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.detach().cpu().numpy()})[0]


@EXPORTERS.register("onnx", description="ONNX, the T timesteps unrolled, logits averaged, checked with onnxruntime")
def export_onnx_file(model, example: torch.Tensor, timesteps: int, out: Path) -> dict:
    stepwise = has_step_forms(model)  # else the model's own multi-step forward is traced
    export_onnx(step_graph(model) if stepwise else model, example, timesteps, out, unrolled=stepwise)
    batch = (
        torch.randn(*example.shape[:-4], 2, *example.shape[-3:])
        if example.dim() == 5
        else torch.randn(2, *example.shape[1:])
    )
    with torch.no_grad():
        want = model(batch).numpy()
    got = run_onnx(out, batch)
    return {"graph": "one-step graph unrolled" if stepwise else "multi-step forward traced",
            "onnxruntime_max_abs_diff": float(np.abs(got - want).max()),
            "same_prediction": bool((got.argmax(1) == want.argmax(1)).all())}
