"""The STNM compositing op: compiled (``lrgan._C``) and pure-PyTorch implementations.

Public API (NCHW images, (y, x) grids -- see :mod:`lrgan.ops.reference`):

- :func:`stnm`, :func:`select_stnm`: the op, and the choice between implementations;
- :func:`stnm_reference`: pure PyTorch on ``F.grid_sample`` (fallback and test oracle);
- :func:`affine_grid_yx`: the original ``AffineGridGen`` (θ ``[B, 2, 3]`` -> grid).
"""

from .extension import (
    IMPLS,
    REQUIRE_EXT_ENV,
    ExtensionStatus,
    StnmFallbackWarning,
    extension_status,
    select_stnm,
    stnm,
    stnm_ext,
)
from .reference import affine_grid_yx, stnm_reference

__all__ = [
    "IMPLS",
    "REQUIRE_EXT_ENV",
    "ExtensionStatus",
    "StnmFallbackWarning",
    "affine_grid_yx",
    "extension_status",
    "select_stnm",
    "stnm",
    "stnm_ext",
    "stnm_reference",
]
