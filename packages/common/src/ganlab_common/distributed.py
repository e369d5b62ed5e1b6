"""One code path for a laptop CPU and ``torchrun --nproc_per_node N`` (DDP).

A trainer written against these helpers runs unchanged in both settings::

    ctx = setup_distributed(device)            # world_size 1 unless launched by torchrun
    run = Run.start(outdir, name, config)      # after setup: rank 0 picks the folder
    seed_everything(seed + ctx.rank)           # per-rank noise; DDP syncs the weights
    netG = wrap_model(Generator(...), ctx)     # DDP under torchrun, the module otherwise
    loader = make_dataloader(dataset, batch_size, ctx, seed=seed)
    for epoch in range(start_epoch, epochs):
        set_epoch(loader, epoch)
        for x, y in loader:
            with autocast(ctx.device, amp):
                ...
    cleanup_distributed()

Under torchrun, gloo is used on CPU and NCCL on CUDA (one GPU per process, chosen by
LOCAL_RANK).  ``batch_size`` is per process: the global batch is ``batch_size * world_size``.
Only rank 0 writes files; :class:`ganlab_common.runs.Run` already turns its writes into
no-ops on the other ranks (guard ``run.checkpoints.save`` with ``ctx.is_main``, and
``barrier(ctx)`` before other ranks read what rank 0 wrote).  There is no global state
beyond ``torch.distributed``'s own.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .errors import UserError
from .runs import resolve_device

__all__ = [
    "DistContext",
    "all_reduce_mean",
    "autocast",
    "barrier",
    "cleanup_distributed",
    "make_dataloader",
    "set_epoch",
    "setup_distributed",
    "unwrap",
    "wrap_model",
]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_distributed: bool

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only process that writes files."""
        return self.rank == 0


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment {name}: expected an integer, got '{value}'") from None


def _launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _check_torchrun_env() -> None:
    missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise UserError(
            f"environment {', '.join(missing)}: not set; launch with "
            "'torchrun --nproc_per_node N <script> ...'"
        )


def _process_device(device: str, local_rank: int) -> torch.device:
    """The device this process trains on; CUDA devices are picked by ``local_rank``."""
    chosen = resolve_device(device)
    if chosen.type != "cuda":
        return chosen
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise UserError(
            f"--device {device}: LOCAL_RANK {local_rank} needs GPU {local_rank}, "
            f"but only {count} GPU(s) are visible (lower --nproc_per_node)"
        )
    return torch.device("cuda", local_rank)


def setup_distributed(device: str = "auto") -> DistContext:
    """Read torchrun's environment and join the process group.

    Without torchrun's ``RANK``/``WORLD_SIZE`` this is a single process: world size 1,
    no process group.  Under torchrun the group uses NCCL when ``device`` resolves to
    CUDA (this process then owns ``cuda:<LOCAL_RANK>``) and gloo otherwise.  Calling it
    again in a process that already joined a group reuses that group.
    """
    if not _launched_by_torchrun():
        return DistContext(0, 1, 0, resolve_device(device), is_distributed=False)
    _check_torchrun_env()
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK")
    chosen = _process_device(device, local_rank)
    if not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
            dist.init_process_group("nccl", device_id=chosen)
        else:
            dist.init_process_group("gloo")
    return DistContext(rank, world_size, local_rank, chosen, is_distributed=True)


def cleanup_distributed() -> None:
    """Leave the process group (a no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(
    model: nn.Module,
    ctx: DistContext,
    find_unused_parameters: bool = False,
    sync_buffers: bool = False,
) -> nn.Module:
    """Move ``model`` to ``ctx.device``; wrap it in DDP when distributed.

    DDP copies rank 0's weights (and, on newer torch, buffers) to every rank here, so
    ranks may build their models from different seeds.  ``sync_buffers`` (re-broadcasting
    rank 0's buffers in every forward) is off by default: GAN steps call D several times
    per backward, and overwriting BatchNorm/spectral-norm buffers in each forward would
    modify tensors autograd still needs.  Running BatchNorm statistics are then per rank;
    rank 0's are the ones saved.  A model without trainable parameters (e.g. a frozen
    feature extractor) is returned unwrapped.
    """
    model = model.to(ctx.device)
    trainable = any(p.requires_grad for p in model.parameters())
    if not ctx.is_distributed or not trainable:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(
        model,
        device_ids=device_ids,
        find_unused_parameters=find_unused_parameters,
        **_buffer_sync_kwargs(sync_buffers),
    )


def _buffer_sync_kwargs(sync_buffers: bool) -> dict[str, bool]:
    """DDP kwargs; newer torch deprecates ``broadcast_buffers`` for ``forward_sync_buffers``."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    if "forward_sync_buffers" in params:
        return {"forward_sync_buffers": sync_buffers}
    return {"broadcast_buffers": sync_buffers}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


class _EpochSampler(DistributedSampler):
    """A :class:`DistributedSampler` whose order is a function of ``(seed, epoch)`` only.

    Each rank gets a disjoint shard of one seeded permutation per epoch.  The epoch
    advances by itself after every pass, so a loop that never calls :func:`set_epoch`
    still sees a new order each epoch; calling it makes the order exact on resume.
    """

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        self.epoch += 1
        return iter(indices)


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    ctx: DistContext,
    shuffle: bool = True,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = True,
) -> DataLoader:
    """A DataLoader whose sample order is reproducible from ``seed``.

    Under DDP each rank draws ``batch_size`` samples per step from its own shard (a
    :class:`DistributedSampler`); with one process the "shard" is the whole dataset.  The
    permutation for epoch ``e`` comes from a ``torch.Generator`` seeded with ``seed + e``,
    so two loaders with the same seed yield the same batches.  Memory is pinned on CUDA;
    workers are persistent when ``workers > 0``.
    """
    sampler = _EpochSampler(
        dataset,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
    if drop_last and sampler.num_samples < batch_size:
        raise UserError(
            f"batch size {batch_size}: expected at most {sampler.num_samples}, the number of "
            f"samples each of the {ctx.world_size} process(es) gets from the dataset"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed + ctx.rank),  # worker seeds
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Make the next pass over ``loader`` use the order of ``epoch`` (call before each epoch)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def all_reduce_mean(value: torch.Tensor | float, ctx: DistContext) -> torch.Tensor | float:
    """The mean of ``value`` over all ranks (``value`` itself with one process).

    A float gives a float; a tensor gives a detached floating tensor of the same shape on
    the input's device.  Every rank must call this, in the same order.
    """
    if not ctx.is_distributed:
        return value
    as_float = not isinstance(value, torch.Tensor)
    tensor = torch.as_tensor(value).detach()
    source_device = tensor.device
    dtype = tensor.dtype if tensor.is_floating_point() else torch.float64
    buffer = tensor.to(ctx.device, dtype=dtype, copy=True)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    buffer /= ctx.world_size
    return buffer.item() if as_float else buffer.to(source_device)


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. before reading what rank 0 just wrote)."""
    if ctx.is_distributed:
        dist.barrier()


def autocast(
    device: DistContext | torch.device | str, enabled: bool
) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled``; a do-nothing context on CPU or when disabled."""
    if isinstance(device, DistContext):
        device = device.device
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
