"""ANN -> SNN conversion (``sakd convert``): a trained ANN checkpoint becomes an SNN checkpoint at T
timesteps that every command reads (``sakd eval``, ``analyze``, ``report``, ``export``) and that
training can start from (``model.init=OUT.pt``).

Every activation site of the ANN becomes an integrate-and-fire neuron with soft reset whose
threshold θ is the site's scale, each spike worth θ (:class:`~sakd.neurons.qcfs.QCFS`: the neuron
runs ``θ · IF(x / θ)``, as SpikingJelly's converter's ``VoltageScaler(1/θ) -> IFNode ->
VoltageScaler(θ)``); BatchNorm stays, in eval mode an affine map, as folding it into the
convolution would give. Methods:

* ``qcfs``: an ANN trained with QCFS activations (``model.neuron.name=qcfs``, Bu et al. 2022): its
  learned θ are the thresholds and the membrane starts at θ/2; nothing is calibrated.
* ``max``: a plain ReLU ANN: θ is the largest output of each site over ``images`` training
  images (data-based normalisation, Diehl et al. 2015; SpikingJelly's ``RateCodingRecipe(mode="max")``).
* ``percentile``: θ is that percentile (99.9 by default) of each site's outputs, zeros included,
  as SpikingJelly computes it (Rueckauer et al. 2017's robust normalisation).

For ``max`` and ``percentile`` the membrane starts at 0 (SpikingJelly's ``IFNode``), or at
``start``·θ. ``per_channel``: one θ per channel of each site (the channel's largest output or
percentile; channel-wise normalisation, Kim et al. 2020's Spiking-YOLO), a channel whose percentile
is 0 taking its largest output, one that never fired its layer's θ; sites whose outputs are
``[B, C, H, W]`` or ``[B, F]``. The images are the first ``images`` of the training split in a
fixed shuffled order (seed 0), without augmentation.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import DataLoader, Subset

from sakd.data import open_data
from sakd.errors import ConfigError
from sakd.models import checkpoint as ckpt_io
from sakd.neurons import NeuronSpec, SpikeActivation
from sakd.training.run_folder import Checkpoint

METHODS = ("qcfs", "max", "percentile")


def activation_name(module: torch.nn.Module) -> str:
    """What an ANN's activation site computes: its class, or the function a graph twin's site calls."""
    target = getattr(module, "target", None)  # a graph twin's Call of F.relu, x.relu() ...
    return str(getattr(target, "__name__", target)).rstrip("_") if target is not None else type(module).__name__


def _sites(snn: torch.nn.Module) -> list[str]:
    return [name for name, m in snn.named_modules() if isinstance(m, SpikeActivation)]


@torch.no_grad()
def calibrate(ann: torch.nn.Module, sites: list[str], loader, percentile: float | None,
              per_channel: bool = False) -> dict[str, torch.Tensor]:
    """Each site's scale: the largest output (``percentile`` None) or that percentile of all its
    outputs over the loader's images; ``per_channel``: one per channel (dim 1), a channel whose
    percentile is 0 taking its largest output, one that never fired its site's scale."""
    seen: dict[str, list[torch.Tensor]] = {s: [] for s in sites}

    def keep(name):
        def hook(module, inputs, output):
            out = output.detach().float()
            if per_channel:
                if out.dim() not in (2, 4):
                    raise ConfigError(f"--per-channel: activation {name}'s outputs are shaped {tuple(out.shape)}; "
                                      "per-channel scales take [B, C, H, W] or [B, F] (convert it per layer)")
                out = out.transpose(0, 1).flatten(1)  # [C, values]
                seen[name].append(out.amax(1, keepdim=True) if percentile is None else out)
            else:
                seen[name].append(out.amax().reshape(1) if percentile is None else out.flatten())
        return hook

    handles = [ann.get_submodule(s).register_forward_hook(keep(s)) for s in sites]
    try:
        for x, _ in loader:
            ann(x)
    finally:
        for h in handles:
            h.remove()
    scales = {}
    for name, parts in seen.items():
        values = torch.cat(parts, dim=-1)
        if not per_channel:
            scales[name] = values.max() if percentile is None else quantile(values, percentile / 100)
            continue
        most = values.max(1).values.double()
        per = most if percentile is None else torch.stack([quantile(v, percentile / 100).double() for v in values])
        per = torch.where(per > 0, per, most)  # a channel that seldom fires: its largest output
        whole = values.max() if percentile is None else quantile(values.flatten(), percentile / 100)
        scales[name] = torch.where(per > 0, per, torch.as_tensor(whole, dtype=torch.float64))  # one that never did
    return scales


def quantile(values: torch.Tensor, q: float, limit: int = 1 << 24) -> torch.Tensor:
    """``torch.quantile(values, q)`` (linear interpolation, in the values' dtype, as SpikingJelly
    computes it), and past its 2^24-element limit from the two order statistics around ``q``."""
    if values.numel() <= limit:
        return torch.quantile(values, q)
    position = q * (values.numel() - 1)
    low = int(position)
    lo = torch.kthvalue(values, low + 1).values.double()
    hi = torch.kthvalue(values, min(low + 2, values.numel())).values.double()
    return lo + (hi - lo) * (position - low)


def convert_model(ann: torch.nn.Module, snn: torch.nn.Module, loader=None, percentile: float | None = None,
                  source: str = "the ANN", per_channel: bool = False) -> dict[str, float | list[float]]:
    """Give ``snn`` (a twin of ``ann`` with QCFS neurons) the ANN's weights and, with a ``loader``
    of calibration images, each site's scale as its threshold (the largest output, or the
    ``percentile``; one per channel with ``per_channel``); without, the thresholds the weights hold
    (a QCFS ANN's). The thresholds by site."""
    sites = _sites(snn)
    ckpt_io.load_weights(snn, ann.state_dict(), source)
    if loader is not None:
        scales = calibrate(ann.eval(), sites, loader, percentile, per_channel)
        silent = [s for s, v in scales.items() if not (v > 0).all()]
        if silent:
            raise ConfigError(f"activation(s) {', '.join(silent[:3])} never fired on the calibration images: no scale")
        for name, scale in scales.items():
            theta = snn.get_submodule(name).neuron.theta
            theta.data = scale.to(theta.dtype).clone()
    return {s: snn.get_submodule(s).neuron.theta.detach().tolist() for s in sites}


def convert(path, method: str, timesteps: int, out, images: int = 256, percentile: float = 99.9,
            start: float | None = None, per_channel: bool = False, batch_size: int = 64) -> dict:
    """Convert the ANN checkpoint at ``path`` by ``method`` into an SNN checkpoint at ``timesteps``,
    written to ``out``; returns what it did (the thresholds per site)."""
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if timesteps < 1:
        raise ConfigError(f"--timesteps must be at least 1, got {timesteps}")
    ckpt = Checkpoint.load(path)
    spec = ckpt.spec
    if spec.spiking:
        raise ConfigError(f"{ckpt.path} holds an SNN ({spec.name}, T={spec.timesteps}); sakd convert converts an ANN")
    qcfs = spec.neuron.name == "qcfs"
    if method == "qcfs" and not qcfs:
        raise ConfigError(f"--method qcfs: {ckpt.path} is a ReLU ANN (model.neuron.name={spec.neuron.name}); "
                          "train it with model.neuron.name=qcfs, or convert it with --method max or percentile")
    if method != "qcfs" and qcfs:
        raise ConfigError(f"{ckpt.path} was trained with QCFS activations: convert it with --method qcfs")
    if per_channel and method == "qcfs":
        raise ConfigError("--per-channel calibrates a ReLU ANN's thresholds (--method max or percentile); a QCFS "
                          "ANN's are learned, one per layer")
    if not 0 < percentile <= 100:
        raise ConfigError(f"--percentile must lie in (0, 100], got {percentile}")
    ann = ckpt.model().eval()
    options = dict(spec.neuron.options) if qcfs else {"theta": 1.0, "start": 0.0}
    if start is not None:
        options["start"] = start
    neuron = NeuronSpec(name="qcfs", surrogate=spec.neuron.surrogate, backend=spec.neuron.backend, options=options)
    snn_spec = spec.replace(spiking=True, timesteps=timesteps, neuron=neuron)
    snn = snn_spec.build()
    sites = _sites(snn)
    non_relu = sorted({activation_name(ann.get_submodule(s)) for s in sites} - {"ReLU", "relu", "ActivationSite"})
    if non_relu:
        raise ConfigError(f"{ckpt.path}: activation(s) {', '.join(non_relu)} have no integrate-and-fire form; "
                          "sakd convert converts ReLU (and QCFS) networks")
    loader = calibration = None
    if not qcfs:
        data = open_data(ckpt.config.data, augment=False)
        if not 0 < images <= len(data.train):
            raise ConfigError(f"--images must lie in 1..{len(data.train)} (the training split), got {images}")
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:images].tolist()
        loader = DataLoader(Subset(data.train, order), batch_size=batch_size, collate_fn=data.collate_fn)
        calibration = {"images": images, **({"percentile": percentile} if method == "percentile" else {}),
                       **({"per_channel": True} if per_channel else {})}
    thresholds = convert_model(ann, snn, loader, percentile if method == "percentile" else None, ckpt.path,
                               per_channel)
    record = {"method": method, "source": ckpt.path, "timesteps": timesteps,
              "start": snn.get_submodule(sites[0]).neuron.start if sites else None,
              "thresholds": thresholds, **({"calibration": calibration} if calibration else {})}
    config = ckpt.config.to_dict()
    config["model"] = {**config["model"], "spiking": True, "timesteps": timesteps,
                       "neuron": dataclasses.asdict(neuron)}
    ckpt_io.atomic_save(ckpt_io.payload(snn_spec, snn, config=config, epoch=ckpt.epoch, history=[],
                                        conversion=record), out)
    return {"out": str(out), "model": spec.name, **record}
