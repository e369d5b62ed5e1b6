"""Tests of ganlab_common.data: real embedded data, and small fixtures in the real formats."""

from __future__ import annotations

import gzip
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ganlab_common.data import (
    CELEBA_ATTRIBUTES,
    CIFAR10,
    CUB200,
    CUB_ATTNGAN_TEST_CLASSES,
    FASHION_MNIST_DEBIAN_DIR,
    LFW,
    MNIST,
    CelebA,
    FashionMNIST,
    ImageFolder,
    bbox_crop_box,
    read_idx,
    skipped_images,
)
from ganlab_common.data._base import package_data_dir
from ganlab_common.errors import UserError


def assert_one_line(excinfo: pytest.ExceptionInfo, *fragments: object) -> str:
    """The UserError message is a single line and names every fragment."""
    message = excinfo.value.format_message()
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert str(fragment) in message, (fragment, message)
    return message


def write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int] = (200, 30, 90),
                mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(path)
    return path


# ----------------------------------------------------------------------------
# Embedded real data.


def test_embedded_mnist_is_5000_real_digits_500_per_class():
    full = MNIST(split="all")
    assert full.data.shape == (5000, 28, 28) and full.data.dtype == torch.uint8
    assert full.targets.dtype == torch.int64
    assert Counter(full.targets.tolist()) == {c: 500 for c in range(10)}
    # Real digits: a dark background and a bright stroke.
    assert full.data.float().mean() < 60 and full.data.max() == 255

    train, test = MNIST(), MNIST(split="test")
    assert len(train) == 4000 and len(test) == 1000
    assert Counter(train.targets.tolist()) == {c: 400 for c in range(10)}
    assert Counter(test.targets.tolist()) == {c: 100 for c in range(10)}
    # The two splits partition the 5,000 digits.
    merged = torch.cat([train.data, test.data]).flatten(1)
    assert torch.equal(merged.sort(dim=0).values, full.data.flatten(1).sort(dim=0).values)

    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert label == int(train.targets[0])


def test_embedded_mnist_transform_receives_a_pil_image():
    seen = []
    dataset = MNIST(split="test", transform=lambda im: seen.append(im) or 7)
    assert dataset[3][0] == 7
    assert isinstance(seen[0], Image.Image) and seen[0].mode == "L" and seen[0].size == (28, 28)
    assert np.array_equal(np.asarray(seen[0]), dataset.data[3].numpy())


@pytest.mark.skipif(not FASHION_MNIST_DEBIAN_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package_is_70000():
    full = FashionMNIST(split="all")
    assert full.data.shape == (70000, 28, 28)
    assert Counter(full.targets.tolist()) == {c: 7000 for c in range(10)}
    test = FashionMNIST(split="test")
    assert len(test) == 10000
    assert torch.equal(test.data[0], full.data[60000])
    assert full.classes[9] == "Ankle boot"


def test_fashion_mnist_without_debian_package_names_the_folder(monkeypatch, tmp_path):
    missing = tmp_path / "no-fashion"
    monkeypatch.setattr("ganlab_common.data.digits.FASHION_MNIST_DEBIAN_DIR", missing)
    with pytest.raises(UserError) as excinfo:
        FashionMNIST()
    assert_one_line(excinfo, missing, "dataset-fashion-mnist")


def test_embedded_lfw_faces():
    faces = LFW()
    assert len(faces) == 100 and faces.paths is None
    assert faces.data.shape == (100, 25, 25) and faces.data.dtype == torch.uint8
    assert faces.data.float().std() > 20  # real photos, not a constant
    image, label = faces[99]
    assert image.shape == (1, 25, 25) and 0 <= image.min() and image.max() <= 1
    assert label == 0
    assert LFW(transform=lambda im: im.size)[0][0] == (25, 25)


def test_embedded_cifar10_20_real_test_images():
    cifar = CIFAR10()
    assert cifar.targets.tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    assert cifar.data.shape == (20, 32, 32, 3) and cifar.data.dtype == torch.uint8
    image, label = cifar[1]
    assert image.shape == (3, 32, 32) and label == 8
    assert torch.allclose(image, cifar.data[1].permute(2, 0, 1).float() / 255)
    assert cifar.classes[label] == "ship"


def test_missing_data_package_says_to_install_the_extra():
    with pytest.raises(UserError) as excinfo:
        package_data_dir("ganlab_no_such_package_xyz", "data")
    assert_one_line(excinfo, "ganlab_no_such_package_xyz", "ganlab-common[data]")


def test_bad_split_is_a_user_error():
    with pytest.raises(UserError) as excinfo:
        MNIST(split="validation")
    assert_one_line(excinfo, "split", "train|test|all", "validation")


# ----------------------------------------------------------------------------
# MNIST IDX files.


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int, n_test: int, compress: bool, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, n, dtype=np.uint8)
    for name, array in arrays.items():
        if compress:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(idx_bytes(array))
        else:
            (folder / name).write_bytes(idx_bytes(array))
    return arrays


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_mnist_idx_files(tmp_path, compress):
    arrays = write_idx_set(tmp_path, 7, 3, compress)
    train = MNIST(tmp_path)
    assert np.array_equal(train.data.numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(train.targets.numpy(), arrays["train-labels-idx1-ubyte"])
    assert train.targets.dtype == torch.int64
    test = MNIST(tmp_path, split="test")
    assert np.array_equal(test.data.numpy(), arrays["t10k-images-idx3-ubyte"])
    both = FashionMNIST(tmp_path, split="all")
    assert len(both) == 10 and torch.equal(both.data[7:], test.data)
    image, label = test[2]
    assert image.shape == (1, 28, 28)
    assert torch.equal((image[0] * 255).round().to(torch.uint8), test.data[2])
    assert label == arrays["t10k-labels-idx1-ubyte"][2]


def test_mnist_idx_in_torchvision_layout(tmp_path):
    write_idx_set(tmp_path / "MNIST" / "raw", 4, 2, compress=True)
    assert len(MNIST(tmp_path, split="all")) == 6


def test_mnist_idx_bad_magic_number(tmp_path):
    write_idx_set(tmp_path, 4, 2, compress=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(labels.read_bytes())  # a label file where the images should be
    with pytest.raises(UserError) as excinfo:
        MNIST(tmp_path)
    assert_one_line(excinfo, images, "magic number", "00000801", "00000803")


def test_mnist_idx_truncated_and_bad_gzip(tmp_path):
    write_idx_set(tmp_path, 4, 2, compress=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError) as excinfo:
        MNIST(tmp_path, split="test")
    assert_one_line(excinfo, path, "2x28x28")

    gz = tmp_path / "bad.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(8))[:-12])
    with pytest.raises(UserError) as excinfo:
        read_idx(gz, 1)
    assert_one_line(excinfo, gz, "gzip")


def test_mnist_idx_missing_files_and_root(tmp_path):
    write_idx_set(tmp_path, 4, 2, compress=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert len(MNIST(tmp_path)) == 4  # the train split does not need the test files
    with pytest.raises(UserError) as excinfo:
        MNIST(tmp_path, split="test")
    assert_one_line(excinfo, tmp_path / "t10k-labels-idx1-ubyte[.gz]", "not found")
    with pytest.raises(UserError) as excinfo:
        MNIST(tmp_path / "nowhere")
    assert_one_line(excinfo, tmp_path / "nowhere", "train-images-idx3-ubyte")


def test_mnist_idx_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path, 4, 2, compress=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(UserError) as excinfo:
        MNIST(tmp_path)
    assert_one_line(excinfo, tmp_path / "train-labels-idx1-ubyte", "3 labels for 4 images")


# ----------------------------------------------------------------------------
# CIFAR-10 python batches.


def write_cifar_batches(folder: Path, per_batch: int = 3, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {b"batch_label": name.encode(),
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, per_batch).tolist(),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        batches[name] = entry
    return batches


def test_cifar10_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar_batches(folder)
    train = CIFAR10(folder)
    assert train.data.shape == (15, 32, 32, 3)
    assert train.targets.tolist() == sum((batches[f"data_batch_{i}"][b"labels"]
                                          for i in range(1, 6)), [])
    # Channel-major rows: red plane first, then green, then blue.
    row = batches["data_batch_2"][b"data"][1]
    assert train.data[4, 5, 6].tolist() == [row[5 * 32 + 6], row[1024 + 5 * 32 + 6],
                                            row[2048 + 5 * 32 + 6]]
    image, label = train[4]
    assert image.shape == (3, 32, 32) and label == batches["data_batch_2"][b"labels"][1]
    assert torch.allclose(image, train.data[4].permute(2, 0, 1).float() / 255)

    test = CIFAR10(tmp_path, split="test")  # the parent folder works too
    assert test.targets.tolist() == batches["test_batch"][b"labels"]
    assert len(CIFAR10(tmp_path, split="all")) == 18
    assert CIFAR10(folder, split="test", transform=lambda im: im.mode)[0][0] == "RGB"


def test_cifar10_truncated_batch(tmp_path):
    write_cifar_batches(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError) as excinfo:
        CIFAR10(tmp_path, split="test")
    assert_one_line(excinfo, path, "not a CIFAR-10 python batch")


def test_cifar10_missing_batch_and_foreign_pickle(tmp_path):
    write_cifar_batches(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    assert len(CIFAR10(tmp_path, split="test")) == 3
    with pytest.raises(UserError) as excinfo:
        CIFAR10(tmp_path)
    assert_one_line(excinfo, tmp_path / "data_batch_3", "not found")

    # A pickle that would run code is refused, not executed.
    (tmp_path / "test_batch").write_bytes(pickle.dumps(os.getcwd, protocol=2))
    with pytest.raises(UserError) as excinfo:
        CIFAR10(tmp_path, split="test")
    assert_one_line(excinfo, tmp_path / "test_batch", "refusing")


def test_cifar10_wrong_shape(tmp_path):
    write_cifar_batches(tmp_path)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(UserError) as excinfo:
        CIFAR10(tmp_path, split="test")
    assert_one_line(excinfo, tmp_path / "test_batch", "[N, 3072]")


# ----------------------------------------------------------------------------
# CelebA.

CELEBA_PARTITION = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 0,
                    "000004.jpg": 1, "000005.jpg": 2, "000006.jpg": 2}


def write_celeba(root: Path, seed: int = 0) -> np.ndarray:
    """Six tiny JPEGs, list_attr_celeba.txt (real spacing) and list_eval_partition.txt."""
    rng = np.random.default_rng(seed)
    values = rng.choice([-1, 1], size=(len(CELEBA_PARTITION), 40))
    lines = [str(len(CELEBA_PARTITION)), " ".join(CELEBA_ATTRIBUTES) + " "]
    for i, name in enumerate(CELEBA_PARTITION):
        write_image(root / "img_align_celeba" / name, (6, 8), (40 * i, 10, 250))
        lines.append(name + "".join(f" {v:2d}" for v in values[i]))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{n} {p}\n" for n, p in CELEBA_PARTITION.items()))
    return values


def test_celeba_attributes_and_partition(tmp_path):
    values = write_celeba(tmp_path)
    full = CelebA(tmp_path, split="all")
    assert len(full) == 6 and full.attr_names == list(CELEBA_ATTRIBUTES)
    assert full.attrs.dtype == torch.float32
    assert torch.equal(full.attrs, torch.tensor(values).float())
    train = CelebA(tmp_path)
    assert train.filenames == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert CelebA(tmp_path, split="valid").filenames == ["000004.jpg"]
    assert CelebA(tmp_path, split="test").filenames == ["000005.jpg", "000006.jpg"]

    chosen = ["Male", "Bald", "Smiling"]
    test = CelebA(tmp_path, split="test", attributes=chosen)
    image, attrs = test[1]
    columns = [CELEBA_ATTRIBUTES.index(a) for a in chosen]
    assert test.attr_names == chosen and test.attrs.shape == (2, 3)
    assert attrs.tolist() == values[5, columns].tolist()
    assert image.shape == (3, 8, 6) and 0 <= image.min() and image.max() <= 1
    assert abs(image[0].mean().item() - 200 / 255) < 0.05  # red channel of the 6th JPEG

    loader = DataLoader(train, batch_size=3)
    images, batch_attrs = next(iter(loader))
    assert images.shape == (3, 3, 8, 6) and batch_attrs.shape == (3, 40)


def test_celeba_unknown_attribute_lists_valid_names(tmp_path):
    write_celeba(tmp_path)
    with pytest.raises(UserError) as excinfo:
        CelebA(tmp_path, attributes=["Male", "Sunglasses"])
    assert_one_line(excinfo, "Sunglasses", "5_o_Clock_Shadow", "Young")


def test_celeba_line_with_39_values(tmp_path):
    write_celeba(tmp_path)
    path = tmp_path / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].rsplit(" ", 1)[0].rstrip()  # drop the last value of 000003.jpg
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as excinfo:
        CelebA(tmp_path)
    assert_one_line(excinfo, f"{path}:5", "40 values", "found 39")


def test_celeba_bad_value_count_line_and_missing_partition(tmp_path):
    write_celeba(tmp_path)
    path = tmp_path / "list_attr_celeba.txt"
    text = path.read_text()
    path.write_text(text.replace("000002.jpg  1", "000002.jpg  0", 1).replace(
        "000002.jpg -1", "000002.jpg  0", 1))
    with pytest.raises(UserError) as excinfo:
        CelebA(tmp_path)
    assert_one_line(excinfo, f"{path}:4", "-1 or 1", "'0'")

    path.write_text("7\n" + text.split("\n", 1)[1])
    with pytest.raises(UserError) as excinfo:
        CelebA(tmp_path)
    assert_one_line(excinfo, f"{path}:1", "7 images", "6")

    path.write_text(text)
    (tmp_path / "list_eval_partition.txt").unlink()
    assert len(CelebA(tmp_path, split="all")) == 6
    with pytest.raises(UserError) as excinfo:
        CelebA(tmp_path)
    assert_one_line(excinfo, tmp_path / "list_eval_partition.txt", "not found")


def test_celeba_missing_folder_and_image(tmp_path):
    with pytest.raises(UserError) as excinfo:
        CelebA(tmp_path)
    assert_one_line(excinfo, tmp_path / "img_align_celeba", "folder not found")
    write_celeba(tmp_path)
    (tmp_path / "img_align_celeba" / "000001.jpg").unlink()
    with pytest.raises(UserError) as excinfo:
        CelebA(tmp_path)
    assert_one_line(excinfo, tmp_path / "img_align_celeba" / "000001.jpg", "not found")


# ----------------------------------------------------------------------------
# CUB-200-2011.

# (id, class folder, file, image size, box x y w h, official train flag)
CUB_IMAGES = [
    (1, "001.Black_footed_Albatross", "Black_Footed_Albatross_0001_796111", (100, 80),
     (10, 20, 40, 30), 1),
    (2, "001.Black_footed_Albatross", "Black_Footed_Albatross_0002_55", (100, 80),
     (70, 50, 28, 28), 0),
    (3, "002.Laysan_Albatross", "Laysan_Albatross_0002_1027", (50, 60), (5, 5, 20, 10), 1),
]


def write_cub(root: Path, captions: Path) -> None:
    """A CUB_200_2011 folder of three images and a separate text_c10 caption folder."""
    root.mkdir(parents=True)
    lines = {"images.txt": [], "bounding_boxes.txt": [], "train_test_split.txt": [],
             "image_class_labels.txt": []}
    for image_id, folder, stem, size, box, train in CUB_IMAGES:
        write_image(root / "images" / folder / f"{stem}.jpg", size, (20 * image_id, 90, 160))
        lines["images.txt"].append(f"{image_id} {folder}/{stem}.jpg")
        lines["bounding_boxes.txt"].append(f"{image_id} " + " ".join(f"{v:.1f}" for v in box))
        lines["train_test_split.txt"].append(f"{image_id} {train}")
        lines["image_class_labels.txt"].append(f"{image_id} {int(folder[:3])}")
        caption = captions / folder / f"{stem}.txt"
        caption.parent.mkdir(parents=True, exist_ok=True)
        caption.write_text("".join(f"bird {image_id} caption {k}\n" for k in range(10)) + "\n")
    for name, rows in lines.items():
        (root / name).write_text("\n".join(rows) + "\n")


@pytest.fixture
def cub_root(tmp_path) -> Path:
    write_cub(tmp_path / "CUB_200_2011", tmp_path / "birds_text" / "text_c10")
    return tmp_path / "CUB_200_2011"


def test_cub_bbox_crop_and_attngan_split(cub_root):
    captions = cub_root.parent / "birds_text" / "text_c10"
    # Class 001 is one of the 50 AttnGAN test classes, class 002 is a train class.
    assert 1 in CUB_ATTNGAN_TEST_CLASSES and 2 not in CUB_ATTNGAN_TEST_CLASSES
    test = CUB200(cub_root, split="test", captions_root=captions)
    assert test.keys == ["001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111",
                         "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55"]
    assert test.targets.tolist() == [0, 0]
    # r = int(0.75 * 40) = 30 around (30, 35): 60x60 inside the 100x80 image.
    image, label = test[0]
    assert image.shape == (3, 60, 60) and label == 0
    # r = 21 around (84, 64): clipped at the right and bottom edges to 37x37.
    assert test[1][0].shape == (3, 37, 37)
    assert test.captions(1) == [f"bird 2 caption {k}" for k in range(10)]

    train = CUB200(cub_root, captions_root=captions)
    assert train.keys == ["002.Laysan_Albatross/Laysan_Albatross_0002_1027"]
    assert train.targets.tolist() == [1]
    assert train[0][0].shape == (3, 25, 30)  # r = 15 around (15, 10), clipped at the top
    uncropped = CUB200(cub_root, bbox_crop=False, transform=lambda im: im.size)
    assert uncropped[0][0] == (50, 60) and uncropped.boxes is None


# Images per class in CUB-200-2011 (11,788 in all).
CUB_CLASS_SIZES = [
    60, 60, 58, 60, 44, 41, 53, 48, 59, 60, 60, 56, 60, 60, 58, 58, 57, 45, 59, 59,
    60, 56, 59, 52, 60, 60, 60, 59, 60, 60, 60, 53, 59, 59, 60, 60, 59, 60, 59, 60,
    60, 60, 59, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 58, 60, 59,
    60, 60, 60, 60, 50, 60, 60, 60, 60, 60, 60, 60, 60, 60, 57, 60, 60, 59, 60, 60,
    60, 60, 60, 53, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 59, 60, 60, 60,
    50, 60, 60, 60, 49, 60, 59, 60, 60, 60, 60, 60, 50, 60, 59, 60, 59, 60, 59, 60,
    60, 60, 60, 59, 59, 59, 60, 60, 60, 60, 60, 60, 60, 60, 59, 60, 60, 60, 60, 60,
    58, 60, 60, 60, 60, 60, 60, 60, 59, 60, 51, 60, 59, 60, 60, 60, 59, 60, 60, 59,
    60, 60, 60, 60, 60, 59, 60, 59, 59, 60, 60, 60, 60, 60, 60, 60, 60, 56, 59, 60,
    59, 60, 60, 60, 60, 60, 50, 60, 60, 58, 60, 60, 60, 60, 60, 59, 60, 60, 60, 60,
]


def test_cub_attngan_split_sizes_on_the_real_class_sizes(tmp_path):
    """With CUB's real class sizes the split is AttnGAN's 8,855 / 2,933 over 150 / 50 classes."""
    lines, image_id = [], 0
    for class_id, size in enumerate(CUB_CLASS_SIZES, start=1):
        for k in range(size):
            image_id += 1
            lines.append(f"{image_id} {class_id:03d}.Bird_{class_id}/Bird_{k:04d}.jpg")
    (tmp_path / "images.txt").write_text("\n".join(lines) + "\n")
    for first in ("001.Bird_1/Bird_0000.jpg", "002.Bird_2/Bird_0000.jpg"):
        write_image(tmp_path / "images" / first, (4, 4))
    train = CUB200(tmp_path, split="train", bbox_crop=False)
    test = CUB200(tmp_path, split="test", bbox_crop=False)
    assert (len(train), len(test)) == (8855, 2933)
    assert len(set(train.targets.tolist())) == 150 and len(set(test.targets.tolist())) == 50
    assert not set(train.targets.tolist()) & set(test.targets.tolist())


def test_cub_official_split_and_caption_discovery(cub_root):
    train = CUB200(cub_root, split="train", split_scheme="official")
    assert train.ids == [1, 3] and train.targets.tolist() == [0, 1]
    assert CUB200(cub_root, split="test", split_scheme="official").ids == [2]
    assert len(CUB200(cub_root, split="all")) == 3
    assert train.captions_root is None
    with pytest.raises(UserError) as excinfo:
        train.captions(0)
    assert_one_line(excinfo, cub_root, "captions_root")
    # AttnGAN's data/birds/ layout: text/ beside CUB_200_2011/.
    (cub_root.parent / "birds_text" / "text_c10").rename(cub_root.parent / "text")
    found = CUB200(cub_root, split_scheme="official")
    assert found.captions(1)[0] == "bird 3 caption 0"


def test_cub_box_crop_rule():
    assert bbox_crop_box((10, 20, 40, 30), 100, 80) == (0, 5, 60, 65)
    assert bbox_crop_box((60.0, 27.0, 325.0, 304.0), 500, 400) == (0, 0, 465, 400)


def test_cub_malformed_bbox_line(cub_root):
    path = cub_root / "bounding_boxes.txt"
    path.write_text(path.read_text().replace("2 70.0 50.0 28.0 28.0", "2 70.0 50.0 28.0"))
    with pytest.raises(UserError) as excinfo:
        CUB200(cub_root, split="test")
    assert_one_line(excinfo, f"{path}:2", "found 4 fields")
    assert len(CUB200(cub_root, split="test", bbox_crop=False)) == 2


def test_cub_missing_files(cub_root, tmp_path):
    (cub_root / "train_test_split.txt").unlink()
    with pytest.raises(UserError) as excinfo:
        CUB200(cub_root, split_scheme="official")
    assert_one_line(excinfo, cub_root / "train_test_split.txt", "not found")
    (cub_root / "images.txt").unlink()
    with pytest.raises(UserError) as excinfo:
        CUB200(cub_root)
    assert_one_line(excinfo, cub_root / "images.txt", "not found")
    with pytest.raises(UserError) as excinfo:
        CUB200(tmp_path, captions_root=tmp_path)
    assert_one_line(excinfo, tmp_path / "images", "folder not found")


def test_cub_missing_caption_and_image(cub_root):
    captions = cub_root.parent / "birds_text" / "text_c10"
    missing = captions / "002.Laysan_Albatross" / "Laysan_Albatross_0002_1027.txt"
    missing.unlink()
    train = CUB200(cub_root, captions_root=captions)
    with pytest.raises(UserError) as excinfo:
        train.captions(0)
    assert_one_line(excinfo, missing, "not found")
    train.paths[0].unlink()  # while training: skipped for the next image, and counted
    if len(train) > 1:
        assert torch.equal(train[0][0], train[1][0]) and skipped_images(train) == 1
    else:  # nothing to take its place
        with pytest.raises(UserError) as excinfo:
            train[0]
        assert_one_line(excinfo, train.paths[0], "not found")
    with pytest.raises(UserError) as excinfo:
        CUB200(cub_root)
    assert_one_line(excinfo, train.paths[0], "not found", cub_root / "images.txt")


# ----------------------------------------------------------------------------
# LFW folder and plain image folders.


def test_lfw_folder(tmp_path):
    for person, n in (("Aaron_Peirsol", 2), ("Zico", 1)):
        for k in range(1, n + 1):
            write_image(tmp_path / person / f"{person}_{k:04d}.jpg", (25, 25))
    write_image(tmp_path / "Zico" / "deeper" / "ignored.jpg", (25, 25))
    (tmp_path / "README.txt").write_text("not an image")
    lfw = LFW(tmp_path)
    assert [p.name for p in lfw.paths] == ["Aaron_Peirsol_0001.jpg", "Aaron_Peirsol_0002.jpg",
                                           "Zico_0001.jpg"]
    assert lfw.targets.tolist() == [0, 0, 1] and lfw.classes == ["Aaron_Peirsol", "Zico"]
    image, label = lfw[2]
    assert image.shape == (3, 25, 25) and label == 1 and lfw.data is None


def test_lfw_missing_or_empty_folder(tmp_path):
    with pytest.raises(UserError) as excinfo:
        LFW(tmp_path / "lfw")
    assert_one_line(excinfo, tmp_path / "lfw", "folder not found", "<person>/*.jpg")
    write_image(tmp_path / "flat.jpg", (4, 4))
    with pytest.raises(UserError) as excinfo:
        LFW(tmp_path)
    assert_one_line(excinfo, tmp_path, "no <person>/*.jpg")


def test_image_folder_recursive_sorted(tmp_path):
    write_image(tmp_path / "b" / "x.png", (5, 4))
    write_image(tmp_path / "a" / "deep" / "y.JPG", (5, 4))
    write_image(tmp_path / "a" / "z.webp", (5, 4))
    write_image(tmp_path / "top.bmp", (5, 4), mode="L")
    write_image(tmp_path / ".hidden" / "h.png", (5, 4))
    (tmp_path / "b" / "notes.txt").write_text("skip me")
    folder = ImageFolder(tmp_path)
    relative = [p.relative_to(tmp_path).as_posix() for p in folder.paths]
    assert relative == ["a/deep/y.JPG", "a/z.webp", "b/x.png", "top.bmp"]
    assert folder.classes == [".", "a", "a/deep", "b"]
    assert folder.targets.tolist() == [2, 1, 3, 0]
    assert all(folder[i][0].shape == (3, 4, 5) for i in range(len(folder)))
    grey = ImageFolder(tmp_path, mode="L")
    assert grey[0][0].shape == (1, 4, 5)


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UserError) as excinfo:
        ImageFolder(tmp_path / "empty")
    assert_one_line(excinfo, tmp_path / "empty", "no images found")
    (tmp_path / "file.png").write_bytes(b"not a png")
    with pytest.raises(UserError) as excinfo:
        ImageFolder(tmp_path / "file.png")
    assert_one_line(excinfo, tmp_path / "file.png", "not a folder")
    folder = ImageFolder(tmp_path)
    with pytest.raises(UserError) as excinfo:
        folder[0]
    assert_one_line(excinfo, tmp_path / "file.png", "not a readable image")
