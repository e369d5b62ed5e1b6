"""Shared lrgan fixtures."""

from __future__ import annotations

import pytest
import torch

from ganlab_common.metrics import DigitCNN
from lrgan.judge import NOT_A_DIGIT, Judge


@pytest.fixture
def untrained_judge(monkeypatch):
    """An untrained (seeded) 11-class judge in place of the cached trained one, so the
    metric plumbing is tested in seconds; the trained judge has its own slow test."""
    torch.manual_seed(0)
    judge = Judge(DigitCNN(classes=NOT_A_DIGIT + 1).eval(), threshold=0.0, report={})
    monkeypatch.setattr("lrgan.train.load_judge", lambda: judge)
    return judge
