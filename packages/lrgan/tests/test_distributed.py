"""lrgan-train under ``torchrun --nproc_per_node 2`` on CPU (gloo): train, checkpoint, resume."""

from __future__ import annotations

import json

import pytest
import torch

from ganlab_common.testing import assert_ranks_agree, two_rank_run

TINY = ["--dataset", "mnist-two", "--ntimestep", "2", "--imageSize", "32", "--nz", "8",
        "--ngf", "4", "--ndf", "4", "--batchSize", "4", "--manualSeed", "3", "--device", "cpu",
        "--maxobjscale", "2", "--max_images", "32", "--judge_samples", "0", "--workers", "0"]



@pytest.mark.slow  # two torchrun launches of two ranks each: about a minute on 2 busy cores
def test_two_gloo_ranks_train_checkpoint_resume_and_agree(tmp_path):
    out = tmp_path / "runs"
    args = [*TINY, "--outf", out]
    first = two_rank_run(tmp_path, "a", "lrgan.train", "wrap_model", "lrgan.cli:main",
                         [*args, "--max_iters", "2"])
    assert_ranks_agree(first)
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    ckpts = sorted((run / "models").glob("*.pt"))
    assert ckpts and ckpts[-1].name.endswith("-000002.pt")
    second = two_rank_run(tmp_path, "b", "lrgan.train", "wrap_model", "lrgan.cli:main",
                          [*args, "--max_iters", "4", "--resume"])
    assert_ranks_agree(second)
    assert [p for p in out.iterdir() if p.is_dir()] == [run]  # resumed in place
    state = torch.load(sorted((run / "models").glob("*.pt"))[-1], weights_only=False)
    assert state["step"] == 4
    for name, value in second[0][0].items():  # rank 0's netG is what the checkpoint holds
        assert torch.equal(state["netG"][name].cpu(), value), name
    assert json.loads((run / "config.json").read_text())["manualSeed"] == 3
