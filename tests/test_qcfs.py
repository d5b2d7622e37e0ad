"""QCFS twins (Bu et al. 2022): the quantisation-clip-floor-shift activation of the ANN twin and the
integrate-and-fire neuron of its SNN twin (soft reset, threshold θ, membrane from θ/2), by hand, in
every backend, and through whole networks, zoo and graph twins alike."""

import pytest
import torch
from torch import nn

from sakd.models import create_model
from sakd.neurons import FiringRateMonitor
from sakd.neurons.qcfs import QCFS, QCFSActivation

X = torch.tensor([0.75, 0.0, 0.3, 1.9, 2.5, -1.0, 1.0, 0.25])


def test_the_activation_by_hand():
    """θ = 2, L = 4: θ·floor(clamp(x/θ, 0, 1)·4 + 0.5)/4, e.g. 0.75 -> floor(1.5 + 0.5)/4·2 = 1."""
    act = QCFSActivation(levels=4, theta=2.0)
    assert act(X).tolist() == [1.0, 0.0, 0.5, 2.0, 2.0, 0.0, 1.0, 0.5]
    x = X.clone().requires_grad_()
    act(x).sum().backward()
    # straight through the floor: dy/dx = 1 inside the clip (0 < x < θ), 0 outside
    assert x.grad.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert act.theta.grad is not None and act.theta.grad != 0


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_a_constant_input_over_t_equal_l_timesteps_gives_the_activation_exactly(backend):
    """0.75 with θ = 2 (0.375 a step, from 0.5): 0.875, 1.25 -> spike, 0.625, 1.0 -> spike: 2
    spikes of 2 in 4 steps = 1.0, the activation's value; and so for every input."""
    neuron = QCFS(levels=4, theta=2.0, backend=backend)
    x = X.expand(4, 1, -1).contiguous()
    out = neuron(x)
    assert out[:, 0, 0].tolist() == [0.0, 2.0, 0.0, 2.0]
    assert torch.equal(out.mean(0)[0], QCFSActivation(4, 2.0)(X))
    state, steps = None, []
    for t in range(4):  # one timestep at a time (export, SLTT): the same spikes
        s, state = neuron.step(x[t], state)
        steps.append(s)
    assert torch.equal(torch.stack(steps), out)
    g = x.clone().requires_grad_()
    neuron(g).sum().backward()  # surrogate gradients reach the input and the threshold
    assert g.grad.abs().sum() > 0 and neuron.theta.grad is not None


def _calibrated(name: str, **kw):
    torch.manual_seed(0)
    neuron = {"name": "qcfs", "backend": "fused", "options": {"levels": 8, "theta": 2.0}}
    ann = create_model(name, spiking=False, num_classes=10, neuron=neuron, **kw)
    with torch.no_grad():
        ann.train()
        for _ in range(3):  # BatchNorm statistics, so the activations reach θ's range
            ann(torch.randn(64, 3, 16, 16))
    return ann.eval(), neuron


@pytest.mark.parametrize("name, kw", [("resnet_tiny", {}),
                                      ("python:sakd.examples.own_cnn:own_cnn", {"widths": [8, 16, 32]})])
def test_a_qcfs_twins_weights_and_thresholds_copy_and_the_snn_approaches_the_ann_as_t_grows(name, kw):
    """The converted SNN's logits come closer to the QCFS ANN's from T = 1 to T = L (8), by half
    at least, and stay closer at 8L; beyond L the SNN tends to the unquantised clip, so the
    difference settles at the ANN's quantisation error rather than vanishing."""
    ann, neuron = _calibrated(name, **kw)
    thetas = [k for k in ann.state_dict() if k.endswith("neuron.theta")]
    assert thetas
    x = torch.randn(16, 3, 16, 16)
    errors = []
    with torch.no_grad():
        reference = ann(x)
        for t in (1, 8, 64):
            snn = create_model(name, spiking=True, num_classes=10, timesteps=t, neuron=neuron, **kw).eval()
            assert set(snn.state_dict()) == set(ann.state_dict())  # θ under the same names in both twins
            snn.load_state_dict(ann.state_dict())
            errors.append(float((snn(x) - reference).abs().mean() / reference.abs().mean()))
    assert errors[1] < 0.5 * errors[0] and errors[2] < errors[0]


def test_the_firing_rate_of_graded_spikes_counts_the_neurons_that_fire():
    neuron = nn.Sequential(QCFS(levels=4, theta=2.0, backend="fused"))
    with FiringRateMonitor(neuron) as monitor:
        neuron(X.expand(4, 1, -1).contiguous())
    # 0.75 fires twice, 1.9 and 2.5 four times, 0.3 once, 1.0 twice, 0.25 once: 14 of 32
    assert monitor.rates()["0"] == pytest.approx(14 / 32)
