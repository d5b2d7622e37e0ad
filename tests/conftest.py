import pytest
import torch

from sakd.training import load_config, train

# A small, learnable problem: 10 classes of 16x16 synthetic images, a tiny ResNet, CPU.
FAST = [
    "data.name=synthetic", "data.num_workers=0", "data.batch_size=64",
    "model.name=resnet_tiny", "model.timesteps=2", "optim.lr=0.05", "optim.epochs=2",
    "run.device=cpu", "run.log_interval=2",
]


# The devices this machine has: a test parametrised over DEVICES runs on the CPU everywhere and on
# the GPU too where there is one (`pytest -k cuda` runs just those), so one test run on a GPU
# machine checks the Triton kernels and the lean memory path there.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def skip_unless_compiles(backend: str, device: str) -> None:
    """Skip a ``compiled``-backend case where torch.compile cannot build kernels for ``device``."""
    from sakd.neurons import kernels

    if backend == "compiled" and not kernels.compiler_available(device):
        pytest.skip(f"torch.compile cannot build kernels for {device} here")


_CONTRIBUTING: list[str] = []  # the guide's example blocks, once they have run in this session


def contributing_examples() -> list[str]:
    """Run CONTRIBUTING.md's Python examples once per session (each registers a part: a model, a
    neuron, a surrogate, a loss term ...) and return their source blocks."""
    import re
    from pathlib import Path

    if not _CONTRIBUTING:
        guide = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
        blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
        for block in blocks:
            exec(compile(block, "CONTRIBUTING.md", "exec"), {})
        _CONTRIBUTING.extend(blocks)
    return list(_CONTRIBUTING)


def fast_config(tmp_path, *extra):
    return load_config(None, FAST + [f"run.output_dir={tmp_path}", *extra])


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    summary = train(fast_config(out, "model.spiking=false", "optim.epochs=6", "run.name=teacher"))
    return f"{summary['run_dir']}/best.pt"


def torchvision_resnet(name: str) -> torch.nn.Module:
    """torchvision's ResNet ``name`` with random weights and non-trivial BatchNorm statistics, so
    eval-mode outputs depend on every buffer."""
    import torchvision

    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return ref


def write_idx(path, array: torch.Tensor, gz: bool):
    """LeCun's idx format written by hand: 0, 0, type 0x08 (unsigned byte), dims, big-endian sizes."""
    import gzip

    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = header + array.to(torch.uint8).numpy().tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open if gz else open)(str(path) + (".gz" if gz else ""), "wb") as f:
        f.write(data)


def fake_mnist(folder, gz: bool, n_train=12, n_test=6):
    """MNIST-style idx files of random 28x28 images, labels cycling through the 10 classes."""
    g = torch.Generator().manual_seed(0)
    parts = {"train": (torch.randint(0, 256, (n_train, 28, 28), generator=g), torch.arange(n_train) % 10),
             "t10k": (torch.randint(0, 256, (n_test, 28, 28), generator=g), torch.arange(n_test) % 10)}
    for split, (images, labels) in parts.items():
        write_idx(folder / f"{split}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels, gz)
    return parts


@pytest.fixture(scope="session")
def trio(tmp_path_factory, teacher_ckpt):
    """Run folders of one architecture: the ANN teacher, an SNN without KD and an SAKD student."""
    from pathlib import Path

    out = tmp_path_factory.mktemp("trio")
    snn = train(fast_config(out, "optim.epochs=1", "run.name=snn"))["run_dir"]
    sakd = train(fast_config(out, "optim.epochs=1", "run.name=sakd", f"distill.teacher.weights={teacher_ckpt}"))[
        "run_dir"
    ]
    return {"teacher": str(Path(teacher_ckpt).parent), "baseline": snn, "student": sakd}


def fresh_copy(run_dir: str, dest) -> str:
    """A copy of a session run folder as training left it (no cached analysis), for a test that
    writes into its run."""
    import shutil
    from pathlib import Path

    from sakd import runs

    return str(shutil.copytree(run_dir, Path(dest) / Path(run_dir).name, ignore=shutil.ignore_patterns(runs.ANALYSIS)))


@pytest.fixture
def small_disk(tmp_path):
    """A real small file system (tmpfs) to fill up or make read-only: ``small_disk(bytes)`` mounts
    one and returns its folder; skipped where this process may not mount (not root, or a sandbox
    without it)."""
    import subprocess

    mounted = []

    def mount(size: int, read_only=None):
        """``read_only``: files to write first (name -> bytes), then the disk is made read-only."""
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        if read_only is not None:
            for name, data in read_only.items():
                (where / name).write_bytes(data)
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def pytest_configure(config):
    """Under pytest-xdist each worker process gets one of the machine's cores: torch's threads are
    one per worker, so two workers on two cores do not fight over them (10-70x slower when they do),
    and so are those of every process a test starts (OMP_NUM_THREADS, which they inherit)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
