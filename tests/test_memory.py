"""``run.memory: lean`` and ``min``: spikes saved for backward as bits, neuron inputs and (``min``)
whole blocks made again in backward give bit-identical gradients (float64 and float32, the whole
SAKD step with its feature transforms), keep less, and round-trip exactly."""

import contextlib

import pytest
import torch
from torch import nn

from conftest import DEVICES, fast_config
from sakd.distill import SAKDLoss
from sakd.models import FeatureExtractor, create_model
from sakd.training import Trainer
from sakd.neurons import SpikeActivation
from sakd.training.memory import Kept, Packed, SavedTensors


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("packing", ["bits", "uint8"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float32])
def test_packed_spikes_unpack_to_the_same_tensor(dtype, packing, device):
    torch.manual_seed(0)
    spikes = (torch.rand(3, 5, 7, 9) < 0.3).to(device, dtype)
    for t in (spikes, spikes.to(memory_format=torch.channels_last), spikes.flatten(0, 1), spikes[1:]):
        back = Packed(t, packing).unpack()
        assert torch.equal(back, t) and back.dtype == t.dtype and back.stride() == t.stride()
    assert Packed(spikes, packing).nbytes == (spikes.numel() + 7) // 8 if packing == "bits" else spikes.numel()


def test_bits_are_numpys_packbits():
    """Packed bits equal an independent packer's (NumPy, little bit order): all-ones groups (every
    partial product of the packing multiplication set), a ragged tail, random spikes."""
    import numpy as np

    torch.manual_seed(0)
    t = (torch.rand(1003) < 0.5).float()
    t[:64] = 1.0
    t[64:72] = 0.0
    for device in DEVICES:
        packed = Packed(t.to(device), "bits")
        assert np.array_equal(packed.data.cpu().numpy(), np.packbits(t.numpy().astype(bool), bitorder="little"))
        assert torch.equal(packed.unpack().cpu(), t)


def sakd_step(model, teacher, objective, x, y, mode, packing):
    """One SAKD step's gradients (CE + feature L2 through the transforms + logits KD) and the bytes
    it keeps for backward."""
    return sakd_step_at(model, teacher, objective, x, y, mode, "stage", packing)


def sakd_step_at(model, teacher, objective, x, y, mode, level, packing="bits", plan=None):
    """:func:`sakd_step` with the features tapped at ``level`` (the student's as their time means,
    as a run whose terms read only those taps them); ``plan``: ``min``'s per block (a MemoryBudget)."""
    s_fx, t_fx = FeatureExtractor(model, level, time_mean=True), FeatureExtractor(teacher, level)
    for p in [*model.parameters(), *objective.parameters()]:
        p.grad = None
    with torch.no_grad():
        t_logits, t_feats = t_fx(x)
    params = {p.untyped_storage().data_ptr() for p in [*model.parameters(), *objective.parameters()]}
    with SavedTensors(model, mode, packing, exclude=params, count=True, plan=plan) as saved:
        logits, feats = s_fx(x)
        loss = objective(logits, y, t_logits, feats, t_feats).total
    loss.backward()
    s_fx.remove()
    t_fx.remove()
    return [p.grad.clone() for p in [*model.parameters(), *objective.parameters()]], saved.kept_bytes


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("packing", ["bits", "uint8"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lean_gives_bit_identical_gradients_and_keeps_less(dtype, packing, device, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # the same convolution algorithms each time
    torch.manual_seed(0)
    model = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=4).to(device, dtype)
    teacher = create_model("resnet_tiny", spiking=False, num_classes=10).to(device, dtype).eval()
    objective = SAKDLoss([16, 32, 64], [16, 32, 64], alpha=1, beta=10, gamma=1, tau=4).to(device, dtype)
    model, teacher = (m.to(memory_format=torch.channels_last) for m in (model, teacher))
    x = torch.randn(8, 3, 16, 16, dtype=dtype).to(device, memory_format=torch.channels_last) * 2
    y = torch.randint(0, 10, (8,), device=device)
    fast, fast_bytes = sakd_step(model, teacher, objective, x, y, "fast", packing)
    lean, lean_bytes = sakd_step(model, teacher, objective, x, y, "lean", packing)
    assert all(torch.equal(a, b) for a, b in zip(fast, lean))
    assert any(g.abs().sum() > 0 for g in fast)
    assert lean_bytes < 0.8 * fast_bytes


MIN_MODELS = {  # name -> (options, input side): a residual CNN, the DVS VGG, both spiking transformers, a
    # torchvision twin (its blocks found in the traced graph; in-place ReLUs and `out += identity`)
    "resnet_tiny": ({}, 16), "vgg11": ({}, 16), "spikformer": ({"depth": 2, "dim": 32, "heads": 4}, 32),
    "spike_driven_transformer": ({"depth": 2, "dim": 32}, 32), "torchvision:resnet18": ({}, 32),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(MIN_MODELS))
def test_min_gives_bit_identical_gradients_updates_batchnorm_once_and_keeps_least(name, dtype, device, monkeypatch):
    """A SAKD step (CE, feature L2 through the transforms at block taps, logits KD) with its blocks
    run again in backward from their input spikes (but the last, held from the forward): fast's
    gradients and running statistics."""
    import copy

    from sakd.training.memory import units as recompute

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    options, side = MIN_MODELS[name]
    torch.manual_seed(0)
    snn = create_model(name, spiking=True, num_classes=10, timesteps=2, **options).to(device, dtype)
    teacher = create_model(name, spiking=False, num_classes=10, **options).to(device, dtype).eval()
    channels = [p.channels for p in snn.tap_points("block")]
    objective = SAKDLoss(channels, channels, alpha=1, beta=10, gamma=1, tau=4, ).to(device, dtype)
    x = torch.randn(4, 3, side, side, dtype=dtype, device=device) * 2
    y = torch.randint(0, 10, (4,), device=device)
    results, calls, again = {}, [], []
    begin, run_again = recompute.UnitCall.begin, recompute.UnitCall.recompute
    monkeypatch.setattr(recompute.UnitCall, "begin", lambda call, args: calls.append(call) or begin(call, args))
    monkeypatch.setattr(recompute.UnitCall, "recompute", lambda call: again.append(call) or run_again(call))
    for mode in ("fast", "lean", "min"):
        model = copy.deepcopy(snn)
        grads, kept = sakd_step_at(model, teacher, objective, x, y, mode, "block")
        results[mode] = grads, kept, [b.clone() for b in model.buffers()]
    assert 0 < len(again) < len(calls)  # blocks run again, and the last one held
    fast, lean, least = results["fast"], results["lean"], results["min"]
    assert all(torch.equal(a, b) for a, b in zip(fast[0], least[0], strict=True))
    assert sum(g.abs().sum() for g in fast[0]) > 0
    assert all(torch.equal(a, b) for a, b in zip(fast[2], least[2], strict=True))  # running statistics: one update
    assert least[1] < lean[1] < fast[1]


def test_min_keeps_of_each_block_what_lean_keeps_and_holds_only_the_last_blocks(monkeypatch):
    """What ``min`` keeps of a block while backward goes through it is a lean step's (each
    BatchNorm's input as a float, every neuron's input current as the recipe that makes it again,
    spikes as bits), whether the block ran again or held it from the forward: only the last blocks
    hold, while together they hold at most ``footprint`` times what the largest block held."""
    from sakd.training.memory import units as recompute
    from sakd.training.memory import Recomputed

    forward, again = {}, []
    end, run_again = recompute.UnitCall.end, recompute.UnitCall.recompute

    def holding(call):
        end(call)
        forward[call] = call.held, dict(call.saved)

    def watched(call):
        run_again(call)
        again.append((call, dict(call.saved)))

    monkeypatch.setattr(recompute.UnitCall, "end", holding)
    monkeypatch.setattr(recompute.UnitCall, "recompute", watched)
    torch.manual_seed(0)
    model = create_model("resnet19", spiking=True, num_classes=10, timesteps=2)
    with SavedTensors(model, "min"):
        out = model(torch.randn(2, 3, 16, 16))
    out.sum().backward()
    calls, ran_again = list(forward), [call for call, _ in again]
    assert len(calls) == len(model.recompute_units()) and len(set(ran_again)) == len(ran_again)
    held = [call for call in calls if call not in ran_again]
    last_stage = list(getattr(model, model.stages[-1]))
    assert [call.members for call in held][-len(last_stage):] == last_stage and len(held) < len(calls)
    assert held == calls[-len(held):]  # the last blocks, and an earlier one ran again
    largest = max(nbytes for nbytes, _ in forward.values())
    assert sum(forward[call][0] for call in held) <= recompute.Recomputing.footprint * largest
    for call, saved in again + [(call, forward[call][1]) for call in held]:
        block = call.members
        norms = sum(isinstance(m, nn.BatchNorm2d) for m in block.modules())
        neurons = sum(isinstance(m, SpikeActivation) for m in block.modules())
        floats = [k for k in saved.values() if isinstance(k, Kept) and k.tensor.dim() == 4]
        assert len(floats) == norms  # one float per layer, the BatchNorm's input (the convolution's output)
        assert sum(isinstance(k, Recomputed) for k in saved.values()) >= neurons
        assert sum(isinstance(k, Packed) for k in saved.values()) >= 2  # the block's input and inner spikes


def test_a_second_backward_runs_every_block_again():
    """``retain_graph``: the second backward through a min step's graph makes what the first one
    used up again, for the blocks that ran again and for those held: twice fast's gradients."""
    torch.manual_seed(0)
    model = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=2).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    grads = {}
    for mode in ("fast", "min"):
        model.zero_grad(set_to_none=True)
        with SavedTensors(model, mode):
            loss = model(x).square().sum()
        loss.backward(retain_graph=True)
        loss.backward()
        grads[mode] = [p.grad.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(grads["fast"], grads["min"], strict=True))
    assert sum(g.abs().sum() for g in grads["fast"]) > 0


def test_min_replays_the_random_draws_of_a_unit_and_refuses_a_model_without_units():
    """Dropout inside a unit (torch's generator) and a draw from the step's generator: the same
    masks when the unit runs again (its first call, which the second frees), so fast's gradients."""
    from sakd.errors import ConfigError
    from sakd.randomness import step_draws, step_generator
    from sakd.training.memory import resolve_memory
    from sakd.training.memory.units import Recomputing

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.drop = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Dropout(0.5)

        def forward(self, x):
            noise = torch.rand(x.shape, generator=step_generator(x.device))
            return self.drop(torch.relu(self.bn(self.conv(x)))) * noise

    def lean(members, alive, mode):
        return SavedTensors(members, mode, exclude=alive, count=True)

    torch.manual_seed(0)
    unit = Noisy()
    x = (torch.rand(2, 3, 5, 5) < 0.5).float().requires_grad_()
    grads = {}
    for mode in ("fast", "min"):
        for p in unit.parameters():
            p.grad = None
        x.grad = None
        torch.manual_seed(1)
        with step_draws(0, 0, 0), (Recomputing([unit], lean) if mode == "min" else contextlib.nullcontext()) as r:
            out = unit(unit(x))
            if mode == "min":
                assert [c.held > 0 for c in r.calls] == [False, True]  # the first call runs again
            torch.rand(3)  # the generators move on before backward
            step_generator("cpu").seed()
            (out * torch.arange(out.numel()).view_as(out)).sum().backward()
        grads[mode] = [x.grad.clone(), *(p.grad.clone() for p in unit.parameters())]
    assert all(torch.equal(a, b) for a, b in zip(grads["fast"], grads["min"], strict=True))
    with pytest.raises(ConfigError, match="run.memory=min runs blocks again in backward, but this model names none"):
        resolve_memory("min", nn.Sequential(nn.Conv2d(1, 1, 1)))


def test_min_refuses_a_unit_called_with_keywords_and_an_interrupted_forward_leaves_nothing_behind():
    """A block called with keyword arguments cannot be run again from its positional inputs: one
    line, not wrong gradients. A forward stopped inside a block (Ctrl-C, which the always-called
    hooks do not see) leaves no hook on the model and no saved-tensor hook open once the context
    closes: a later step on the same thread keeps what fast keeps."""
    from sakd.errors import ConfigError

    def hooked(model):
        return [m for m in model.modules() if m._forward_hooks or m._forward_pre_hooks]

    model = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=2)
    unit = model.recompute_units()[0]
    inputs = []
    handle = unit.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    x = torch.randn(2, 3, 16, 16)
    model(x)
    handle.remove()
    with pytest.raises(ConfigError, match="called with keyword arguments"), SavedTensors(model, "min"):
        unit(x=inputs[0])
    assert not hooked(model)

    def interrupt(*_):
        raise KeyboardInterrupt

    stop = next(m for m in unit.modules() if isinstance(m, SpikeActivation)).register_forward_hook(interrupt)
    with pytest.raises(KeyboardInterrupt), SavedTensors(model, "min"):
        model(x)
    stop.remove()
    assert not hooked(model)
    a = torch.randn(4, requires_grad=True)
    b = a * a  # saves a: with a saved-tensor hook left open it would be kept in another form
    assert b.grad_fn._saved_self is a


def test_the_trainer_in_lean_and_min_mode_takes_the_same_step(tmp_path, teacher_ckpt):
    grads = {}
    for mode in ("fast", "lean", "min"):
        trainer = Trainer(fast_config(tmp_path / mode, f"distill.teacher.weights={teacher_ckpt}", "distill.beta=10",
                                      "distill.gamma=1", f"run.memory={mode}"))
        x, y = next(iter(trainer.parts.train_loader))
        features = trainer.parts.objective.reads_features(0)
        # the taps and transforms are in the step
        assert trainer.parts.objective.weights(0)["feature_kd"] == 10 and features
        loss, terms, _ = trainer.step_loss(x, y, 0, features)
        loss.backward()
        grads[mode] = [
            p.grad.clone() for p in [*trainer.parts.model.parameters(), *trainer.parts.objective.parameters()]
        ]
    assert all(torch.equal(a, b) for a, b in zip(grads["fast"], grads["lean"]))
    assert all(torch.equal(a, b) for a, b in zip(grads["fast"], grads["min"]))


def test_a_lean_sakd_run_trains_exactly_as_a_fast_one(tmp_path, teacher_ckpt):
    """Two epochs of SAKD (feature and logit KD, transforms) in each mode: the same metrics, loss
    terms included, and the same final weights, bit for bit."""
    runs = {}
    for mode in ("fast", "lean"):
        cfg = fast_config(tmp_path / mode, f"distill.teacher.weights={teacher_ckpt}", "distill.beta=10",
                          "distill.gamma=1", "optim.epochs=2", f"run.memory={mode}")
        trainer = Trainer(cfg)
        trainer.fit()
        metrics = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in trainer.history]
        runs[mode] = metrics, [t.clone() for t in trainer.parts.model.state_dict().values()]
    assert runs["fast"][0] == runs["lean"][0] and len(runs["fast"][0]) == 2
    assert all(torch.equal(a, b) for a, b in zip(runs["fast"][1], runs["lean"][1]))


def test_auto_memory_is_lean_for_a_spiking_student_and_fast_for_an_ann(tmp_path):
    assert Trainer(fast_config(tmp_path / "snn")).memory == "lean"  # the default: auto
    assert Trainer(fast_config(tmp_path / "ann", "model.spiking=false")).memory == "fast"
    assert Trainer(fast_config(tmp_path / "fast", "run.memory=fast")).memory == "fast"


def test_unknown_memory_mode_is_a_config_error(tmp_path):
    from sakd.errors import ConfigError

    with pytest.raises(ConfigError, match="run.memory"):
        fast_config(tmp_path, "run.memory=tiny")


def test_a_spike_tensor_in_reused_memory_is_packed_afresh():
    """The allocator may give a new spike tensor the memory of a freed one (same address, same
    shape): recording the new output forgets the bits packed for the old one."""
    model = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=1)
    first, second = (torch.rand(4, 64) < 0.5).float(), (torch.rand(4, 64) < 0.5).float()
    buf, layer = first.clone(), next(m for m in model.modules() if isinstance(m, SpikeActivation))
    with SavedTensors(model, "lean") as saved:
        saved.spikes.record(layer, None, buf)
        assert torch.equal(saved.keep(buf).unpack(), first)
        buf.copy_(second)  # the same memory now holds another layer's spikes
        saved.spikes.record(layer, None, buf)
        assert torch.equal(saved.keep(buf).unpack(), second)


def neuron_inputs_kept(model, x, mode, recompute=True):
    """The bytes a forward keeps for backward, and how many neurons' input currents are saved
    as they are (checked when saved, while the input lives: its memory is not yet reused)."""
    live_inputs, plain = set(), []

    class Watch(SavedTensors):
        def keep(self, t):
            saved = super().keep(t)
            if isinstance(saved, Kept) and t.untyped_storage().data_ptr() in live_inputs:
                plain.append(t.untyped_storage().data_ptr())
            return saved

    def enter(module, args):
        live_inputs.add(args[0].untyped_storage().data_ptr())

    def leave(module, args, out):
        live_inputs.discard(args[0].untyped_storage().data_ptr())

    hooks = [h for m in model.modules() if isinstance(m, SpikeActivation)
             for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with Watch(model, mode, exclude=params, count=True, recompute=recompute) as saved:
        model(x)
    for h in hooks:
        h.remove()
    return saved.kept_bytes, len(plain)


@pytest.mark.parametrize("name", ["resnet_tiny", "vgg11", "sew_resnet18"])
def test_lean_keeps_no_neuron_input_current(name):
    """Every neuron's input (a BatchNorm output, a residual sum, the stem repeated over time) is
    made again in backward, not kept; spikes-as-bits alone keeps them."""
    torch.manual_seed(0)
    model = create_model(name, spiking=True, num_classes=10, timesteps=2)
    x = torch.randn(2, 3, 32, 32)
    fast_bytes, fast_inputs = neuron_inputs_kept(model, x, "fast")
    bits_bytes, bits_inputs = neuron_inputs_kept(model, x, "lean", recompute=False)
    lean_bytes, lean_inputs = neuron_inputs_kept(model, x, "lean")
    n_neurons = sum(isinstance(m, SpikeActivation) for m in model.modules())
    assert fast_inputs == bits_inputs == n_neurons and lean_inputs == 0
    assert lean_bytes < bits_bytes < fast_bytes


def test_recomputation_follows_the_forward_autocast_and_eval_batchnorm():
    """A neuron input made again under the forward's autocast (bf16) and with a BatchNorm in eval
    mode (running statistics) gives the same gradients as keeping it."""
    torch.manual_seed(0)
    model = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=2)
    model.layer2.eval()  # a frozen-statistics stage inside a training model
    x = torch.randn(4, 3, 16, 16)
    grads = {}
    for mode in ("fast", "lean"):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16), SavedTensors(model, mode):
            loss = model(x).float().logsumexp(1).sum()
        loss.backward()
        grads[mode] = [p.grad.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(grads["fast"], grads["lean"]))
    assert any(g.abs().sum() > 0 for g in grads["fast"])


# -- in-place operations and neurons whose output is not 0/1 ----------------------------------------

from torch.nn import functional as F  # noqa: E402

from conftest import skip_unless_compiles  # noqa: E402
from sakd.neurons import NeuronSpec  # noqa: E402


class SpikingBlock(nn.Module):
    """conv -> BN -> neuron twice on spikes ``[T*B, C, H, W]``, the second half by ``style``:

    * ``residual``: torchvision's BasicBlock (``out = bn2(conv2(s)); out += identity; lif(out)``);
    * ``dropout``: dropout in place on the first spikes before the second conv;
    * ``changed``: the first spikes scaled in place after the second conv saved them (autograd
      refuses this backward); ``keep`` holds them alive until backward."""

    def __init__(self, style: str, backend: str, timesteps: int = 2, channels: int = 4, neuron: nn.Module = None):
        super().__init__()
        self.style, self.kept = style, None
        spec = NeuronSpec(backend=backend)
        self.conv1, self.conv2 = (nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(2))
        self.bn1, self.bn2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)
        self.lif1, self.lif2 = SpikeActivation(timesteps, spec), SpikeActivation(timesteps, spec)
        if neuron is not None:
            self.lif1.neuron = neuron

    def forward(self, s):
        a = self.lif1(self.bn1(self.conv1(s)))
        if self.style == "residual":
            out = self.bn2(self.conv2(a))
            out += s
            return self.lif2(out)
        if self.style == "dropout":
            F.dropout(a, 0.3, training=True, inplace=True)
            return self.lif2(self.bn2(self.conv2(a)))
        if self.style == "changed":
            out = self.conv2(a)
            a.mul_(0.5)
            self.kept = a
            return self.lif2(self.bn2(out)) + a.mean()
        return self.lif2(self.bn2(self.conv2(a)))  # plain


def block_grads(block, s, mode):
    """The block's input and weight gradients with run.memory=mode, or the error backward raised."""
    torch.manual_seed(1)  # the same dropout mask in every mode
    s = s.clone().requires_grad_(True)
    block.zero_grad(set_to_none=True)
    try:
        with SavedTensors(block, mode):
            out = block(s)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    except RuntimeError as exc:
        return exc
    finally:
        block.kept = None
    return [s.grad.clone()] + [p.grad.clone() for p in block.parameters()]


@pytest.mark.parametrize("backend", ["compiled", "fused", "reference"])
@pytest.mark.parametrize("style", ["residual", "dropout", "changed"])
def test_lean_with_in_place_operations_gives_fasts_gradients_or_fasts_error(style, backend):
    skip_unless_compiles(backend, "cpu")
    torch.manual_seed(0)
    block = SpikingBlock(style, backend).double()
    s = (torch.rand(2 * 3, 4, 5, 5) < 0.4).double()
    fast, lean = block_grads(block, s, "fast"), block_grads(block, s, "lean")
    if style == "changed":
        assert isinstance(fast, RuntimeError) and isinstance(lean, RuntimeError)
        assert "modified by an inplace operation" in str(fast) and "modified by an inplace operation" in str(lean)
        return
    assert not isinstance(lean, Exception), lean
    assert all(torch.equal(a, b) for a, b in zip(fast, lean))
    assert all(g.abs().sum() > 0 for g in fast[:3])


def test_lean_keeps_what_an_in_place_change_after_saving_used_once_the_tensor_is_freed():
    """Spikes changed in place after a convolution saved them, then freed before backward: autograd
    refuses (fast's error); lean has nothing left to check against, and its packed copy holds the
    values the convolution used, so it gives the true gradient (fast's, with the spikes cloned
    before the change)."""
    torch.manual_seed(0)
    block = SpikingBlock("changed", "fused").double()
    block.forward = lambda s: changed_then_freed(block, s, clone=False)
    s = (torch.rand(6, 4, 5, 5) < 0.4).double()
    lean = block_grads(block, s, "lean")
    block.forward = lambda s: changed_then_freed(block, s, clone=True)
    true = block_grads(block, s, "fast")
    assert not isinstance(lean, Exception) and all(torch.equal(a, b) for a, b in zip(true, lean))


def changed_then_freed(block, s, clone):
    a = block.lif1(block.bn1(block.conv1(s)))
    out = block.conv2(a.clone() if clone else a)
    a.mul_(0.5)
    return block.lif2(block.bn2(out)) + a.mean()


class Ternary(nn.Module):
    """Ternary spikes -1/0/1 (|X| >= 1) with a straight-through gradient; says nothing of ``binary``."""

    def forward(self, x):
        y = (x >= 1).to(x.dtype) - (x <= -1).to(x.dtype)
        return y + (x - x.detach()) * 0.5


class Graded(nn.Module):
    """Graded spikes: the current clipped to [0, 2], declared non-binary."""

    binary = False

    def forward(self, x):
        return x.clamp(0.0, 2.0)


@pytest.mark.parametrize("neuron", [Ternary, Graded])
def test_lean_keeps_outputs_of_neurons_that_are_not_binary(neuron):
    torch.manual_seed(0)
    block = SpikingBlock("plain", "fused", neuron=neuron()).double()
    s = (torch.rand(6, 4, 5, 5) < 0.4).double() * 3
    fast, lean = block_grads(block, s, "fast"), block_grads(block, s, "lean")
    assert all(torch.equal(a, b) for a, b in zip(fast, lean))
    assert fast[1].abs().sum() > 0


def test_only_layers_of_binary_neurons_are_packed():
    import weakref

    from sakd.training.memory.spikes import emits_binary as _emits_binary

    seen = weakref.WeakSet()  # the layers a step saw not binary (each SavedTensors keeps its own)

    lif = SpikeActivation(2, NeuronSpec())
    ternary = SpikeActivation(2, NeuronSpec())
    ternary.neuron = Ternary()
    zeros_and_ones, minus_one = torch.tensor([0.0, 1.0]), torch.tensor([-1.0, 1.0])
    assert _emits_binary(lif, minus_one, seen)  # LIF says binary: not checked
    assert _emits_binary(ternary, zeros_and_ones, seen)  # says nothing: this output is 0/1
    assert not _emits_binary(ternary, minus_one, seen)
    assert not _emits_binary(ternary, zeros_and_ones, seen)  # once not binary, the layer is kept as it is

    class Graded(type(lif.neuron)):  # a LIF subclass with its own forward: no longer said to be binary
        def forward(self, x):
            return super().forward(x) * 1.5

    assert Graded().binary is None and type(lif.neuron)().binary is True
