// Per-pixel bilinear arithmetic of the STNM op, shared by the CPU and CUDA kernels.
//
// A sampling point (g_y, g_x) in [-1, 1] maps to the fg/mask plane with the
// align_corners=True convention of the original kernel and F.grid_sample:
//   yc = (g_y + 1) * (Hf - 1) / 2,   xc = (g_x + 1) * (Wf - 1) / 2.
// Its four taps are numbered 0 = (y0, x0), 1 = (y0, x0 + 1), 2 = (y0 + 1, x0),
// 3 = (y0 + 1, x0 + 1); a tap outside the plane reads as 0 and receives no gradient.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace lrgan {

template <typename scalar_t>
struct Taps {
  int64_t offset[4];  // y * Wf + x of each tap, clamped into the plane so any load is safe
  bool inside[4];     // whether the tap really lies inside the plane
  scalar_t wy;        // yc - y0: weight of the lower row
  scalar_t wx;        // xc - x0: weight of the right column
  bool any;           // false when all four taps fall outside
  bool all;           // true when all four taps lie inside (the common case)
};

// floor() for values in [-1, size]; avoids a libm call on plain x86-64 (no SSE4.1).
template <typename scalar_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE int64_t floor_index(scalar_t v) {
#ifdef __CUDA_ARCH__
  return static_cast<int64_t>(::floor(v));
#else
  const int64_t i = static_cast<int64_t>(v);  // truncates toward zero
  return i - static_cast<int64_t>(v < static_cast<scalar_t>(i));
#endif
}

C10_HOST_DEVICE C10_ALWAYS_INLINE int64_t clamp_index(int64_t i, int64_t size) {
  return i < 0 ? 0 : (i >= size ? size - 1 : i);
}

// Locate the taps of a grid point. half_h = (Hf - 1) / 2, half_w = (Wf - 1) / 2.
template <typename scalar_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE Taps<scalar_t> locate(scalar_t gy, scalar_t gx, scalar_t half_h,
                                             scalar_t half_w, int64_t Hf, int64_t Wf) {
  Taps<scalar_t> t;
  const scalar_t yc = (gy + scalar_t(1)) * half_h;
  const scalar_t xc = (gx + scalar_t(1)) * half_w;
  // Written so that NaN and huge coordinates land here too, before any cast to int.
  const bool near = yc >= scalar_t(-1) && yc <= scalar_t(Hf) && xc >= scalar_t(-1) &&
                    xc <= scalar_t(Wf);
  if (!near) {
    for (int k = 0; k < 4; ++k) {
      t.offset[k] = 0;
      t.inside[k] = false;
    }
    t.wy = scalar_t(0);
    t.wx = scalar_t(0);
    t.any = false;
    t.all = false;
    return t;
  }
  const int64_t y0 = floor_index(yc);
  const int64_t x0 = floor_index(xc);
  t.wy = yc - static_cast<scalar_t>(y0);
  t.wx = xc - static_cast<scalar_t>(x0);
  const bool top = y0 >= 0 && y0 < Hf;
  const bool bottom = y0 + 1 >= 0 && y0 + 1 < Hf;
  const bool left = x0 >= 0 && x0 < Wf;
  const bool right = x0 + 1 >= 0 && x0 + 1 < Wf;
  t.inside[0] = top && left;
  t.inside[1] = top && right;
  t.inside[2] = bottom && left;
  t.inside[3] = bottom && right;
  t.any = t.inside[0] || t.inside[1] || t.inside[2] || t.inside[3];
  t.all = top && bottom && left && right;
  if (t.all) {
    t.offset[0] = y0 * Wf + x0;
    t.offset[1] = t.offset[0] + 1;
    t.offset[2] = t.offset[0] + Wf;
    t.offset[3] = t.offset[2] + 1;
  } else {
    const int64_t row0 = clamp_index(y0, Hf) * Wf;
    const int64_t row1 = clamp_index(y0 + 1, Hf) * Wf;
    const int64_t col0 = clamp_index(x0, Wf);
    const int64_t col1 = clamp_index(x0 + 1, Wf);
    t.offset[0] = row0 + col0;
    t.offset[1] = row0 + col1;
    t.offset[2] = row1 + col0;
    t.offset[3] = row1 + col1;
  }
  return t;
}

// Read the four taps of one plane; taps outside read as 0 (a select, not a multiply,
// so inf/NaN elsewhere in the plane cannot leak in). kAll: the caller knows t.all.
template <bool kAll = false, typename scalar_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void gather(const scalar_t* plane, const Taps<scalar_t>& t,
                                              scalar_t f[4]) {
  for (int k = 0; k < 4; ++k) {
    const scalar_t value = plane[t.offset[k]];
    f[k] = (kAll || t.inside[k]) ? value : scalar_t(0);
  }
}

// The bilinear weight of each tap.
template <typename scalar_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void weights(const Taps<scalar_t>& t, scalar_t w[4]) {
  const scalar_t one = scalar_t(1);
  w[0] = (one - t.wy) * (one - t.wx);
  w[1] = (one - t.wy) * t.wx;
  w[2] = t.wy * (one - t.wx);
  w[3] = t.wy * t.wx;
}

// The bilinear value of four taps, as two lerps along x and one along y.
template <typename scalar_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE scalar_t interpolate(const scalar_t f[4],
                                                       const Taps<scalar_t>& t) {
  const scalar_t top = f[0] + t.wx * (f[1] - f[0]);
  const scalar_t bottom = f[2] + t.wx * (f[3] - f[2]);
  return top + t.wy * (bottom - top);
}

// The bilinear value and its derivatives d/d(yc) and d/d(xc) inside the cell.
template <typename scalar_t>
struct Sample {
  scalar_t value, dy, dx;
};

template <typename scalar_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE Sample<scalar_t> sample(const scalar_t f[4],
                                                          const Taps<scalar_t>& t) {
  const scalar_t d_top = f[1] - f[0];
  const scalar_t d_bottom = f[3] - f[2];
  const scalar_t top = f[0] + t.wx * d_top;
  const scalar_t bottom = f[2] + t.wx * d_bottom;
  return {top + t.wy * (bottom - top), bottom - top, d_top + t.wy * (d_bottom - d_top)};
}

}  // namespace lrgan
