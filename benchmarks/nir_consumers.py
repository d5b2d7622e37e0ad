"""Does an exported NIR graph run the same elsewhere? Each consumer imports the file sakd wrote and
runs the same inputs for T steps; its per-layer spike trains and outputs are compared with sakd's.

Consumers (each optional; a missing one is reported, not fatal): SpikingJelly's
``import_from_nir``, snnTorch's ``import_from_nir``, Norse's ``from_nir``. The graph is exported
for the time step each consumer integrates with (``--dt``-style: snnTorch's importer fixes
1e-4, SpikingJelly and Norse take it as an argument; ours is passed). Per consumer the JSON
records: imported or the importer's error, per-layer spike agreement (fraction of equal spike
entries, layer by layer in NIR's node order), the output's largest difference, and the
prediction agreement.

    python benchmarks/nir_consumers.py                          # resnet_tiny (random BN stats) and ResNet-19
    python benchmarks/nir_consumers.py --checkpoint RUN/last.pt # and a trained student
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import sys
import tempfile
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import machine  # noqa: E402

from sakd.export import example_input  # noqa: E402
from sakd.export.graph import run_steps, step_graph  # noqa: E402
from sakd.export.nir_format import to_nir, write_nir  # noqa: E402
from sakd.models import create_model  # noqa: E402
from sakd.training.run_folder import Checkpoint  # noqa: E402


def spike_hooks(module: torch.nn.Module, kinds: tuple) -> tuple[dict, list]:
    """Record the outputs of every submodule of the given types, per name, one entry per call."""
    seen, handles = {}, []
    for name, m in module.named_modules():
        if isinstance(m, kinds):
            def hook(mod, i, o, name=name):
                seen.setdefault(name, []).append((o[0] if isinstance(o, tuple) else o).detach().float())
            handles.append(m.register_forward_hook(hook))
    return seen, handles


def run_with_state(net, kinds: tuple, x: torch.Tensor, timesteps: int):
    """Run a network whose forward takes and returns an explicit state, ``(out, state)``."""
    seen, handles = spike_hooks(net, kinds)
    state, outs = None, []
    with torch.no_grad():
        for _ in range(timesteps):
            out, state = net(x, state)
            outs.append(out)
    for h in handles:
        h.remove()
    return torch.stack(outs), seen


def run_spikingjelly(path: Path, x: torch.Tensor, timesteps: int, dt: float):
    from spikingjelly.activation_based.nir_exchange.from_nir import _NIRStatefulModule, import_from_nir

    # each _NIRStatefulModule wraps one neuron layer
    return run_with_state(import_from_nir(str(path), dt=dt), (_NIRStatefulModule,), x, timesteps)


def run_snntorch(path: Path, x: torch.Tensor, timesteps: int, dt: float):
    import nir
    import snntorch
    from snntorch.import_nir import import_from_nir
    from snntorch.utils import reset

    net = import_from_nir(nir.read(str(path)))
    seen, handles = spike_hooks(net, (snntorch.SpikingNeuron,))
    outs = []
    with torch.no_grad():
        # one image at a time: the importer hands NIR's Flatten(start_dim=0) to torch.nn.Flatten
        # unchanged, which flattens the batch axis too unless the batch is 1
        for image in x.split(1):
            reset(net)
            for _ in range(timesteps):
                out = net(image)
                outs.append(out[0] if isinstance(out, tuple) else out)
    for h in handles:
        h.remove()
    b = len(x)
    image_major = lambda v: torch.stack(v).unflatten(0, (b, timesteps)).transpose(0, 1).flatten(2)  # noqa: E731
    return image_major(outs), {k: list(image_major(v)) for k, v in seen.items()}


def run_norse(path: Path, x: torch.Tensor, timesteps: int, dt: float):
    import nir
    import norse.torch as norse

    return run_with_state(norse.from_nir(nir.read(str(path)), dt=dt), (norse.LIFBoxCell, norse.IAFCell), x, timesteps)


CONSUMERS = {"spikingjelly": (run_spikingjelly, 1e-4), "snntorch": (run_snntorch, 1e-4), "norse": (run_norse, 1e-3)}


def compare(model, x: torch.Tensor, consumers: list[str]) -> dict:
    gm = step_graph(model)
    logits, ours = run_steps(gm, x, model.timesteps, record=True)
    ours = {k.removeprefix("model.").replace(".", "_"): v for k, v in ours.items()}
    rows = {"sakd": {"firing_rate": float(torch.cat([v.flatten() for v in ours.values()]).mean()),
                     "neuron_layers": len(ours)}}
    for name in consumers:
        run, dt = CONSUMERS[name]
        row = {"dt": dt}
        with tempfile.TemporaryDirectory() as tmp:
            path = write_nir(to_nir(gm, x, dt), Path(tmp) / "model.nir")
            try:
                out, seen = run(path, x, model.timesteps, dt)
            except ImportError as exc:
                rows[name] = {**row, "installed": False, "error": str(exc)}
                continue
            except Exception as exc:  # the importer's or executor's own refusal: the reason, verbatim
                rows[name] = {**row, "installed": True, "imported": False,
                              "error": f"{type(exc).__name__}: {exc}".strip()[:500],
                              "where": traceback.format_exc(limit=-2).strip().splitlines()[-3:]}
                continue
        layers = {}
        trains = [torch.stack(v) for v in seen.values()]
        if len(trains) == len(ours):  # the consumer's neurons in call order are NIR's in topological order
            for (k, want), got in zip(ours.items(), trains):
                got = got.reshape(want.shape) if got.numel() == want.numel() else got
                layers[k] = float((got == want).float().mean()) if got.shape == want.shape else None
        if out.numel() != logits.numel():
            rows[name] = {**row, "installed": True, "imported": True, "runs_the_graph": False,
                          "error": f"the imported network's output has shape {tuple(out.shape)}, not "
                                   f"{tuple(logits.shape)}: it does not run the graph that was written"}
            continue
        out = out.reshape(logits.shape)
        row.update(installed=True, imported=True, neuron_layers=len(trains), layers=layers,
                   identical_spikes=bool(layers) and all(v == 1.0 for v in layers.values()),
                   min_layer_agreement=min((v for v in layers.values() if v is not None), default=None),
                   output_max_abs_diff=float((out - logits).abs().max()),
                   same_prediction=float((out.mean(0).argmax(1) == logits.mean(0).argmax(1)).float().mean()))
        rows[name] = row
    return rows


def trained_looking(name: str, neuron: dict | None = None, seed: int = 0, **options):
    """A spiking model with non-trivial BatchNorm statistics and affine parameters (eval mode), so
    that folding has something to fold."""
    torch.manual_seed(seed)
    model = create_model(name, spiking=True, num_classes=10, timesteps=4, neuron=neuron or {}, **options)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.3)
    return model.eval()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="also a trained spiking checkpoint (its data set's input size)")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--consumers", nargs="+", default=list(CONSUMERS), choices=list(CONSUMERS))
    p.add_argument("--out", help="JSON results (default: benchmarks/results/nir_consumers.json)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    cases = {"resnet_tiny (random BN statistics)": (trained_looking("resnet_tiny"), (3, 16, 16)),
             "resnet19 (random BN statistics)": (trained_looking("resnet19"), (3, 32, 32))}
    if args.checkpoint:
        held = Checkpoint.load(args.checkpoint)
        shape = tuple(example_input(held, None).shape[-3:])
        cases[f"{held.spec.name} ({held.path})"] = (held.model().float().eval(), shape)
    versions = {}
    for package in ("nir", "nirtorch", "spikingjelly", "snntorch", "norse"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    result = {"machine": machine(torch.device("cpu")), "versions": versions, "models": {}}
    for name, (model, shape) in cases.items():
        x = torch.randn(args.images, *shape) * 2
        result["models"][name] = compare(model, x, args.consumers)
        for consumer, row in result["models"][name].items():
            if consumer == "sakd":
                continue
            if row.get("imported") and "error" not in row:
                print(
                    f"{name} / {consumer}: identical spikes {row['identical_spikes']}, lowest layer agreement "
                    f"{row['min_layer_agreement']}, output max diff {row['output_max_abs_diff']:.3g}, same prediction "
                    f"{row['same_prediction']:.3f}",
                    flush=True,
                )
            else:
                print(f"{name} / {consumer}: {row['error']}", flush=True)
    dest = Path(args.out) if args.out else Path(__file__).parent / "results" / "nir_consumers.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2))
    print(dest)
    return result


if __name__ == "__main__":
    main()
