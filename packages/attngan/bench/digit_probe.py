"""Who sees the named digit? D, the DAMSM and the held-out classifier on one checkpoint.

    uv run python packages/attngan/bench/digit_probe.py \
        output/00001-attngan/checkpoints/ckpt-016000.pt [--count 500]

For test captions and the same captions with every digit word moved to another digit
(``attngan.digits.swap_digits``), prints one JSON line:

* ``d<i>_real`` / ``d<i>_fake``: how often each conditional D head scores (image, true caption)
  above (image, digit-swapped caption), on real test scenes and on G's images of the true
  caption (D in training mode, batches of 16, as it runs in training);
* ``damsm_fake``: the same for the DAMSM sentence similarity of G's images;
* ``fake_change``: mean absolute pixel change of G's image when only the digit word changes
  (same noise), and ``classifier_digit``: the held-out classifier's digit accuracy
  (``scene_faithfulness``) on G's images.

If D and the DAMSM tell the true caption from the swapped one on G's images but the
classifier does not find the digit, G encodes the digit in features only its critics read.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from attngan.digits import digit_word_tables, make_scenes, scene_faithfulness, swap_digits
from attngan.evaluate import _codes, _real_images, _test_items
from attngan.models import build_discriminators
from attngan.sample import encode_captions, generate, load_generator, noise_dim, noise_for
from ganlab_common.metrics import load_digit_classifier


def _batched(fn, x: torch.Tensor, size: int = 16) -> torch.Tensor:
    return torch.cat([fn(chunk) for chunk in x.split(size)])


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a training checkpoint (ckpt-*.pt: it holds each D)")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    gen = load_generator(args.checkpoint, torch.device("cpu"))
    nets_d = build_discriminators(gen.cfg)
    for i, net_d in enumerate(nets_d):
        net_d.load_state_dict(state[f"netD{i}"])
        net_d.train()  # BatchNorm with batch statistics, as in training
    items, records = _test_items(gen.cfg, None, args.count)
    ids, lens, _ = encode_captions(gen.vocab, [" ".join(t) for t, _ in items])
    ids = ids[:, : int(lens.max())]
    tables = digit_word_tables(list(gen.vocab.words))
    swapped = swap_digits(ids, tables, 1, torch.Generator().manual_seed(args.seed))[:, 0]
    sent, sent_swapped = gen.text(ids, lens)[1], gen.text(swapped, lens)[1]
    noise = noise_for(list(range(args.count)), noise_dim(gen.cfg))

    def draw(caption_ids) -> list[torch.Tensor]:  # one [N, 3, S, S] per stage
        chunks = [
            generate(gen, caption_ids[i : i + 50], lens[i : i + 50], noise[i : i + 50])[0]
            for i in range(0, args.count, 50)
        ]
        return [torch.cat(stage) for stage in zip(*chunks)]

    stages, fake_swapped = draw(ids), draw(swapped)[-1]
    fake = stages[-1]
    result: dict = {"checkpoint": args.checkpoint, "count": args.count}
    for i, (net_d, own) in enumerate(zip(nets_d, stages[-len(nets_d) :])):
        real = _real_images(gen.cfg, records, gen.vocab, args.count, net_d.size)
        for name, images in (("real", real), ("fake", own)):
            h = _batched(net_d, images)
            true = net_d.COND_DNET(h, sent)
            other = net_d.COND_DNET(h, sent_swapped)
            result[f"d{i}_{name}"] = (true > other).float().mean().item()
    code = F.normalize(_codes(gen.encoders(quiet=True).image, fake, "cpu", 50), dim=1)
    true = (code * F.normalize(sent, dim=1)).sum(1)
    other = (code * F.normalize(sent_swapped, dim=1)).sum(1)
    result["damsm_fake"] = (true > other).float().mean().item()
    result["fake_change"] = (fake - fake_swapped).abs().mean().item()
    scenes = make_scenes("test")[0]
    chosen = [scenes[i % len(scenes)] for i in range(args.count)]
    scores = scene_faithfulness(fake, chosen, load_digit_classifier("cpu"))
    result["classifier_digit"] = scores["digit_accuracy"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
