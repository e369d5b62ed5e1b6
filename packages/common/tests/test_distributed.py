"""ganlab_common.distributed: two gloo ranks under torchrun on CPU, and the world of one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset

from ganlab_common.distributed import (
    DistContext,
    all_reduce_mean,
    autocast,
    barrier,
    cleanup_distributed,
    make_dataloader,
    set_epoch,
    setup_distributed,
    unwrap,
    wrap_model,
)
from ganlab_common.errors import UserError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
N_SAMPLES, BATCH, EPOCHS, LR = 32, 4, 2, 1e-2

# Each rank builds its model from a different seed (DDP must copy rank 0's weights), trains
# a regressor and a GAN-style critic (two forwards with BatchNorm before one backward) for
# EPOCHS epochs, logs through a Run, and saves what it saw and ended with.
WORKER = textwrap.dedent(
    f"""
    import sys
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import TensorDataset

    from ganlab_common.distributed import (
        all_reduce_mean, barrier, cleanup_distributed, make_dataloader, set_epoch,
        setup_distributed, unwrap, wrap_model,
    )
    from ganlab_common.runs import Run, seed_everything

    out = Path(sys.argv[1])
    ctx = setup_distributed("cpu")
    backend = dist.get_backend()
    seed_everything(ctx.rank)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    critic = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    init = {{k: v.clone() for k, v in model.state_dict().items()}}
    net, crit = wrap_model(model, ctx), wrap_model(critic, ctx)
    synced = {{k: v.clone() for k, v in unwrap(net).state_dict().items()}}
    opt = torch.optim.Adam(net.parameters(), lr={LR})
    opt_c = torch.optim.Adam(crit.parameters(), lr={LR})

    x = torch.randn({N_SAMPLES}, 4, generator=torch.Generator().manual_seed(123))
    data = TensorDataset(x, x.sum(1, keepdim=True), torch.arange({N_SAMPLES}))
    loader = make_dataloader(data, {BATCH}, ctx, seed=7)
    run = Run.start(out / "runs", "ddp", {{"world_size": ctx.world_size}})
    seen, losses, step = [], [], 0
    for epoch in range({EPOCHS}):
        set_epoch(loader, epoch)
        for xb, yb, idx in loader:
            loss = ((net(xb) - yb) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_c = crit(xb).mean() - crit(0.5 * xb + torch.randn_like(xb)).mean()
            opt_c.zero_grad()
            loss_c.backward()
            opt_c.step()
            seen.append(idx.tolist())
            losses.append(all_reduce_mean(loss.item(), ctx))
            run.log(step, loss=losses[-1])
            step += 1
    mean_vec = all_reduce_mean(torch.tensor([ctx.rank, 10 * ctx.rank]), ctx)
    barrier(ctx)
    torch.save(
        {{
            "ctx": (ctx.rank, ctx.world_size, ctx.local_rank, str(ctx.device),
                    ctx.is_distributed, ctx.is_main),
            "backend": backend,
            "is_ddp": isinstance(net, nn.parallel.DistributedDataParallel),
            "init": init,
            "synced": synced,
            "final": unwrap(net).state_dict(),
            "critic": {{k: v for k, v in unwrap(crit).state_dict().items() if "running" not in k}},
            "seen": seen,
            "losses": losses,
            "mean_vec": mean_vec,
            "run_dir": str(run.dir),
        }},
        out / f"rank{{ctx.rank}}.pt",
    )
    cleanup_distributed()
    assert not dist.is_initialized()
    """
)


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run WORKER under ``torchrun --nproc_per_node 2`` once; the two ranks' results."""
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="error")  # as strict as pytest's config
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(tmp)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return tmp, ranks


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_ranks_join_a_gloo_group(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["ctx"] == (0, 2, 0, "cpu", True, True)
    assert r1["ctx"] == (1, 2, 1, "cpu", True, False)
    assert r0["backend"] == r1["backend"] == "gloo"
    assert r0["is_ddp"] and r1["is_ddp"]


def test_ddp_starts_from_rank0_weights_and_ends_identical(two_ranks):
    _, (r0, r1) = two_ranks
    assert not _equal(r0["init"], r1["init"])  # built from different seeds ...
    assert _equal(r0["synced"], r0["init"]) and _equal(r1["synced"], r0["init"])  # ... synced
    assert not _equal(r0["final"], r0["init"])  # training moved them
    assert _equal(r0["final"], r1["final"])  # bit-identical on both ranks
    assert _equal(r0["critic"], r1["critic"])  # two forwards per backward, BatchNorm too


def test_ranks_see_disjoint_shards_covering_each_epoch(two_ranks):
    _, (r0, r1) = two_ranks
    steps_per_epoch = N_SAMPLES // (2 * BATCH)
    assert len(r0["seen"]) == len(r1["seen"]) == EPOCHS * steps_per_epoch
    orders = []
    for epoch in range(EPOCHS):
        part = slice(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch)
        a = [i for batch in r0["seen"][part] for i in batch]
        b = [i for batch in r1["seen"][part] for i in batch]
        assert not set(a) & set(b)
        assert sorted(a + b) == list(range(N_SAMPLES))
        orders.append(a)
    assert orders[0] != orders[1]  # set_epoch reshuffles


def test_ddp_equals_one_process_on_the_global_batch(two_ranks):
    """Averaged gradients: the same Adam steps as one process on both ranks' batches."""
    _, (r0, r1) = two_ranks
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    model.load_state_dict(r0["init"])
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x = torch.randn(N_SAMPLES, 4, generator=torch.Generator().manual_seed(123))
    y = x.sum(1, keepdim=True)
    for step, (a, b) in enumerate(zip(r0["seen"], r1["seen"])):
        idx = torch.tensor(a + b)
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert loss.item() == pytest.approx(r0["losses"][step], rel=1e-5, abs=1e-6)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, r0["final"][k], rtol=1e-5, atol=1e-6)


def test_all_reduce_mean_across_ranks(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["losses"] == r1["losses"]
    for r in (r0, r1):
        assert r["mean_vec"].dtype == torch.float64
        assert r["mean_vec"].tolist() == [0.5, 5.0]


def test_run_is_shared_and_written_by_rank0_only(two_ranks):
    tmp, (r0, r1) = two_ranks
    assert r0["run_dir"] == r1["run_dir"]
    runs = sorted(p.name for p in (tmp / "runs").iterdir())
    assert runs == ["00000-ddp"]
    lines = (tmp / "runs" / "00000-ddp" / "stats.jsonl").read_text().splitlines()
    assert len(lines) == len(r0["losses"])  # one row per step, not one per rank


# -- one process ---------------------------------------------------------------------------


def test_without_torchrun_there_is_no_process_group(no_torchrun):
    ctx = setup_distributed("cpu")
    assert ctx == DistContext(0, 1, 0, torch.device("cpu"), is_distributed=False)
    assert ctx.is_main
    assert not dist.is_initialized()
    barrier(ctx)  # no-ops
    cleanup_distributed()
    with pytest.raises(AttributeError):
        ctx.rank = 1  # frozen


def test_wrap_model_single_process_returns_the_module(no_torchrun):
    ctx = setup_distributed("cpu")
    model = nn.Linear(3, 2)
    assert wrap_model(model, ctx) is model
    assert unwrap(model) is model
    frozen = nn.Linear(3, 2).requires_grad_(False)
    assert wrap_model(frozen, ctx) is frozen


def test_unwrap_strips_data_parallel():
    model = nn.Linear(3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DataParallel may warn about GPU balance
        wrapped = nn.DataParallel(model)
    assert unwrap(wrapped) is model


def _order(loader) -> list[int]:
    return [i for (_, idx) in loader for i in idx.tolist()]


def _indexed(n: int) -> TensorDataset:
    return TensorDataset(torch.zeros(n, 2), torch.arange(n))


def test_loader_order_is_reproducible_from_the_seed(no_torchrun):
    ctx = setup_distributed("cpu")
    data = _indexed(20)
    a = make_dataloader(data, 4, ctx, seed=3)
    b = make_dataloader(data, 4, ctx, seed=3)
    first, second = _order(a), _order(a)
    assert first == _order(b) and second == _order(b)  # same seed, same passes
    assert sorted(first) == list(range(20))
    assert first != second  # a new order each pass, even without set_epoch
    assert first != _order(make_dataloader(data, 4, ctx, seed=4))
    set_epoch(a, 1)
    assert _order(a) == second  # resume at epoch 1 replays that epoch's order
    set_epoch(a, 0)
    assert _order(a) == first
    assert not a.pin_memory and not a.persistent_workers


def test_loader_shuffle_and_drop_last(no_torchrun):
    ctx = setup_distributed("cpu")
    data = _indexed(10)
    assert _order(make_dataloader(data, 4, ctx, shuffle=False)) == list(range(8))
    assert len(make_dataloader(data, 4, ctx)) == 2
    kept = make_dataloader(data, 4, ctx, shuffle=False, drop_last=False)
    assert [len(idx) for _, idx in kept] == [4, 4, 2]
    with pytest.raises(UserError, match="batch size 16"):
        make_dataloader(data, 16, ctx)


def test_loader_with_workers_is_persistent_and_reproducible(no_torchrun):
    ctx = setup_distributed("cpu")
    data = _indexed(12)
    a = make_dataloader(data, 4, ctx, workers=1, seed=5)
    assert a.persistent_workers
    assert _order(a) == _order(make_dataloader(data, 4, ctx, seed=5))


def test_all_reduce_mean_single_process(no_torchrun):
    ctx = setup_distributed("cpu")
    assert all_reduce_mean(1.5, ctx) == 1.5
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_mean(t, ctx), t)


def test_autocast_is_bf16_on_cuda_only():
    x = torch.randn(2, 2)
    for device in ("cpu", torch.device("cpu")):
        for enabled in (True, False):
            cm = autocast(device, enabled)
            assert isinstance(cm, contextlib.nullcontext)
            with cm:
                assert (x @ x).dtype == torch.float32
    ctx = DistContext(0, 1, 0, torch.device("cuda", 0), is_distributed=False)
    assert isinstance(autocast(ctx, False), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when no GPU is present
        cm = autocast(ctx, True)
    assert isinstance(cm, torch.autocast) and cm.fast_dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_a_user_error(no_torchrun):
    with pytest.raises(UserError, match="--device cuda"):
        setup_distributed("cuda")


def test_incomplete_torchrun_environment_is_a_user_error(no_torchrun, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT"):
        setup_distributed("cpu")
    for name, value in [("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")]:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UserError, match="WORLD_SIZE: expected an integer, got 'two'"):
        setup_distributed("cpu")
    assert not dist.is_initialized()
