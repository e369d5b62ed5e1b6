"""AttnGAN networks (``model.py`` and ``GlobalAttention.py`` of the original).

Module and attribute names follow the original, so its state_dicts map onto ours
(``ca_net.fc``, ``h_net1.upsample1``, ``h_net2.att.conv_context``, ``img_net1.img`` ...).

Shapes use B = batch, T = words in the batch (the longest caption), E = EMBEDDING_DIM,
ngf = GF_DIM, ndf = DF_DIM.  Images are in [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = [
    "GLU",
    "RNN_ENCODER",
    "CNN_ENCODER",
    "CA_NET",
    "GlobalAttentionGeneral",
    "attention_mask",
    "G_NET",
    "D_NET",
    "weights_init",
    "build_generator",
    "build_discriminators",
]


class GLU(nn.Module):
    """Gated linear unit over channels: ``x[:, :C/2] * sigmoid(x[:, C/2:])``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nc = x.size(1)
        if nc % 2:
            raise ValueError(f"GLU needs an even number of channels, got {nc}")
        nc //= 2
        return x[:, :nc] * torch.sigmoid(x[:, nc:])


def conv1x1(in_planes: int, out_planes: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, padding=0, bias=bias)


def conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)


def upBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    """Nearest x2 -> conv3x3 (2 out) -> BN -> GLU: ``[B, in, H, W] -> [B, out, 2H, 2W]``."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        conv3x3(in_planes, out_planes * 2),
        nn.BatchNorm2d(out_planes * 2),
        GLU(),
    )


class ResBlock(nn.Module):
    """conv3x3 (2C) -> BN -> GLU -> conv3x3 (C) -> BN, plus the input."""

    def __init__(self, channel_num: int):
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(channel_num, channel_num * 2),
            nn.BatchNorm2d(channel_num * 2),
            GLU(),
            conv3x3(channel_num, channel_num),
            nn.BatchNorm2d(channel_num),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


# ---------------------------------------------------------------------------------------------
# Text encoder


class RNN_ENCODER(nn.Module):
    """Embedding (U(+-0.1)) -> dropout -> 1-layer bi-LSTM over packed sequences.

    ``forward(captions [B, T0] int64, cap_lens [B]) -> (words [B, nhidden, T], sent [B, nhidden])``
    where ``T = max(cap_lens)`` (``pad_packed_sequence`` trims to the batch's longest caption)
    and ``sent`` concatenates both directions' last hidden states.
    """

    def __init__(
        self,
        ntoken: int,
        ninput: int = 300,
        drop_prob: float = 0.5,
        nhidden: int = 128 * 2,
        nlayers: int = 1,
        bidirectional: bool = True,
        rnn_type: str = "LSTM",
    ):
        super().__init__()
        self.ntoken = ntoken
        self.ninput = ninput
        self.rnn_type = rnn_type
        self.num_directions = 2 if bidirectional else 1
        self.nhidden = nhidden // self.num_directions
        self.encoder = nn.Embedding(ntoken, ninput)
        self.drop = nn.Dropout(drop_prob)
        rnn = {"LSTM": nn.LSTM, "GRU": nn.GRU}[rnn_type]
        self.rnn = rnn(
            ninput,
            self.nhidden,
            nlayers,
            batch_first=True,
            dropout=drop_prob if nlayers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)

    def forward(
        self, captions: torch.Tensor, cap_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.drop(self.encoder(captions))  # [B, T0, ninput]
        lengths = cap_lens.detach().to("cpu", torch.int64)
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        output, hidden = self.rnn(packed)
        output = pad_packed_sequence(output, batch_first=True)[0]  # [B, T, 2 * nhidden]
        words_emb = output.transpose(1, 2)  # [B, 2 * nhidden, T]
        h_n = hidden[0] if self.rnn_type == "LSTM" else hidden  # [layers * dirs, B, nhidden]
        sent_emb = h_n[-self.num_directions :].transpose(0, 1).reshape(-1, self.nhidden * 2)
        # sent_emb: [B, 2 * nhidden]
        return words_emb, sent_emb


# ---------------------------------------------------------------------------------------------
# Image encoder: a backbone (frozen, except tiny) and two trained projections


class CNN_ENCODER(nn.Module):
    """Backbone -> ``conv1x1`` on local features and ``Linear`` on the global one.

    ``forward(images [B, 3, H, W] in [-1, 1]) -> (regions [B, E, h, w], code [B, E])``;
    with the Inception backbones ``h = w = 17`` (Mixed_6e) and the global feature is the
    2048-d pool of Mixed_7c.  The Inception backbones are frozen: only ``emb_features`` and
    ``emb_cnn_code`` are trained and saved (:meth:`projection_state`).  A ``trainable``
    backbone (the random ``tiny`` CNN) is trained with them and saved with them.
    """

    def __init__(self, nef: int, backbone: nn.Module):
        super().__init__()
        self.nef = nef
        self.backbone = backbone
        self.train_backbone = bool(getattr(backbone, "trainable", False))
        for p in self.backbone.parameters():
            p.requires_grad_(self.train_backbone)
        self.emb_features = conv1x1(backbone.local_dim, nef)
        self.emb_cnn_code = nn.Linear(backbone.global_dim, nef)
        nn.init.uniform_(self.emb_features.weight, -0.1, 0.1)
        nn.init.uniform_(self.emb_cnn_code.weight, -0.1, 0.1)

    def train(self, mode: bool = True) -> CNN_ENCODER:
        super().train(mode)
        self.backbone.eval()  # fixed BN statistics (the original left them in train())
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.backbone.input_size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        local, pooled = self.backbone(x)  # [B, local_dim, h, w], [B, global_dim]
        return self.emb_features(local), self.emb_cnn_code(pooled)

    def projection_state(self) -> dict[str, torch.Tensor]:
        """The projections, plus the backbone when it is trained (``backbone.*``)."""
        return {
            k: v
            for k, v in self.state_dict().items()
            if self.train_backbone or not k.startswith("backbone.")
        }

    def load_projection_state(self, state: dict[str, torch.Tensor]) -> None:
        """Loads :meth:`projection_state`; a trainable backbone's entries are optional
        (files written before it was trained hold none: it keeps its fixed-seed init)."""
        prefixes = ("emb_features", "emb_cnn_code")
        prefixes += ("backbone.",) if self.train_backbone else ()
        state = {k: v for k, v in state.items() if k.startswith(prefixes)}
        missing, _ = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("backbone.")]
        if missing:
            raise RuntimeError(f"missing image-encoder entries: {', '.join(missing)}")


# ---------------------------------------------------------------------------------------------
# Conditioning augmentation and word attention


class CA_NET(nn.Module):
    """``sent [B, E] -> (c [B, ncf], mu [B, ncf], logvar [B, ncf])``; c = mu + e^(logvar/2) eps."""

    def __init__(self, t_dim: int, c_dim: int):
        super().__init__()
        self.t_dim = t_dim
        self.c_dim = c_dim
        self.fc = nn.Linear(t_dim, c_dim * 4, bias=True)
        self.relu = GLU()

    def forward(self, text_embedding: torch.Tensor, eps: torch.Tensor | None = None):
        x = self.relu(self.fc(text_embedding))  # [B, 2 * c_dim]
        mu, logvar = x[:, : self.c_dim], x[:, self.c_dim :]
        eps = torch.randn_like(mu) if eps is None else eps
        return mu + torch.exp(0.5 * logvar) * eps, mu, logvar


def attention_mask(captions: torch.Tensor, num_words: int) -> torch.Tensor:
    """``[B, T] bool``, True on padding (id 0), trimmed to the encoder's ``num_words``."""
    return (captions == 0)[:, :num_words]


class GlobalAttentionGeneral(nn.Module):
    """Word attention for every pixel of the stage's hidden map (``ATT_NET`` in the original).

    ``forward(h [B, idf, ih, iw], words [B, cdf, T], mask [B, T] (True = padding))
    -> (context [B, idf, ih, iw], attn [B, T, ih, iw])``.  ``mask_bug=True`` reproduces the
    original's ``mask.repeat(queryL, 1)``, which gives row ``b * Q + q`` of the ``[B*Q, T]``
    scores the mask of sample ``(b * Q + q) mod B`` instead of ``b`` (issue #93).
    """

    def __init__(self, idf: int, cdf: int, mask_bug: bool = False):
        super().__init__()
        self.conv_context = conv1x1(cdf, idf)
        self.mask_bug = mask_bug

    def forward(
        self, h: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, idf, ih, iw = h.shape
        query_len, source_len = ih * iw, context.size(2)
        target_t = h.view(b, idf, query_len).transpose(1, 2)  # [B, Q, idf]
        source = self.conv_context(context.unsqueeze(3)).squeeze(3)  # [B, idf, T]
        attn = torch.bmm(target_t, source)  # [B, Q, T]
        if mask is not None:
            if self.mask_bug:
                rows = mask.repeat(query_len, 1)  # [Q*B, T] tiled in (q, b) order
                attn = attn.reshape(b * query_len, source_len).masked_fill(rows, float("-inf"))
                attn = attn.view(b, query_len, source_len)
            else:
                attn = attn.masked_fill(mask[:, None, :], float("-inf"))
        attn = torch.softmax(attn, dim=2).transpose(1, 2)  # [B, T, Q]
        weighted = torch.bmm(source, attn)  # [B, idf, Q]
        return weighted.view(b, idf, ih, iw), attn.reshape(b, source_len, ih, iw)


# ---------------------------------------------------------------------------------------------
# Generator


class INIT_STAGE_G(nn.Module):
    """``cat[c, z] -> fc -> [B, ngf, 4, 4] -> n_up upBlocks -> [B, ngf / 2^n_up, S, S]``.

    The original has ``n_up = 4`` (S = 64, ngf = 16 GF_DIM); smaller BASE_SIZEs (tests) use
    fewer upBlocks and ngf = GF_DIM * 2^n_up so the output still has GF_DIM channels.
    """

    def __init__(self, ngf: int, ncf: int, nz: int, n_up: int = 4):
        super().__init__()
        self.gf_dim = ngf
        self.fc = nn.Sequential(
            nn.Linear(nz + ncf, ngf * 4 * 4 * 2, bias=False),
            nn.BatchNorm1d(ngf * 4 * 4 * 2),
            GLU(),
        )
        for i in range(n_up):
            self.add_module(f"upsample{i + 1}", upBlock(ngf // 2**i, ngf // 2 ** (i + 1)))
        self.n_up = n_up

    def forward(self, z_code: torch.Tensor, c_code: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.cat((c_code, z_code), 1)).view(-1, self.gf_dim, 4, 4)
        for i in range(self.n_up):
            out = getattr(self, f"upsample{i + 1}")(out)
        return out  # [B, ngf / 2^n_up, 4 * 2^n_up, 4 * 2^n_up]


class NEXT_STAGE_G(nn.Module):
    """``h [B, ngf, S, S]`` + word context -> R_NUM ResBlocks on 2 ngf -> ``[B, ngf, 2S, 2S]``."""

    def __init__(self, ngf: int, nef: int, r_num: int, mask_bug: bool = False):
        super().__init__()
        self.gf_dim = ngf
        self.att = GlobalAttentionGeneral(ngf, nef, mask_bug=mask_bug)
        self.residual = nn.Sequential(*[ResBlock(ngf * 2) for _ in range(r_num)])
        self.upsample = upBlock(ngf * 2, ngf)

    def forward(self, h_code: torch.Tensor, word_embs: torch.Tensor, mask: torch.Tensor):
        c_code, att = self.att(h_code, word_embs, mask)  # [B, ngf, S, S], [B, T, S, S]
        out = self.residual(torch.cat((h_code, c_code), 1))  # [B, 2 ngf, S, S]
        return self.upsample(out), att  # [B, ngf, 2S, 2S]


class GET_IMAGE_G(nn.Module):
    """``[B, ngf, S, S] -> conv3x3 -> tanh -> [B, 3, S, S]``."""

    def __init__(self, ngf: int):
        super().__init__()
        self.img = nn.Sequential(conv3x3(ngf, 3), nn.Tanh())

    def forward(self, h_code: torch.Tensor) -> torch.Tensor:
        return self.img(h_code)


class G_NET(nn.Module):
    """The attentional generator: CA, stage 1, then ``branch_num - 1`` attention stages.

    ``forward(z [B, nz], sent [B, E], words [B, E, T], mask [B, T])
    -> (images: list of [B, 3, S*2^i, S*2^i], attention maps: list of [B, T, S*2^(i-1), ...],
    mu [B, ncf], logvar [B, ncf])``.  ``ca_noise [B, ncf]`` fixes the CA sample (default:
    drawn from the global generator).  With ``dcgan=True`` (``G_DCGAN``) only the last
    stage produces an image.
    """

    def __init__(
        self,
        ngf: int,
        nef: int,
        ncf: int,
        nz: int,
        branch_num: int,
        r_num: int,
        base_size: int = 64,
        mask_bug: bool = False,
        dcgan: bool = False,
    ):
        super().__init__()
        n_up = int(round(math.log2(base_size / 4)))
        if 4 * 2**n_up != base_size or n_up < 1:
            raise ValueError(f"BASE_SIZE must be 4 * 2^k (k >= 1), got {base_size}")
        self.branch_num = branch_num
        self.dcgan = dcgan
        self.ca_net = CA_NET(nef, ncf)
        self.h_net1 = INIT_STAGE_G(ngf * 2**n_up, ncf, nz, n_up)
        for i in range(2, branch_num + 1):
            self.add_module(f"h_net{i}", NEXT_STAGE_G(ngf, nef, r_num, mask_bug))
        if dcgan:
            self.img_net = GET_IMAGE_G(ngf)
        else:
            for i in range(1, branch_num + 1):
                self.add_module(f"img_net{i}", GET_IMAGE_G(ngf))

    def forward(self, z_code, sent_emb, word_embs, mask, ca_noise=None):
        c_code, mu, logvar = self.ca_net(sent_emb, ca_noise)
        fake_imgs, att_maps = [], []
        h_code = self.h_net1(z_code, c_code)  # [B, ngf, S, S]
        if not self.dcgan:
            fake_imgs.append(self.img_net1(h_code))
        for i in range(2, self.branch_num + 1):
            h_code, att = getattr(self, f"h_net{i}")(h_code, word_embs, mask)
            att_maps.append(att)
            if not self.dcgan:
                fake_imgs.append(getattr(self, f"img_net{i}")(h_code))
        if self.dcgan:
            fake_imgs.append(self.img_net(h_code))
        return fake_imgs, att_maps, mu, logvar


# ---------------------------------------------------------------------------------------------
# Discriminators


def Block3x3_leakRelu(in_planes: int, out_planes: int) -> nn.Sequential:
    return nn.Sequential(
        conv3x3(in_planes, out_planes), nn.BatchNorm2d(out_planes), nn.LeakyReLU(0.2, inplace=True)
    )


def downBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    """conv4x4 stride 2 -> BN -> LReLU: halves H and W."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 4, 2, 1, bias=False),
        nn.BatchNorm2d(out_planes),
        nn.LeakyReLU(0.2, inplace=True),
    )


def encode_image(ndf: int, size: int) -> nn.Sequential:
    """``[B, 3, size, size] -> [B, 8 ndf, 4, 4]``.

    For size 64/128/256 this is exactly the original: ``encode_image_by_16times`` (4
    stride-2 convs up to 8 ndf), then for 128 ``downBlock(8->16) + Block3x3(16->8)`` and for
    256 ``downBlock(8->16), downBlock(16->32), Block3x3(32->16), Block3x3(16->8)``.  Sizes 16
    and 32 (tests only) use fewer stride-2 convs and one Block3x3 up to 8 ndf.
    """
    n_down = int(round(math.log2(size / 4)))
    if 4 * 2**n_down != size or n_down < 2:
        raise ValueError(f"discriminator image size must be 4 * 2^k (k >= 2), got {size}")
    layers: list[nn.Module] = [
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
    ]
    ch = ndf
    for _ in range(n_down - 1):
        layers.append(downBlock(ch, ch * 2))
        ch *= 2
    while ch > ndf * 8:
        layers.append(Block3x3_leakRelu(ch, ch // 2))
        ch //= 2
    if ch < ndf * 8:
        layers.append(Block3x3_leakRelu(ch, ndf * 8))
    return nn.Sequential(*layers)


class D_GET_LOGITS(nn.Module):
    """``h [B, 8 ndf, 4, 4]`` (+ sentence tiled 4x4 when conditional) -> logits ``[B]``.

    The original ends in a Sigmoid and uses BCELoss; we return the logit and use
    BCE-with-logits (the same loss, numerically stable and autocast-safe).
    """

    def __init__(self, ndf: int, nef: int, bcondition: bool = False):
        super().__init__()
        self.ef_dim = nef
        self.bcondition = bcondition
        if bcondition:
            self.jointConv = Block3x3_leakRelu(ndf * 8 + nef, ndf * 8)
        self.outlogits = nn.Sequential(nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=4))

    def forward(self, h_code: torch.Tensor, c_code: torch.Tensor | None = None) -> torch.Tensor:
        if self.bcondition and c_code is not None:
            c_code = c_code.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 4, 4)  # [B, E, 4, 4]
            h_code = self.jointConv(torch.cat((h_code, c_code), 1))  # [B, 8 ndf, 4, 4]
        return self.outlogits(h_code).view(-1)


def random_translate(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Shift each image ``[B, C, H, W]`` by its own random whole-pixel offset of up to
    ``fraction * H`` in each direction, filling with -1 (black); differentiable in ``x``."""
    b, c, h, w = x.shape
    k = int(round(fraction * h))
    if k == 0:
        return x
    padded = F.pad(x + 1, (k, k, k, k)) - 1
    dy = torch.randint(0, 2 * k + 1, (b, 1), device=x.device)
    dx = torch.randint(0, 2 * k + 1, (b, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


class D_NET(nn.Module):
    """``D_NET64/128/256``: image code, an unconditional and a sentence-conditional head.

    Every part is reached through ``forward`` (``head=``), never as ``net.COND_DNET(...)``, so
    the losses work on a ``DistributedDataParallel`` wrapper and DDP sees every call:

    - ``net(x)``: images ``[B, 3, S, S]`` -> image code ``h [B, 8 ndf, 4, 4]``;
    - ``net(h, c, head="cond")``: code and sentences ``c [B, E]`` -> logits ``[B]``;
    - ``net(h, head="uncond")``: code -> logits ``[B]``, or None without that head.

    One loss calls D several times (each call uses only some of its parameters) and then
    runs one backward that reaches all of them; under DDP wrap D with the default
    ``find_unused_parameters=False`` (True would mark each call's unused parameters ready
    early and fail when their gradients arrive).

    ``translate > 0`` (not in the paper; ``GANLAB.D_TRANSLATE``): in training mode every image
    D sees, real or fake, is first shifted by a random offset of up to that fraction of its
    size (a differentiable augmentation, as DiffAugment's translation).
    """

    def __init__(self, ndf: int, nef: int, size: int, b_jcu: bool = True, translate: float = 0.0):
        super().__init__()
        self.size = size
        self.translate = translate
        self.img_code = encode_image(ndf, size)
        self.UNCOND_DNET = D_GET_LOGITS(ndf, nef, bcondition=False) if b_jcu else None
        self.COND_DNET = D_GET_LOGITS(ndf, nef, bcondition=True)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor | None = None, head: str = "code"
    ) -> torch.Tensor | None:
        if head == "cond":
            if c is None:
                raise ValueError('head="cond" needs the sentence embeddings c')
            return self.COND_DNET(x, c)
        if head == "uncond":
            return None if self.UNCOND_DNET is None else self.UNCOND_DNET(x)
        if head != "code":
            raise ValueError(f"head: expected 'code', 'cond' or 'uncond', got {head!r}")
        if self.training and self.translate > 0:
            x = random_translate(x, self.translate)
        return self.img_code(x)  # [B, 8 ndf, 4, 4]


def weights_init(m: nn.Module) -> None:
    """Orthogonal conv/linear weights, BN gamma ~ N(1, 0.02) (``miscc/utils.py:286-296``).

    As there, conv biases (only D's logit convs have one) keep the framework's default,
    U(+-1/sqrt(fan_in)) then as now; Linear biases start at 0."""
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.orthogonal_(m.weight, 1.0)
    elif isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight, 1.0)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def stage_sizes(cfg: dict) -> list[int]:
    """Image sizes of the stages, e.g. ``[64, 128, 256]``."""
    base = cfg["TREE"]["BASE_SIZE"]
    return [base * 2**i for i in range(cfg["TREE"]["BRANCH_NUM"])]


def build_generator(cfg: dict) -> G_NET:
    gan = cfg["GAN"]
    net = G_NET(
        ngf=gan["GF_DIM"],
        nef=cfg["TEXT"]["EMBEDDING_DIM"],
        ncf=gan["CONDITION_DIM"],
        nz=gan["Z_DIM"],
        branch_num=cfg["TREE"]["BRANCH_NUM"],
        r_num=gan["R_NUM"],
        base_size=cfg["TREE"]["BASE_SIZE"],
        mask_bug=cfg["GANLAB"]["MASK_BUG"],
        dcgan=gan["B_DCGAN"],
    )
    net.apply(weights_init)
    return net


def build_discriminators(cfg: dict) -> list[D_NET]:
    """One D per stage (only the last one with B_DCGAN)."""
    sizes = stage_sizes(cfg)
    if cfg["GAN"]["B_DCGAN"]:
        sizes = sizes[-1:]
    translate = cfg["GANLAB"]["D_TRANSLATE"]
    nets = [
        D_NET(cfg["GAN"]["DF_DIM"], cfg["TEXT"]["EMBEDDING_DIM"], s, translate=translate)
        for s in sizes
    ]
    for net in nets:
        net.apply(weights_init)
    return nets
