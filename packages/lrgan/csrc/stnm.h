// Declarations shared by the CPU (stnm.cpp) and CUDA (cuda/stnm_cuda.cu) kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace lrgan {

// Sizes of one STNM call. Layout (NCHW, contiguous inside the kernels):
//   canvas [B, C, H, W], fg [B, C, Hf, Wf], mask [B, 1, Hf, Wf], grid [B, H, W, 2] in (y, x).
struct StnmSizes {
  int64_t B, C, H, W, Hf, Wf;
};

// TORCH_CHECKs the shapes, dtypes and devices of the four inputs and returns their sizes.
// `op` names the operator in the error messages.
StnmSizes check_stnm_inputs(const char* op, const at::Tensor& canvas, const at::Tensor& fg,
                            const at::Tensor& mask, const at::Tensor& grid);

// Also checks grad_out against the canvas.
StnmSizes check_stnm_backward_inputs(const at::Tensor& grad_out, const at::Tensor& canvas,
                                     const at::Tensor& fg, const at::Tensor& mask,
                                     const at::Tensor& grid);

}  // namespace lrgan
