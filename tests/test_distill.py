import pytest
import torch
from torch.nn import functional as F

from sakd.distill import SAKDLoss, TermSpec, soft_kl
from sakd.errors import ConfigError
from sakd.models import FeatureExtractor, create_model


def test_logits_kd_matches_manual_formula():
    torch.manual_seed(0)
    s, t, tau = torch.randn(5, 7), torch.randn(5, 7), 3.0
    ps, pt = F.softmax(s / tau, 1), F.softmax(t / tau, 1)
    manual = tau**2 * (pt * (pt.log() - ps.log())).sum(1).mean()
    assert torch.allclose(soft_kl(s, t, tau), manual, atol=1e-6)
    assert soft_kl(t, t, tau).abs() < 1e-6


@pytest.mark.parametrize("level", ["stage", "block"])
@pytest.mark.parametrize("position", ["before", "after"])
@pytest.mark.parametrize("name", ["resnet_tiny", "resnet19", "vgg11"])
def test_taps_align_and_transform_maps_every_position(name, level, position):
    torch.manual_seed(0)
    snn = create_model(name, spiking=True, num_classes=10, timesteps=2)
    ann = create_model(name, spiking=False, num_classes=10)
    s_fx, t_fx = FeatureExtractor(snn, level, position), FeatureExtractor(ann, level, position)
    x = torch.randn(2, 3, 32, 32)
    s_logits, s_feats = s_fx(x)
    with torch.no_grad():
        t_logits, t_feats = t_fx(x)
    assert len(s_feats) == len(t_feats) == len(s_fx.channels)
    for fs, ft, c in zip(s_feats, t_feats, s_fx.channels):
        assert fs.shape[:3] == (2, 2, c) and ft.shape[:2] == (2, c) and fs.shape[3:] == ft.shape[2:]
        if position == "after":
            assert set(fs.unique().tolist()) <= {0.0, 1.0}  # spikes
            assert (ft >= 0).all()  # ReLU output
    loss = SAKDLoss(s_fx.channels, t_fx.channels, alpha=0, beta=1.0, gamma=0)
    for transform, fs, ft in zip(loss.terms["feature_kd"].transforms, s_feats, t_feats):
        mapped, target = transform(fs.mean(0), ft)
        assert mapped.shape == target.shape
    loss(s_logits, torch.zeros(2, dtype=torch.long), t_logits, s_feats, t_feats).total.backward()
    first_conv = next(m for m in snn.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in ann.parameters())


def test_feature_kd_is_mse_of_time_averaged_transformed_features():
    torch.manual_seed(0)
    loss = SAKDLoss([3], [4], alpha=0, beta=2.0, gamma=0)
    fs = (torch.rand(4, 2, 3, 5, 5) > 0.5).float()  # [T, B, C, H, W] spikes
    ft = torch.randn(2, 4, 5, 5)
    tf = loss.terms["feature_kd"].transforms[0]
    expected = F.mse_loss(tf.bn(tf.conv(fs.mean(0))), ft)
    out = loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), None, [fs], [ft])
    assert torch.allclose(out.total, 2.0 * expected)
    assert torch.allclose(out.terms["feature_kd"], expected)


def test_gradients_reach_student_and_transform_not_teacher():
    torch.manual_seed(0)
    snn = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=2)
    ann = create_model("resnet_tiny", spiking=False, num_classes=10)
    s_fx, t_fx = FeatureExtractor(snn), FeatureExtractor(ann)
    loss = SAKDLoss(s_fx.channels, t_fx.channels, alpha=1, beta=1, gamma=1, tau=2)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    with torch.no_grad():
        t_logits, t_feats = t_fx(x)
    s_logits, s_feats = s_fx(x)
    out = loss(s_logits, y, t_logits, s_feats, t_feats)
    out.total.backward()
    assert set(out.terms) == {"ce", "feature_kd", "logit_kd"}
    assert snn.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in loss.parameters())
    assert all(p.grad is None for p in ann.parameters())


def test_the_objective_detaches_a_teachers_outputs_itself():
    """A Python caller that runs the teacher with gradients on: no gradient reaches the teacher,
    through SAKD's terms or an added term that reads the teacher's features and logits."""
    torch.manual_seed(0)
    snn = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=2)
    ann = create_model("resnet_tiny", spiking=False, num_classes=10)
    s_fx, t_fx = FeatureExtractor(snn), FeatureExtractor(ann)
    loss = SAKDLoss(s_fx.channels, t_fx.channels, alpha=1, beta=1, gamma=1, tau=2,
                    terms=[TermSpec.of("fitnet", 1.0), TermSpec.of("dkd", 1.0)])
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    t_logits, t_feats = t_fx(x)  # with gradients
    assert t_logits.requires_grad
    s_logits, s_feats = s_fx(x)
    loss(s_logits, y, t_logits, s_feats, t_feats).total.backward()
    assert snn.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in ann.parameters())


def test_zero_coefficients_skip_their_terms():
    loss = SAKDLoss(alpha=1.0, beta=0.0, gamma=0.0)
    out = loss(torch.randn(3, 5), torch.tensor([0, 1, 2]))  # no teacher outputs needed at all
    assert set(out.terms) == {"ce"}
    assert set(loss.terms) == {"ce"}  # feature_kd, weighed 0 at every epoch, is not built


@pytest.mark.parametrize("transform", ["none", "norm"])
def test_parameter_free_transforms(transform):
    loss = SAKDLoss([4], [4], alpha=0, beta=1, gamma=0, transform=transform)
    assert sum(p.numel() for p in loss.parameters()) == 0
    fs, ft = torch.rand(2, 3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    assert torch.isfinite(loss(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), None, [fs], [ft]).total)


def test_bad_objective_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="nothing to optimise"):
        SAKDLoss(alpha=0, beta=0, gamma=0)
    with pytest.raises(ConfigError, match="needs equal channels"):
        SAKDLoss([3], [4], beta=1, transform="none")
    with pytest.raises(ConfigError, match="2 feature taps and the teacher 1"):
        SAKDLoss([3, 4], [4], beta=1)
    with pytest.raises(ConfigError, match="unknown feature distance"):
        SAKDLoss([3], [3], beta=1, distance="manhattan")


def test_normalized_l2_distance_is_scale_invariant():
    loss = SAKDLoss([4], [4], alpha=0, beta=1, gamma=0, transform="none", distance="l2_normalized")
    fs, ft = torch.rand(2, 3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    args = (torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), None)
    a = loss(*args, [fs], [ft]).total
    b = loss(*args, [fs], [ft * 7.0]).total
    assert torch.allclose(a, b) and 0 <= a <= 4


@pytest.mark.parametrize("distance", ["l2", "l1", "l2_normalized"])
def test_per_tap_weights_scale_each_term(distance):
    fs = [torch.rand(2, 3, 4, 5, 5), torch.rand(2, 3, 4, 5, 5)]
    ft = [torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)]
    args = (torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), None, fs, ft)
    kw = dict(alpha=0, beta=1, gamma=0, transform="none", distance=distance)
    only_first = SAKDLoss([4, 4], [4, 4], feature_weights=[1.0, 0.0], **kw)(*args).total
    halves = SAKDLoss([4, 4], [4, 4], feature_weights=[0.5, 0.5], **kw)(*args).total
    both = SAKDLoss([4, 4], [4, 4], **kw)(*args).total
    single = SAKDLoss([4], [4], **kw)(*args[:3], fs[:1], ft[:1]).total
    assert torch.allclose(only_first, single) and torch.allclose(2 * halves, both)
    with pytest.raises(ConfigError, match="has 1 entries but there are 2 feature taps"):
        SAKDLoss([4, 4], [4, 4], feature_weights=[1.0], **kw)


def test_feature_kd_reduce_mean_divides_the_sum_by_the_taps():
    torch.manual_seed(0)
    fs = [torch.rand(2, 3, 4, 5, 5) for _ in range(3)]
    ft = [torch.randn(3, 4, 5, 5) for _ in range(3)]
    args = (torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), None, fs, ft)
    kw = dict(alpha=0, beta=1, gamma=0, transform="none")
    total = SAKDLoss([4] * 3, [4] * 3, **kw)(*args).total
    mean = SAKDLoss([4] * 3, [4] * 3, reduce="mean", **kw)(*args).total
    by_hand = sum(F.mse_loss(a.mean(0), b) for a, b in zip(fs, ft))
    assert torch.allclose(total, by_hand) and torch.allclose(mean, by_hand / 3)


@pytest.mark.parametrize("name, position, exact", [("resnet_tiny", "before", True), ("vgg11", "after", True),
                                                   ("resnet_tiny", "after", False)])
def test_time_mean_taps_give_the_mean_and_its_gradient_joined_at_the_layer(name, position, exact):
    """time_mean taps: each feature is f.mean(0) as its layer runs, and the gradients are those of
    full taps averaged by the loss: bit for bit where the tapped tensor feeds one layer besides the
    tap (a neuron's input; VGG's spikes), to the rounding of the sum's order where it feeds two (a
    ResNet block's output spikes: the next block and its shortcut)."""
    torch.manual_seed(0)
    size = 16 if name == "resnet_tiny" else 32
    model = create_model(name, spiking=True, num_classes=5, timesteps=3).double().train()
    x = torch.randn(4, 3, size, size, dtype=torch.float64) * 3
    grads, maps = [], []
    for time_mean in (False, True):
        taps = FeatureExtractor(model, "block", position, time_mean=time_mean)
        model.zero_grad()
        logits, feats = taps(x)
        feats = [f.mean(0) if f.dim() == 5 else f for f in feats]
        loss = logits.square().sum() + sum((f * torch.linspace(-1, 1, f.numel()).view_as(f)).sum() for f in feats)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        maps.append([f.detach() for f in feats])
        taps.remove()
    assert all(torch.equal(a, b) for a, b in zip(*maps)) and maps[1][0].dim() == 4
    for full, mean in zip(*grads):
        assert torch.equal(full, mean) if exact else torch.allclose(full, mean, rtol=1e-10, atol=1e-12)


def test_a_time_mean_taps_gradient_reaches_its_tensor_with_or_without_another_path():
    from sakd.models.taps import tap_mean

    w = torch.ones(6, 2, requires_grad=True)
    tap_mean(w * 2, 3).sum().backward()  # read by the tap alone: the mean's 1/3 is the whole gradient
    assert torch.equal(w.grad, torch.full((6, 2), 2 / 3))
    w.grad = None
    tap_mean(w, 3).sum().backward()  # a leaf
    assert torch.equal(w.grad, torch.full((6, 2), 1 / 3))
    w.grad = None
    f = w * 2
    (tap_mean(f, 3).sum() + f.sum()).backward()  # with another path: the mean's 1/3 joins the layer's 1
    assert torch.equal(w.grad, torch.full((6, 2), 2 * (1 + 1 / 3)))


def test_a_run_taps_time_means_unless_a_term_reads_features_at_every_timestep(tmp_path, teacher_ckpt):
    from conftest import fast_config
    from sakd.training.assemble import assemble

    sakd = assemble(fast_config(tmp_path, f"distill.teacher.weights={teacher_ckpt}", "distill.beta=10"))
    ckdsnn = assemble(fast_config(tmp_path, f"distill.teacher.weights={teacher_ckpt}",
                                  "distill.terms=[{name: ckdsnn, samd: 1.0, nld: 0.0}]"))
    assert sakd.student_taps.time_mean and not ckdsnn.student_taps.time_mean
