"""Device, precision, seeding and data loaders."""

from __future__ import annotations

import contextlib
import os
import random
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sakd.data.seeded import SeededSamples
from sakd.errors import ConfigError
from sakd.randomness import mixed_seed
from sakd.training.distributed import DistContext, GlobalBatchSampler, ShardSampler


def resolve_device(spec: str, local_rank: int = 0, setting: str = "run.device") -> torch.device:
    """``auto`` is this process's GPU (``cuda:LOCAL_RANK`` under torchrun) if there is one, else
    CPU; ``setting`` names where the value came from in errors (a command's ``--device``)."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        spec = f"cuda:{local_rank}"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{setting} {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    sep = " " if setting.startswith("--") else "="
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting}{sep}{spec} but CUDA is not available on this machine; use {setting}{sep}cpu")
    return device


def place(module: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """Move ``module`` to ``device``; with ``channels_last`` its 4-d weights take the NHWC layout, and
    so do the activations of every convolution (faster on CPU/oneDNN and on GPU tensor cores)."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if channels_last else module


def resolve_amp(spec: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision."""
    if spec == "auto":
        ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if ok else None
    if spec == "off":
        return None
    if spec == "bf16":
        return torch.bfloat16
    if device.type != "cuda":  # fp16, validated at load
        raise ConfigError("run.amp=fp16 needs a CUDA device; use bf16 or off on the CPU")
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    """Loader workers leave SIGTERM/SIGUSR1 and Ctrl-C (SIGINT) to the training process, which
    finishes its step, writes a checkpoint and then stops them (a scheduler may signal the whole
    process group, and a terminal sends Ctrl-C to it)."""
    for name in ("SIGTERM", "SIGUSR1", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def resolve_workers(spec: str | int, processes_per_machine: int = 1) -> int:
    """``data.num_workers``: a number as it is; ``auto`` the cores this process may use (its CPU
    affinity, shared among the training processes of the machine) less one for the process itself,
    at most 8: 0 on one core, 1 on two, 8 from nine up (PyTorch warns above the cores it sees)."""
    if spec != "auto":
        return int(spec)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores // max(1, processes_per_machine) - 1))


def make_loaders(train: Dataset, evaluation: dict[str, Dataset], *, batch_size: int, eval_batch_size: int,
                 num_workers: int | str, seed: int, device: torch.device, ctx: DistContext, accumulate: int = 1,
                 collate_fn=None) -> tuple[DataLoader, dict[str, DataLoader]]:
    """The training loader of this process's micro-batches (augmentation seeded per sample by
    ``(seed, epoch, index)``), and a loader of this process's shard of each evaluation set. Each
    loader has its own generator (for its workers' base seed), so that starting an epoch's
    iteration draws nothing from torch's global generator."""
    if len(train) == 0:
        raise ConfigError("the training data set is empty")
    num_workers = resolve_workers(num_workers, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    common = dict(num_workers=num_workers, pin_memory=device.type == "cuda", persistent_workers=num_workers > 0,
                  collate_fn=collate_fn, worker_init_fn=_worker_init if num_workers else None)
    sampler = GlobalBatchSampler(len(train), batch_size, seed, ctx, accumulate)
    def own(name: str) -> torch.Generator:
        return torch.Generator().manual_seed(mixed_seed(seed, "loader", name, ctx.rank))

    train_loader = DataLoader(SeededSamples(train, seed), batch_sampler=sampler, generator=own("train"), **common)
    eval_loaders = {name: DataLoader(data, batch_size=eval_batch_size, sampler=ShardSampler(len(data), ctx),
                                     generator=own(name), **common)
                    for name, data in evaluation.items()}
    return train_loader, eval_loaders
def stop_workers(loader: DataLoader) -> None:
    """Stop a loader's persistent workers now (they ignore SIGTERM, so a pool left to interpreter
    exit would hang multiprocessing's final join); its next iteration starts new ones."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None:
        if hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        loader._iterator = None


def rng_state() -> dict:
    """Every global RNG, in types that ``torch.load(weights_only=True)`` accepts."""
    py_version, py_internal, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
