import pytest
import torch

from attngan.backbones import build_backbone
from attngan.config import load_config
from attngan.models import (
    CNN_ENCODER,
    D_NET,
    RNN_ENCODER,
    GlobalAttentionGeneral,
    attention_mask,
    build_discriminators,
    build_generator,
    random_translate,
)


def test_rnn_encoder_shapes_and_padding_invariance():
    torch.manual_seed(0)
    enc = RNN_ENCODER(20, ninput=8, nhidden=16).eval()
    caps = torch.tensor([[3, 4, 5, 6, 0, 0], [7, 8, 0, 0, 0, 0]])
    lens = torch.tensor([4, 2])
    words, sent = enc(caps, lens)
    assert words.shape == (2, 16, 4) and sent.shape == (2, 16)  # trimmed to the longest
    alone_words, alone_sent = enc(caps[1:, :2], lens[1:])
    torch.testing.assert_close(alone_sent, sent[1:])
    torch.testing.assert_close(alone_words, words[1:, :, :2])
    assert words[1, :, 2:].abs().max() == 0  # padded positions are zero


def test_cnn_encoder_projects_regions_and_code_and_saves_only_projections():
    enc = CNN_ENCODER(32, build_backbone("tiny"))
    regions, code = enc(torch.rand(3, 3, 40, 40) * 2 - 1)
    assert regions.shape == (3, 32, 8, 8) and code.shape == (3, 32)
    frozen = CNN_ENCODER(32, build_backbone("tiny"))
    frozen.train_backbone = False  # what an Inception backbone does
    assert set(frozen.projection_state()) == {"emb_features.weight", "emb_cnn_code.weight",
                                              "emb_cnn_code.bias"}  # fmt: skip


def test_tiny_backbone_is_trained_by_damsm_and_saved_with_the_projections():
    """The random tiny CNN is trainable (a deviation for the stand-in only) and round-trips."""
    enc = CNN_ENCODER(32, build_backbone("tiny"))
    assert all(p.requires_grad for p in enc.backbone.parameters())
    state = enc.projection_state()
    assert any(k.startswith("backbone.") for k in state)
    with torch.no_grad():
        for p in enc.backbone.parameters():
            p.add_(1.0)
    other = CNN_ENCODER(32, build_backbone("tiny"))
    other.load_projection_state(enc.projection_state())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(other(x), enc(x))
    legacy = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    fresh = CNN_ENCODER(32, build_backbone("tiny"))
    fresh.load_projection_state(legacy)  # an old file: the fixed-seed init stays
    init = build_backbone("tiny").local[0].weight
    torch.testing.assert_close(fresh.backbone.local[0].weight, init)


@pytest.mark.parametrize("dcgan", [False, True])
def test_generator_stage_shapes(dcgan, tiny_gan):
    cfg = load_config("bird_attn2", [*tiny_gan, f"GAN.B_DCGAN={dcgan}"])
    net = build_generator(cfg)
    words, sent = torch.randn(2, 32, 5), torch.randn(2, 32)
    mask = torch.tensor([[False] * 5, [False, False, True, True, True]])
    fakes, maps, mu, logvar = net(torch.randn(2, 8), sent, words, mask)
    sizes = [f.shape[-1] for f in fakes]
    assert sizes == ([64] if dcgan else [16, 32, 64])
    assert all(f.shape[:2] == (2, 3) and f.abs().max() <= 1 for f in fakes)
    assert [m.shape for m in maps] == [(2, 5, 16, 16), (2, 5, 32, 32)]
    assert mu.shape == logvar.shape == (2, 8)
    assert len(build_discriminators(cfg)) == (1 if dcgan else 3)


@pytest.mark.parametrize("size", [16, 32, 64, 128, 256])
def test_discriminator_heads(size):
    net = D_NET(ndf=2, nef=8, size=size)
    h = net(torch.randn(2, 3, size, size))
    assert h.shape == (2, 16, 4, 4)
    assert net(h, head="uncond").shape == (2,)
    assert net(h, torch.randn(2, 8), head="cond").shape == (2,)
    assert D_NET(ndf=2, nef=8, size=size, b_jcu=False)(h, head="uncond") is None
    with pytest.raises(ValueError, match="head"):
        net(h, head="logits")


def test_random_translate_shifts_whole_images_and_fills_black():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 8, 8, requires_grad=True)  # values in (0, 1): -1 marks the fill
    y = random_translate(x, 0.25)  # up to 2 px each way
    assert y.shape == x.shape
    seen = set()
    for i in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.allclose(
                y[i, :, max(dy, 0) : 8 + min(dy, 0), max(dx, 0) : 8 + min(dx, 0)],
                x[i, :, max(-dy, 0) : 8 + min(-dy, 0), max(-dx, 0) : 8 + min(-dx, 0)],
                atol=1e-6,
            )
        ]
        assert len(found) == 1
        dy, dx = found[0]
        seen.add((dy, dx))
        assert int((y[i] < -0.99).sum()) == 3 * (8 * 8 - (8 - abs(dy)) * (8 - abs(dx)))
    assert len(seen) > 10  # each image its own offset
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert random_translate(x, 0.0) is x


def test_discriminator_translates_only_in_training():
    cfg = load_config("digits_attn2", ["GANLAB.D_TRANSLATE=0.125", "GAN.DF_DIM=2"])
    net = build_discriminators(cfg)[-1]
    assert net.translate == 0.125
    x = torch.randn(2, 3, net.size, net.size)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, net(x))


def test_original_discriminator_layout_for_256():
    names = [type(m).__name__ for m in D_NET(ndf=2, nef=8, size=256).img_code]
    # conv+lrelu, 3 downBlocks (= encode_image_by_16times), 2 more downBlocks, 2 Block3x3
    assert names == ["Conv2d", "LeakyReLU"] + ["Sequential"] * 7


def _attention(mask_bug: bool):
    torch.manual_seed(0)
    att = GlobalAttentionGeneral(idf=4, cdf=6, mask_bug=mask_bug)
    h = torch.randn(3, 4, 2, 2)  # Q = 4 pixels, B = 3
    words = torch.randn(3, 6, 5)
    captions = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 0, 0, 0], [1, 2, 3, 0, 0]])
    mask = attention_mask(captions, 5)
    return att, h, words, mask


def test_attention_gives_padding_zero_weight():
    att, h, words, mask = _attention(mask_bug=False)
    context, attn = att(h, words, mask)
    assert context.shape == (3, 4, 2, 2) and attn.shape == (3, 5, 2, 2)
    weights = attn.flatten(2)  # [B, T, Q]
    assert torch.all(weights.masked_select(mask[:, :, None].expand_as(weights)) == 0)
    torch.testing.assert_close(weights.sum(1), torch.ones(3, 4))
    # Each sample's result equals running it alone with its own length.
    alone_ctx, _ = att(h[1:2], words[1:2, :, :2], mask[1:2, :2])
    torch.testing.assert_close(alone_ctx, context[1:2])


def test_faithful_mask_bug_tiles_the_wrong_sample():
    att, h, words, mask = _attention(mask_bug=True)
    _, attn = att(h, words, mask)
    weights = attn.flatten(2).transpose(1, 2).reshape(3 * 4, 5)  # rows b * Q + q
    for row in range(12):
        wrong = mask[row % 3]  # mask.repeat(Q, 1): row r gets sample r mod B
        assert torch.all(weights[row][wrong] == 0)
    fixed, _, _, _ = _attention(mask_bug=False)
    fixed.load_state_dict(att.state_dict())
    assert not torch.allclose(fixed(h, words, mask)[1], attn)
    same = torch.zeros_like(mask)  # equal lengths: both variants agree
    torch.testing.assert_close(fixed(h, words, same)[1], att(h, words, same)[1])
