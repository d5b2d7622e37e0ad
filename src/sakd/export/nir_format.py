"""NIR export (the Neuromorphic Intermediate Representation, the ``nir`` package).

The one-timestep graph of :func:`~sakd.export.graph.step_graph` (BatchNorm folded) becomes a
``nir.NIRGraph``; NIR's shapes leave out the batch dimension. Mapping:

* ``Conv2d`` -> ``nir.Conv2d`` (bias zero where the layer had none after folding), ``Linear`` ->
  ``nir.Affine`` (``nir.Linear`` without bias), ``AvgPool2d`` and an ``AdaptiveAvgPool2d`` whose
  output size divides its input -> ``nir.AvgPool2d``, ``flatten`` -> ``nir.Flatten`` (from the
  channel axis).
* A residual addition is no node: NIR sums the edges that enter a node, so both branches get an
  edge to every consumer of the sum.
* Each spiking layer is the node its neuron describes itself as
  (:meth:`~sakd.neurons.base.SpikingNeuron.nir_node`; a neuron without one is an error naming it).
  The paper's LIF (eq. 1-3: ``H = λ·V + X``, fire at ``H >= V_th``, hard reset to 0) -> ``nir.LIF``
  with ``τ = dt/(1-λ)``, ``R = 1/(1-λ)``, ``v_leak = 0``, ``v_reset = 0``, ``v_threshold = V_th``:
  NIR's ``τ·dv/dt = (v_leak - v) + R·I`` integrated by forward Euler with step ``dt`` gives
  ``v <- (1 - dt/τ)·v + (dt·R/τ)·I = λ·v + I``, eq. 1 exactly. ``dt`` is the step the consumer
  simulates with (an option, default 1; snnTorch's importer assumes 1e-4, Norse's 1e-3): one
  sakd timestep is one step of the consumer. IF (λ = 1) -> ``nir.IF`` with ``R = 1/dt``: NIR's
  ``dv/dt = R·I`` by forward Euler gives ``v <- v + dt·R·I = v + I`` (exactly for dt = 1, 1e-3,
  1e-4; to a rounding of ``dt·(1/dt)`` for other steps). NIR fires at
  ``v > v_threshold``, eq. 2 at ``>=``: ``v_threshold`` is the largest number below V_th in the
  graph's dtype (float32 for a float32 model), so that ``v > v_threshold`` holds exactly where
  ``v >= V_th`` does, a membrane exactly at V_th included. PLIF exports its learned λ per layer.
* The input: a directly encoded image is the analog input current of the first convolution at
  every timestep; event frames are one input per timestep. The output is the last layer's value
  at each timestep; the model's logits are their mean over T.

What NIR cannot express is one error naming the layer: max pooling, a soft reset (NIR's neurons
reset to ``v_reset``), SEW-ResNet's AND / IAND connections (products of spikes), pooling with
overlapping bins.
"""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from sakd.errors import ConfigError
from sakd.export.graph import StepNeuron, step_graph
from sakd.export.registry import EXPORTERS
from sakd.outputs import written

ADD = (operator.add, torch.add)


def require_nir():
    try:
        import nir
    except ImportError:
        raise ConfigError('NIR export needs the nir package: pip install "sakd[export]"') from None
    return nir


def _name(node: fx.Node) -> str:
    """The node's unique name (a module called twice, as VGG's pool, gives two nodes)."""
    return node.name.removeprefix("model_")


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape[1:])


def _pair(v) -> np.ndarray:
    return np.array(v if isinstance(v, (tuple, list)) else (v, v))


def _neuron(m: StepNeuron, shape, where: str, dt: float, dtype=np.float32):
    """The layer's neuron as it describes itself in NIR (:meth:`SpikingNeuron.nir_node`)."""
    neuron = m.neuron
    try:
        node = neuron.nir_node(shape, dt, dtype)
    except ConfigError as exc:
        raise ConfigError(f"layer {where}: {exc}") from None
    if node is None:
        raise ConfigError(f"layer {where}: neuron {type(neuron).__name__} has no NIR description (a neuron gives one "
                          "with a `nir_node` method; ONNX export takes any neuron)")
    return node


def _module_node(nir, m: nn.Module, node: fx.Node, where: str, dt: float, dtype):
    src = node.args[0]
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise ConfigError(f"layer {where}: only zero padding given as numbers exports to NIR")
        bias = m.bias.detach().numpy() if m.bias is not None else np.zeros(m.out_channels, dtype=np.float32)
        return nir.Conv2d(input_shape=_shape(src)[1:], weight=m.weight.detach().numpy(), stride=m.stride,
                          padding=m.padding, dilation=m.dilation, groups=m.groups, bias=bias)
    if isinstance(m, nn.Linear):
        if m.bias is None:
            return nir.Linear(weight=m.weight.detach().numpy())
        return nir.Affine(weight=m.weight.detach().numpy(), bias=m.bias.detach().numpy())
    if isinstance(m, StepNeuron):
        return _neuron(m, _shape(node), where, dt, dtype)
    if isinstance(m, nn.AvgPool2d):
        k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
        size = np.array(_shape(src)[1:])
        if m.ceil_mode and np.any((size + 2 * p - k) % s):
            raise ConfigError(
                f"layer {where}: AvgPool2d with ceil_mode on a {tuple(map(int, size))} map keeps a partial "
                "window that NIR's AvgPool2d cannot express"
            )
        if np.any(p) and not m.count_include_pad:
            raise ConfigError(f"layer {where}: AvgPool2d excluding padding from the average has no NIR form")
        return nir.AvgPool2d(kernel_size=k, stride=s, padding=p)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        size, out = np.array(_shape(src)[1:]), np.array(_shape(node)[1:])
        if np.any(size % out):
            raise ConfigError(
                f"layer {where}: AdaptiveAvgPool2d from {tuple(map(int, size))} to {tuple(map(int, out))} "
                "has overlapping "
                "bins that NIR's AvgPool2d cannot express (use an input size whose last map divides)"
            )
        k = size // out
        return nir.AvgPool2d(kernel_size=k, stride=k, padding=np.zeros(2, dtype=int))
    raise ConfigError(f"layer {where}: NIR cannot express {type(m).__name__}")


def _flatten_node(nir, node: fx.Node):
    args = list(node.args[1:]) + [node.kwargs.get(k) for k in ("start_dim", "end_dim") if k in node.kwargs]
    start = args[0] if args else 0
    end = args[1] if len(args) > 1 else -1
    if start != 1 or end != -1:
        raise ConfigError(f"{node.name}: only flatten(x, 1) exports to NIR, got start {start}, end {end}")
    return nir.Flatten(input_type={"input": np.array(_shape(node.args[0]))}, start_dim=0, end_dim=-1)


def to_nir(gm: fx.GraphModule, example: torch.Tensor, dt: float = 1.0):
    """The ``nir.NIRGraph`` of a one-timestep graph, for one timestep's input shaped like ``example``
    (a batch of images ``[B, C, H, W]``), for consumers that integrate with step ``dt``."""
    nir = require_nir()
    if not dt > 0:
        raise ConfigError(f"the NIR time step dt must be positive, got {dt}")
    dtype = next((p.dtype for p in gm.parameters() if p.is_floating_point()), torch.float32)
    ShapeProp(gm).propagate(example[:1].to(dtype))
    np_dtype = np.float64 if dtype == torch.float64 else np.float32  # the neurons' parameters
    nodes, edges, sources = {}, [], {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            nodes["input"] = nir.Input(input_type=np.array(_shape(node)))
            sources[node] = ["input"]
        elif node.op == "output":
            out = node.args[0]
            nodes["output"] = nir.Output(output_type=np.array(_shape(out)))
            edges += [(s, "output") for s in sources[out]]
        elif node.op == "call_function" and node.target in ADD:
            a, b = node.args
            if not all(isinstance(v, fx.Node) for v in (a, b)):
                raise ConfigError(f"{node.name}: NIR cannot add a constant")
            sources[node] = sources[a] + sources[b]
        elif (node.op == "call_function" and node.target == torch.flatten) or (
                node.op == "call_method" and node.target == "flatten"):
            nodes[node.name] = _flatten_node(nir, node)
            edges += [(s, node.name) for s in sources[node.args[0]]]
            sources[node] = [node.name]
        elif node.op == "call_module":
            name = _name(node)
            nodes[name] = _module_node(
                nir, gm.get_submodule(node.target), node, str(node.target).removeprefix("model."), dt, np_dtype
            )
            edges += [(s, name) for s in sources[node.args[0]]]
            sources[node] = [name]
        else:
            what = getattr(node.target, "__name__", node.target)
            raise ConfigError(f"{node.name}: NIR cannot express {what} (e.g. SEW's AND / IAND spike products)")
    if len(set(edges)) != len(edges):
        raise ConfigError("the graph adds a value to itself, which NIR's summed edges cannot express")
    return nir.NIRGraph(nodes=nodes, edges=edges)


def write_nir(graph, path: str | Path) -> Path:
    nir = require_nir()
    path = Path(path)
    with written(path, "the NIR file") as tmp:
        nir.write(str(tmp), graph)
    return path


@EXPORTERS.register(
    "nir", description="Neuromorphic Intermediate Representation (HDF5), one timestep, BatchNorm folded"
)
def export_nir(model, example: torch.Tensor, timesteps: int, out: Path, dt: float = 1.0) -> dict:
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


def _params(node) -> list:
    return [v for k, v in sorted(vars(node).items()) if k not in ("input_type", "output_type", "metadata")]
