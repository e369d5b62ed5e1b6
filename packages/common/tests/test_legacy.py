"""ganlab_common.legacy (the original flags' helpers) and ganlab_common.corpus (its checker)."""

from __future__ import annotations

import pytest
import torch

from ganlab_common.corpus import load_corpus
from ganlab_common.errors import UserError
from ganlab_common.legacy import gpu_device, parse_bool, require_path


@pytest.mark.parametrize(("text", "value"), [("True", True), ("false", False), ("1", True),
                                             ("no", False), (True, True)])
def test_parse_bool_reads_what_the_original_meant(text, value):
    assert parse_bool("--evaluate", text) is value


def test_parse_bool_refuses_other_words():
    with pytest.raises(UserError, match="--evaluate: expected True or False, got 'maybe'"):
        parse_bool("--evaluate", "maybe")


def test_gpu_index(capsys):
    assert gpu_device("--gpu", -1) == "cpu"
    device = gpu_device("--gpu", 3)
    if torch.cuda.is_available():
        assert device == ("cuda:3" if torch.cuda.device_count() > 3 else "cuda:0")
    else:
        assert device == "cpu"
        assert "note: --gpu 3: no CUDA device here; running on the CPU" in capsys.readouterr().err


def test_require_path_names_the_path(tmp_path):
    assert require_path("--data", tmp_path) == tmp_path
    with pytest.raises(UserError, match=r"--data: '/no/such': no such folder; give it"):
        require_path("--data", "/no/such", hint="give it")
    with pytest.raises(UserError, match="no such file"):
        require_path("--netG", tmp_path, "file")


def test_corpus_lines(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(
        "# comment\n"
        "map: th main.lua = crvae-train -dataset celeba\n"
        "X=1 th main.lua -data 'a b'   #=> missing a b\n"
        "map: th main.lua = crvae-train -dataset bird\n"
        "th main.lua -LR 1   #=> ok\n"
    )
    first, second = load_corpus(corpus)
    assert (first.cli, first.args, first.missing) == (
        "crvae-train", ("-dataset", "celeba", "-data", "a b"), "a b")
    assert second.args == ("-dataset", "bird", "-LR", "1") and second.missing is None
    corpus.write_text("python other.py --x 1   #=> ok\n")
    with pytest.raises(ValueError, match="line 1: no 'map:' line covers"):
        load_corpus(corpus)
    corpus.write_text("map: a = b\na --x   #=> maybe\n")
    with pytest.raises(ValueError, match="line 2: expected '#=> ok' or '#=> missing <path>'"):
        load_corpus(corpus)
