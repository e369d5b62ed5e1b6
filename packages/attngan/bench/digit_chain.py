"""Where is the digit word lost? Linear probes and faithfulness at each link of the chain.

    uv run python packages/attngan/bench/digit_chain.py --damsm output/00000-damsm/damsm.pt \\
        [--netG output/00001-attngan/netG.pt ...] [--count 1000]

On the embedded digit scenes, prints one JSON line (chance: 10% for every probe):

1. ``text_sentence`` / ``text_digit_word``: a linear probe (multinomial logistic regression,
   fit on the train captions, accuracy on the test captions of single-digit scenes) predicting
   the named digit from the DAMSM sentence embedding, and from the bi-LSTM word feature at the
   digit word (nearly a function of the token itself: expect ~100%);
   ``text_sentence_untrained`` (control): the sentence probe with a random text encoder;
   ``text_sentence_pairs``: the sentence probe for the left and the right digit
   of two-digit scenes (mean of both).  ``image_code_real``: the same probe on the DAMSM
   image encoder's global code of the real scenes (fit on train scenes, scored on test
   scenes).
2. Per ``--netG``: ``ca_mu`` / ``ca_sample`` (and ``_pairs``): the probe on G's CA_NET output
   (the mean, and one sample ``mu + sigma * eps``) of each caption.
3. / 4. Per ``--netG`` and per stage: ``scene_faithfulness`` of G's images of ``--count`` test
   captions (caption ``i // N`` of scene ``i mod N``, noise seed ``--seed + i``: for the last
   stage the numbers of ``attngan-eval --metrics faithful``); ``real``: the same metric on the
   real test scenes resized to that stage's size (what the classifier can read at that size);
   ``image_code_fake``: the probe of ``image_code_real`` applied to G's images (does the
   DAMSM image side see the named digit in them?).

Single-digit scenes are 60% of the scenes; the probes' test sets are their 10 captions each.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from attngan.config import with_defaults
from attngan.damsm import load_damsm
from attngan.digits import digit_word_tables, make_scenes, scene_faithfulness
from attngan.evaluate import _codes, _test_items
from attngan.models import RNN_ENCODER
from attngan.sample import encode_captions, generate, load_generator, noise_dim, noise_for
from ganlab_common.checkpoint import load_checkpoint
from ganlab_common.metrics import load_digit_classifier

CHANCE = 0.10


def probe(train_x, train_y, test_x, test_y, weight_decay: float = 1e-4):
    """Test accuracy of a multinomial logistic regression (L-BFGS, standardised inputs)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    x, xt = (train_x - mean) / std, (test_x - mean) / std
    linear = torch.nn.Linear(x.size(1), 10)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=150, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(x), train_y) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return linear, mean, std, float((linear(xt).argmax(1) == test_y).float().mean())


def apply_probe(fitted, x):
    linear, mean, std, _ = fitted
    with torch.no_grad():
        return linear((x - mean) / std).argmax(1)


def captions_of(split: str, vocab, count: int | None = None):
    """Every caption of ``split``'s scenes: ``(ids, lens, scene index, scenes)``."""
    from attngan.digits import scene_captions

    scenes = make_scenes(split, count)[0]
    text, owner = [], []
    for i, scene in enumerate(scenes):
        for caption in scene_captions(scene):
            text.append(caption)
            owner.append(i)
    ids, lens, _ = encode_captions(vocab, text)
    return ids, lens, torch.tensor(owner), scenes


@torch.no_grad()
def encode_text(text_encoder, ids, lens, tables, labels, batch: int = 1000):
    """``(sentence [N, E], word feature at the named digit's word [N, E])`` (-1 labels: zeros)."""
    sents, words = [], []
    digit_of = tables[0]
    for start in range(0, ids.size(0), batch):
        chunk, chunk_lens = ids[start : start + batch], lens[start : start + batch]
        chunk = chunk[:, : int(chunk_lens.max())]
        w, s = text_encoder(chunk, chunk_lens)  # [B, E, T], [B, E]
        lab = labels[start : start + batch]
        # the last token naming the label (template "one small digit : a red 1 ..." has two)
        hit = (digit_of[chunk] == lab[:, None]) & (lab[:, None] >= 0)
        pos = torch.where(hit, torch.arange(chunk.size(1)), -1).max(1).values
        feat = w[torch.arange(chunk.size(0)), :, pos.clamp_min(0)]
        feat[pos < 0] = 0
        sents.append(s.float())
        words.append(feat.float())
    return torch.cat(sents), torch.cat(words)


def labels_of(scenes, owner, which: int, count: int):
    """Per caption: the label of digit ``which`` if its scene has ``count`` digits, else -1."""
    table = torch.tensor([
        s.digits[which].label if len(s.digits) == count else -1 for s in scenes
    ])  # fmt: skip
    return table[owner]


def real_scenes(split: str, count: int | None = None) -> torch.Tensor:
    """``[N, 3, 64, 64]`` in [-1, 1]: the rendered scenes of ``split``."""
    from attngan.digits import render_scene

    scenes, digits = make_scenes(split, count)
    rgb = torch.stack([torch.from_numpy(render_scene(s, digits)) for s in scenes])
    return rgb.permute(0, 3, 1, 2).float() / 127.5 - 1


def text_links(text_encoder, vocab, data: dict, count: int | None) -> dict:
    """Link 1 (text side) probes; fills ``data`` with the features link 2 reuses."""
    tables = digit_word_tables(list(vocab.words))
    out = {}
    for split in ("train", "test"):
        ids, lens, owner, scenes = captions_of(split, vocab, count)
        single = labels_of(scenes, owner, 0, 1)
        left, right = labels_of(scenes, owner, 0, 2), labels_of(scenes, owner, 1, 2)
        sent, word = encode_text(text_encoder, ids, lens, tables, single)
        data[split] = dict(sent=sent, word=word, single=single, left=left, right=right,
                           ids=ids, lens=lens)
    tr, te = data["train"], data["test"]
    for name, key in (("text_sentence", "sent"), ("text_digit_word", "word")):
        a, b = tr["single"] >= 0, te["single"] >= 0
        out[name] = probe(tr[key][a], tr["single"][a], te[key][b], te["single"][b])[-1]
    out["text_sentence_pairs"] = pair_probe(tr["sent"], te["sent"], tr, te)
    # control: the same sentence probe with an untrained (random, seed 0) text encoder
    torch.manual_seed(0)
    random_encoder = RNN_ENCODER(
        len(vocab), ninput=text_encoder.ninput, nhidden=2 * text_encoder.nhidden,
        rnn_type=text_encoder.rnn_type,
    ).eval()  # fmt: skip
    sents = {split: encode_text(random_encoder, d["ids"], d["lens"], tables, d["single"])[0]
             for split, d in data.items()}
    a, b = tr["single"] >= 0, te["single"] >= 0
    out["text_sentence_untrained"] = probe(
        sents["train"][a], tr["single"][a], sents["test"][b], te["single"][b]
    )[-1]
    return out


def pair_probe(train_x, test_x, tr: dict, te: dict) -> float:
    accs = []
    for side in ("left", "right"):
        a, b = tr[side] >= 0, te[side] >= 0
        accs.append(probe(train_x[a], tr[side][a], test_x[b], te[side][b])[-1])
    return sum(accs) / 2


def image_link(image_encoder, count: int | None) -> tuple[dict, tuple]:
    """Link 1 (image side): the probe on the DAMSM image code of real scenes."""
    feats, labels = {}, {}
    for split in ("train", "test"):
        scenes = make_scenes(split, count)[0]
        keep = torch.tensor([len(s.digits) == 1 for s in scenes])
        feats[split] = _codes(image_encoder, real_scenes(split, count)[keep], "cpu", 200)
        labels[split] = torch.tensor([s.digits[0].label for s in scenes])[keep]
    fitted = probe(feats["train"], labels["train"], feats["test"], labels["test"])
    return {"image_code_real": fitted[-1]}, fitted


@torch.no_grad()
def generator_links(path: str, enc, data: dict, image_probe, count: int, seed: int) -> dict:
    """Links 2-4 for one generator (trained with ``enc``, the DAMSM of link 1)."""
    gen = load_generator(path, torch.device("cpu"))
    if list(gen.vocab.words) != list(enc.vocab.words) or any(
        not torch.equal(a, b)
        for a, b in zip(gen.text.state_dict().values(), enc.text.state_dict().values())
    ):
        raise SystemExit(f"--netG {path}: not trained with this --damsm (text encoder differs)")
    ncf = gen.cfg["GAN"]["CONDITION_DIM"]
    out: dict = {"netG": path, "stages": []}
    # link 2: CA_NET (the text encoder is the DAMSM's, frozen in training: same sentences)
    codes = {}
    for split in ("train", "test"):
        sent = data[split]["sent"]
        eps = torch.randn(sent.size(0), ncf, generator=torch.Generator().manual_seed(seed))
        c, mu, _ = gen.net_g.ca_net(sent, eps)
        codes[split] = {"ca_mu": mu, "ca_sample": c}
    tr, te = data["train"], data["test"]
    a, b = tr["single"] >= 0, te["single"] >= 0
    for key in ("ca_mu", "ca_sample"):
        x, xt = codes["train"][key], codes["test"][key]
        out[key] = probe(x[a], tr["single"][a], xt[b], te["single"][b])[-1]
        out[f"{key}_pairs"] = pair_probe(x, xt, tr, te)
    # links 3/4: each stage's images, as attngan-eval --metrics faithful draws them
    items, records = _test_items(gen.cfg, None, count)
    ids, lens, _ = encode_captions(gen.vocab, [" ".join(t) for t, _ in items])
    per_stage: list[list[torch.Tensor]] = []
    for start in range(0, count, 50):
        stop = min(start + 50, count)
        noise = noise_for([seed + i for i in range(start, stop)], noise_dim(gen.cfg))
        chunk = ids[start:stop, : int(lens[start:stop].max())]
        per_stage.append(generate(gen, chunk, lens[start:stop], noise)[0])
    stages = [torch.cat(s) for s in zip(*per_stage)]
    scenes = make_scenes("test", len(records))[0]
    chosen = [scenes[i % len(scenes)] for i in range(count)]
    classifier = load_digit_classifier("cpu")
    real = real_scenes("test")[[i % len(scenes) for i in range(count)]]
    single = torch.tensor([len(s.digits) == 1 for s in chosen])
    labels = torch.tensor([s.digits[0].label for s in chosen])
    for images in stages:
        size = images.size(-1)
        row = {"size": size, **scene_faithfulness(images, chosen, classifier)}
        small = F.interpolate(real, size=(size, size), mode="bilinear", antialias=True)
        row["real"] = scene_faithfulness(small, chosen, classifier)
        pred = apply_probe(image_probe, _codes(enc.image, images[single], "cpu", 200))
        row["image_code_fake"] = float((pred == labels[single]).double().mean())
        out["stages"].append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--damsm", required=True, help="damsm.pt of attngan-pretrain-damsm")
    parser.add_argument("--netG", action="append", default=[], help="netG.pt or ckpt-*.pt")
    parser.add_argument("--count", type=int, default=1000, help="test captions for G's images")
    parser.add_argument("--seed", type=int, default=100, help="noise seeds (attngan-eval's)")
    parser.add_argument(
        "--scenes",
        type=int,
        default=None,
        help="probe on the first N scenes per split only (smoke tests; default: all 4,000 / 1,000)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.time()
    state = load_checkpoint(args.damsm, map_location="cpu", flag="--damsm")
    enc = load_damsm(args.damsm, with_defaults(state["config"]), torch.device("cpu"), quiet=True)
    result: dict = {"chance": CHANCE, "damsm": args.damsm}
    data: dict = {}
    result.update(text_links(enc.text, enc.vocab, data, args.scenes))
    image, fitted = image_link(enc.image, args.scenes)
    result.update(image)
    result["generators"] = [
        generator_links(p, enc, data, fitted, args.count, args.seed) for p in args.netG
    ]
    result["seconds"] = round(time.time() - start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
