"""Training and sampling speed of AttnGAN stage configurations (synthetic batches).

    uv run python packages/attngan/bench/speed.py [--device cpu|cuda] [--threads N]

One training iteration = text encoding, G forward, every D update, the G update with the
DAMSM loss on the last stage (through the frozen image encoder), the EMA update -- the
loop of ``attngan.train`` without data loading.  Prints one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from attngan.config import load_config
from attngan.damsm import build_encoders
from attngan.losses import discriminator_loss, generator_loss, kl_loss
from attngan.models import attention_mask, build_discriminators, build_generator, stage_sizes
from attngan.text import Vocabulary

CONFIGS = {
    # name: (preset, overrides)
    "digits_attn2 32-64 (tiny enc)": ("digits_attn2", ["GANLAB.IMAGE_ENCODER=tiny"]),
    "digits_attn2 32-64 (FID Inception enc)": ("digits_attn2", ["GANLAB.IMAGE_ENCODER=fid"]),
    "bird_attn2 64-128-256 (tiny enc)": ("bird_attn2", ["GANLAB.IMAGE_ENCODER=tiny"]),
    "bird_attn2 64-128-256 (FID Inception enc)": ("bird_attn2", ["GANLAB.IMAGE_ENCODER=fid"]),
}


def step_fn(cfg: dict, device: torch.device):
    vocab = Vocabulary.build([[f"w{i}" for i in range(50)]])
    enc = build_encoders(cfg, vocab, quiet=True)
    enc.text.to(device).eval().requires_grad_(False)
    enc.image.to(device).eval().requires_grad_(False)
    net_g = build_generator(cfg).to(device)
    nets_d = [d.to(device) for d in build_discriminators(cfg)]
    opt_g = torch.optim.Adam(net_g.parameters(), 2e-4, betas=(0.5, 0.999))
    opts_d = [torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999)) for d in nets_d]
    avg = [p.detach().clone() for p in net_g.parameters()]
    b, t = cfg["TRAIN"]["BATCH_SIZE"], cfg["TEXT"]["WORDS_NUM"]
    gen = torch.Generator().manual_seed(0)
    caps = torch.randint(1, len(vocab), (b, t), generator=gen).to(device)
    lens = torch.randint(4, t + 1, (b,), generator=gen).sort(descending=True)[0].to(device)
    caps = caps * (torch.arange(t, device=device)[None] < lens[:, None])
    reals = [torch.rand(b, 3, s, s, device=device) * 2 - 1 for s in stage_sizes(cfg)]
    labels = torch.arange(b, device=device)

    def step() -> None:
        with torch.no_grad():
            words, sent = enc.text(caps, lens)
        mask = attention_mask(caps, words.size(2))
        fakes, _, mu, logvar = net_g(
            torch.randn(b, cfg["GAN"]["Z_DIM"], device=device), sent, words, mask
        )
        for d, o, r, f in zip(nets_d, opts_d, reals[-len(nets_d) :], fakes[-len(nets_d) :]):
            o.zero_grad()
            discriminator_loss(d, r, f, sent).backward()
            o.step()
        err, _ = generator_loss(
            nets_d, enc.image, fakes, words, sent, labels, lens, None, cfg["TRAIN"]["SMOOTH"]
        )
        opt_g.zero_grad()
        (err + kl_loss(mu, logvar)).backward()
        opt_g.step()
        with torch.no_grad():
            for p, a in zip(net_g.parameters(), avg):
                a.mul_(0.999).add_(p, alpha=0.001)

    def sample() -> None:
        net_g.eval()
        with torch.no_grad():
            words, sent = enc.text(caps[:1], lens[:1])
            net_g(
                torch.randn(1, cfg["GAN"]["Z_DIM"], device=device),
                sent,
                words,
                attention_mask(caps[:1], words.size(2)),
            )
        net_g.train()

    return step, sample


def timed(fn, device, repeats: int) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--batch", type=int, default=0, help="override TRAIN.BATCH_SIZE")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="substring of the configurations to run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for name, (preset, overrides) in CONFIGS.items():
        if args.only not in name:
            continue
        extra = [f"TRAIN.BATCH_SIZE={args.batch}"] if args.batch else []
        cfg = load_config(preset, overrides + extra)
        step, sample = step_fn(cfg, device)
        it_s = 1.0 / timed(step, device, args.repeats)
        latency = timed(sample, device, args.repeats * 3)
        print(
            json.dumps(
                {
                    "config": name,
                    "device": str(device),
                    "threads": torch.get_num_threads(),
                    "batch": cfg["TRAIN"]["BATCH_SIZE"],
                    "sizes": stage_sizes(cfg),
                    "train_it_per_s": round(it_s, 3),
                    "images_per_s": round(it_s * cfg["TRAIN"]["BATCH_SIZE"], 2),
                    "sample_latency_ms": round(latency * 1000, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
