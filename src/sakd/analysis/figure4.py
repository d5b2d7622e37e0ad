"""The paper's Figure 4 (§4.5): intermediate features and GradCAM of the ANN teacher, the SNN
trained without KD and the SNN trained with SAKD, on the same test images.

Rows: ANN / SNN w/o KD / SNN with SAKD, for each image. Columns: the input, the channel-mean feature
map at each chosen stage tap (after the activation: the ANN's ReLU output; the SNN's spikes
averaged over the timesteps, i.e. its firing-rate map), and GradCAM for the image's true class.

GradCAM comes from the ``grad-cam`` package (pytorch-grad-cam). For an SNN the gradients reach the
target layer through the surrogate spike function (eq. 4), and both the target layer's activation
(its spikes) and its gradient are averaged over the T timesteps before GradCAM weighs channels by
the spatial mean of the gradient: CAM = ReLU(sum_c mean_hw(mean_t dy/dS_t) * mean_t S_t), resized to
the input and scaled to [0, 1] per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.training.evaluate import checkpoint_and_test_data
from sakd.models import checkpoint as ckpt_io
from sakd.models.taps import FeatureExtractor
from sakd.outputs import written
from sakd.training.runtime import resolve_device

ROLES = {"teacher": "ANN", "baseline": "SNN w/o KD", "student": "SNN with SAKD"}


def require_grad_cam():
    try:
        import pytorch_grad_cam
    except ImportError:
        raise ConfigError(
            'GradCAM needs the grad-cam package: pip install "sakd[vis]" (or pip install grad-cam)'
        ) from None
    return pytorch_grad_cam


@dataclass
class Figure4Data:
    """What the figure shows, as arrays (``[N, H, W]`` each), for plotting or for tests."""

    images: np.ndarray  # [N, H, W, 3] in [0, 1], for display
    labels: list[int]
    indices: list[int]
    class_names: list[str] | None
    taps: list[str]  # names of the feature columns
    cam_tap: str
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)  # role -> per tap [N, h, w]
    cams: dict[str, np.ndarray] = field(default_factory=dict)  # role -> [N, H, W] in [0, 1]
    predictions: dict[str, list[int]] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict:
        """What the figure shows, without the pixels: images, labels, predictions, similarity."""
        return {"checkpoints": self.checkpoints, "indices": self.indices, "labels": self.labels,
                "predictions": self.predictions, "taps": self.taps, "cam_tap": self.cam_tap,
                "similarity": self.similarity()}

    def similarity(self) -> dict[str, dict]:
        """How close each SNN's maps are to the ANN teacher's: the Pearson correlation over pixels of
        each image's map with the teacher's, averaged over the images, per feature tap and for GradCAM."""
        return {role: {"features": {tap: mean_correlation(self.features[role][c], self.features["teacher"][c])
                                    for c, tap in enumerate(self.taps)},
                       "cam": mean_correlation(self.cams[role], self.cams["teacher"])}
                for role in ("baseline", "student")}


def mean_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over the first axis of the Pearson correlation of the flattened maps (a constant map
    correlates 0 with anything)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    r = np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1.0), 0.0)
    return float(r.mean())


class FramesAsChannels(nn.Module):
    """Event frames ``[T, B, C, H, W]`` seen as images ``[B, T*C, H, W]``, because GradCAM expects
    the batch first and a 2-D input."""

    def __init__(self, model: nn.Module, frames: int):
        super().__init__()
        self.model, self.frames = model, frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.unflatten(1, (self.frames, -1)).transpose(0, 1))


def same_architecture(a, b) -> bool:
    keys = ("name", "num_classes", "in_channels", "stem", "options")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def load_trio(teacher, baseline, student, overrides, device) -> tuple[dict, object, object]:
    """The three models (checked: an ANN, two SNNs, one architecture) and the student's test data."""
    state, cfg, data = checkpoint_and_test_data(student, overrides, "visualize")
    states = {
        "teacher": ckpt_io.load_checkpoint(teacher),
        "baseline": ckpt_io.load_checkpoint(baseline),
        "student": state,
    }
    for role, s in states.items():
        spec = s["spec"]
        if spec.spiking != (role != "teacher"):
            want = "an ANN" if role == "teacher" else "an SNN"
            raise ConfigError(f"--{role} {s['path']} holds {'an SNN' if spec.spiking else 'an ANN'} ({spec.name}); "
                              f"the {role} must be {want}")
        if not same_architecture(spec, state["spec"]):
            raise ConfigError(f"--{role} {s['path']} is a {spec.name} with {spec.num_classes} classes, "
                              f"{spec.in_channels} input channels, options {spec.options}; the student "
                              f"{state['path']} is a {state['spec'].name} with {state['spec'].num_classes} classes, "
                              f"{state['spec'].in_channels} input channels, options {state['spec'].options}: "
                              "Figure 4 compares one architecture")
    dev = resolve_device(device, setting="--device")
    models = {}
    for role, s in states.items():
        model, _ = ckpt_io.model_from_checkpoint(s)
        models[role] = (model.to(dev).eval(), s["path"])
    return models, cfg, data


def pick_images(test, images: int | None, indices: list[int] | None) -> list[int]:
    n = len(test)
    if indices:
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ConfigError(f"image index {bad[0]} is out of range: the test split has {n} images (0..{n - 1})")
        return list(indices)
    images = 4 if images is None else images
    if not 0 < images <= n:
        raise ConfigError(f"--images must lie in 1..{n} (the test split's size), got {images}")
    return list(range(images))


def display_images(x: torch.Tensor) -> np.ndarray:
    """Inputs as RGB in [0, 1], min-max scaled per image (event frames: summed over time)."""
    if x.dim() == 5:
        x = x.sum(0)
    x = x.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:  # e.g. two event polarities: their sum
        x = x.sum(1, keepdim=True).expand(-1, 3, -1, -1)
    lo = x.amin((1, 2, 3), keepdim=True)
    hi = x.amax((1, 2, 3), keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()


def channel_mean_features(model, x: torch.Tensor, taps: list[int]) -> tuple[list[np.ndarray], list[int]]:
    """Channel-mean maps after the activation at the chosen stage taps (SNN: also over time), and
    the model's predictions."""
    extractor = FeatureExtractor(model, level="stage", position="after")
    try:
        with torch.no_grad():
            logits, feats = extractor(x)
    finally:
        extractor.remove()
    maps = []
    for i in taps:
        f = feats[i].float()
        if f.dim() == 5:  # [T, B, C, H, W]: the mean over time
            f = f.mean(0)
        maps.append(f.mean(1).cpu().numpy())
    return maps, logits.argmax(1).tolist()


def time_mean(frames: int):
    """GradCAM's reshape: a time-folded ``[T*B, C, H, W]`` tensor to its mean over T."""
    return lambda t: t.unflatten(0, (frames, -1)).mean(0)


def gradcam(model, x: torch.Tensor, labels: list[int], tap: int) -> np.ndarray:
    """pytorch-grad-cam's GradCAM at a stage tap for the given classes, ``[N, H, W]`` in [0, 1]."""
    gc = require_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    point = model.tap_points("stage")[tap]
    layer = point.output or point.activation
    frames = x.shape[0] if x.dim() == 5 else (model.timesteps if model.spiking else 1)
    wrapped = FramesAsChannels(model, x.shape[0]) if x.dim() == 5 else model
    inputs = x.transpose(0, 1).flatten(1, 2) if x.dim() == 5 else x
    with gc.GradCAM(
        model=wrapped, target_layers=[layer], reshape_transform=time_mean(frames) if frames > 1 else None
    ) as cam:
        return cam(input_tensor=inputs, targets=[ClassifierOutputTarget(int(c)) for c in labels])


def figure4_data(teacher, baseline, student, images: int | None = 4, indices: list[int] | None = None,
                 taps: list[int] | None = None, cam_tap: int | None = None, overrides: list[str] | None = None,
                 device: str = "cpu") -> Figure4Data:
    require_grad_cam()
    models, cfg, data = load_trio(teacher, baseline, student, overrides, device)
    points = models["student"][0].tap_points("stage")
    taps = list(range(len(points))) if taps is None else list(taps)
    cam_tap = len(points) - 1 if cam_tap is None else cam_tap
    for i in [*taps, cam_tap]:
        if not -len(points) <= i < len(points):
            raise ConfigError(f"tap {i} is out of range: the model has {len(points)} stage taps "
                              f"(0..{len(points) - 1}: {', '.join(p.name for p in points)})")
    chosen = pick_images(data.test, images, indices)
    samples = [data.test[i] for i in chosen]
    x, y = (data.collate_fn or torch.utils.data.default_collate)(samples)
    dev = next(models["student"][0].parameters()).device
    x = x.to(dev)
    labels = [int(v) for v in y]
    out = Figure4Data(images=display_images(x), labels=labels, indices=chosen,
                      class_names=getattr(data.test, "classes", None),
                      taps=[points[i].name for i in taps], cam_tap=points[cam_tap].name)
    for role, (model, path) in models.items():
        out.features[role], out.predictions[role] = channel_mean_features(model, x, taps)
        out.cams[role] = gradcam(model, x, labels, cam_tap)
        out.checkpoints[role] = path
    return out


def plot_figure4(fig_data: Figure4Data, out: str | Path) -> list[Path]:
    """Figure 4 as ``out``.png and ``out``.svg; returns both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pytorch_grad_cam.utils.image import show_cam_on_image

    d = fig_data
    cols = 2 + len(d.taps)
    rows = 3 * len(d.indices)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 1.2, 1.9 * rows), squeeze=False)
    for n, index in enumerate(d.indices):
        label = d.class_names[d.labels[n]] if d.class_names else str(d.labels[n])
        for r, (role, title) in enumerate(ROLES.items()):
            row = axes[3 * n + r]
            pred = d.predictions[role][n]
            pred_name = d.class_names[pred] if d.class_names else str(pred)
            row[0].imshow(d.images[n])
            row[0].set_ylabel(f"{title}\npred {pred_name}", fontsize=8)
            for c in range(len(d.taps)):
                row[1 + c].imshow(d.features[role][c][n], cmap="viridis")
            row[-1].imshow(show_cam_on_image(d.images[n].astype(np.float32), d.cams[role][n].astype(np.float32),
                                             use_rgb=True))
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
            if r == 0:
                row[0].set_title(f"test image {index}\nclass {label}", fontsize=8)
                for c, tap in enumerate(d.taps):
                    row[1 + c].set_title(f"features\n{tap}", fontsize=8)
                row[-1].set_title(f"GradCAM ({label})\nat {d.cam_tap}", fontsize=8)
    fig.suptitle("Features (channel mean; SNN: spikes averaged over time) and GradCAM of the true class", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the title above the column titles
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        with written(p, "the figure") as tmp:
            fig.savefig(tmp, dpi=110, format=p.suffix[1:])
    plt.close(fig)
    return paths
