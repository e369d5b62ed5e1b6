import pickle
import random

import pytest

from attngan.config import DEFAULTS, PRESETS, apply_override, load_config, parse_yaml
from attngan.text import (
    Vocabulary,
    load_captions_pickle,
    load_filenames_pickle,
    pad_caption,
    save_captions_pickle,
    tokenize,
)
from ganlab_common.errors import UserError


def test_tokenize_matches_the_original_rule():
    assert tokenize("A small, RED bird; café-bird!") == ["a", "small", "red", "bird", "caf", "bird"]
    assert tokenize("  ...  ") == []


def test_vocabulary_reserves_zero_for_end_and_reports_unknown_words():
    vocab = Vocabulary.build([["a", "red", "bird"], ["a", "blue", "bird"]])
    assert vocab.words[0] == "<end>" and len(vocab) == 5
    ids, unknown = vocab.encode(["a", "green", "bird"])
    assert vocab.decode(ids) == ["a", "bird"] and unknown == ["green"]
    assert 0 not in ids


def test_pad_caption_pads_or_drops_random_words_in_order():
    out, n = pad_caption([5, 6, 7], 5, random.Random(0))
    assert n == 3 and out.tolist() == [5, 6, 7, 0, 0]
    long = list(range(1, 21))
    out, n = pad_caption(long, 6, random.Random(1))
    assert n == 6 and sorted(out.tolist()) == out.tolist() and set(out.tolist()) <= set(long)


def test_captions_pickle_round_trip_and_python2_bytes(tmp_path):
    vocab = Vocabulary(["<end>", "a", "bird"])
    path = tmp_path / "captions.pickle"
    save_captions_pickle(path, [[1, 2]], [[2]], vocab)
    train, test, loaded = load_captions_pickle(path)
    assert train == [[1, 2]] and test == [[2]] and loaded.words == vocab.words
    # Python 2 wrote str as bytes: keys and words come back as bytes with encoding="bytes".
    py2 = tmp_path / "py2.pickle"
    py2.write_bytes(pickle.dumps([[[1]], [[1]], {0: b"<end>", 1: b"bird"}, {b"bird": 1}], 2))
    assert load_captions_pickle(py2)[2].words == ["<end>", "bird"]
    names = tmp_path / "filenames.pickle"
    names.write_bytes(pickle.dumps([b"001.A/x", b"002.B/y"], 2))
    assert load_filenames_pickle(names) == ["001.A/x", "002.B/y"]
    (tmp_path / "bad.pickle").write_text("nope")
    with pytest.raises(UserError, match="bad.pickle"):
        load_filenames_pickle(tmp_path / "bad.pickle")


def test_presets_mirror_the_original_yml_overrides():
    bird = load_config("bird_attn2")
    assert bird["TRAIN"]["SMOOTH"] == {"GAMMA1": 4.0, "GAMMA2": 5.0, "GAMMA3": 10.0, "LAMBDA": 5.0}
    assert bird["GAN"]["GF_DIM"] == 32 and bird["TRAIN"]["BATCH_SIZE"] == 20
    coco = load_config("coco_attn2")
    assert (coco["GAN"]["DF_DIM"], coco["GAN"]["R_NUM"], coco["TEXT"]["WORDS_NUM"]) == (96, 3, 12)
    assert load_config(None)["TRAIN"]["SMOOTH"]["GAMMA1"] == DEFAULTS["TRAIN"]["SMOOTH"]["GAMMA1"]
    assert {"DAMSM/bird", "DAMSM/coco", "eval_bird", "bird_attnDCGAN2"} <= set(PRESETS)


def test_overrides_and_config_files(tmp_path):
    cfg = apply_override(load_config("bird_attn2"), "TRAIN.BATCH_SIZE=8")
    assert cfg["TRAIN"]["BATCH_SIZE"] == 8
    with pytest.raises(UserError, match="unknown key 'TRAIN.BATCH'"):
        load_config("bird_attn2", ["TRAIN.BATCH=8"])
    with pytest.raises(UserError, match="'GAN.R_NUM' expects a int"):
        load_config(None, ["GAN.R_NUM=two"])
    yml = tmp_path / "bird.yml"
    yml.write_text(
        "CONFIG_NAME: 'attn2'\nDATASET_NAME: 'birds'\nTREE:\n    BRANCH_NUM: 3\n"
        "TRAIN:\n    FLAG: True\n    SMOOTH:\n        GAMMA1: 4.0  # comment\n"
        "        LAMBDA: 5.0\nGAN:\n    GF_DIM: 32\n"
    )
    cfg = load_config(str(yml))
    assert cfg["TRAIN"]["SMOOTH"]["GAMMA1"] == 4.0 and cfg["GAN"]["GF_DIM"] == 32
    assert parse_yaml("A:\n  B: 2.0e-4\n") == {"A": {"B": 2e-4}}  # PyYAML (YAML 1.1)
    yml.write_text("TRAIN:\n  ENCODER_LR: 2e-4\n")  # a string to YAML 1.1, a float here
    assert load_config(str(yml))["TRAIN"]["ENCODER_LR"] == 2e-4
    toml = tmp_path / "c.toml"
    toml.write_text("[TRAIN]\nBATCH_SIZE = 3\n")
    assert load_config(str(toml))["TRAIN"]["BATCH_SIZE"] == 3
    bad = tmp_path / "bad.json"
    bad.write_text('{"TRAIN": {"BATCH_SIZE": "x"}}')
    with pytest.raises(UserError, match="TRAIN.BATCH_SIZE"):
        load_config(str(bad))
