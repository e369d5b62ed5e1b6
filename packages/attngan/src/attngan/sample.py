"""Images (and per-word attention maps) from captions with a trained generator."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ganlab_common.checkpoint import load_checkpoint
from ganlab_common.errors import UserError
from ganlab_common.images import to_uint8
from ganlab_common.runs import find_run_dir

from .config import with_defaults
from .damsm import Encoders, build_encoders
from .models import G_NET, RNN_ENCODER, attention_mask, build_generator
from .original_weights import is_original_generator, original_export
from .text import Vocabulary, tokenize
from .viz import attention_figure, attention_sheet, captioned_grid

__all__ = ["Generator", "load_generator", "encode_captions", "generate", "find_generator"]

MAX_WORDS = 64  # longer captions are cut (the attention cost grows with the words)


@dataclass
class Generator:
    """A trained generator with its text encoder and vocabulary, ready to sample."""

    cfg: dict
    vocab: Vocabulary
    text: torch.nn.Module
    net_g: G_NET
    device: torch.device
    state: dict

    def encoders(self, quiet: bool = False) -> Encoders:
        """The DAMSM encoders (the image one built on demand: it loads Inception)."""
        enc = build_encoders(self.cfg, self.vocab, quiet=quiet)
        enc.text = self.text
        if "image_encoder" not in self.state:
            raise UserError("--netG: no DAMSM image encoder beside it (image_encoder*.pth)")
        enc.image.load_projection_state(self.state["image_encoder"])
        enc.image.to(self.device).eval().requires_grad_(False)
        return enc


def find_generator(outdir: str | os.PathLike) -> Path:
    """The newest ``<outdir>/NNNNN-attngan/netG.pt``."""
    run = find_run_dir(outdir, "attngan")
    if run is None or not (run / "netG.pt").is_file():
        raise UserError(f"--netG: not given and no AttnGAN run with netG.pt in '{outdir}'")
    return run / "netG.pt"


def load_generator(path: str | os.PathLike, device: torch.device) -> Generator:
    """A ``netG.pt`` export, an ``attngan-train`` checkpoint (its averaged G), or the
    original's released G (``bird_AttnGAN2.pth``: :mod:`attngan.original_weights`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "netG.pt"
    state = load_checkpoint(path, map_location="cpu", flag="--netG")
    if is_original_generator(state):  # the original's bird_AttnGAN2.pth & co.
        state = original_export(state, path)
    if "netG" not in state or "vocab" not in state or "config" not in state:
        raise UserError(f"--netG: '{path}' is not an attngan-train export or checkpoint")
    cfg, vocab = with_defaults(state["config"]), Vocabulary(list(state["vocab"]))
    n_rows = state["text_encoder"]["encoder.weight"].shape[0]
    if n_rows != len(vocab):
        raise UserError(
            f"--netG: '{path}': the text encoder has {n_rows} words, the vocabulary {len(vocab)}"
        )
    net_g = build_generator(cfg)
    text = RNN_ENCODER(
        len(vocab),
        ninput=cfg["GANLAB"]["WORD_EMBEDDING_DIM"],
        nhidden=cfg["TEXT"]["EMBEDDING_DIM"],
        rnn_type=cfg["RNN_TYPE"],
    )
    try:
        text.load_state_dict(state["text_encoder"])
        net_g.load_state_dict(state["netG"])
        if "avg_param_G" in state:  # a training checkpoint: sample from the average
            with torch.no_grad():
                for p, a in zip(net_g.parameters(), state["avg_param_G"]):
                    p.copy_(a)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"--netG: '{path}' does not match its config ({first})") from None
    text.to(device).eval().requires_grad_(False)
    net_g.to(device).eval().requires_grad_(False)
    return Generator(cfg, vocab, text, net_g, device, state)


def encode_captions(
    vocab: Vocabulary, captions: list[str], max_words: int = MAX_WORDS
) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
    """``(ids [N, T] int64, lengths [N], unknown words of each caption)``.

    Unknown words are dropped (and reported); a caption with no known word is a UserError.
    """
    rows, unknown_all = [], []
    for i, caption in enumerate(captions):
        tokens = tokenize(caption)
        if not tokens:
            raise UserError(f"caption {i + 1}: empty (no word characters): {caption!r}")
        ids, unknown = vocab.encode(tokens)
        if not ids:
            raise UserError(
                f"caption {i + 1}: no word is in the vocabulary "
                f"(unknown: {', '.join(sorted(set(unknown)))})"
            )
        rows.append(ids[:max_words])
        unknown_all.append(unknown)
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, torch.tensor([len(r) for r in rows]), unknown_all


def noise_for(seeds: list[int], nz: int) -> torch.Tensor:
    """``[N, nz]``: row i drawn from ``torch.Generator().manual_seed(seeds[i])``.

    :func:`generate` uses the first ``Z_DIM`` columns as z and the rest as the CA noise,
    so an image depends only on its caption and its seed.
    """
    return torch.stack([torch.randn(nz, generator=torch.Generator().manual_seed(s)) for s in seeds])


def noise_dim(cfg: dict) -> int:
    """Columns of :func:`noise_for` that :func:`generate` needs: z and the CA noise."""
    return cfg["GAN"]["Z_DIM"] + cfg["GAN"]["CONDITION_DIM"]


def to_pil(image: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` in [-1, 1] -> a PIL RGB image."""
    return Image.fromarray(to_uint8(image).permute(1, 2, 0).numpy())


@torch.no_grad()
def generate(
    gen: Generator, ids: torch.Tensor, lens: torch.Tensor, noise: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(images per stage [N, 3, S, S], attention maps per attention stage [N, T, s, s])``.

    ``noise [N, Z_DIM + CONDITION_DIM]``: z, then the conditioning-augmentation noise.
    """
    ids, lens, noise = ids.to(gen.device), lens.to(gen.device), noise.to(gen.device)
    words, sent = gen.text(ids, lens)
    mask = attention_mask(ids, words.size(2))
    nz = gen.cfg["GAN"]["Z_DIM"]
    fakes, att_maps, _, _ = gen.net_g(noise[:, :nz], sent, words, mask, noise[:, nz:])
    return [f.cpu() for f in fakes], [a.cpu() for a in att_maps]


def save_samples(
    gen: Generator,
    captions: list[str],
    outdir: str | os.PathLike,
    seed: int = 100,
    batch_size: int = 16,
    attention: bool = False,
    grid: bool = True,
) -> list[Path]:
    """Write ``<outdir>/<i>.png`` per caption (last stage), ``grid.png`` and attention maps."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    ids, lens, unknown = encode_captions(gen.vocab, captions)
    paths, finals = [], []
    nz = noise_dim(gen.cfg)
    for start in range(0, len(captions), batch_size):
        stop = min(start + batch_size, len(captions))
        chunk_ids = ids[start:stop, : int(lens[start:stop].max())]
        noise = noise_for([seed + i for i in range(start, stop)], nz)
        fakes, att_maps = generate(gen, chunk_ids, lens[start:stop], noise)
        for j in range(stop - start):
            i = start + j
            path = outdir / f"{i:05d}.png"
            to_pil(fakes[-1][j]).save(path)
            paths.append(path)
            if attention and att_maps:
                words = gen.vocab.decode(chunk_ids[j, : int(lens[i])].tolist())
                rows = [attention_figure(fakes[-1][j], a[j, : len(words)], words) for a in att_maps]
                attention_sheet(rows).save(outdir / f"{i:05d}_attention.png")
        finals.append(fakes[-1])
    if grid:
        captioned_grid(torch.cat(finals)[:64], captions[:64]).save(outdir / "grid.png")
    (outdir / "captions.txt").write_text("".join(c.replace("\n", " ") + "\n" for c in captions))
    for i, words in enumerate(unknown):
        if words:
            print(f"note: caption {i + 1}: unknown words dropped: {', '.join(words)}")
    return paths
