"""The 2024-2026 distillation methods (timestep CE, HTA-KL, Strong2Weak / Weak2Strong, SeAl-KD,
CKDSNN, EnOF, MEOM), each against a value computed by hand in float64 with plain Python loops,
and the teacher's classifier they read."""

import importlib.util
import math

import pytest
import torch
from torch import nn

from sakd.distill import LOSSES, TermInputs
from sakd.distill.terms import build_term
from sakd.errors import ConfigError
from sakd.models import FeatureExtractor, create_model
from conftest import fast_config
from test_kd_methods import ONE_STEP, kl, softmax

F64 = torch.float64


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def log_softmax_list(z, tau=1.0):
    return [math.log(p) for p in softmax(z, tau)]


def test_timestep_ce_averages_each_timesteps_cross_entropy():
    z, y = rand(3, 4, 5), torch.tensor([0, 3, 1, 4])
    by_hand = sum(-log_softmax_list(z[t, b].tolist())[y[b]] for t in range(3) for b in range(4)) / 12
    value = LOSSES.get("timestep_ce")()(TermInputs(z.mean(0), y, student_timestep_logits=z))
    assert value.item() == pytest.approx(by_hand, rel=1e-12)


def test_temporal_sd_correct_ensemble_is_the_authors_mean_of_the_right_timesteps():
    z = torch.tensor([[[3.0, 0, 0], [0, 0, 1]], [[0, 2.0, 0], [0, 0, 2]], [[1.0, 0, 0], [1, 0, 0]]], dtype=F64)
    y = torch.tensor([0, 1])  # sample 0: timesteps 0 and 2 right; sample 1: none right -> uniform target
    term = LOSSES.get("temporal_sd")(tau=2.0, ensemble="correct")
    teacher = [[2.0, 0, 0], [0.0, 0, 0]]
    by_hand = sum(kl(softmax(teacher[b], 2), softmax(z[t, b].tolist(), 2)) for t in range(3) for b in range(2)) / 6 * 4
    assert term(TermInputs(z.mean(0), y, student_timestep_logits=z)).item() == pytest.approx(by_hand, rel=1e-12)
    with pytest.raises(ConfigError, match="mix them"):
        term(TermInputs(z.mean(0), torch.full((2, 3), 1 / 3, dtype=F64), student_timestep_logits=z))


def test_hta_kl_weighs_forward_and_reverse_kl_by_the_head_and_tail_gaps():
    s, t = rand(4, 6, seed=1), rand(4, 6, seed=2) * 2
    t[3] = torch.tensor([1.0, 0.9, 0.8, -2, -2, -2], dtype=F64)  # a flat top: a head of three classes
    tau, mu = 2.0, 0.5
    total, head_sizes = 0.0, []
    for b in range(4):
        p, q = softmax(t[b].tolist(), tau), softmax(s[b].tolist(), tau)
        order = sorted(range(6), key=lambda k: -p[k])
        cum, head, tail, size = 0.0, 0.0, 0.0, 0
        for rank, k in enumerate(order):
            cum += p[k]
            gap = abs(p[k] - q[k])
            if rank == 0 or cum <= mu:
                head, size = head + gap, size + 1
            else:
                tail += gap
        head_sizes.append(size)
        total += head / (head + tail) * kl(p, q) + tail / (head + tail) * kl(q, p)
    assert max(head_sizes) >= 2  # a head of more than the top-1 class is exercised
    term = LOSSES.get("hta_kl")(tau=tau, mu=mu)
    student = s.clone().requires_grad_()
    value = term(TermInputs(student, torch.zeros(4, dtype=torch.long), t))
    assert value.item() == pytest.approx(total / 4 * tau * tau, rel=1e-12)
    # the weights carry no gradient: the same gradient as the KLs under constant weights
    from sakd.distill.hta_kl import head_tail_weights
    from torch.nn import functional as F

    log_q, log_p = F.log_softmax(student / tau, -1), F.log_softmax(t / tau, -1)
    w_f, w_r = (w.detach() for w in head_tail_weights(log_p.exp(), log_q.exp(), mu))
    fixed = (
        (w_f * (log_p.exp() * (log_p - log_q)).sum(-1) + w_r * (log_q.exp() * (log_q - log_p)).sum(-1)).mean()
        * tau
        * tau
    )
    torch.testing.assert_close(torch.autograd.grad(value, student)[0], torch.autograd.grad(fixed, student)[0])


@pytest.mark.parametrize("name", ["strong2weak", "weak2strong"])
def test_strong_and_weak_timesteps_teach_each_other_by_their_confidence(name):
    z = rand(4, 3, 5, seed=3)
    z[2] *= 20  # timestep 2 the most confident
    z[1] *= 0.1  # timestep 1 the least
    conf = [sum(max(softmax(z[t, b].tolist())) for b in range(3)) / 3 for t in range(4)]
    strong, weak = conf.index(max(conf)), conf.index(min(conf))
    assert (strong, weak) == (2, 1)
    teach, learn = (strong, weak) if name == "strong2weak" else (weak, strong)
    by_hand = sum(kl(softmax(z[teach, b].tolist(), 2), softmax(z[learn, b].tolist(), 2)) for b in range(3)) / 3
    z.requires_grad_()
    value = LOSSES.get(name)()(TermInputs(z.mean(0), torch.zeros(3, dtype=torch.long), student_timestep_logits=z))
    assert value.item() == pytest.approx(2**2 * by_hand, rel=1e-12)  # τ² at the paper's τ = 2 (its α² · KL)
    plain = LOSSES.get(name)(tau_squared=False)(TermInputs(z.mean(0), torch.zeros(3, dtype=torch.long),
                                                           student_timestep_logits=z))
    assert plain.item() == pytest.approx(by_hand, rel=1e-12)
    (grad,) = torch.autograd.grad(value, z)
    assert grad[learn].abs().sum() > 0 and grad[teach].abs().sum() == 0  # the teaching timestep is a target


def test_seal_kd_aligns_wrong_timesteps_and_mixes_the_others_by_similarity():
    z, t = rand(3, 4, 5, seed=4), rand(4, 5, seed=5)
    y = torch.tensor([0, 1, 2, 3])
    tau, ela_w, sta_w = 3.0, 0.6, 0.15
    ela = 0.0
    for step in range(3):
        for b in range(4):
            s, a = z[step, b].tolist(), t[b].tolist()
            w = max(range(5), key=lambda k: s[k])
            if w != y[b]:
                s[w] = s[y[b]]
                low = min(a[y[b]], a[w])
                a[y[b]] = a[w] = low
            ela += kl(softmax(a, tau), softmax(s, tau))
    ela = ela / 12 * tau * tau
    sta, logk = 0.0, math.log(5)
    conf = [[(logk + sum(p * math.log(p + 1e-8) for p in softmax(z[j, b].tolist()))) / logk for b in range(4)]
            for j in range(3)]
    for i in range(3):
        for b in range(4):
            zi = z[i, b].tolist()
            scores = {}
            for j in range(3):
                if j != i:
                    zj = z[j, b].tolist()
                    cos = sum(u * v for u, v in zip(zi, zj)) / math.sqrt(
                        sum(u * u for u in zi) * sum(v * v for v in zj)
                    )
                    scores[j] = conf[j][b] * cos
            norm = sum(math.exp(v) for v in scores.values())
            mixed = [sum(math.exp(scores[j]) / norm * z[j, b, k].item() for j in scores) for k in range(5)]
            sta += kl(softmax(mixed, tau), softmax(zi, tau))
    sta = sta / 12 * tau * tau
    inputs = TermInputs(z.mean(0), y, t, student_timestep_logits=z)
    assert LOSSES.get("seal_kd")(ela=ela_w, sta=sta_w)(inputs).item() == pytest.approx(
        ela_w * ela + sta_w * sta, rel=1e-10
    )
    assert LOSSES.get("seal_sta")()(inputs).item() == pytest.approx(sta, rel=1e-10)
    # ELA's gradient: a wrong timestep's wrong-class logit gets none (its slot holds a copy of the true class's)
    zg = z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(
        LOSSES.get("seal_kd")(ela=1.0, sta=0.0)(TermInputs(zg.mean(0), y, t, student_timestep_logits=zg)), zg
    )
    wrong = [(i, b, int(z[i, b].argmax())) for i in range(3) for b in range(4) if int(z[i, b].argmax()) != int(y[b])]
    assert wrong and all(grad[i, b, w] == 0 for i, b, w in wrong)
    assert all(grad[i, b, y[b]] != 0 for i, b, _ in wrong)


def linear_head(c, k, seed=6):
    head = nn.Linear(c, k).double()
    with torch.no_grad():
        head.weight.copy_(rand(k, c, seed=seed))
    return head.requires_grad_(False)


def test_ckdsnn_samd_compares_the_spike_map_with_the_teachers_cam_and_nld_smooths_with_noise():
    fs, ft = rand(2, 3, 4, 2, 2, seed=7).abs(), rand(3, 4, 2, 2, seed=8).abs()
    zs, zt = rand(3, 5, seed=9), rand(3, 5, seed=10)
    head = linear_head(4, 5)
    ft_pooled = ft.mean((2, 3))
    zt = head(ft_pooled).detach()  # the teacher's logits: what its classifier gives on its pooled tap
    term = build_term("ckdsnn", {"nld": 0.0, "map_tau": 1.5, "tau": 3.0}, [4], [4], teacher_head=head)
    inputs = TermInputs(zs, torch.zeros(3, dtype=torch.long), zt, [fs], [ft])

    def minmax(maps):
        lo = min(min(m) for m in maps)
        hi = max(max(v - lo for v in m) for m in maps)
        return [[(v - lo) / (hi + 1e-3) for v in m] for m in maps]

    cls = [max(range(5), key=lambda k: zt[b, k].item()) for b in range(3)]
    s_maps = minmax([[fs[:, b, :, h, w].sum().item() for h in range(2) for w in range(2)] for b in range(3)])
    t_maps = minmax([[max(0.0, sum(head.weight[cls[b], c].item() * ft[b, c, h, w].item() for c in range(4)))
                      for h in range(2) for w in range(2)] for b in range(3)])
    by_hand = 0.0
    for b in range(3):
        ps = [p + 1e-10 for p in softmax([v for v in s_maps[b]], 1.5)]
        pt = [p + 1e-10 for p in softmax([v for v in t_maps[b]], 1.5)]
        by_hand += sum(a * (math.log(a) - math.log(c)) for a, c in zip(pt, ps))
    assert term(inputs).item() == pytest.approx(by_hand / 3, rel=1e-9)
    # NLD through the term, with the noise it draws (the step's generator, seeded here)
    import sakd.distill.ckdsnn as ckdsnn

    eps = torch.randn(zs.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    nld = 0.0
    for b in range(3):
        z = zs[b].tolist()
        mu, var = sum(z) / 5, sum((v - sum(z) / 5) ** 2 for v in z) / 4
        noisy = softmax([mu + e * var for e in eps[b].tolist()], 3)
        q = [0.8 * a + 0.2 * c for a, c in zip(softmax(z, 3), noisy)]
        nld += kl(softmax(zt[b].tolist(), 3), q)
    nld_term = build_term("ckdsnn", {"samd": 0.0, "tau": 3.0, "map_tau": 1.5, "clean_weight": 0.8}, [4], [4],
                          teacher_head=head)
    original = ckdsnn.step_generator
    ckdsnn.step_generator = lambda device: torch.Generator().manual_seed(0)
    try:
        value = nld_term(TermInputs(zs, torch.zeros(3, dtype=torch.long), zt, [fs], [ft])).double()
    finally:
        ckdsnn.step_generator = original
    assert value.item() == pytest.approx(nld / 3 * 9, rel=1e-5)  # the term runs in float32


def test_ckdsnn_class_weights_are_the_gradient_through_a_deeper_head():
    from sakd.distill.ckdsnn import class_weights

    fc1, fc2 = linear_head(4, 6, seed=11), linear_head(6, 5, seed=12)
    head = nn.Sequential(fc1, nn.ReLU(), fc2)
    pooled, cls = rand(3, 4, seed=13), torch.tensor([1, 4, 0])
    weights = class_weights(head, pooled, cls)
    active = (fc1(pooled) > 0).to(F64)  # Grad-CAM's weights in closed form: W1^T (1[h > 0] * W2[c])
    expected = (active * fc2.weight[cls]) @ fc1.weight
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(class_weights(fc2, rand(3, 6), cls), fc2.weight[cls])  # a linear head: its rows


def test_enof_reads_the_students_pooled_feature_through_the_teachers_classifier():
    fs, ft = rand(2, 3, 4, 2, 2, seed=14).requires_grad_(), rand(3, 4, 2, 2, seed=15)
    head = linear_head(4, 5)
    zt = head(ft.mean((2, 3))).detach()
    term = build_term("enof", {"tau": 2.0}, [4], [4], teacher_head=head)
    value = term(TermInputs(zt, torch.zeros(3, dtype=torch.long), zt, [fs], [ft]))
    pooled = fs.detach().mean((0, 3, 4))
    by_hand = sum(kl(softmax(zt[b].tolist(), 2), softmax(head(pooled[b]).tolist(), 2)) for b in range(3)) / 3 * 4
    assert value.item() == pytest.approx(by_hand, rel=1e-12)
    value.backward()
    assert fs.grad.abs().sum() > 0 and head.weight.grad is None  # into the student, never the teacher
    fresh = build_term("enof", {}, [4], [4], teacher_head=head)  # a tap the classifier does not read: one line
    with pytest.raises(ConfigError, match="does not read the chosen tap"):
        fresh(TermInputs(zt, torch.zeros(3, dtype=torch.long), zt + 1.0, [fs], [ft]))
    with pytest.raises(ConfigError, match="classifier reads 6"):
        build_term("enof", {}, [4], [6], teacher_head=head)
    with pytest.raises(ConfigError, match="runs the teacher's classifier"):
        build_term("enof", {}, [4], [4])


def test_repact_gives_the_snn_a_full_precision_output_feature(tmp_path, teacher_ckpt):
    """EnOF's RepAct (``model.options.output_relu``): the SNN's last block outputs through a ReLU,
    every other activation still spikes, the weights are the twins' as before, and EnOF trains on it."""
    from sakd.neurons import SpikeActivation
    from sakd.training import Trainer

    torch.manual_seed(0)
    snn = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=2, output_relu=True)
    plain = create_model("resnet_tiny", spiking=True, num_classes=10, timesteps=2)
    ann = create_model("resnet_tiny", spiking=False, num_classes=10, output_relu=True)
    assert sorted(snn.state_dict()) == sorted(plain.state_dict()) == sorted(ann.state_dict())
    neurons = [sum(isinstance(m, SpikeActivation) for m in net.modules()) for net in (snn, plain)]
    assert isinstance(snn.layer3[-1].act2, nn.ReLU) and neurons[0] == neurons[1] - 1
    with torch.no_grad():
        _, feats = FeatureExtractor(snn)(torch.randn(2, 3, 16, 16) * 3)
    assert bool(((feats[0] == 0) | (feats[0] == 1)).all())  # earlier stages: spikes
    last = feats[-1]
    assert bool((last >= 0).all()) and not bool(((last == 0) | (last == 1)).all())  # full precision
    with pytest.raises(ConfigError, match="RepAct is built for plain ResNet blocks"):
        create_model("sew_resnet18", spiking=True, num_classes=10, output_relu=True)
    if importlib.util.find_spec("nir") is not None:  # NIR has no ReLU node: one line naming the layer
        from sakd.export.nir_format import export_nir

        with pytest.raises(ConfigError, match="layer layer3.0.act2: NIR cannot express ReLU"):
            export_nir(snn.eval(), torch.randn(1, 3, 16, 16), 2, tmp_path / "repact.nir")
        snn.train()
    trainer = Trainer(fast_config(tmp_path, *ONE_STEP, f"distill.teacher.weights={teacher_ckpt}",
                                  "model.options={output_relu: true}", "distill.terms=[{name: enof, weight: 1}]"))
    record = trainer.train_epoch()
    assert math.isfinite(record["train/enof"]) and record["train/enof"] > 0


def test_meom_masked_teacher_views_per_timestep_and_progressive_prefixes():
    z, ft = rand(3, 2, 5, seed=16), rand(2, 8, 2, 2, seed=18)
    head = linear_head(8, 5)
    zt = head(ft.mean((2, 3))).detach()
    term = build_term("meom", {"tpd": 0.0, "mix": 0.5, "keep": 0.75}, [8], [8], teacher_head=head)
    masks = term.masks
    assert set(masks.unique().tolist()) == {0.0, 1.0} and masks.shape == (64, 8)
    assert masks.mean().item() == pytest.approx(0.75, abs=0.06) and len({tuple(m.tolist()) for m in masks[:3]}) == 3
    pooled = ft.mean((2, 3))
    tmpd = 0.0
    for t in range(3):
        for b in range(2):
            view = 0.5 * zt[b] + 0.5 * head(pooled[b] * masks[t])
            tmpd += kl(softmax(view.tolist(), 3), softmax(z[t, b].tolist(), 3))
    inputs = TermInputs(z.mean(0), torch.zeros(2, dtype=torch.long), zt, [z.new_zeros(3, 2, 8, 2, 2)], [ft], z)
    assert term(inputs).item() == pytest.approx(0.5 * tmpd / 6 * 9, rel=1e-12)
    tpd_term = build_term("meom", {"tmpd": 0.0, "tpd": 1.0}, [8], [8], teacher_head=head)
    for tau, term_tau in ((3.0, tpd_term), (1.0, build_term("meom", {"tmpd": 0.0, "tpd": 1.0, "tpd_tau": 1.0}, [8], [8],
                                                                    teacher_head=head))):
        tpd = 0.0  # by default at TMPD's τ (3), as the digests write softmax_τ; tpd_tau sets another
        for t in range(2):
            for b in range(2):
                early = [sum(z[s, b, k].item() for s in range(t + 1)) / (t + 1) / tau for k in range(5)]
                late = [sum(z[s, b, k].item() for s in range(t + 2)) / (t + 2) / tau for k in range(5)]
                tpd += -sum(p * lq for p, lq in zip(softmax(late), log_softmax_list(early)))
        assert term_tau(inputs).item() == pytest.approx(tpd / 4, rel=1e-12)
    # the later prefix is not detached (the authors' code): the last timestep, in no earlier prefix, gets a gradient
    zg = z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(
        tpd_term(TermInputs(zg.mean(0), inputs.target, zt, inputs.student_features, [ft], zg)), zg
    )
    assert grad[-1].abs().sum() > 0


def test_the_teachers_head_on_its_pooled_last_tap_gives_its_logits():
    """What CKDSNN, EnOF and MEOM rely on: forward_head of the last stage tap's spatial mean is the
    network's classifier output (sakd's ResNet-19 head: fc1 -> ReLU -> fc2)."""
    torch.manual_seed(0)
    resnet19_quarter = dict(depths=[3, 3, 2], widths=[32, 64, 128], stem_width=32, head_hidden=64)
    for name, options in (("resnet_custom", resnet19_quarter), ("resnet_tiny", {})):
        ann = create_model(name, spiking=False, num_classes=7, **options).eval()
        taps = FeatureExtractor(ann)
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            logits, feats = taps(x)
            torch.testing.assert_close(ann.forward_head(feats[-1].mean((2, 3))), logits)
