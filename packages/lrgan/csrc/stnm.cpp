// The STNM compositing op: schema, input checks and CPU kernels.
//
//   out = (1 - m') * canvas + m' * fg'
//
// where fg' and m' are fg and mask bilinearly sampled at `grid` (align_corners=True,
// zero outside). All tensors are NCHW here: canvas [B, C, H, W], fg [B, C, Hf, Wf],
// mask [B, 1, Hf, Wf], grid [B, H, W, 2] holding (y, x) in [-1, 1].
// The Python wrapper (lrgan/ops/extension.py) registers the autograd formula and the fake
// (meta) kernels; the CUDA kernels live in cuda/stnm_cuda.cu.

#include <Python.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <tuple>
#include <type_traits>

#include "stnm.h"
#include "stnm_math.h"

extern "C" {
// An empty module, so that `import lrgan._C` loads this library and runs the
// TORCH_LIBRARY registrations below. WITH_CUDA tells Python whether CUDA kernels are in.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "Registers the lrgan::stnm and lrgan::stnm_backward operators.",
      -1,
      nullptr,
  };
  PyObject* module = PyModule_Create(&module_def);
#ifdef LRGAN_WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  if (module != nullptr && PyModule_AddIntConstant(module, "WITH_CUDA", with_cuda) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
}

namespace lrgan {

namespace {

void check_common(const char* op, const char* name, const at::Tensor& t,
                  const at::Tensor& canvas) {
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be a 4-D tensor, got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == canvas.scalar_type(), op, ": ", name, " has dtype ",
              t.scalar_type(), " but canvas has ", canvas.scalar_type(),
              "; all inputs must share one dtype");
  TORCH_CHECK(t.device() == canvas.device(), op, ": ", name, " is on ", t.device(),
              " but canvas is on ", canvas.device(), "; all inputs must be on one device");
}

}  // namespace

StnmSizes check_stnm_inputs(const char* op, const at::Tensor& canvas, const at::Tensor& fg,
                            const at::Tensor& mask, const at::Tensor& grid) {
  TORCH_CHECK(canvas.dim() == 4, op, ": canvas must be 4-D [B, C, H, W], got shape ",
              canvas.sizes());
  TORCH_CHECK(canvas.scalar_type() == at::kFloat || canvas.scalar_type() == at::kDouble, op,
              ": inputs must be float32 or float64, got ", canvas.scalar_type());
  check_common(op, "fg", fg, canvas);
  check_common(op, "mask", mask, canvas);
  check_common(op, "grid", grid, canvas);
  const StnmSizes s{canvas.size(0), canvas.size(1), canvas.size(2),
                    canvas.size(3), fg.size(2),     fg.size(3)};
  TORCH_CHECK(fg.size(0) == s.B && fg.size(1) == s.C, op,
              ": fg must be [B, C, Hf, Wf] with B and C of canvas ", canvas.sizes(), ", got ",
              fg.sizes());
  TORCH_CHECK(mask.size(0) == s.B && mask.size(1) == 1 && mask.size(2) == s.Hf &&
                  mask.size(3) == s.Wf,
              op, ": mask must be [B, 1, Hf, Wf] = [", s.B, ", 1, ", s.Hf, ", ", s.Wf,
              "] (one channel, the size of fg), got ", mask.sizes());
  TORCH_CHECK(grid.size(0) == s.B && grid.size(1) == s.H && grid.size(2) == s.W &&
                  grid.size(3) == 2,
              op, ": grid must be [B, H, W, 2] = [", s.B, ", ", s.H, ", ", s.W,
              ", 2] (the canvas size, (y, x) last), got ", grid.sizes());
  return s;
}

StnmSizes check_stnm_backward_inputs(const at::Tensor& grad_out, const at::Tensor& canvas,
                                     const at::Tensor& fg, const at::Tensor& mask,
                                     const at::Tensor& grid) {
  const char* op = "lrgan::stnm_backward";
  const StnmSizes s = check_stnm_inputs(op, canvas, fg, mask, grid);
  check_common(op, "grad_out", grad_out, canvas);
  TORCH_CHECK(grad_out.sizes() == canvas.sizes(), op, ": grad_out must have the canvas shape ",
              canvas.sizes(), ", got ", grad_out.sizes());
  return s;
}

namespace {

// The channel count as a compile-time constant for the common C = 1 and C = 3 (kC > 0),
// so that the per-pixel channel loops unroll; kC = 0 reads it at run time.
template <int kC>
C10_ALWAYS_INLINE int64_t channels(const StnmSizes& s) {
  return kC > 0 ? kC : s.C;
}

// Everything a forward or backward task needs, passed by value to the workers.
// The NCHW tensors are contiguous; grad_* are the outputs of the backward.
template <typename scalar_t>
struct Args {
  StnmSizes s;
  const scalar_t* canvas;
  const scalar_t* fg;
  const scalar_t* mask;
  const scalar_t* grid;
  const scalar_t* grad_out;  // backward only
  scalar_t* out;             // forward only
  scalar_t* grad_canvas;
  scalar_t* grad_fg;
  scalar_t* grad_mask;
  scalar_t* grad_grid;
  bool legacy_grad;
};

// One output pixel of the forward: out[c] = (1 - m') canvas[c] + m' fg'[c], c < C.
// canvas/out point at channel 0 of the pixel (channel stride HW); fg/mask at the b-th planes.
template <bool kAll, int kC, typename scalar_t>
C10_ALWAYS_INLINE void forward_pixel(const Taps<scalar_t>& t, int64_t C, int64_t HW,
                                     int64_t HWf, const scalar_t* __restrict__ canvas,
                                     const scalar_t* __restrict__ fg,
                                     const scalar_t* __restrict__ mask,
                                     scalar_t* __restrict__ out) {
  scalar_t f[4];
  gather<kAll>(mask, t, f);
  const scalar_t m = interpolate(f, t);
  for (int64_t c = 0; c < (kC > 0 ? kC : C); ++c) {
    gather<kAll>(fg + c * HWf, t, f);
    out[c * HW] = (scalar_t(1) - m) * canvas[c * HW] + m * interpolate(f, t);
  }
}

// Forward rows [begin, end) of the flattened (b, y) range.
template <typename scalar_t, int kC>
C10_ALWAYS_INLINE void forward_rows(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  const int64_t C = channels<kC>(a.s);
  const int64_t H = a.s.H, W = a.s.W, Hf = a.s.Hf, Wf = a.s.Wf;
  const int64_t HW = H * W;
  const int64_t HWf = Hf * Wf;
  const scalar_t half_h = scalar_t(Hf - 1) / 2;
  const scalar_t half_w = scalar_t(Wf - 1) / 2;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / H;
    const int64_t y = row % H;
    const scalar_t* g = a.grid + row * W * 2;
    const scalar_t* fg_b = a.fg + b * C * HWf;
    const scalar_t* mask_b = a.mask + b * HWf;
    const int64_t first = b * C * HW + y * W;
    for (int64_t x = 0; x < W; ++x) {
      const Taps<scalar_t> t = locate(g[2 * x], g[2 * x + 1], half_h, half_w, Hf, Wf);
      const int64_t p = first + x;
      if (t.all) {
        forward_pixel<true, kC>(t, C, HW, HWf, a.canvas + p, fg_b, mask_b, a.out + p);
      } else if (t.any) {
        forward_pixel<false, kC>(t, C, HW, HWf, a.canvas + p, fg_b, mask_b, a.out + p);
      } else {  // m' = 0: the canvas shows through
        for (int64_t c = 0; c < C; ++c) a.out[p + c * HW] = a.canvas[p + c * HW];
      }
    }
  }
}

// plane[tap] += w[tap] * value for the taps inside. Every offset is valid (clamped), so the
// read-modify-write is unconditional and only the added amount is selected.
template <bool kAll, typename scalar_t>
C10_ALWAYS_INLINE void scatter(scalar_t* plane, const Taps<scalar_t>& t, const scalar_t w[4],
                               scalar_t value) {
  for (int k = 0; k < 4; ++k) {
    plane[t.offset[k]] += (kAll || t.inside[k]) ? w[k] * value : scalar_t(0);
  }
}

// One output pixel of the backward. Pointers as in forward_pixel, plus grad_out/grad_canvas
// (like canvas), grad_fg/grad_mask (like fg/mask) and grad_grid (the pixel's (y, x) pair).
template <bool kAll, int kC, typename scalar_t>
C10_ALWAYS_INLINE void backward_pixel(const Taps<scalar_t>& t, int64_t C, int64_t HW,
                                      int64_t HWf, scalar_t mask_term, scalar_t half_h,
                                      scalar_t half_w, const scalar_t* __restrict__ grad_out,
                                      const scalar_t* __restrict__ canvas,
                                      const scalar_t* __restrict__ fg,
                                      const scalar_t* __restrict__ mask,
                                      scalar_t* __restrict__ grad_canvas,
                                      scalar_t* __restrict__ grad_fg,
                                      scalar_t* __restrict__ grad_mask,
                                      scalar_t* __restrict__ grad_grid) {
  scalar_t w[4], f[4];
  weights(t, w);
  gather<kAll>(mask, t, f);
  const Sample<scalar_t> m = sample(f, t);
  scalar_t d_m = 0;  // dL/dm' = sum_c g_c (fg'_c - canvas_c)
  scalar_t d_y = 0;  // sum_c g_c dfg'_c/dyc
  scalar_t d_x = 0;  // sum_c g_c dfg'_c/dxc
  for (int64_t c = 0; c < (kC > 0 ? kC : C); ++c) {
    const scalar_t g = grad_out[c * HW];
    grad_canvas[c * HW] = g * (scalar_t(1) - m.value);
    gather<kAll>(fg + c * HWf, t, f);
    const Sample<scalar_t> v = sample(f, t);
    d_m += g * (v.value - canvas[c * HW]);
    d_y += g * v.dy;
    d_x += g * v.dx;
    scatter<kAll>(grad_fg + c * HWf, t, w, g * m.value);
  }
  scatter<kAll>(grad_mask, t, w, d_m);
  // The full gradient adds the mask's own motion, d_m * dm'/d(yc, xc); legacy drops it.
  grad_grid[0] = (m.value * d_y + mask_term * d_m * m.dy) * half_h;
  grad_grid[1] = (m.value * d_x + mask_term * d_m * m.dx) * half_w;
}

// Backward of batch elements [begin, end). One task owns whole batch elements, so its
// scatters into grad_fg and grad_mask never race and need no atomics.
template <typename scalar_t, int kC>
C10_ALWAYS_INLINE void backward_batches(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  const int64_t C = channels<kC>(a.s);
  const int64_t Hf = a.s.Hf, Wf = a.s.Wf;
  const int64_t HW = a.s.H * a.s.W;
  const int64_t HWf = Hf * Wf;
  const scalar_t half_h = scalar_t(Hf - 1) / 2;
  const scalar_t half_w = scalar_t(Wf - 1) / 2;
  const scalar_t mask_term = a.legacy_grad ? scalar_t(0) : scalar_t(1);
  for (int64_t b = begin; b < end; ++b) {
    const int64_t first = b * C * HW;
    const scalar_t* fg_b = a.fg + b * C * HWf;
    const scalar_t* mask_b = a.mask + b * HWf;
    scalar_t* gfg_b = a.grad_fg + b * C * HWf;
    scalar_t* gmask_b = a.grad_mask + b * HWf;
    const scalar_t* grid_b = a.grid + b * HW * 2;
    scalar_t* ggrid_b = a.grad_grid + b * HW * 2;
    std::fill(gfg_b, gfg_b + C * HWf, scalar_t(0));
    std::fill(gmask_b, gmask_b + HWf, scalar_t(0));
    for (int64_t p = 0; p < HW; ++p) {
      const Taps<scalar_t> t = locate(grid_b[2 * p], grid_b[2 * p + 1], half_h, half_w, Hf, Wf);
      const int64_t q = first + p;
      if (t.all) {
        backward_pixel<true, kC>(t, C, HW, HWf, mask_term, half_h, half_w, a.grad_out + q,
                                 a.canvas + q, fg_b, mask_b, a.grad_canvas + q, gfg_b, gmask_b,
                                 ggrid_b + 2 * p);
      } else if (t.any) {
        backward_pixel<false, kC>(t, C, HW, HWf, mask_term, half_h, half_w, a.grad_out + q,
                                  a.canvas + q, fg_b, mask_b, a.grad_canvas + q, gfg_b, gmask_b,
                                  ggrid_b + 2 * p);
      } else {  // m' = 0: the canvas passes through, nothing else gets gradient
        for (int64_t c = 0; c < C; ++c) a.grad_canvas[q + c * HW] = a.grad_out[q + c * HW];
        ggrid_b[2 * p] = scalar_t(0);
        ggrid_b[2 * p + 1] = scalar_t(0);
      }
    }
  }
}

// Each worker is compiled twice: generic code, and (on x86-64 with GCC/Clang) AVX2 + FMA
// code, picked at run time when the CPU has both. The kernels stay scalar; the gain comes
// from FMA and the wider register file (about 1.2x). LRGAN_CPU_GENERIC=1 forces generic code.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LRGAN_AVX2_CLONES 1
#define LRGAN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

// Read on every call (cheap next to a kernel), so tests can flip it within one process.
bool use_avx2() {
#ifdef LRGAN_AVX2_CLONES
  static const bool cpu_has_avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  const char* generic = std::getenv("LRGAN_CPU_GENERIC");
  return cpu_has_avx2 && (generic == nullptr || generic[0] == '\0' || generic[0] == '0');
#else
  return false;
#endif
}

template <typename scalar_t, int kC>
C10_NOINLINE void forward_rows_generic(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  forward_rows<scalar_t, kC>(a, begin, end);
}

template <typename scalar_t, int kC>
C10_NOINLINE void backward_batches_generic(const Args<scalar_t>& a, int64_t begin,
                                           int64_t end) {
  backward_batches<scalar_t, kC>(a, begin, end);
}

#ifdef LRGAN_AVX2_CLONES
template <typename scalar_t, int kC>
LRGAN_TARGET_AVX2 C10_NOINLINE void forward_rows_avx2(const Args<scalar_t>& a, int64_t begin,
                                                      int64_t end) {
  forward_rows<scalar_t, kC>(a, begin, end);
}

template <typename scalar_t, int kC>
LRGAN_TARGET_AVX2 C10_NOINLINE void backward_batches_avx2(const Args<scalar_t>& a,
                                                          int64_t begin, int64_t end) {
  backward_batches<scalar_t, kC>(a, begin, end);
}
#endif

// Forward: rows (b, y) are independent; each task takes a run of them.
template <typename scalar_t, int kC>
void forward_kernel(const Args<scalar_t>& a) {
  const bool avx2 = use_avx2();
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, a.s.W * (a.s.C + 1)));
  at::parallel_for(0, a.s.B * a.s.H, grain, [&](int64_t begin, int64_t end) {
#ifdef LRGAN_AVX2_CLONES
    if (avx2) return forward_rows_avx2<scalar_t, kC>(a, begin, end);
#endif
    (void)avx2;
    forward_rows_generic<scalar_t, kC>(a, begin, end);
  });
}

// Backward: one task per run of batch elements (see backward_batches).
template <typename scalar_t, int kC>
void backward_kernel(const Args<scalar_t>& a) {
  const bool avx2 = use_avx2();
  at::parallel_for(0, a.s.B, 1, [&](int64_t begin, int64_t end) {
#ifdef LRGAN_AVX2_CLONES
    if (avx2) return backward_batches_avx2<scalar_t, kC>(a, begin, end);
#endif
    (void)avx2;
    backward_batches_generic<scalar_t, kC>(a, begin, end);
  });
}

// Calls fn(std::integral_constant<int, kC>{}) with kC = 1, 3 or 0 (any other C).
template <typename Fn>
void dispatch_channels(int64_t C, Fn&& fn) {
  if (C == 1) {
    fn(std::integral_constant<int, 1>{});
  } else if (C == 3) {
    fn(std::integral_constant<int, 3>{});
  } else {
    fn(std::integral_constant<int, 0>{});
  }
}

at::Tensor stnm_cpu(const at::Tensor& canvas, const at::Tensor& fg, const at::Tensor& mask,
                    const at::Tensor& grid, bool legacy_grad) {
  (void)legacy_grad;  // only the backward depends on it
  const StnmSizes s = check_stnm_inputs("lrgan::stnm", canvas, fg, mask, grid);
  TORCH_INTERNAL_ASSERT(canvas.device().is_cpu());
  const at::Tensor canvas_c = canvas.contiguous();
  const at::Tensor fg_c = fg.contiguous();
  const at::Tensor mask_c = mask.contiguous();
  const at::Tensor grid_c = grid.contiguous();
  at::Tensor out = at::empty(canvas.sizes(), canvas.options());
  AT_DISPATCH_FLOATING_TYPES(canvas.scalar_type(), "lrgan_stnm_cpu", [&] {
    Args<scalar_t> a{};
    a.s = s;
    a.canvas = canvas_c.const_data_ptr<scalar_t>();
    a.fg = fg_c.const_data_ptr<scalar_t>();
    a.mask = mask_c.const_data_ptr<scalar_t>();
    a.grid = grid_c.const_data_ptr<scalar_t>();
    a.out = out.mutable_data_ptr<scalar_t>();
    dispatch_channels(s.C, [&](auto kC) { forward_kernel<scalar_t, decltype(kC)::value>(a); });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> stnm_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& canvas, const at::Tensor& fg,
    const at::Tensor& mask, const at::Tensor& grid, bool legacy_grad) {
  const StnmSizes s = check_stnm_backward_inputs(grad_out, canvas, fg, mask, grid);
  TORCH_INTERNAL_ASSERT(canvas.device().is_cpu());
  const at::Tensor grad_out_c = grad_out.contiguous();
  const at::Tensor canvas_c = canvas.contiguous();
  const at::Tensor fg_c = fg.contiguous();
  const at::Tensor mask_c = mask.contiguous();
  const at::Tensor grid_c = grid.contiguous();
  at::Tensor grad_canvas = at::empty(canvas.sizes(), canvas.options());
  at::Tensor grad_fg = at::empty(fg.sizes(), fg.options());  // zeroed per batch element
  at::Tensor grad_mask = at::empty(mask.sizes(), mask.options());
  at::Tensor grad_grid = at::empty(grid.sizes(), grid.options());
  AT_DISPATCH_FLOATING_TYPES(canvas.scalar_type(), "lrgan_stnm_backward_cpu", [&] {
    Args<scalar_t> a{};
    a.s = s;
    a.legacy_grad = legacy_grad;
    a.grad_out = grad_out_c.const_data_ptr<scalar_t>();
    a.canvas = canvas_c.const_data_ptr<scalar_t>();
    a.fg = fg_c.const_data_ptr<scalar_t>();
    a.mask = mask_c.const_data_ptr<scalar_t>();
    a.grid = grid_c.const_data_ptr<scalar_t>();
    a.grad_canvas = grad_canvas.mutable_data_ptr<scalar_t>();
    a.grad_fg = grad_fg.mutable_data_ptr<scalar_t>();
    a.grad_mask = grad_mask.mutable_data_ptr<scalar_t>();
    a.grad_grid = grad_grid.mutable_data_ptr<scalar_t>();
    dispatch_channels(s.C, [&](auto kC) { backward_kernel<scalar_t, decltype(kC)::value>(a); });
  });
  return {grad_canvas, grad_fg, grad_mask, grad_grid};
}

}  // namespace

// The schema is the contract with Python (lrgan/ops/extension.py) and the CUDA kernels.
// legacy_grad only changes the backward: True drops the mask's dependence on the grid,
// as the 2017 CUDA kernel did.
TORCH_LIBRARY(lrgan, m) {
  m.def("stnm(Tensor canvas, Tensor fg, Tensor mask, Tensor grid, bool legacy_grad=False) "
        "-> Tensor");
  m.def("stnm_backward(Tensor grad_out, Tensor canvas, Tensor fg, Tensor mask, Tensor grid, "
        "bool legacy_grad) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(lrgan, CPU, m) {
  m.impl("stnm", &stnm_cpu);
  m.impl("stnm_backward", &stnm_backward_cpu);
}

}  // namespace lrgan
