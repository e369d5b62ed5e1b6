"""Pure-PyTorch STNM: the fallback implementation and the test oracle.

Conventions (shared with the compiled op in ``lrgan._C``):

- images are NCHW: canvas ``[B, C, H, W]``, fg ``[B, C, Hf, Wf]``, mask ``[B, 1, Hf, Wf]``;
- the sampling grid is ``[B, H, W, 2]`` in **(y, x)** order (the original LR-GAN
  ``AffineGridGen`` order), values in [-1, 1] with the align_corners=True convention:
  ``yc = (g_y + 1)(Hf - 1)/2``, ``xc = (g_x + 1)(Wf - 1)/2``; taps outside fg read as 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["affine_grid_yx", "check_shapes", "stnm_reference"]


def affine_grid_yx(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The original ``AffineGridGen``: an affine sampling grid in (y, x) order.

    Args:
        theta: ``[B, 2, 3]``; row 0 gives ``g_y``, row 1 gives ``g_x`` as functions of
            ``(y, x, 1)``: ``g_y = θ00·y + θ01·x + θ02``, ``g_x = θ10·y + θ11·x + θ12``.
        height, width: the output (canvas) size ``H, W``.

    Returns:
        grid ``[B, H, W, 2]`` with ``grid[b, i, j] = θ_b @ (y_i, x_j, 1)``, where
        ``y_i = -1 + 2i/(H-1)`` and ``x_j = -1 + 2j/(W-1)``.
    """
    if theta.dim() != 3 or theta.shape[1:] != (2, 3):
        raise ValueError(f"theta must be [B, 2, 3], got {list(theta.shape)}")
    opts = {"dtype": theta.dtype, "device": theta.device}
    ys = torch.linspace(-1, 1, height, **opts)
    xs = torch.linspace(-1, 1, width, **opts)
    base = torch.stack(
        [ys[:, None].expand(height, width), xs[None, :].expand(height, width),
         torch.ones(height, width, **opts)],
        dim=-1,
    )  # [H, W, 3]: (y, x, 1)
    grid = base.reshape(1, height * width, 3) @ theta.transpose(1, 2)  # [B, H*W, 2]
    return grid.reshape(theta.shape[0], height, width, 2)


def check_shapes(
    canvas: torch.Tensor, fg: torch.Tensor, mask: torch.Tensor, grid: torch.Tensor
) -> None:
    """Raise ValueError unless the four STNM inputs have consistent shapes (see module doc)."""
    if canvas.dim() != 4:
        raise ValueError(f"stnm: canvas must be 4-D [B, C, H, W], got shape {list(canvas.shape)}")
    b, c, h, w = canvas.shape
    if fg.dim() != 4 or fg.shape[:2] != (b, c):
        raise ValueError(
            f"stnm: fg must be [B, C, Hf, Wf] with B and C of canvas {list(canvas.shape)}, "
            f"got {list(fg.shape)}"
        )
    if mask.shape != (b, 1, *fg.shape[2:]):
        raise ValueError(
            f"stnm: mask must be [B, 1, Hf, Wf] = {[b, 1, *fg.shape[2:]]} (one channel, the "
            f"size of fg), got {list(mask.shape)}"
        )
    if grid.shape != (b, h, w, 2):
        raise ValueError(
            f"stnm: grid must be [B, H, W, 2] = {[b, h, w, 2]} (the canvas size, (y, x) last), "
            f"got {list(grid.shape)}"
        )


def stnm_reference(
    canvas: torch.Tensor,
    fg: torch.Tensor,
    mask: torch.Tensor,
    grid: torch.Tensor,
    *,
    legacy_grad: bool = False,
) -> torch.Tensor:
    """Composite a warped foreground onto a canvas: ``(1 - m')·canvas + m'·fg'``.

    Args:
        canvas: ``[B, C, H, W]``.
        fg: ``[B, C, Hf, Wf]``, the foreground appearance.
        mask: ``[B, 1, Hf, Wf]``, the foreground mask (usually in [0, 1]).
        grid: ``[B, H, W, 2]``, (y, x) sampling positions in fg coordinates, [-1, 1].
        legacy_grad: sample the mask at ``grid.detach()``, so no gradient reaches the grid
            through the mask, like the 2017 CUDA kernel. The forward value is unchanged.

    Returns:
        ``[B, C, H, W]``; ``fg'``/``m'`` are bilinear samples (align_corners=True, zero
        outside fg), so where the grid points outside fg the canvas shows through.
    """
    check_shapes(canvas, fg, mask, grid)
    xy = grid.flip(-1)  # grid_sample wants (x, y)
    fg_warped = F.grid_sample(fg, xy, mode="bilinear", padding_mode="zeros", align_corners=True)
    mask_xy = xy.detach() if legacy_grad else xy
    m = F.grid_sample(mask, mask_xy, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (1 - m) * canvas + m * fg_warped
