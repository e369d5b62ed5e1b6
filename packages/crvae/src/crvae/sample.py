"""What ``crvae-sample`` draws from a checkpoint.

* ``samples.png``: z ~ p(z | y) decoded (MNIST acVAE: one column per digit class);
* ``recon.png``: test images (top half) and their posterior-mean reconstructions;
* ``traversal.png``: row t keeps one base z and redraws only the channels of step t
  (the paper's figure: early steps carry layout, late steps detail);
* ``attributes.png`` (conditional, with ``-attr``): the same noise under y and under the
  edited y; ``attr_edit.png`` with test images: image, reconstruction, edited reconstruction;
* ``attention.png`` / ``attention.txt`` (acVAE): alpha ``[T, A]`` as an image, one row per step.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch
import torch.nn.functional as F

from ganlab_common.checkpoint import load_checkpoint
from ganlab_common.data import CELEBA_ATTRIBUTES
from ganlab_common.errors import UserError
from ganlab_common.images import save_grid
from ganlab_common.runs import find_run_dir, resolve_device

from .data import load_dataset
from .models import CRVAE, ModelSpec
from .train import fade_weight, reconstruct

__all__ = ["sample", "load_generator", "parse_attrs", "attribute_names"]


def _find_checkpoint(save: str) -> Path:
    run = find_run_dir(save)
    if run is not None:
        ckpts = sorted((run / "checkpoints").glob("ckpt-*.pt"))
        if ckpts:
            return ckpts[-1]
        if (run / "best.pt").is_file():
            return run / "best.pt"
    raise UserError(f"-checkpoint: none given and no checkpoint under '{save}' "
                    "(train one with crvae-train first)")


def load_generator(path: str | Path, device: torch.device) -> tuple[CRVAE, dict]:
    """The model of a crvae-train checkpoint (eval mode, stage-2 fade as trained)."""
    state = load_checkpoint(path, device, flag="-checkpoint")
    if "spec" not in state or "G" not in state:
        raise UserError(f"-checkpoint: '{path}' is not a crvae-train checkpoint")
    spec = ModelSpec(**state["spec"])
    model = CRVAE(spec).to(device)
    try:
        model.load_state_dict(state["G"])
    except RuntimeError as exc:
        raise UserError(f"-checkpoint: '{path}' does not match its own spec "
                        f"({str(exc).splitlines()[0]})") from None
    cfg = state.get("config", {})
    if spec.image_size == 128:
        model.set_fade(fade_weight(state.get("epoch", 1), cfg.get("nEpochs", 1),
                                   cfg.get("max_alpha", 1.0)))
    return model.eval(), state


def attribute_names(spec: ModelSpec) -> list[str]:
    return [str(k) for k in range(10)] if spec.attr_dim == 10 else list(CELEBA_ATTRIBUTES)


def parse_attrs(items: tuple[str, ...], spec: ModelSpec, y: torch.Tensor) -> torch.Tensor:
    """Apply ``NAME=1|-1|flip`` edits (MNIST: ``digit=K``) to ``y [N, A]``; returns a copy."""
    y = y.clone()
    names = attribute_names(spec)
    for item in items:
        name, _, value = item.partition("=")
        if spec.attr_dim == 10:
            if name != "digit" or value not in names:
                raise UserError(f"-attr {item}: expected digit=0..9 for an MNIST model")
            y[:] = -1.0
            y[:, int(value)] = 1.0
            continue
        if name not in names:
            raise UserError(f"-attr {item}: unknown attribute (expected one of "
                            f"{', '.join(names)})")
        col = names.index(name)
        if value == "flip":
            y[:, col] = -y[:, col]
        elif value in ("1", "-1", "+1"):
            y[:, col] = float(value)
        else:
            raise UserError(f"-attr {item}: expected NAME=1, NAME=-1 or NAME=flip")
    return y


@torch.no_grad()
def _decode(model: CRVAE, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    out, _ = model.decode(z, y)
    return model.to_image(out)


@torch.no_grad()
def traversal(model: CRVAE, columns: int, y: torch.Tensor | None, gen: torch.Generator):
    """``[T * columns, C, S, S]``: row t redraws only the channels of step t."""
    spec = model.spec
    base = model.sample_prior(1, None if y is None else y[:1], gen)  # [1, nf, 4, 4]
    per = spec.nf // spec.steps
    rows = []
    for t in range(spec.steps):
        z = base.repeat(columns, 1, 1, 1)
        fresh = model.sample_prior(columns, None if y is None else y[:1].expand(columns, -1), gen)
        z[:, t * per: (t + 1) * per] = fresh[:, t * per: (t + 1) * per]
        rows.append(_decode(model, z, None if y is None else y[:1].expand(columns, -1)))
    return torch.cat(rows)


def attention_image(alpha: torch.Tensor, cell: int = 12) -> torch.Tensor:
    """alpha ``[T, A]`` -> a grey image ``[1, 1, T*cell, A*cell]`` in [-1, 1] (max = white)."""
    a = alpha / alpha.max().clamp_min(1e-12)
    img = F.interpolate(a[None, None], scale_factor=cell, mode="nearest")
    return img * 2 - 1


def _test_batch(state: dict, spec: ModelSpec, data: str | None, n: int):
    cfg = state.get("config", {})
    try:
        test = load_dataset(cfg.get("dataset", "mnist"), data if data is not None
                            else cfg.get("data", ""), "test", spec.image_size, spec.conditional)
    except UserError as exc:
        click.echo(f"note: no reconstructions ({exc.message})", err=True)
        return None, None
    xs, ys = zip(*(test[i] for i in range(min(n, len(test)))), strict=True)
    x, y = torch.stack(xs), torch.stack(ys)
    if spec.bernoulli:
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(0))
    return x, (y if spec.conditional else None)


def sample(checkpoint: str | None, save: str, out: str | None, n: int, steps: int,
           attrs: tuple[str, ...], data: str | None, seed: int, device: str) -> list[Path]:
    """Write the grids listed in the module docstring; returns their paths."""
    dev = resolve_device(device)
    path = Path(checkpoint) if checkpoint else _find_checkpoint(save)
    model, state = load_generator(path, dev)
    spec = model.spec
    if attrs and not spec.conditional:
        raise UserError(f"-attr: the {spec.latent_type} model is not attribute-conditioned")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    outdir = Path(out) if out else run_dir / "samples"
    outdir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    x, y_test = _test_batch(state, spec, data, n) if spec.has_encoder or spec.conditional \
        else (None, None)
    y = None
    if spec.conditional:
        if spec.attr_dim == 10:
            y = F.one_hot(torch.arange(n) % 10, 10).float() * 2 - 1
        elif y_test is not None and len(y_test) == n:
            y = y_test
        else:
            y = torch.zeros(n, spec.attr_dim)
        y = parse_attrs(attrs, spec, y).to(dev) if attrs and spec.attr_dim == 10 else y.to(dev)
    nrow = 10 if spec.attr_dim == 10 else None
    written = []
    eps_z = model.sample_prior(n, y, gen)
    written.append(save_grid(_decode(model, eps_z, y), outdir / "samples.png", nrow=nrow))
    if x is not None and spec.has_encoder:
        x, yt = x.to(dev), None if y_test is None else y_test.to(dev)
        shown = x * 2 - 1 if spec.bernoulli else x
        rec = reconstruct(model, x, yt)
        written.append(save_grid(torch.cat([shown, rec]), outdir / "recon.png", nrow=8))
    written.append(save_grid(traversal(model, steps, y, gen), outdir / "traversal.png",
                             nrow=steps))
    if spec.conditional and attrs and spec.attr_dim != 10:
        written += _attribute_grids(model, attrs, y, x, y_test, gen, outdir)
    if spec.attention:
        written += _attention_files(model, outdir)
    return written


def _attribute_grids(model, attrs, y, x, y_test, gen, outdir: Path) -> list[Path]:
    spec = model.spec
    edited = parse_attrs(attrs, spec, y)
    mu, logvar = model.prior_params(y, y.shape[0], y.device)
    eps = torch.randn(mu.shape, generator=gen).to(y.device)
    mu_e, logvar_e = model.prior_params(edited, y.shape[0], y.device)
    before = _decode(model, mu + torch.exp(0.5 * logvar) * eps, y)
    after = _decode(model, mu_e + torch.exp(0.5 * logvar_e) * eps, edited)
    k = min(8, y.shape[0])
    paths = [save_grid(torch.cat([before[:k], after[:k]]), outdir / "attributes.png", nrow=k)]
    if x is not None and spec.has_encoder:
        x, yt = x[:k].to(y.device), y_test[:k].to(y.device)
        with torch.no_grad():
            z, _ = model.encode(x, yt)
        rec, rec_edit = _decode(model, z, yt), _decode(model, z, parse_attrs(attrs, spec, yt))
        paths.append(save_grid(torch.cat([x, rec, rec_edit]), outdir / "attr_edit.png", nrow=k))
    return paths


def _attention_files(model: CRVAE, outdir: Path) -> list[Path]:
    with torch.no_grad():
        alpha = model.attention.alpha().cpu()  # [T, A]
    names = attribute_names(model.spec)
    lines = ["step  top attributes (alpha)"]
    for t in range(alpha.shape[0]):
        top = alpha[t].topk(min(5, alpha.shape[1]))
        pairs = ", ".join(f"{names[i]} {v:.2f}" for v, i in zip(top.values, top.indices,
                                                                strict=True))
        lines.append(f"{t + 1:>4}  {pairs}")
    txt = outdir / "attention.txt"
    txt.write_text("\n".join(lines) + "\n")
    img = save_grid(attention_image(alpha), outdir / "attention.png", nrow=1, padding=0)
    return [img, txt]
