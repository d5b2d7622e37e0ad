"""A trained SNN as the graph that hardware and other simulators run: one timestep at a time, with
BatchNorm folded into the layer before it, and each spiking layer a stateful one-step neuron.

:func:`step_graph` traces a model's per-timestep computation with ``torch.fx`` (the stem and the
body of :class:`~sakd.models.base.TwinModel`, neurons kept whole), folds every BatchNorm into
the convolution or linear layer feeding it (``torch.nn.utils.fusion``; eval-mode statistics) and
replaces each spiking layer by a :class:`StepNeuron` that keeps its membrane between calls.
:func:`run_steps` runs such a graph over T timesteps: the same spikes as the model's own
multi-step forward (tested), the logits being the mean of the T outputs as in the model.

A directly encoded image enters the first convolution at every timestep (an analog current);
event frames enter one per timestep.
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from sakd.errors import ConfigError
from sakd.neurons import SpikeActivation


class StepNeuron(nn.Module):
    """A spiking layer run one timestep per call, its state kept between calls: the neuron's own
    one-step form (:meth:`~sakd.neurons.base.SpikingNeuron.step`; for LIF, eq. 1-3:
    ``H = λ·V + X``, ``S = [H >= V_th]``, ``V = H·(1 - S)`` or ``H - S·V_th``).
    :meth:`reset` returns it to rest before a new input sequence."""

    def __init__(self, neuron):
        super().__init__()
        self.neuron = neuron
        self.state = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, self.state = self.neuron.step(x, self.state)
        return s

    def reset(self) -> None:
        self.state = None


def step_neuron(activation: SpikeActivation, name: str) -> StepNeuron:
    """The one-step form of a model's spiking layer, or an error naming a neuron that has none."""
    neuron = activation.neuron
    if not neuron.has_step:
        raise ConfigError(f"layer {name}: neuron {type(neuron).__name__} has no one-step form (a `step` method), "
                          "which step-by-step export needs; ONNX export traces its multi-step forward instead")
    return StepNeuron(neuron)


def has_step_forms(model: nn.Module) -> bool:
    """Whether every spiking layer of ``model`` has a one-step form."""
    return all(m.neuron.has_step for m in model.modules() if isinstance(m, SpikeActivation))


class _OneStep(nn.Module):
    """A model's stem and body on one timestep's input ``[B, C, H, W]``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_body(self.model.forward_stem(x))


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SpikeActivation) or super().is_leaf_module(m, qualname)


def trace_steps(model: nn.Module) -> fx.GraphModule:
    """The model's one-timestep graph, spiking layers as whole modules (nothing folded yet)."""
    if not getattr(model, "spiking", False):
        raise ConfigError("export takes a spiking model (an SNN checkpoint), not an ANN")
    root = _OneStep(model)
    try:
        graph = _Tracer().trace(root)
    except Exception as exc:  # a model whose forward depends on values, not shapes
        raise ConfigError(f"cannot trace {type(model).__name__} for export: {exc}") from None
    return fx.GraphModule(root, graph)


def fold_batchnorm(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold every BatchNorm that follows a convolution or linear layer (used by nothing else) into
    it, with the running statistics (eval mode); a BatchNorm left over is an error naming it."""
    folded = fuse(gm.eval(), inplace=False, no_trace=True)
    left = [n.target for n in folded.graph.nodes if n.op == "call_module"
            and isinstance(folded.get_submodule(n.target), nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ConfigError(f"BatchNorm {left[0]} does not follow a convolution or linear layer: it cannot be folded")
    return folded


def step_graph(model: nn.Module) -> fx.GraphModule:
    """The inference graph of one timestep: BatchNorm folded, neurons as :class:`StepNeuron`,
    identities and eval-mode dropout removed. The model itself is not changed."""
    gm = fold_batchnorm(trace_steps(model))
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        if isinstance(module, SpikeActivation):
            _set_submodule(gm, node.target, step_neuron(module, node.target))
        elif isinstance(module, (nn.Identity, nn.Dropout)):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.eval()


def _set_submodule(gm: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def neurons(gm: nn.Module) -> dict[str, StepNeuron]:
    return {n: m for n, m in gm.named_modules() if isinstance(m, StepNeuron)}


def reset(gm: nn.Module) -> None:
    for m in neurons(gm).values():
        m.reset()


@torch.no_grad()
def run_steps(gm: fx.GraphModule, x: torch.Tensor, timesteps: int, record: bool = False):
    """Run the one-step graph over ``timesteps`` (images: the same one each step; frames
    ``[T, B, ...]``: one per step) from a rested state. Returns the logits of every timestep
    ``[T, B, K]`` and, with ``record``, each neuron layer's spikes ``{name: [T, B, ...]}``."""
    reset(gm)
    spikes: dict[str, list[torch.Tensor]] = {}
    handles = []
    if record:
        for name, m in neurons(gm).items():
            handles.append(m.register_forward_hook(lambda mod, i, o, name=name: spikes.setdefault(name, []).append(o)))
    try:
        outs = [gm(x[t] if x.dim() == 5 else x) for t in range(timesteps)]
    finally:
        for h in handles:
            h.remove()
        reset(gm)
    logits = torch.stack(outs)
    return (logits, {k: torch.stack(v) for k, v in spikes.items()}) if record else logits

