"""Synaptic operations and energy of a spiking model against its ANN twin (``sakd analyze``).

What is counted, exactly, over the images given (no sampling, no firing-rate approximation):

* Every ``Conv2d`` and ``Linear`` call. For the SNN, the operations of a layer are its **weight
  uses driven by nonzero inputs**: each nonzero input element times the number of synapses it
  reaches (for a convolution, the output positions whose receptive field holds it, times the
  output channels of its group; padding contributes nothing). On average this is the layer's MACs
  times its input's nonzero rate, per timestep, summed over T; at the borders it is exact.
* A layer whose input is binary (spikes) performs **accumulates** (ACs, the SOPs of the field):
  this is SpikingJelly's ``SynOpCounter`` definition, and the two agree exactly (tested).
* A layer whose input is not binary performs **multiply-accumulates** (MACs): the first
  convolution of a directly encoded image (which sakd's SNNs run once, not T times), and layers
  fed by average-pooled spikes or by SEW-ResNet's ADD sums. This is the conservative choice (a
  non-binary input needs a multiplication); papers that count such layers as ACs report lower
  energy.
* The ANN twin: dense MACs of every ``Conv2d`` and ``Linear`` by the same rule, one pass: every
  weight use of a real input element, zeros included (a dense layer multiplies them), zero
  padding left out as on the SNN's side, so the ratio compares like with like (the conventional
  figure with padding, which thop and most papers report, is kept as ``padded_macs``). On event
  frames the ANN twin, as trained, sees all T frames: the ratio is against that, and the
  one-frame figure (``ann_macs_per_frame``) is given beside it.
* Every :class:`~sakd.models.base.MatMul` call ``A @ B`` (a spiking transformer's attention,
  Q K^T and (.) V): the SNN's operations are the products of two nonzero elements,
  ``Σ_k nnz(A[:, k]) · nnz(B[k, :])``, accumulates where either operand is binary (spikes select
  what is added, as Spikformer and the Spike-driven Transformer count their attention), else
  MACs; the ANN twin's are every product, ``n·k·m``. Every :class:`~sakd.models.base.Mul` call
  ``A ⊙ B`` (element-wise, the Spike-driven Transformer's masks) likewise: the SNN's operations
  are the positions where both operands are nonzero, the ANN's every position of the product.
* Not counted, as in ``SynOpCounter`` and most of the literature: BatchNorm (folded into the
  preceding layer at inference), the neurons' own updates, residual additions and pooling.

Energy uses the 45 nm figures the field quotes from Horowitz (2014), "Computing's energy problem
(and what we can do about it)", ISSCC: E_MAC = 4.6 pJ and E_AC = 0.9 pJ for 32-bit floats (both
options). ``SNN energy = E_MAC · MACs + E_AC · ACs``, ``ANN energy = E_MAC · MACs_ANN``.

The counter also keeps what the energy models that count memory traffic need
(:mod:`sakd.analysis.energy_models`): per ``Conv2d``/``Linear`` its output elements, bias, parameter
count, the size of one sample's input and output (one timestep) and the samples it ran on; per
spiking layer (:class:`NeuronOps`) its neuron-timesteps, spikes and whether it leaks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sakd.models.base import MatMul, Mul
from sakd.neurons import spiking_layers

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


@dataclass
class LayerOps:
    """One layer's counts, summed over every call and image seen."""

    kind: str  # conv | linear | matmul | mul
    calls: int = 0
    dense_macs: int = 0  # weight uses of every real input element, zeros included, padding not (the ANN's count)
    padded_macs: int = 0  # every weight use, zero padding included (the conventional MAC count)
    ops: int = 0  # weight uses driven by nonzero inputs
    nonzero: int = 0  # nonzero input elements
    inputs: int = 0  # input elements
    binary: bool = True  # every input seen was 0/1
    samples: int = 0  # the first dimension of its inputs, summed: images (x timesteps where it runs per timestep)
    outputs: int = 0  # output elements
    bias: bool = False
    params: int = 0  # weights and bias
    input_size: int = 0  # elements of one sample's input (one timestep)
    output_size: int = 0  # elements of one sample's output (one timestep)
    kernel_outputs: int = 0  # a convolution's output channels x kernel area (0 for a linear layer)

    @property
    def input_rate(self) -> float:
        return self.nonzero / self.inputs if self.inputs else 0.0


@dataclass
class NeuronOps:
    """One spiking layer's counts, summed over every call and image seen."""

    neuron_steps: int = 0  # neurons x timesteps x images: membrane updates
    spikes: int = 0
    size: int = 0  # neurons of one sample (one timestep)
    leaky: bool = True  # a leak multiplies the membrane every timestep (False: integrate-and-fire, decay 1)


def _conv_uses(x: torch.Tensor, conv: nn.Conv2d, binary: bool) -> int:
    """Weight uses of ``conv`` driven by the nonzero elements of ``x``: per group, count the nonzero
    inputs under each output position's receptive field (a one-channel convolution of the
    per-position nonzero counts with a kernel of ones), times the group's output channels. For
    binary ``x`` the counts are its sums over channels (one fast pass); counts stay below 2^24, so
    float32 holds them exactly."""
    if conv.padding_mode != "zeros":
        raise ValueError(f"counting supports zero padding only; {conv} pads with {conv.padding_mode!r}")
    g = conv.groups
    n, c = x.shape[:2]
    nonzero = x if binary else x != 0
    counts = nonzero.view(n, g, c // g, *x.shape[2:]).sum(2, dtype=torch.float32)
    ones = torch.ones(g, 1, *conv.kernel_size, dtype=torch.float32, device=x.device)
    covered = F.conv2d(counts, ones, stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=g)
    return int(covered.sum(dtype=torch.float64).item()) * (conv.out_channels // g)


class OpCounter:
    """Count every ``Conv2d``/``Linear``/``MatMul``/``Mul`` call of a model while active (a context manager)."""

    def __init__(self, model: nn.Module):
        self.layers: dict[str, LayerOps] = {}
        self.neurons: dict[str, NeuronOps] = {}
        self._modules = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, MatMul, Mul))}
        self._neurons = spiking_layers(model)
        self._handles: list = []
        self._dense: dict[tuple, int] = {}  # (layer, input shape of one sample) -> its dense weight uses

    def _dense_uses(self, name: str, x: torch.Tensor, conv: nn.Conv2d) -> int:
        """Weight uses of every real element of ``x`` (all inputs nonzero): the rule of
        :func:`_conv_uses`, padding left out; the same for every sample of one shape."""
        key = (name, tuple(x.shape[1:]))
        if key not in self._dense:
            self._dense[key] = _conv_uses(torch.ones_like(x[:1]), conv, True)
        return self._dense[key] * x.shape[0]

    def _pair(self, name: str, kind: str, a: torch.Tensor, b: torch.Tensor):
        """The bookkeeping a product of two activations shares (:class:`MatMul`, :class:`Mul`):
        its record and the operands' nonzero masks."""
        rec = self.layers.setdefault(name, LayerOps(kind))
        a, b = a.detach(), b.detach()
        nz_a, nz_b = a != 0, b != 0
        rec.calls += 1
        rec.inputs += a.numel() + b.numel()
        rec.nonzero += int(nz_a.count_nonzero().item() + nz_b.count_nonzero().item())
        either = bool(((a == 1) == nz_a).all().item()) or bool(((b == 1) == nz_b).all().item())
        rec.binary = rec.binary and either  # accumulates: one operand selects what the other adds
        return rec, nz_a, nz_b

    def _matmul(self, name: str, a: torch.Tensor, b: torch.Tensor) -> None:
        rec, nz_a, nz_b = self._pair(name, "matmul", a, b)
        products = a.shape[-2] * a.shape[-1] * b.shape[-1] * a[..., 0, 0].numel()
        rec.padded_macs += products
        rec.dense_macs += products
        counts = nz_a.sum(-2, dtype=torch.float64) * nz_b.sum(-1, dtype=torch.float64)  # per k: rows x columns
        rec.ops += int(counts.sum().item())

    def _mul(self, name: str, a: torch.Tensor, b: torch.Tensor) -> None:
        rec, nz_a, nz_b = self._pair(name, "mul", a, b)
        products = torch.broadcast_shapes(a.shape, b.shape).numel()
        rec.padded_macs += products
        rec.dense_macs += products
        rec.ops += int((nz_a & nz_b).count_nonzero().item())

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if isinstance(module, (MatMul, Mul)):
                return (self._matmul if isinstance(module, MatMul) else self._mul)(name, *inputs)
            x = inputs[0].detach()
            rec = self.layers.setdefault(name, LayerOps("conv" if isinstance(module, nn.Conv2d) else "linear"))
            nonzero = int(x.count_nonzero().item())
            # binary: every nonzero element is 1 (checked until a call shows otherwise)
            binary = rec.binary and int((x == 1).count_nonzero().item()) == nonzero
            rec.calls += 1
            rec.inputs += x.numel()
            rec.nonzero += nonzero
            rec.binary = binary
            rec.samples += x.shape[0] if x.dim() > 1 else 1
            rec.outputs += output.numel()
            rec.bias = module.bias is not None
            rec.params = sum(p.numel() for p in module.parameters(recurse=False))
            one = slice(0, 1) if x.dim() > 1 else slice(None)
            rec.input_size, rec.output_size = x[one].numel(), output[one].numel()
            if isinstance(module, nn.Conv2d):
                per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                rec.kernel_outputs = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                rec.padded_macs += output.numel() * per_output
                rec.dense_macs += self._dense_uses(name, x, module)
                rec.ops += _conv_uses(x, module, binary)
            else:
                rec.padded_macs += output.numel() * module.in_features
                rec.dense_macs += output.numel() * module.in_features
                rec.ops += nonzero * module.out_features
        return hook

    def _neuron_hook(self, name: str):
        def hook(module, inputs, output):
            rec = self.neurons.setdefault(name, NeuronOps())
            out = output.detach()
            rec.neuron_steps += out.numel()
            rec.spikes += int(out.count_nonzero().item())
            rec.size = out[:1, :1].numel()  # [T, B, ...]: one sample, one timestep
            decay = getattr(module, "decay", None)  # LIF's λ; a neuron that does not say is taken to leak
            rec.leaky = decay is None or float(torch.as_tensor(decay).detach().float().mean()) != 1.0
        return hook

    def __enter__(self) -> OpCounter:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self._modules.items()]
        self._handles += [m.register_forward_hook(self._neuron_hook(n)) for n, m in self._neurons.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def synaptic_ops(rec: LayerOps, spiking: bool) -> tuple[int, int]:
    """A layer's ``(accumulates, multiply-accumulates)`` by sakd's one rule: the SNN's weight uses
    driven by nonzero inputs (accumulates where the input is spikes), the ANN's every weight use."""
    if not spiking:
        return 0, rec.dense_macs
    return (rec.ops, 0) if rec.binary else (0, rec.ops)


COUNTING = ("weight uses of real input elements on both sides, zero padding left out: the SNN's "
            "driven by nonzero inputs, the ANN's by every input")


def energy_table(snn_layers: dict[str, LayerOps], ann_layers: dict[str, LayerOps], images: int,
                 e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ, frames: int | None = None) -> dict:
    """Per layer and in total, per image: the SNN's ACs and MACs, the ANN's MACs, energies (pJ)
    and the SNN/ANN energy ratio. ``frames``: the ANN twin saw that many event frames per
    sample (the ratio's figure); the one-frame figure is given too."""
    rows, total = {}, {"snn_acs": 0.0, "snn_macs": 0.0, "ann_macs": 0.0, "ann_padded_macs": 0.0}
    for name, rec in snn_layers.items():
        ann = ann_layers.get(name)
        acs, macs = synaptic_ops(rec, spiking=True)
        row = {"kind": rec.kind, "input": "spikes" if rec.binary else "analog", "input_rate": rec.input_rate,
               "snn_acs": acs / images, "snn_macs": macs / images, "ann_macs": (ann.dense_macs if ann else 0) / images,
               "ann_padded_macs": (ann.padded_macs if ann else 0) / images}
        row["snn_energy_pj"] = e_ac * row["snn_acs"] + e_mac * row["snn_macs"]
        row["ann_energy_pj"] = e_mac * row["ann_macs"]
        rows[name] = row
        for key in total:
            total[key] += row[key]
    total["snn_energy_pj"] = e_ac * total["snn_acs"] + e_mac * total["snn_macs"]
    total["ann_energy_pj"] = e_mac * total["ann_macs"]
    total["energy_ratio"] = total["snn_energy_pj"] / total["ann_energy_pj"] if total["ann_energy_pj"] else None
    if frames:
        total["ann_macs_per_frame"] = total["ann_macs"] / frames
        total["ann_energy_per_frame_pj"] = total["ann_energy_pj"] / frames
    ratio_against = f"the ANN twin on all {frames} frames of a sample" if frames else "the ANN twin on the image"
    return {"layers": rows, "total": total, "e_mac_pj": e_mac, "e_ac_pj": e_ac, "images": images,
            "counting": COUNTING, "ratio_against": ratio_against, "frames": frames}


def as_dict(layers: dict[str, LayerOps]) -> dict[str, dict]:
    return {name: asdict(rec) | {"input_rate": rec.input_rate} for name, rec in layers.items()}
