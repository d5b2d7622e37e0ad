"""Spikformer and the Spike-driven Transformer with their ANN twins: the papers' sizes, each
attention by hand, the twins' state dict, a SAKD step with lean memory, ONNX export and the
attention's operations counted."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from sakd.distill import SAKDLoss
from sakd.models import FeatureExtractor, create_model
from sakd.models.base import MatMul, Mul
from sakd.neurons import SpikeActivation
from test_memory import sakd_step

TINY = dict(depth=2, dim=32, heads=4)
TINY_SDT = dict(depth=2, dim=32)
TRANSFORMERS = [("spikformer", TINY), ("spike_driven_transformer", TINY_SDT)]


@pytest.mark.parametrize("name, stem, classes, paper", [
    ("spikformer_4_384", "cifar", 10, 9.32),  # the paper's parameter counts (M)
    ("spikformer_8_384", "imagenet", 1000, 16.81),
    ("spikformer_8_512", "imagenet", 1000, 29.68),
    ("spikformer_8_768", "imagenet", 1000, 66.34),
    ("spike_driven_transformer_2_512", "cifar", 100, 10.28),  # the paper's CIFAR-100 model
    ("spike_driven_transformer_8_512", "imagenet", 1000, 29.68),  # the same tensors as Spikformer's
    ("spike_driven_transformer_8_768", "imagenet", 1000, 66.34),
])
def test_the_sizes_have_the_papers_parameter_counts(name, stem, classes, paper):
    with torch.device("meta"):
        model = create_model(name, spiking=True, num_classes=classes, stem=stem)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - paper) < 0.01


def test_spiking_self_attention_by_hand():
    """SN_0.5(Q K^T V * 0.125) per head, written out with loops over heads, then the projection."""
    torch.manual_seed(0)
    snn = create_model("spikformer", spiking=True, num_classes=10, timesteps=1, **TINY).eval()
    ssa = snn.blocks[0].attn
    x = (torch.rand(2, 32, 2, 2) < 0.5).float()  # spikes on a 2x2 grid: 4 tokens
    q, k, v = ssa.q(x), ssa.k(x), ssa.v(x)  # SN(BN(Linear)) each: spikes
    assert ((q == 0) | (q == 1)).all()
    expected = torch.zeros(2, 32, 4)
    for b in range(2):
        for head in range(4):
            c = slice(8 * head, 8 * head + 8)
            qh, kh, vh = (t[b, c].flatten(1).T for t in (q, k, v))  # [tokens, 8]
            expected[b, c] = ((qh @ kh.T @ vh) * 0.125).T  # no softmax
    spikes = (expected >= 0.5).float().unflatten(2, (2, 2))  # one LIF step from rest: H = X, fires at 0.5
    with torch.no_grad():
        assert torch.equal(ssa(x), ssa.proj(spikes))
    assert ssa.attn_act.neuron.threshold == 0.5 and snn.blocks[0].mlp.fc1[2].neuron.threshold == 1.0


def test_spike_driven_self_attention_by_hand():
    """x + BN(Conv(Q ⊙ SN_0.5(Σ_tokens K ⊙ V))) with s = SN(x), written out with loops over tokens."""
    torch.manual_seed(0)
    snn = create_model("spike_driven_transformer", spiking=True, num_classes=10, timesteps=1, **TINY_SDT).eval()
    sdsa = snn.blocks[0].attn
    for unit in (sdsa.q, sdsa.k, sdsa.v):
        nn.init.normal_(unit[0].weight, std=0.4)  # the authors' 0.02 makes no spikes from a fresh BN: wake them
    x = torch.randn(2, 32, 2, 2) * 2  # membrane potentials of the stream on a 2x2 grid: 4 tokens
    s = (x >= 1).float()  # the shortcut's neuron, one step from rest: fires at 1
    q, k, v = sdsa.q(s), sdsa.k(s), sdsa.v(s)
    assert all(((t == 0) | (t == 1)).all() and 0 < t.mean() < 1 for t in (q, k, v))
    kv = torch.zeros(2, 32)
    for b in range(2):
        for c in range(32):
            for t in range(4):  # the column sum: one addition where both K and V fire
                kv[b, c] += k[b, c].flatten()[t] * v[b, c].flatten()[t]
    attention = (kv >= 0.5).float()[:, :, None, None]  # the attention's neuron fires at 0.5
    assert 0 < attention.mean() < 1
    with torch.no_grad():
        assert torch.equal(sdsa(x), sdsa.proj(q * attention) + x)
    assert sdsa.attn_act.neuron.threshold == 0.5 and sdsa.act.neuron.threshold == 1.0


@pytest.mark.parametrize("name, size", TRANSFORMERS)
def test_the_twins_share_one_state_dict_and_a_sakd_step_keeps_leans_promise(name, size):
    torch.manual_seed(0)
    ann = create_model(name, spiking=False, num_classes=10, **size)
    snn = create_model(name, spiking=True, num_classes=10, timesteps=2, **size)
    snn.load_state_dict(ann.state_dict())
    assert [k for k in ann.state_dict()] == [k for k in snn.state_dict()]
    assert not any(isinstance(m, nn.ReLU) for m in snn.modules())
    assert sum(isinstance(m, nn.ReLU) for m in ann.modules()) == sum(
        isinstance(m, SpikeActivation) for m in snn.modules()
    )
    channels = [p.channels for p in snn.tap_points("stage")]  # the patch splitting's output and the last block
    objective = SAKDLoss(channels, channels, alpha=1, beta=10, gamma=1, tau=4)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    state = copy.deepcopy(snn.state_dict())
    fast, fast_bytes = sakd_step(snn, ann.eval(), objective, x, y, "fast", "bits")
    snn.load_state_dict(state)
    lean, lean_bytes = sakd_step(snn, ann.eval(), objective, x, y, "lean", "bits")
    assert all(torch.equal(a, b) for a, b in zip(fast, lean, strict=True)) and lean_bytes < fast_bytes
    assert all(g.abs().sum() > 0 for g in fast[:3])
    fx = FeatureExtractor(snn, level="block")
    with torch.no_grad():
        logits, feats = fx(x)
    fx.remove()
    assert logits.shape == (4, 10) and [f.shape for f in feats] == [(2, 4, 32, 8, 8)] * 2  # [T, B, D, H, W] token maps


@pytest.mark.parametrize("name, size", TRANSFORMERS)
def test_onnx_gives_the_pytorch_logits_and_analyze_counts_the_attention(tmp_path, name, size):
    pytest.importorskip("onnxruntime")
    from sakd.analysis.energy import OpCounter
    from sakd.export.onnx_format import export_onnx_file

    torch.manual_seed(0)
    snn = create_model(name, spiking=True, num_classes=10, timesteps=2, **size).eval()
    summary = export_onnx_file(snn, torch.randn(1, 3, 32, 32), 2, tmp_path / "s.onnx")
    assert summary["onnxruntime_max_abs_diff"] < 1e-4 and summary["same_prediction"]
    with torch.no_grad(), OpCounter(snn) as counter:
        snn.train()(torch.randn(2, 3, 32, 32))  # batch statistics: fresh weights make spikes
    if name == "spikformer":
        qk, av = counter.layers["blocks.0.attn.qk"], counter.layers["blocks.0.attn.av"]
        assert qk.kind == av.kind == "matmul" and qk.binary and av.binary  # spikes on one side at least: accumulates
        assert qk.dense_macs == 2 * 2 * 4 * 64 * 8 * 64  # T*B x heads x (N x d x N)
        assert 0 < qk.ops < qk.dense_macs
    else:
        kv, mask = counter.layers["blocks.0.attn.kv"], counter.layers["blocks.0.attn.mask"]
        assert kv.kind == mask.kind == "mul" and kv.binary and mask.binary  # masks of spikes: accumulates
        assert kv.dense_macs == mask.dense_macs == 2 * 2 * 32 * 64  # T*B x D x N: linear in tokens and channels
        assert 0 < kv.ops < kv.dense_macs
        # every convolution after the stem reads spikes: a spike-driven network
        convs = {n: r for n, r in counter.layers.items() if r.kind in ("conv", "linear") and n != "sps.conv1"}
        assert convs and all(r.binary for r in convs.values())


def test_a_matmuls_operations_are_its_products_of_two_nonzero_elements():
    from sakd.analysis.energy import OpCounter

    torch.manual_seed(0)
    holder = nn.Module()
    holder.mm = MatMul()
    a = (torch.rand(3, 5, 7) < 0.3).float()
    b = torch.randn(3, 7, 4) * (torch.rand(3, 7, 4) < 0.6)
    with OpCounter(holder) as counter:
        holder.mm(a, b)
    rec = counter.layers["mm"]
    # every (i, k, j) by brute force
    assert rec.ops == int(((a != 0)[..., :, :, None] & (b != 0)[..., None, :, :]).sum())
    assert rec.dense_macs == 3 * 5 * 7 * 4 and rec.binary
    with OpCounter(holder) as counter:
        holder.mm(b.transpose(1, 2), b)  # neither operand binary: MACs
    assert not counter.layers["mm"].binary
    holder.mul = Mul()
    c = (torch.rand(3, 7, 1) < 0.5).float()
    with OpCounter(holder) as counter:
        holder.mul(c, b)  # broadcast: a mask of spikes over the last dimension
    rec = counter.layers["mul"]
    assert rec.ops == int(((c != 0) & (b != 0)).sum()) and rec.dense_macs == b.numel() and rec.binary


@pytest.mark.parametrize("threshold, theirs", [(None, 1.0), ("attention", 0.5)])
def test_the_recipes_neuron_is_spikingjellys_lif_of_the_authors(threshold, theirs):
    """presets/spikingjelly_lif.yaml: sakd's LIF at threshold 2 (attention 1), sigmoid surrogate at
    α 2, gives SpikingJelly's LIFNode(tau=2, decay_input, detach_reset, Sigmoid(α=4)) spikes and
    input gradients (at threshold 1, attention 0.5), float64."""
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    from spikingjelly.activation_based import surrogate
    from sakd.training import load_config

    cfg = load_config("cifar10/spike_driven_transformer_2_512_snn")
    spec = cfg.model.neuron
    if threshold == "attention":
        spec = dataclasses.replace(spec, threshold=cfg.model.options["attention_threshold"])
    ours = dataclasses.replace(spec, backend="reference").build().double()
    peer = sj.LIFNode(tau=2.0, decay_input=True, v_threshold=theirs, v_reset=0.0, detach_reset=True,
                      surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m").double()
    torch.manual_seed(0)
    x = (torch.randn(4, 3, 50, dtype=torch.float64) * 1.5 + theirs).requires_grad_()
    g = torch.randn_like(x)
    out, want = ours(x), peer(x)
    assert torch.equal(out, want) and 0 < out.mean() < 1
    (grad,) = torch.autograd.grad(out, x, g)
    (grad_peer,) = torch.autograd.grad(want, x, g)
    torch.testing.assert_close(grad, grad_peer)
    assert load_config("cifar10/spikformer_4_384_snn").model.neuron == cfg.model.neuron


def test_bad_sizes_are_one_line_and_a_square_mlp_adds_its_input_twice():
    """model.options sizes are checked with the option's name; with mlp_ratio 1 the authors'
    MS_MLP adds the stream to the hidden potential too: x' = x + h, out = x' + fc2(SN(x'))."""
    from sakd.errors import ConfigError

    for name, options, message in [("spikformer", {"dim": 36}, "dim must be a multiple of 8"),
                                   ("spikformer", {"heads": 5}, "does not split into 5 heads"),
                                   ("spike_driven_transformer", {"depth": 0}, "depth must be a whole number >= 1")]:
        with pytest.raises(ConfigError, match=message):
            create_model(name, spiking=True, num_classes=10, **options)
    torch.manual_seed(0)
    snn = create_model("spike_driven_transformer", spiking=True, num_classes=10, timesteps=1, depth=1, dim=16,
                       mlp_ratio=1.0).eval()
    mlp = snn.blocks[0].mlp
    x = torch.randn(2, 16, 2, 2) * 2
    with torch.no_grad():
        inner = mlp.fc1((x >= 1).float()) + x  # one LIF step from rest fires at 1
        assert torch.equal(mlp(x), mlp.fc2((inner >= 1).float()) + inner)
