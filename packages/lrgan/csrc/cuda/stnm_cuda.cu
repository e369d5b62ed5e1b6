// CUDA kernels of the STNM op (see ../stnm.cpp for the schema and the semantics).
//
// One thread per output pixel (b, y, x), looping over channels. The backward scatters
// into grad_fg and grad_mask with atomics (so it is not bitwise deterministic; it raises
// under torch.use_deterministic_algorithms(True)). Indices are 64-bit throughout and the
// kernels run on the current stream of the inputs' device.

#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../stnm.h"
#include "../stnm_math.h"

namespace lrgan {

namespace {

constexpr int kThreads = 256;

int64_t num_blocks(int64_t n) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t max_blocks = sms * 32;  // the grid-stride loops cover the rest
  return std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, max_blocks));
}

template <typename scalar_t>
__global__ void forward_kernel(StnmSizes s, const scalar_t* __restrict__ canvas,
                               const scalar_t* __restrict__ fg,
                               const scalar_t* __restrict__ mask,
                               const scalar_t* __restrict__ grid, scalar_t* __restrict__ out) {
  const int64_t HW = s.H * s.W;
  const int64_t HWf = s.Hf * s.Wf;
  const scalar_t half_h = scalar_t(s.Hf - 1) / 2;
  const scalar_t half_w = scalar_t(s.Wf - 1) / 2;
  const int64_t n = s.B * HW;
  for (int64_t pix = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; pix < n;
       pix += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = pix / HW;
    const int64_t p = pix - b * HW;
    const int64_t first = b * s.C * HW + p;
    const Taps<scalar_t> t = locate(grid[2 * pix], grid[2 * pix + 1], half_h, half_w, s.Hf, s.Wf);
    if (!t.any) {
      for (int64_t c = 0; c < s.C; ++c) out[first + c * HW] = canvas[first + c * HW];
      continue;
    }
    scalar_t f[4];
    gather(mask + b * HWf, t, f);
    const scalar_t m = interpolate(f, t);
    const scalar_t* fg_b = fg + b * s.C * HWf;
    for (int64_t c = 0; c < s.C; ++c) {
      gather(fg_b + c * HWf, t, f);
      out[first + c * HW] = (scalar_t(1) - m) * canvas[first + c * HW] + m * interpolate(f, t);
    }
  }
}

template <typename scalar_t>
__device__ inline void scatter_atomic(scalar_t* plane, const Taps<scalar_t>& t,
                                      const scalar_t w[4], scalar_t value) {
  for (int k = 0; k < 4; ++k) {
    if (t.inside[k]) gpuAtomicAdd(plane + t.offset[k], w[k] * value);
  }
}

template <typename scalar_t>
__global__ void backward_kernel(StnmSizes s, bool legacy_grad,
                                const scalar_t* __restrict__ grad_out,
                                const scalar_t* __restrict__ canvas,
                                const scalar_t* __restrict__ fg,
                                const scalar_t* __restrict__ mask,
                                const scalar_t* __restrict__ grid,
                                scalar_t* __restrict__ grad_canvas, scalar_t* grad_fg,
                                scalar_t* grad_mask, scalar_t* __restrict__ grad_grid) {
  const int64_t HW = s.H * s.W;
  const int64_t HWf = s.Hf * s.Wf;
  const scalar_t half_h = scalar_t(s.Hf - 1) / 2;
  const scalar_t half_w = scalar_t(s.Wf - 1) / 2;
  const int64_t n = s.B * HW;
  for (int64_t pix = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; pix < n;
       pix += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = pix / HW;
    const int64_t p = pix - b * HW;
    const int64_t first = b * s.C * HW + p;
    const Taps<scalar_t> t = locate(grid[2 * pix], grid[2 * pix + 1], half_h, half_w, s.Hf, s.Wf);
    if (!t.any) {  // m' = 0: the canvas passes through, nothing else gets gradient
      for (int64_t c = 0; c < s.C; ++c) grad_canvas[first + c * HW] = grad_out[first + c * HW];
      grad_grid[2 * pix] = scalar_t(0);
      grad_grid[2 * pix + 1] = scalar_t(0);
      continue;
    }
    scalar_t w[4], f[4];
    weights(t, w);
    gather(mask + b * HWf, t, f);
    const Sample<scalar_t> m = sample(f, t);
    const scalar_t* fg_b = fg + b * s.C * HWf;
    scalar_t* gfg_b = grad_fg + b * s.C * HWf;
    scalar_t d_m = 0;  // dL/dm' = sum_c g_c (fg'_c - canvas_c)
    scalar_t d_y = 0;  // sum_c g_c dfg'_c/dyc
    scalar_t d_x = 0;  // sum_c g_c dfg'_c/dxc
    for (int64_t c = 0; c < s.C; ++c) {
      const int64_t q = first + c * HW;
      const scalar_t g = grad_out[q];
      grad_canvas[q] = g * (scalar_t(1) - m.value);
      gather(fg_b + c * HWf, t, f);
      const Sample<scalar_t> v = sample(f, t);
      d_m += g * (v.value - canvas[q]);
      d_y += g * v.dy;
      d_x += g * v.dx;
      scatter_atomic(gfg_b + c * HWf, t, w, g * m.value);
    }
    scatter_atomic(grad_mask + b * HWf, t, w, d_m);
    scalar_t grad_y = m.value * d_y;
    scalar_t grad_x = m.value * d_x;
    if (!legacy_grad) {  // the mask moves with the grid too
      grad_y += d_m * m.dy;
      grad_x += d_m * m.dx;
    }
    grad_grid[2 * pix] = grad_y * half_h;
    grad_grid[2 * pix + 1] = grad_x * half_w;
  }
}

at::Tensor stnm_cuda(const at::Tensor& canvas, const at::Tensor& fg, const at::Tensor& mask,
                     const at::Tensor& grid, bool legacy_grad) {
  (void)legacy_grad;
  const StnmSizes s = check_stnm_inputs("lrgan::stnm", canvas, fg, mask, grid);
  TORCH_INTERNAL_ASSERT(canvas.device().is_cuda());
  const c10::cuda::CUDAGuard device_guard(canvas.device());
  const at::Tensor canvas_c = canvas.contiguous();
  const at::Tensor fg_c = fg.contiguous();
  const at::Tensor mask_c = mask.contiguous();
  const at::Tensor grid_c = grid.contiguous();
  at::Tensor out = at::empty(canvas.sizes(), canvas.options());
  const int64_t n = s.B * s.H * s.W;
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(canvas.scalar_type(), "lrgan_stnm_cuda", [&] {
    forward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
        s, canvas_c.const_data_ptr<scalar_t>(), fg_c.const_data_ptr<scalar_t>(),
        mask_c.const_data_ptr<scalar_t>(), grid_c.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> stnm_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& canvas, const at::Tensor& fg,
    const at::Tensor& mask, const at::Tensor& grid, bool legacy_grad) {
  const StnmSizes s = check_stnm_backward_inputs(grad_out, canvas, fg, mask, grid);
  TORCH_INTERNAL_ASSERT(canvas.device().is_cuda());
  at::globalContext().alertNotDeterministic("lrgan::stnm_backward (CUDA, atomicAdd scatter)");
  const c10::cuda::CUDAGuard device_guard(canvas.device());
  const at::Tensor grad_out_c = grad_out.contiguous();
  const at::Tensor canvas_c = canvas.contiguous();
  const at::Tensor fg_c = fg.contiguous();
  const at::Tensor mask_c = mask.contiguous();
  const at::Tensor grid_c = grid.contiguous();
  at::Tensor grad_canvas = at::empty(canvas.sizes(), canvas.options());
  at::Tensor grad_fg = at::zeros(fg.sizes(), fg.options());
  at::Tensor grad_mask = at::zeros(mask.sizes(), mask.options());
  at::Tensor grad_grid = at::empty(grid.sizes(), grid.options());
  const int64_t n = s.B * s.H * s.W;
  if (n == 0) return {grad_canvas, grad_fg, grad_mask, grad_grid};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(canvas.scalar_type(), "lrgan_stnm_backward_cuda", [&] {
    backward_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(
        s, legacy_grad, grad_out_c.const_data_ptr<scalar_t>(),
        canvas_c.const_data_ptr<scalar_t>(), fg_c.const_data_ptr<scalar_t>(),
        mask_c.const_data_ptr<scalar_t>(), grid_c.const_data_ptr<scalar_t>(),
        grad_canvas.mutable_data_ptr<scalar_t>(), grad_fg.mutable_data_ptr<scalar_t>(),
        grad_mask.mutable_data_ptr<scalar_t>(), grad_grid.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_canvas, grad_fg, grad_mask, grad_grid};
}

}  // namespace

TORCH_LIBRARY_IMPL(lrgan, CUDA, m) {
  m.impl("stnm", &stnm_cuda);
  m.impl("stnm_backward", &stnm_backward_cuda);
}

}  // namespace lrgan
