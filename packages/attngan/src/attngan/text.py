"""Captions to word ids: the original's tokenisation, vocabulary and ``captions.pickle``.

* Tokens: lower-cased, nltk ``RegexpTokenizer(r"\\w+")``, non-ASCII characters dropped
  (``datasets.py::load_captions``).
* Vocabulary: every word of train + test, no pruning, no ``<unk>``; id 0 is ``<end>`` and
  is used only as padding.  The original's order came from Python 2 dict iteration and is
  not reproducible; ours is sorted.  To use a vocabulary from the original (its pretrained
  DAMSM encoders need it), read its ``captions.pickle`` with :func:`load_captions_pickle`.
* Captions longer than ``WORDS_NUM`` lose random words (order kept), shorter ones are
  zero-padded (``datasets.py::get_caption``).
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nltk.tokenize import RegexpTokenizer

from ganlab_common.errors import UserError

__all__ = [
    "Vocabulary",
    "tokenize",
    "pad_caption",
    "load_captions_pickle",
    "save_captions_pickle",
    "load_filenames_pickle",
]

_TOKENIZER = RegexpTokenizer(r"\w+")
END = "<end>"


def tokenize(caption: str) -> list[str]:
    """``"A red, small bird."`` -> ``["a", "red", "small", "bird"]`` (the original's rule)."""
    caption = caption.replace("\ufffd\ufffd", " ")
    tokens = []
    for token in _TOKENIZER.tokenize(caption.lower()):
        token = token.encode("ascii", "ignore").decode("ascii")
        if token:
            tokens.append(token)
    return tokens


@dataclass
class Vocabulary:
    """``words[i]`` is the word of id ``i``; ``words[0] == "<end>"`` (padding)."""

    words: list[str]

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]]) -> Vocabulary:
        """All words of ``token_lists`` (sorted) after ``<end>``."""
        seen = {w for tokens in token_lists for w in tokens}
        seen.discard(END)
        return cls([END, *sorted(seen)])

    def encode(self, tokens: Sequence[str]) -> tuple[list[int], list[str]]:
        """Word ids of the known tokens, and the unknown tokens (dropped)."""
        ids, unknown = [], []
        for t in tokens:
            if t in self.index and self.index[t] != 0:
                ids.append(self.index[t])
            else:
                unknown.append(t)
        return ids, unknown

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids if i != 0]

    @property
    def ixtoword(self) -> dict[int, str]:
        return dict(enumerate(self.words))

    @property
    def wordtoix(self) -> dict[str, int]:
        return dict(self.index)


def pad_caption(ids: Sequence[int], words_num: int, rng: random.Random) -> tuple[np.ndarray, int]:
    """``([words_num] int64, length)``: random words dropped when too long, else 0-padded."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.zeros(words_num, dtype=np.int64)
    if len(ids) <= words_num:
        out[: len(ids)] = ids
        return out, len(ids)
    keep = sorted(rng.sample(range(len(ids)), words_num))
    out[:] = ids[keep]
    return out, words_num


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _load_pickle(path: Path, what: str):
    if not path.is_file():
        raise UserError(f"{path}: missing ({what})")
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")  # Python 2 pickles (issue #15)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UserError(f"{path}: not a readable pickle ({type(exc).__name__})") from None


def load_captions_pickle(path: str | Path) -> tuple[list, list, Vocabulary]:
    """The original ``captions.pickle``: ``[train_caps, test_caps, ixtoword, wordtoix]``.

    Returns ``(train_caps, test_caps, vocabulary)``; each caption is a list of word ids,
    caption ``k`` of image ``i`` at index ``i * CAPTIONS_PER_IMAGE + k``.
    """
    path = Path(path)
    data = _load_pickle(path, "captions.pickle")
    try:
        train_caps, test_caps, ixtoword = data[0], data[1], data[2]
        words = [_text(ixtoword[i]) for i in range(len(ixtoword))]
    except (IndexError, KeyError, TypeError):
        raise UserError(
            f"{path}: expected [train_caps, test_caps, ixtoword, wordtoix] "
            "with ixtoword indexed 0..n-1"
        ) from None
    vocab = Vocabulary(words)
    train = [[int(i) for i in cap] for cap in train_caps]
    test = [[int(i) for i in cap] for cap in test_caps]
    return train, test, vocab


def save_captions_pickle(path: str | Path, train: list, test: list, vocab: Vocabulary) -> None:
    """Write ``captions.pickle`` in the original's format (protocol 2)."""
    with open(path, "wb") as f:
        pickle.dump([train, test, vocab.ixtoword, vocab.wordtoix], f, protocol=2)


def load_filenames_pickle(path: str | Path) -> list[str]:
    """``train/filenames.pickle``: a (Python 2) pickled list of keys."""
    path = Path(path)
    data = _load_pickle(path, "filenames.pickle")
    if not isinstance(data, list | tuple):
        raise UserError(f"{path}: expected a pickled list of file names")
    return [_text(k) for k in data]
