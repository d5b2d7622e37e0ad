"""``sakd visualize`` (the paper's Figure 4): GradCAM through pytorch-grad-cam equals GradCAM computed
by hand (for the SNN: through the surrogate, activations and gradients averaged over time), the
figure's panels, the similarity numbers, and the bad-input errors."""

import json
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

cv2 = pytest.importorskip("cv2")

from sakd.cli import main  # noqa: E402  (after the skip: cv2 is grad-cam's)
from sakd.models import create_model  # noqa: E402

pytest.importorskip("pytorch_grad_cam")
from sakd.analysis.figure4 import gradcam, mean_correlation  # noqa: E402


def hand_gradcam(model, x, labels, tap):
    """GradCAM written out: the target layer's output and its gradient for the true-class logits,
    averaged over time for an SNN, channel weights = spatial mean of the gradient."""
    point = model.tap_points("stage")[tap]
    layer = point.output or point.activation
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.update(out=o) or o.retain_grad())
    try:
        logits = model(x)
    finally:
        handle.remove()
    logits[torch.arange(len(labels)), torch.tensor(labels)].sum().backward()
    act, grad = store["out"].detach(), store["out"].grad
    if model.spiking:
        act = act.unflatten(0, (model.timesteps, -1)).mean(0)
        grad = grad.unflatten(0, (model.timesteps, -1)).mean(0)
    weights = grad.mean((2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1)).numpy()
    # scaled to [0, 1], resized to the input with OpenCV's bilinear resize (as the package does), rescaled
    cam = [cv2.resize(np.float32(scale01(c)), x.shape[-2:][::-1]) for c in cam]
    return np.float32([scale01(c) for c in cam]), grad


def scale01(a):
    a = a - a.min()
    return a / (a.max() + 1e-7)


@pytest.mark.parametrize("spiking", [True, False], ids=["snn", "ann"])
def test_gradcam_equals_the_hand_computed_one(spiking):
    torch.manual_seed(0)
    model = create_model("resnet_tiny", spiking=spiking, num_classes=10, timesteps=4).eval()
    x, labels = torch.randn(3, 3, 16, 16) * 2, [1, 4, 7]
    for tap in (1, 2):
        ours = gradcam(model, x, labels, tap)
        model.zero_grad()
        ref, grad = hand_gradcam(model, x, labels, tap)
        assert grad.abs().sum() > 0  # for the SNN: the surrogate carries the gradient to the spikes
        assert ours.shape == (3, 16, 16) and ours.max() > 0.99
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_mean_correlation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 4, 4))
    assert mean_correlation(a, 3 * a + 1) == pytest.approx(1.0)
    assert mean_correlation(a, -a) == pytest.approx(-1.0)
    assert mean_correlation(a, np.ones_like(a)) == 0.0
    b = rng.normal(size=(5, 4, 4))
    want = np.mean([np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(5)])
    assert mean_correlation(a, b) == pytest.approx(want)


def test_visualize_writes_figure4(trio, tmp_path, capsys):
    out = tmp_path / "fig" / "figure4"
    args = ["--teacher", trio["teacher"], "--baseline", trio["baseline"], "--student", trio["student"]]
    assert main(["visualize", *args, "--images", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    svg = out.with_suffix(".svg").read_text()
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # 2 images x 3 rows (ANN, SNN w/o KD, SAKD) x 5 columns (input, 3 stage taps, GradCAM)
    assert len(re.findall(r"<image ", svg)) == 2 * 3 * 5
    assert re.search(r"SNN with SAKD +features: layer1 [+-]\d\.\d{3}, layer2 [+-]\d\.\d{3}, layer3 [+-]\d\.\d{3}; "
                     r"GradCAM [+-]\d\.\d{3}", printed)
    assert main(["visualize", *args, "--index", "5", "--taps", "2", "-o", str(tmp_path / "one")]) == 0
    assert len(re.findall(r"<image ", (tmp_path / "one.svg").read_text())) == 3 * 3
    summary = tmp_path / "s.json"
    assert (
        main(["visualize", *args, "--images", "6", "--no-plot", "--json", str(summary), "-o", str(tmp_path / "no")])
        == 0
    )
    s = json.loads(summary.read_text())
    assert not (tmp_path / "no.png").exists() and s["indices"] == list(range(6)) and len(s["labels"]) == 6
    assert set(s["predictions"]) == {"teacher", "baseline", "student"} and s["taps"] == ["layer1", "layer2", "layer3"]
    assert all(-1 <= r <= 1 for sim in s["similarity"].values() for r in [*sim["features"].values(), sim["cam"]])


def test_visualize_errors(trio, tmp_path, capsys, monkeypatch):
    args = {"--teacher": trio["teacher"], "--baseline": trio["baseline"], "--student": trio["student"]}

    def run(change=None, *extra):
        argv = ["visualize", "-o", str(tmp_path / "f"), *extra]
        for k, v in {**args, **(change or {})}.items():
            argv += [k, v]
        return main(argv), capsys.readouterr().err

    code, err = run({"--baseline": trio["teacher"]})
    assert code == 2 and "the baseline must be an SNN" in err
    other = torch.load(f"{trio['teacher']}/last.pt", weights_only=True)
    other["spec"]["name"] = "resnet_custom"
    torch.save(other, tmp_path / "other.pt")
    code, err = run({"--teacher": str(tmp_path / "other.pt")})
    assert code == 2 and "Figure 4 compares one architecture" in err and err.count("\n") == 1
    code, err = run(None, "--index", "3", "256")
    assert code == 2 and "image index 256 is out of range: the test split has 256 images (0..255)" in err
    code, err = run(None, "--taps", "3")
    assert code == 2 and "tap 3 is out of range: the model has 3 stage taps" in err
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    code, err = run()
    assert code == 2 and 'needs the grad-cam package: pip install "sakd[vis]"' in err
    assert not (tmp_path / "f.png").exists()
