import json
import pickle

import pytest
from PIL import Image

from attngan.config import load_config
from attngan.data import TextImageDataset, build_vocabulary, load_records
from ganlab_common.errors import UserError


def test_cub_split_crop_and_dataset_items(cub_dir):
    cfg = load_config("bird_attn2")
    train, test = load_records(cfg, cub_dir, "train"), load_records(cfg, cub_dir, "test")
    # The class-disjoint split: 001 and 004 are test classes.
    assert {k.split(".")[0] for k in test.keys} == {"001", "004"} and len(train) == 8
    assert train.load_image(0).size == (48, 40)  # r = 0.75 * 40 = 30 around (24, 20), clipped
    vocab = build_vocabulary(cub_dir, [train, test])
    data = TextImageDataset(train, vocab, [16, 32, 64], words_num=5, train=True, seed=0)
    item = data[0]
    assert [tuple(x.shape) for x in item["images"]] == [(3, 16, 16), (3, 32, 32), (3, 64, 64)]
    assert item["images"][0].min() >= -1 and item["images"][0].max() <= 1
    assert item["caption"].shape == (5,) and 1 <= item["cap_len"] <= 5


def test_cub_filenames_pickles_choose_the_keys(cub_dir, tmp_path):
    import shutil

    root = tmp_path / "birds"
    shutil.copytree(cub_dir, root)
    keys = load_records(load_config("bird_attn2"), root, "train").keys
    for split, chosen in (("train", keys[:3]), ("test", keys[3:4])):
        (root / split).mkdir()
        (root / split / "filenames.pickle").write_bytes(
            pickle.dumps([k.encode() for k in chosen], 2)
        )
    assert load_records(load_config("bird_attn2"), root, "train").keys == keys[:3]
    (root / "test" / "filenames.pickle").write_bytes(pickle.dumps(["999.Nope/x"], 2))
    with pytest.raises(UserError, match="999.Nope"):
        load_records(load_config("bird_attn2"), root, "test")


def test_coco_captions_json(tmp_path):
    for year, n in (("train2014", 3), ("val2014", 2)):
        (tmp_path / year).mkdir()
        images, annotations = [], []
        for i in range(n):
            name = f"COCO_{year}_{i:012d}.jpg"
            Image.new("RGB", (40, 30), (i * 40, 90, 200)).save(tmp_path / year / name)
            images.append({"id": 100 + i, "file_name": name})
            annotations += [{"image_id": 100 + i, "caption": f"A plate of food number {k}."}
                            for k in range(5 + (i == 0))]  # fmt: skip
        (tmp_path / "annotations").mkdir(exist_ok=True)
        data = {"images": images, "annotations": annotations}
        (tmp_path / "annotations" / f"captions_{year}.json").write_text(json.dumps(data))
    cfg = load_config("coco_attn2")
    train = load_records(cfg, tmp_path, "train")
    assert len(train) == 3 and all(len(c) == 5 for c in train.captions)
    assert train.captions[0][0] == ["a", "plate", "of", "food", "number", "0"]
    assert train.load_image(1).size == (40, 30) and train.class_ids == [0, 1, 2]
    assert len(load_records(cfg, tmp_path, "test")) == 2


def test_missing_layouts_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="filenames.pickle"):
        (tmp_path / "text").mkdir()
        load_records(load_config("coco_attn2"), tmp_path, "train")
    with pytest.raises(UserError, match="not a folder"):
        load_records(load_config("bird_attn2"), tmp_path / "nope", "train")


def test_original_text_encoder_with_its_captions_pickle(tmp_path, tiny_gan):
    """An original text_encoderN.pth (bare state_dict) + image_encoderN.pth + captions.pickle."""
    import torch

    from attngan.backbones import build_backbone
    from attngan.damsm import load_damsm
    from attngan.models import CNN_ENCODER, RNN_ENCODER
    from attngan.text import Vocabulary, save_captions_pickle

    vocab = Vocabulary(["<end>", "a", "red", "bird"])
    save_captions_pickle(tmp_path / "captions.pickle", [[1, 2, 3]], [[1, 3]], vocab)
    text = RNN_ENCODER(len(vocab), ninput=16, nhidden=32)
    torch.save(text.state_dict(), tmp_path / "text_encoder200.pth")
    image = CNN_ENCODER(32, build_backbone("tiny"))
    torch.save(image.state_dict(), tmp_path / "image_encoder200.pth")
    cfg = load_config("bird_attn2", tiny_gan)
    enc = load_damsm(tmp_path / "text_encoder200.pth", cfg, torch.device("cpu"), str(tmp_path))
    assert enc.vocab.words == vocab.words
    torch.testing.assert_close(enc.text.encoder.weight, text.encoder.weight)
    torch.testing.assert_close(enc.image.emb_cnn_code.weight, image.emb_cnn_code.weight)
    (tmp_path / "captions.pickle").unlink()
    with pytest.raises(UserError, match="captions.pickle"):
        load_damsm(tmp_path / "text_encoder200.pth", cfg, torch.device("cpu"), str(tmp_path))
