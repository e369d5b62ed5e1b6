"""Every command of the original crVAE / acVAE READMEs runs through crvae-train --dry_run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganlab_common.corpus import check_command, load_corpus

CORPUS = load_corpus(Path(__file__).with_name("original_commands.txt"))


@pytest.mark.parametrize("entry", CORPUS, ids=[e.id for e in CORPUS])
def test_original_command(entry, tmp_path):
    check_command(entry, tmp_path)


def test_corpus_covers_both_scripts():
    assert {e.original.split(" -")[0].split()[-1] for e in CORPUS} >= {"main.lua",
                                                                      "main_mnist.lua"}
    assert sum(e.missing is None for e in CORPUS) >= 3


def test_dry_run_prints_the_translated_config(tmp_path):
    entry = CORPUS[-1]  # acvaegan_pggan_pretrain on the embedded digits
    out = check_command(entry, tmp_path)
    assert '"latentType": "acvaegan"' in out and '"stage": 1' in out
    assert '"device": "cpu"' in out  # -nGPU 0
    assert "note: -gen gen has no effect" in out
