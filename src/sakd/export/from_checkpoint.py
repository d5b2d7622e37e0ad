"""``sakd export CHECKPOINT --format NAME -o FILE``: a trained SNN out of the framework, in a
registered format (:data:`~sakd.export.registry.EXPORTERS`), written whole or not at all."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from sakd.errors import ConfigError
from sakd.export.registry import EXPORTERS
from sakd.training.run_folder import Checkpoint


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
            raise ConfigError(
                f"give --input-size H W: the checkpoint's data set cannot be read here to learn it ({exc})"
            ) from None
        input_size = (data.image_size, data.image_size)
        frames = getattr(data, "frames", None)
    shape = (1, spec.in_channels, *input_size)
    return torch.randn(spec.timesteps, *shape) if frames else torch.randn(*shape)


def export_checkpoint(path, fmt: str, out: str | Path, input_size: tuple[int, int] | None = None, **options) -> dict:
    """Export a spiking checkpoint's student to ``out`` in format ``fmt`` (``options``: the
    format's own, e.g. NIR's ``dt``); returns a summary."""
    exporter = EXPORTERS.get(fmt)
    takes = inspect.signature(exporter).parameters
    extra = sorted(k for k in options if k not in takes)
    if extra and not any(p.kind is p.VAR_KEYWORD for p in takes.values()):
        known = [k for k in takes if k not in ("model", "example", "timesteps", "out")]
        raise ConfigError(f"export format {fmt!r} takes no option {', '.join(map(repr, extra))}; its options: "
                          f"{', '.join(known) or 'none'}")
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
