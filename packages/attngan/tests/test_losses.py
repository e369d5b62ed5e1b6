import math

import pytest
import torch

from attngan.config import load_config
from attngan.damsm import build_encoders, to_device
from attngan.data import TextImageDataset, build_vocabulary, load_records
from attngan.digits import NAMES, digit_word_tables, swap_digits
from attngan.evaluate import r_precision
from attngan.losses import (
    func_attention,
    hard_negative_loss,
    kl_loss,
    sent_loss,
    sentence_scores,
    word_scores,
    words_loss,
)
from attngan.models import stage_sizes


def test_func_attention_normalises_over_regions():
    torch.manual_seed(0)
    weighted, attn = func_attention(torch.randn(2, 8, 3), torch.randn(2, 8, 4, 4), gamma1=4.0)
    assert weighted.shape == (2, 8, 3) and attn.shape == (2, 3, 4, 4)
    torch.testing.assert_close(attn.flatten(2).sum(2), torch.ones(2, 3))


def test_sentence_loss_prefers_matching_pairs_and_masks_same_class():
    codes = torch.eye(4)
    labels = torch.arange(4)
    good = sum(sent_loss(codes, codes, labels, None, 10.0))
    bad = sum(sent_loss(codes, codes.roll(1, 0), labels, None, 10.0))
    assert good < bad
    # Same class (0 and 1): the off-diagonal pair is excluded, so it cannot hurt the loss.
    confusing = torch.tensor([[1.0, 0, 0, 0], [1.0, 0.1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    masked = sent_loss(confusing, confusing, labels, torch.tensor([7, 7, 8, 9]), 10.0)
    unmasked = sent_loss(confusing, confusing, labels, None, 10.0)
    assert masked[0] < unmasked[0] and masked[1] < unmasked[1]


def test_word_scores_match_the_definition_for_one_pair():
    torch.manual_seed(1)
    img, words = torch.randn(1, 6, 2, 2), torch.randn(1, 6, 3)
    scores, maps = word_scores(img, words, torch.tensor([3]), gamma1=4.0, gamma2=5.0)
    weighted, _ = func_attention(words, img, 4.0)
    cos = torch.nn.functional.cosine_similarity(words, weighted, dim=1)
    assert scores.shape == (1, 1) and maps[0].shape == (1, 3, 2, 2)
    assert math.isclose(scores.item(), torch.log(torch.exp(5.0 * cos).sum()).item(), rel_tol=1e-5)
    w0, w1, _ = words_loss(img, words, torch.tensor([0]), torch.tensor([3]), None, 4.0, 5.0, 10.0)
    assert w0.item() == pytest.approx(0.0) and w1.item() == pytest.approx(0.0)  # one pair


def test_kl_is_zero_for_the_prior():
    assert kl_loss(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    assert kl_loss(torch.ones(3, 4), torch.zeros(3, 4)).item() > 0


def test_damsm_learns_to_match_on_the_fixture(cub_dir, tiny_damsm):
    """A few steps on the tiny CUB fixture: matching pairs end up scoring above the others."""
    torch.manual_seed(0)
    cfg = load_config("DAMSM/bird", tiny_damsm)
    rec = load_records(cfg, cub_dir, "train")
    vocab = build_vocabulary(cub_dir, [rec])
    data = TextImageDataset(rec, vocab, stage_sizes(cfg), 12, train=False)
    enc = build_encoders(cfg, vocab)
    batch = to_device(torch.utils.data.default_collate([data[i] for i in range(8)]), "cpu")
    params = [p for m in (enc.text, enc.image) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=0.002, betas=(0.5, 0.999))  # the tiny CNN trains too
    enc.text.eval()  # no dropout: a deterministic check

    def scores():
        regions, code = enc.image(batch["images"][-1])
        _, sent = enc.text(batch["caption"], batch["cap_len"])
        return regions, code, sent

    other_class = batch["class_id"][:, None] != batch["class_id"][None, :]

    def margin(code, sent):
        """Mean cosine of matching pairs minus that of pairs of different classes."""
        s = sentence_scores(code, sent)
        return (s.diagonal().mean() - s[other_class].mean()).item()

    with torch.no_grad():
        before = margin(*scores()[1:])
    labels = torch.arange(8)
    for _ in range(40):
        regions, code, sent = scores()
        words, _ = enc.text(batch["caption"], batch["cap_len"])
        w0, w1, _ = words_loss(regions, words, labels, batch["cap_len"], None, 4.0, 5.0, 10.0)
        s0, s1 = sent_loss(code, sent, labels, None, 10.0)
        opt.zero_grad()
        (w0 + w1 + s0 + s1).backward()
        opt.step()
    with torch.no_grad():
        _, code, sent = scores()
        after = margin(code, sent)
        best = sentence_scores(code, sent).argmax(1)  # the best caption of each image
    assert after > before + 0.05
    assert torch.equal(batch["class_id"][best], batch["class_id"])  # of the right class


def test_r_precision_on_hand_built_cases():
    torch.manual_seed(0)
    codes = torch.randn(200, 16)
    mean, std, folds = r_precision(codes, codes, folds=10)
    assert mean == 1.0 and std == 0.0 and len(folds) == 10
    # Text codes unrelated to the images: about 1 in 100 by chance.
    mean, _, _ = r_precision(codes, torch.randn(200, 16), folds=4)
    assert mean < 0.1
    # Exactly one decoy beats every true caption: no hit at all.
    img = torch.zeros(150, 2)
    img[:, 0] = 1
    txt = torch.tensor([[0.6, 0.8]]).repeat(150, 1)
    txt[0] = torch.tensor([1.0, 0.0])  # the perfect caption belongs to image 0 only
    mean, _, _ = r_precision(img, txt, folds=1, candidates=150)
    assert mean == pytest.approx(1 / 150)
    # Same-class captions are never decoys: two classes of 100 identical codes, still 100 %.
    classes = torch.arange(200) // 100
    twins = torch.nn.functional.one_hot(classes, 2).float()
    mean, _, _ = r_precision(twins, twins, classes, folds=2)
    assert mean == 1.0
    with pytest.raises(Exception, match="other classes"):
        r_precision(twins[:150], twins[:150], classes[:150], folds=1)


def test_swap_digits_names_other_digits_and_keeps_the_rest():
    words = ["<end>", "a", "red", "and", *NAMES, *(str(d) for d in range(10))]
    tables = digit_word_tables(words)
    seven, two = words.index("seven"), words.index("2")
    caps = torch.tensor([[1, 2, seven, 0], [two, 3, words.index("nine"), 0]])
    out = swap_digits(caps, tables, 5, torch.Generator().manual_seed(0))  # [2, 5, 4]
    assert out.shape == (2, 5, 4)
    assert (out[:, :, [0, 1, 3]][0] == caps[0, [0, 1, 3]]).all()  # non-digit tokens kept
    assert (out[0, :, 2] != seven).all() and tables[0][out[0, :, 2]].ge(0).all()
    assert tables[1][out[0, :, 2]].eq(0).all()  # a name stays a name
    assert tables[1][out[1, :, 0]].eq(1).all() and (out[1, :, 0] != two).all()
    assert (out[1, :, 1] == 3).all()


def test_hard_negative_loss_prefers_the_true_caption():
    code = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    neg = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])  # [B, K=1, E]
    good = hard_negative_loss(code, code, neg, 10.0)
    bad = hard_negative_loss(code, neg[:, 0], code[:, None], 10.0)
    assert good.item() == pytest.approx(math.log(1 + math.exp(-10)), rel=1e-3)
    assert bad.item() == pytest.approx(10 + math.log(1 + math.exp(-10)), rel=1e-4)


class _DotD(torch.nn.Module):
    """A stand-in D: features = images flattened; cond logit = <features, c>; no uncond head."""

    def forward(self, x, c=None, head="code"):
        if head == "cond":
            return (x * c).sum(1)
        return None if head == "uncond" else x.flatten(1)


def test_discriminator_loss_with_hard_wrong_pairs():
    from attngan.losses import discriminator_loss

    torch.manual_seed(0)
    real, fake, cond, hard = (torch.randn(4, 3) for _ in range(4))
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def term(f, c, target):
        logits = (f * c).sum(1)
        return bce(logits, torch.full_like(logits, target))

    wrong = term(real[:3], cond[1:], 0.0)
    plain = term(real, cond, 1.0) + (term(fake, cond, 0.0) + wrong) / 2
    with_hard = term(real, cond, 1.0) + (term(fake, cond, 0.0)
                                         + (wrong + term(real, hard, 0.0)) / 2) / 2
    d = _DotD()
    torch.testing.assert_close(discriminator_loss(d, real, fake, cond), plain)
    torch.testing.assert_close(discriminator_loss(d, real, fake, cond, hard), with_hard)


def test_generator_loss_weights_the_hard_negative_term():
    from attngan.losses import generator_loss

    torch.manual_seed(0)
    fake, sent, negatives = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 2, 8)
    words, regions = torch.randn(4, 8, 5), torch.randn(4, 8, 2, 2)
    smooth = {"GAMMA1": 4.0, "GAMMA2": 5.0, "GAMMA3": 10.0, "LAMBDA": 2.0}
    args = ([_DotD()], lambda x: (regions, x), [fake], words, sent, torch.arange(4),
            torch.tensor([5, 4, 3, 2]), None, smooth, negatives)  # fmt: skip
    once, logs_once = generator_loss(*args)
    thrice, logs_thrice = generator_loss(*args, hard_weight=3.0)
    h = hard_negative_loss(fake, sent, negatives, 10.0).item()
    assert logs_once["h_loss"] == pytest.approx(2.0 * h, rel=1e-5)
    assert logs_thrice["h_loss"] == pytest.approx(6.0 * h, rel=1e-5)
    assert (thrice - once).item() == pytest.approx(4.0 * h, rel=1e-4)


def test_d_and_g_losses_run_under_ddp_and_match_the_bare_module(tmp_path):
    """D is only called, never read (``net_d.COND_DNET`` fails on the wrapper): one gloo rank
    of real DDP (default find_unused_parameters=False) gives the bare D's losses and grads."""
    import copy

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from attngan.losses import discriminator_loss, generator_loss
    from attngan.models import D_NET, weights_init

    torch.manual_seed(0)
    bare = D_NET(ndf=2, nef=8, size=16)
    bare.apply(weights_init)
    twin = copy.deepcopy(bare)
    real, fake = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    cond, hard = torch.randn(4, 8), torch.randn(4, 8)
    words, regions = torch.randn(4, 8, 5), torch.randn(4, 8, 2, 2)
    smooth = {"GAMMA1": 4.0, "GAMMA2": 5.0, "GAMMA3": 10.0, "LAMBDA": 2.0}

    def steps(net_d):  # two iterations of a D step then a G step, as in train.py
        out = []
        for _ in range(2):
            d_loss = discriminator_loss(net_d, real, fake, cond, hard)
            net_d.zero_grad(set_to_none=True)
            d_loss.backward()
            grads = [p.grad.clone() for p in net_d.parameters()]
            g_loss, _ = generator_loss([net_d], lambda x: (regions, x.flatten(1)[:, :8]), [fake],
                                       words, cond, torch.arange(4), torch.tensor([5, 4, 3, 2]),
                                       None, smooth)  # fmt: skip
            net_d.zero_grad(set_to_none=True)
            g_loss.backward()
            out.append((d_loss.detach(), grads, g_loss.detach(),
                        [p.grad.clone() for p in net_d.parameters()]))
        return out

    expected = steps(bare)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        got = steps(DistributedDataParallel(twin))
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(got, expected)
