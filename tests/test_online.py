"""``run.bptt=sltt``: the gradient SLTT keeps, checked by hand; one timestep's graph at a time, so
the memory a step keeps does not grow with T; a run trains; what it cannot run is one line."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import fast_config
from sakd.errors import ConfigError
from sakd.models import create_model
from sakd.neurons import NeuronSpec, SpikeActivation
from sakd.training import Trainer, train
from sakd.training.online import online


def test_sltt_keeps_the_spatial_gradient_of_each_timestep_by_hand():
    """W1 -> LIF -> W2 with a per-timestep CE / T: SLTT's grad_W1 = Σ_t (∂L_t/∂S_t · h'(H_t - θ)) x^T
    with H_t = λ V_{t-1} + W1 x (the membrane carried, no gradient through it), float64; BPTT's
    differs (it also carries the gradient back through the membrane)."""
    torch.manual_seed(0)
    steps, lam, theta = 3, 0.5, 1.0
    w1, w2 = nn.Linear(4, 5, bias=False).double(), nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        w1.weight.mul_(3)
    x, y = torch.randn(2, 4, dtype=torch.float64), torch.tensor([0, 2])
    act = SpikeActivation(steps, NeuronSpec(decay=lam, threshold=theta, backend="reference"))
    net = nn.Sequential(w1, act, w2)
    act.online, act.state = True, None
    for _ in range(steps):
        (F.cross_entropy(net(x), y) / steps).backward()
    act.online = False
    ours = w1.weight.grad.clone()

    expected, v = torch.zeros_like(ours), torch.zeros(2, 5, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(steps):
            h = lam * v + w1(x)
            s = (h >= theta).double()
            p = torch.softmax(w2(s), 1)
            d_s = (p - F.one_hot(y, 3).double()) @ w2.weight / 2 / steps  # ∂(CE_t / T)/∂S_t, batch mean
            d_h = d_s * torch.clamp(1 - (h - theta).abs(), min=0)  # the triangle surrogate h'
            expected += d_h.T @ x
            v = h * (1 - s)  # hard reset
    torch.testing.assert_close(ours, expected)
    assert 0 < (expected != 0).float().mean()

    w1.weight.grad = None
    bptt = nn.Sequential(w1, SpikeActivation(steps, NeuronSpec(decay=lam, threshold=theta, backend="reference")), w2)
    logits = bptt(x.repeat(steps, 1)).unflatten(0, (steps, -1))
    sum(F.cross_entropy(z, y) for z in logits).div(steps).backward()
    assert not torch.allclose(w1.weight.grad, ours)  # BPTT's temporal term is what SLTT drops


def kept_for_backward(step) -> int:
    """Bytes of the distinct storages that the tensors ``step()`` saves for backward still hold when
    it returns (a saved tensor whose graph branch died during the forward holds nothing)."""
    import weakref

    refs = []

    def pack(t):
        refs.append(weakref.ref(t))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step()
    alive = {r().untyped_storage().data_ptr(): r().untyped_storage().nbytes() for r in refs if r() is not None
             and not isinstance(r(), nn.Parameter)}
    loss.backward()
    return sum(alive.values())


def test_one_timestep_at_a_time_keeps_the_same_bytes_at_every_T():
    """What a step keeps for backward (one timestep's graph at batch B) is the same at T = 2, 4, 8;
    full BPTT's grows with T."""
    def kept(steps: int, sltt: bool) -> int:
        torch.manual_seed(0)
        model = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=steps)
        x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
        if not sltt:
            return kept_for_backward(lambda: F.cross_entropy(model(x), y))
        with online(model):
            return max(kept_for_backward(lambda: F.cross_entropy(model(x), y) / steps) for _ in range(steps))

    sltt = [kept(t, True) for t in (2, 4, 8)]
    full = [kept(t, False) for t in (2, 4, 8)]
    assert sltt[0] == sltt[1] == sltt[2] > 0
    assert full[0] < full[1] < full[2] and full[0] > sltt[0]


def test_an_sltt_run_trains_and_what_it_cannot_run_is_one_line(tmp_path, teacher_ckpt):
    summary = train(fast_config(tmp_path, "run.bptt=sltt", f"distill.teacher.weights={teacher_ckpt}", "distill.beta=10",
                                "distill.gamma=1", "optim.epochs=6", "optim.lr=0.1", "run.name=sltt"))
    assert summary["best_top1"] > 30  # chance is 10%: SAKD's feature and logit terms per timestep
    with pytest.raises(ConfigError, match="temporal_sd compares timesteps with each other"):
        Trainer(
            fast_config(tmp_path, "run.bptt=sltt", "run.name=refused", "distill.terms=[{name: temporal_sd, weight: 1}]")
        )
