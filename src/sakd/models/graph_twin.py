"""ANN and SNN twins of any traceable network: torchvision's, timm's or a user's own CNN.

:class:`GraphTwin` traces the network with ``torch.fx`` and keeps its module tree, so its state
dict has the network's own parameter names and shapes (weights copy strictly both ways, and
torchvision or timm weights initialise both twins). Its graph is rewritten once:

* **activation sites.** Every call of a ReLU-family activation (``nn.ReLU``, ``nn.ReLU6``,
  ``nn.LeakyReLU`` and ``F.relu``, ``relu6``, ``leaky_relu``, ``x.relu()``) becomes its own module:
  the activation itself in the ANN twin (so its output equals the network's), the configured
  neuron (:class:`~sakd.neurons.SpikeActivation`) in the SNN twin. A module called twice
  (torchvision's ``BasicBlock.relu``) gets one site per call: the first keeps the module's name,
  the next ones add ``_1``, ``_2``; a function call is a site named after its graph node. An
  in-place activation's later readers read its output, as they did. Other activations (GELU,
  SiLU, Sigmoid, softmax, attention) are refused, all of them in one message with their module
  paths, unless ``model.options.activations`` maps their name to ``spike`` or ``keep`` (the class
  ``Sigmoid`` and the function ``sigmoid`` are one name: :func:`canonical`). A BatchNorm that
  applies its activation itself (timm's ``BatchNormAct2d``, in MobileNet, EfficientNet, RegNet,
  GhostNet) is split: the norm stays the module it was (its state dict unchanged), its ``act`` is
  a site of its own.
* **residual sums.** ``a + b`` of two tensors that feeds a site becomes a
  :class:`~sakd.models.base.ResidualAdd` module, which ``run.memory=lean`` makes again in
  backward instead of keeping.
* **stem and body.** The nodes computed from the input before any site (the stem: conv + BN of a
  ResNet) run once on ``[B, ...]`` images and are repeated over the timesteps where the body
  first reads them (direct encoding, as sakd's own models do); event frames run one per timestep.
  Everything else runs time-folded, ``[T*B, ...]``. Where the stem hands the body something other
  than a tensor (a batch size read from the input), the whole network runs on the repeated input.

* **blocks.** The body's nodes that run inside one block (the first two parts of the module path:
  ``layer1.0``; a block's own functions and sums too) are one :class:`Block` call, a module that
  holds nothing (the state dict is the network's) and runs those nodes as the network did:
  ``run.memory=min`` keeps only a block's input and runs it again in backward. A network without
  such blocks (a plain sequence, VGG's ``features.0``, ``features.1``, ...) has none.

Feature taps: a shape probe (``model.options.image_size``, default 32) finds the activation sites
with 4-D outputs; ``stage`` taps are the last site before each spatial reduction and the last one
(timm networks: the last site inside each module of their ``feature_info``), ``block`` taps the
last site of each block (the first two parts of the module path: ``layer1.0``, ``features.3``).
"""

from __future__ import annotations

import copy
import inspect
import operator

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F

from sakd.errors import ConfigError
from sakd.models.base import ResidualAdd, TapPoint, TwinModel
from sakd.neurons import NeuronSpec, SpikeActivation

ACTIONS = ("spike", "keep")


def canonical(name: str) -> str:
    """An activation's name as the sets below and ``model.options.activations`` are matched: the class
    ``Sigmoid``, the function ``sigmoid``, the method ``sigmoid_`` and timm's ``HardSigmoid`` / ``hard_sigmoid``
    are one name (lower case, without underscores)."""
    return name.replace("_", "").lower()


# ReLU-family activations, as module classes, functions and tensor methods: a neuron in the SNN
SPIKING = {"relu", "relu6", "leakyrelu"}
# other activations: refused unless mapped to spike or keep
NEEDS_MAPPING = {
    "gelu", "silu", "swish", "hardswish", "hardsigmoid", "sigmoid", "tanh", "elu", "selu", "celu", "mish", "hardmish",
    "softplus", "prelu", "rrelu", "hardtanh", "quickgelu", "gelutanh", "logsigmoid", "softsign", "tanhshrink",
}
# softmax attention: no spiking form at all (a spiking transformer attends without softmax); keep only
ATTENTION = {"softmax", "logsoftmax", "multiheadattention", "scaleddotproductattention", "multiheadattentionforward"}
OPTIONS = ("activations", "image_size")  # the twin's own options; the rest build the network


def _key(node: fx.Node, root: nn.Module) -> str | None:
    """What a node calls, as ``model.options.activations`` names it: a module's class name, a
    function's or a tensor method's name."""
    if node.op == "call_module":
        return type(root.get_submodule(node.target)).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", None)
    if node.op == "call_method":
        return node.target
    return None


class Call(nn.Module):
    """A function or tensor method an activation site called, as a module: the ANN twin computes
    exactly what the network did (out of place: readers of its input are rewired to its output)."""

    def __init__(self, op: str, target, args: tuple, kwargs: dict):
        super().__init__()
        self.op, self.target, self.args, self.kwargs = op, target, args, kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "call_method":
            return getattr(x, self.target)(*self.args, **self.kwargs)
        return self.target(x, *self.args, **self.kwargs)

    def extra_repr(self) -> str:
        return getattr(self.target, "__name__", str(self.target))


def _ann_activation(node: fx.Node, root: nn.Module, key: str) -> nn.Module:
    """The activation a site runs in the ANN twin: the network's own module (made out of place),
    or the function or method it called, out of place."""
    if node.op == "call_module":
        module = root.get_submodule(node.target)
        if hasattr(module, "inplace"):
            module.inplace = False
        return module
    target, args = node.target, tuple(node.args[1:])
    kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
    if key.endswith("_"):  # relu_ -> relu
        target = key[:-1] if node.op == "call_method" else (getattr(F, key[:-1], None) or getattr(torch, key[:-1]))
    elif node.op == "call_function":  # F.relu(x, True): the inplace flag given by position
        params = _parameters(target)
        if "inplace" in params and 0 <= params.index("inplace") - 1 < len(args):
            i = params.index("inplace") - 1
            args = args[:i] + args[i + 1:]
    if any(isinstance(a, fx.Node) for a in [*args, *kwargs.values()]):
        raise ConfigError(f"{node.name}: an activation whose arguments are tensors of the graph cannot be a site")
    return Call(node.op, target, args, kwargs)


def _from_input(graph: fx.Graph) -> set[fx.Node]:
    """The input and every node computed from it (not from parameters or constants alone)."""
    (x,) = [n for n in graph.nodes if n.op == "placeholder"]
    out = {x}
    for n in graph.nodes:
        if any(a in out for a in n.all_input_nodes):
            out.add(n)
    return out


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _parameters(fn) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def _in_place(node: fx.Node, root: nn.Module, key: str) -> bool:
    if node.op == "call_module":
        return bool(getattr(root.get_submodule(node.target), "inplace", False))
    return key.endswith("_") or bool(node.kwargs.get("inplace")) or (
        node.op == "call_function" and len(node.args) > 1 and node.args[-1] is True)


def _home(node: fx.Node, key: str) -> str:
    """Where a site belongs: its module's path, or (a function call) the path of the module whose
    forward called it, and the function's name (``layer1.0.relu``)."""
    if node.op == "call_module":
        return node.target
    stack = node.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack.values()))[0] if stack else ""
    name = key.rstrip("_")
    return f"{owner}.{name}" if owner else name


def _call_path(node: fx.Node) -> str:
    """A function call's place in messages: the path of the module whose forward made it and the
    node's own (unique) name: ``blocks.0.0.se.sigmoid_3``."""
    stack = node.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack.values()))[0] if stack else ""
    return f"{owner}.{node.name}" if owner else node.name


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping whole the small modules whose forward reads ``self.training`` and
    that hold no activation (timm's DropPath): they keep their train/eval behaviour. A BatchNorm
    that applies its own children after normalising (timm's ``BatchNormAct2d``: ``drop``, then
    ``act``) is split: the norm is one module call and each child is a call of its own, so the
    activation becomes a site (:func:`_plain_norms` makes the norm compute only the norm).
    ``traced_modes`` records the modules traced through that read their mode (for messages)."""

    def __init__(self):
        super().__init__()
        self.norm_acts: dict[str, nn.Module] = {}
        self.traced_modes: dict[str, str] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if super().is_leaf_module(m, qualname):
            return True
        reads_mode = _reads_mode(m)
        holds_activation = any(canonical(type(c).__name__) in SPIKING | NEEDS_MAPPING | ATTENTION for c in m.modules())
        if reads_mode and holds_activation:
            self.traced_modes.setdefault(qualname, type(m).__name__)
        return reads_mode and not holds_activation

    def call_module(self, m: nn.Module, forward, args, kwargs):
        if _is_norm_act(m):
            path = self.path_of_module(m)
            self.norm_acts[path] = m
            out = self.create_proxy("call_module", path, args, kwargs)
            for child in m.children():
                out = self.call_module(child, child.forward, (out,), {})
            return out
        return super().call_module(m, forward, args, kwargs)


def _reads_mode(m: nn.Module) -> bool:
    return "training" in getattr(type(m).forward, "__code__", _EMPTY).co_names


def _is_norm_act(m: nn.Module) -> bool:
    """A BatchNorm of another library that applies its children (``drop``, ``act``, in that order)
    to the normalised output: timm's ``BatchNormAct2d`` and ``SyncBatchNormAct``."""
    return (isinstance(m, nn.modules.batchnorm._BatchNorm) and type(m).__module__.split(".")[0] != "torch"
            and _reads_mode(m) and [n for n, _ in m.named_children()] in (["drop", "act"], ["act"]))


def _plain_norms(norm_acts: dict[str, nn.Module]) -> None:
    """Each split norm+activation computes only its norm: its class becomes the torch BatchNorm it
    derives from (same parameters, buffers and options; its children stay, called by the graph)."""
    for m in norm_acts.values():
        m.__class__ = next(c for c in type(m).__mro__ if c.__module__.startswith("torch.nn"))


_EMPTY = (lambda: None).__code__


def _mode_reader(traced: dict[bool, fx.GraphModule], tracer: _Tracer) -> str:
    """Where a network's train and eval graphs part: the modules traced through that read
    ``self.training`` (they hold an activation, so torch.fx cannot keep them whole), or the module
    whose forward made the first node that differs."""
    nodes = {mode: [(n.op, str(n.target), str(n.args), str(n.kwargs), n) for n in gm.graph.nodes]
             for mode, gm in traced.items()}
    first = next((b for a, b in zip(nodes[False], nodes[True]) if a[:4] != b[:4]), nodes[True][-1])[-1]
    stack = first.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack.values())) if stack else None
    inside = [(path, cls) for path, cls in tracer.traced_modes.items()
              if any(p == path or p.startswith(f"{path}.") for p, _ in stack.values()) or not path]
    if inside:  # the first difference lies in a module traced through that reads its mode
        named = ", ".join(f"{path or 'the network'} ({cls})" for path, cls in inside)
        return (f"{named} read self.training in their own forward and hold an activation, so torch.fx traces "
                "through them and their train and eval graphs differ; write the mode-dependent part as a module of "
                "its own (nn.Dropout, a DropPath)")
    where = f"{owner[0]} ({getattr(owner[1], '__name__', owner[1])})" if owner and owner[0] else "its forward"
    return (f"{where} reads self.training outside a module torch.fx keeps whole ({first.name}: "
            f"{getattr(first.target, '__name__', first.target)} differs between train and eval); set its drop rates "
            "to 0 in model.options (timm: drop_rate=0), or use nn.Dropout modules")


def _block_of(node: fx.Node) -> str | None:
    """The block a node runs in (``layer1.0``): for a module, the first two parts of its path if it
    lies inside one; for a function or method, those of the module whose forward called it."""
    if node.op == "call_module":
        parts = node.target.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 else None
    if node.op in ("call_function", "call_method"):
        stack = node.meta.get("nn_module_stack") or {}
        owner = next(reversed(stack.values()))[0] if stack else ""
        parts = owner.split(".") if owner else []
        return ".".join(parts[:2]) if len(parts) >= 2 else None
    return None


class Block(nn.Module):
    """Nodes of a twin's graph that run inside one block, as one call: the code fx writes for them,
    run with the twin as ``self`` (so it holds no module and adds nothing to the state dict).
    ``run.memory=min`` runs it again in backward (:meth:`norms`: its BatchNorms, whose running
    statistics the recomputation must leave as they are)."""

    def __init__(self, twin: GraphTwin, name: str, code, modules: list[str]):
        super().__init__()
        object.__setattr__(self, "twin", twin)  # not a child: the twin's modules stay the twin's
        self.name, self._code, self._modules_called = name, code, modules

    def forward(self, *inputs):
        return self._code(self.twin, *inputs)

    def members(self) -> nn.ModuleList:
        """The twin's modules this block calls (a list that does not own them)."""
        return nn.ModuleList(self.twin.get_submodule(n) for n in self._modules_called)

    def norms(self) -> list[nn.Module]:
        return [m for m in self.members() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def extra_repr(self) -> str:
        return self.name


class GraphTwin(TwinModel):
    """The ANN (``spiking=False``) or SNN twin of an ``nn.Module`` (see the module docstring).
    ``source`` names the network in messages (``torchvision:resnet18``)."""

    def __init__(self, net: nn.Module, *, source: str, spiking: bool, timesteps: int, neuron: NeuronSpec | None,
                 in_channels: int = 3, num_classes: int | None = None, activations: dict | None = None,
                 image_size: int = 32):
        super().__init__(spiking=spiking, timesteps=timesteps, neuron=neuron)
        self.source = source
        mapping = dict(activations or {})
        bad = {k: v for k, v in mapping.items() if v not in ACTIONS}
        if bad:
            raise ConfigError(f"model.options.activations: {bad} — each activation maps to one of {', '.join(ACTIONS)}")
        graph_module = self._trace(net)
        names = set(net.state_dict())
        graph, sites = self._rewrite(graph_module, mapping)
        self._adopt(graph_module, names)
        self._sites = sites  # site name -> its module path before renaming (its "home")
        shapes = self._probe(graph, in_channels, image_size, num_classes)  # on the ANN's activations
        for name in sites:  # the SNN's neurons; the ANN keeps its own activations unless the neuron has an ANN form
            if self.spiking:
                self.set_submodule(name, SpikeActivation(self._timesteps, self.neuron))
            elif not isinstance(ann := self.neuron.ann_activation(), nn.ReLU):
                self.set_submodule(name, ann)
        stem, body = self._split(graph, shapes)
        self._stem_code, self._body_code = self._code(stem), self._code(self._blocks(body))
        self._shapes = {name: shapes[name] for name in sites if name in shapes}
        self._feature_info = [
            f["module"] for f in getattr(net, "feature_info", []) if isinstance(f, dict) and "module" in f
        ]

    @property
    def act(self):
        """A network's own part named ``act`` (the zoo's activation factory is not used here)."""
        try:
            return self._modules["act"]
        except KeyError:
            raise AttributeError("act") from None

    # -- construction ---------------------------------------------------------------------------
    def _trace(self, net: nn.Module) -> fx.GraphModule:
        params = list(inspect.signature(net.forward).parameters.values())
        extra = {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty}
        if len(params) - len(extra) != 1:
            raise ConfigError(f"model {self.source}: its forward takes {len(params)} arguments without defaults; "
                              "a twin needs one input (the images)")
        net = copy.deepcopy(net)  # the network handed in stays as it was
        traced, tracer = {}, _Tracer()
        try:
            for training in (False, True):  # a graph that is the same in both modes, or none
                root = net.train(training)
                tracer = _Tracer()
                traced[training] = fx.GraphModule(root, tracer.trace(root, concrete_args=extra or None))
        except Exception as exc:
            raise ConfigError(f"model {self.source} cannot be traced by torch.fx (data-dependent control flow?): "
                              f"{_first_line(exc)}") from None
        if traced[False].code != traced[True].code:
            raise ConfigError(f"model {self.source} cannot train and evaluate with one graph: "
                              f"{_mode_reader(traced, tracer)}")
        _plain_norms(tracer.norm_acts)
        return traced[True]

    def _rewrite(self, gm: fx.GraphModule, mapping: dict) -> tuple[fx.Graph, dict[str, str]]:
        graph = gm.graph
        sites: dict[str, str] = {}
        from_input = _from_input(graph)  # only these run time-folded: an activation of a parameter stays
        keys = {n: _key(n, gm) for n in graph.nodes}
        in_place = {n: _in_place(n, gm, k) for n, k in keys.items() if k is not None}  # before anything changes

        def free(path: str) -> bool:
            owner, _, leaf = path.rpartition(".")
            return not hasattr(gm.get_submodule(owner) if owner else gm, leaf)

        def unique(name: str) -> str:
            stem, k = name, 0
            while not free(name):
                k += 1
                name = f"{stem}_{k}"
            return name

        def install(path: str, module: nn.Module) -> None:
            gm.set_submodule(path, module, strict=False)

        actions = {canonical(k): v for k, v in mapping.items()}
        unmapped: dict[str, list[str]] = {}  # kind -> where (module paths), every one reported at once
        attention: dict[str, list[str]] = {}
        used_modules: set[str] = set()
        for node in list(graph.nodes):
            key = keys.get(node)
            if key is None or node not in from_input:
                continue
            kind = canonical(key)
            where = node.target if node.op == "call_module" else _call_path(node)
            action = actions.get(kind, "spike" if kind in SPIKING else None)
            if kind in ATTENTION and action != "keep":
                attention.setdefault(key.rstrip("_"), []).append(where)
                continue
            if action is None and kind in NEEDS_MAPPING:
                unmapped.setdefault(key.rstrip("_"), []).append(where)
                continue
            if action != "spike":
                continue
            if node.op == "call_module" and any(True for _ in gm.get_submodule(node.target).parameters()):
                raise ConfigError(f"model {self.source}: {where} ({key}) has parameters, which a neuron would drop; "
                                  f"set model.options.activations={{{key}: keep}}")
            if in_place[node]:  # later readers of the input read the output, as in place they did
                source, later, n = node.args[0], set(), node.next
                while n.op != "root":
                    later.add(n)
                    n = n.next
                for user in list(source.users):
                    if user in later:
                        user.replace_input_with(source, node)
            module = _ann_activation(node, gm, key)
            home = _home(node, key)
            if node.op == "call_module" and node.target not in used_modules:
                name = node.target  # the first call keeps the module's own name
            else:
                name = unique(home)
            used_modules.add(node.target if node.op == "call_module" else name)
            install(name, module if name == node.target else copy.deepcopy(module))
            with graph.inserting_before(node):
                site = graph.call_module(name, (node.args[0],))
            node.replace_all_uses_with(site)
            graph.erase_node(node)
            from_input.add(site)
            sites[name] = home
            self._residual(gm, graph, site, unique, install)
        self._refuse(unmapped, attention)
        graph.lint()
        return graph, sites

    def _refuse(self, unmapped: dict[str, list[str]], attention: dict[str, list[str]]) -> None:
        """Every activation without a spiking form, in one message: each with its module paths."""
        if not unmapped and not attention:
            return

        def listed(found: dict[str, list[str]]) -> str:
            return "; ".join(f"{kind} at {', '.join(paths)}" for kind, paths in found.items())

        parts = []
        if unmapped:
            spike = ", ".join(f"{k}: spike" for k in unmapped)
            parts.append(f"no spiking form: {listed(unmapped)}; set model.options.activations={{{spike}}} to put the "
                         "neuron there, or keep (e.g. {" + next(iter(unmapped)) + ": keep}) to leave one analog")
        if attention:
            keep = ", ".join(f"{k}: keep" for k in attention)
            parts.append(f"softmax attention, which has no spiking form (a spiking transformer such as spikformer "
                         f"attends without softmax): {listed(attention)}; set model.options.activations={{{keep}}} to "
                         "leave it analog")
        raise ConfigError(f"model {self.source}: " + " | ".join(parts))

    @staticmethod
    def _residual(gm, graph: fx.Graph, site: fx.Node, unique, install) -> None:
        """A sum of two tensors feeding a site, as a :class:`ResidualAdd` module."""
        add = site.args[0]
        is_add = (add.op == "call_function" and add.target in (operator.add, torch.add)) or (
            add.op == "call_method" and add.target == "add")
        if not (is_add and len(add.args) == 2 and not add.kwargs and all(isinstance(a, fx.Node) for a in add.args)):
            return
        parent = site.target.rpartition(".")[0]
        path = unique(f"{parent}.residual" if parent else "residual")
        install(path, ResidualAdd())
        with graph.inserting_before(add):
            module_add = graph.call_module(path, add.args)
        add.replace_all_uses_with(module_add)
        graph.erase_node(add)

    def _adopt(self, gm: fx.GraphModule, names: set[str]) -> None:
        """The network's top-level modules, parameters and buffers become the twin's own, under the
        same names (the generated forward reads them from ``self``); ``names`` are the network's
        state-dict keys: a tensor the tracer made a buffer (a plain tensor attribute, a literal)
        stays out of the state dict."""
        for name in [*gm._modules, *gm._parameters, *gm._buffers]:
            if hasattr(self, name):
                raise ConfigError(f"model {self.source}: its part {name!r} clashes with an attribute of sakd's twin")
        for name, module in gm._modules.items():
            self.add_module(name, module)
        for name, p in gm._parameters.items():
            self.register_parameter(name, p)
        for name, b in gm._buffers.items():
            self.register_buffer(name, b, persistent=name in names)
        for path, module in self.named_modules():
            for name in module._buffers:
                if f"{path}.{name}".lstrip(".") not in names:
                    module._non_persistent_buffers_set.add(name)

    def _probe(self, graph: fx.Graph, in_channels: int, image_size: int,
               num_classes: int | None) -> dict[str, torch.Size | None]:
        """Every node's output shape on two images (eval mode, no gradient), None where it is no tensor."""
        probe = fx.GraphModule(self, graph)
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            with torch.no_grad():
                ShapeProp(probe).propagate(torch.zeros(2, in_channels, image_size, image_size, device=device))
        except Exception as exc:
            raise ConfigError(f"model {self.source} does not run on {in_channels}x{image_size}x{image_size} images "
                              f"({_first_line(exc)}); "
                              "set model.options.image_size or data.options") from None
        finally:
            for m, mode in modes.items():
                m.training = mode
        out = {}
        for node in graph.nodes:
            meta = node.meta.get("tensor_meta")
            out[node.name] = meta.shape if hasattr(meta, "shape") else None
            if node.op == "call_module" and node.target in self._sites:
                out[node.target] = out[node.name]
        output = next(n for n in graph.nodes if n.op == "output")
        logits = out[output.args[0].name] if isinstance(output.args[0], fx.Node) else None
        if logits is None or len(logits) != 2:
            raise ConfigError(f"model {self.source} does not return one tensor of logits [B, K] (a tuple, a dict, "
                              "auxiliary heads?); build it without them through model.options")
        if num_classes is not None and logits[1] != num_classes:
            raise ConfigError(f"model {self.source} gives {logits[1]} logits, the data set has {num_classes} classes")
        return out

    def _split(self, graph: fx.Graph, shapes: dict) -> tuple[fx.Graph, fx.Graph]:
        """The stem (what the input alone makes before any site) and the body, as two graphs."""
        nodes = list(graph.nodes)
        (x,) = [n for n in nodes if n.op == "placeholder"]
        from_input, dynamic = _from_input(graph), set()
        for n in nodes:
            if n.op != "output" and ((n.op == "call_module" and n.target in self._sites)
                                     or any(a in dynamic for a in n.all_input_nodes)):
                dynamic.add(n)
        static = from_input - dynamic
        frontier = [n for n in nodes if n in static and any(u in dynamic or u.op == "output" for u in n.users)]
        if any(shapes.get(n.name) is None for n in frontier):  # a size or a shape: all of it on T*B
            static, frontier = {x}, [x]

        def copy(into: fx.Graph, keep, env: dict) -> None:
            for n in nodes:
                if n in env or n.op in ("placeholder", "output") or not keep(n):
                    continue
                env[n] = into.node_copy(n, lambda a: env[a])

        stem = fx.Graph()
        env = {x: stem.placeholder("x")}
        copy(stem, lambda n: n in static or n not in from_input, env)
        stem.output(tuple(env[n] for n in frontier) if len(frontier) > 1 else env[frontier[0]])
        body = fx.Graph()
        env = {n: body.placeholder(f"h{i}") for i, n in enumerate(frontier)}
        copy(body, lambda n: n not in static, env)
        body.output(env[next(n for n in nodes if n.op == "output").args[0]])
        return stem, body

    def _blocks(self, body: fx.Graph) -> fx.Graph:
        """``body`` with each run of nodes inside one block (:func:`_block_of`; constants join the
        run they are in) replaced by a :class:`Block` call, where the run calls two modules or more."""
        runs, current, key = [], [], None
        for n in body.nodes:
            k = _block_of(n)
            if n.op == "get_attr" and current:
                current.append(n)
                continue
            if k is not None and k == key:
                current.append(n)
                continue
            if current:
                runs.append((key, current))
            current, key = ([n], k) if k is not None else ([], None)
        if current:
            runs.append((key, current))
        runs = [(k, r) for k, r in runs if sum(n.op == "call_module" for n in r) >= 2]
        if not runs:
            self.sakd_blocks = nn.ModuleList()
            return body
        blocks = []
        for i, (key, run) in enumerate(runs):
            members = set(run)
            inputs = list(dict.fromkeys(a for n in run for a in n.all_input_nodes if a not in members))
            outputs = [n for n in run if any(u not in members for u in n.users)]
            sub = fx.Graph()
            env = {a: sub.placeholder(f"in{j}") for j, a in enumerate(inputs)}
            for n in run:
                env[n] = sub.node_copy(n, env.__getitem__)
            sub.output(tuple(env[n] for n in outputs))
            called = list(dict.fromkeys(n.target for n in run if n.op == "call_module"))
            blocks.append(Block(self, key, self._code(sub), called))
            with body.inserting_before(run[0]):
                call = body.call_module(f"sakd_blocks.{i}", tuple(inputs))
                results = [body.call_function(operator.getitem, (call, j)) for j in range(len(outputs))]
            for n, r in zip(outputs, results):
                n.replace_all_uses_with(r)
            for n in reversed(run):
                body.erase_node(n)
        self.sakd_blocks = nn.ModuleList(blocks)  # no parameters or buffers: the state dict is unchanged
        body.lint()
        return body

    def recompute_units(self) -> list[nn.Module]:
        return list(self.sakd_blocks)

    def _code(self, graph: fx.Graph):
        """The Python function fx writes for ``graph``, called with the twin as ``self``."""
        gm = fx.GraphModule(self, graph)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        return type(gm).forward

    # -- forward --------------------------------------------------------------------------------
    def forward_stem(self, x: torch.Tensor):
        return self._stem_code(self, x)

    def forward_body(self, h) -> torch.Tensor:
        return self._body_code(self, *h) if isinstance(h, tuple) else self._body_code(self, h)

    # -- taps -----------------------------------------------------------------------------------
    def tap_points(self, level: str = "stage") -> list[TapPoint]:
        maps = [n for n, s in self._shapes.items() if s is not None and len(s) == 4]
        if not maps:
            raise ConfigError(f"model {self.source} has no activation with feature maps [B, C, H, W] to tap")
        if level == "block":
            groups: dict[str, str] = {}
            for n in maps:
                groups[".".join(self._sites[n].split(".")[:2])] = n
            chosen = list(groups.values())
        elif self._feature_info:
            chosen = []
            for module in self._feature_info:
                inside = [n for n in maps if self._sites[n] == module or self._sites[n].startswith(module + ".")]
                if inside and inside[-1] not in chosen:
                    chosen.append(inside[-1])
        else:
            area = [self._shapes[n][2] * self._shapes[n][3] for n in maps]
            chosen = [n for i, n in enumerate(maps) if i == len(maps) - 1 or area[i + 1] < area[i]]
        return [TapPoint(n, self.get_submodule(n), int(self._shapes[n][1])) for n in chosen]

    def extra_repr(self) -> str:
        return f"source={self.source}, spiking={self.spiking}, sites={len(self._sites)}"


def graph_twin(net: nn.Module, *, source: str, spiking: bool, timesteps: int, in_channels: int, num_classes: int,
               neuron: NeuronSpec | None, options: dict) -> GraphTwin:
    """A twin of ``net`` with the twin's own ``options`` (``activations``, ``image_size``)."""
    return GraphTwin(net, source=source, spiking=spiking, timesteps=timesteps, neuron=neuron, in_channels=in_channels,
                     num_classes=num_classes,
                     activations=options.get("activations"), image_size=int(options.get("image_size", 32)))


