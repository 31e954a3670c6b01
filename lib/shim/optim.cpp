// The optimizer's side of libtorch. AdamW as one fused pass per parameter (torch.optim.AdamW(fused=True)): libtorch's
// _fused_adamw_ reads param, grad and both moments once and writes them once, where the
// step written with separate tensor operations makes ~10 passes and param-sized temporaries.
// tch binds no operator that takes lists of tensors to update in place, hence this shim.
#include <torch/torch.h>

#include <exception>
#include <vector>

#include "common.h"

using tunebook_shim::tensors_of;

extern "C" {

// One AdamW step over n parameters (same dtype and device as their grads and moments);
// `step` is a 0-dim float tensor holding the step number (1 for the first update), read by
// every parameter. Returns 0, or 1 with a message in err.
int tunebook_fused_adamw(const at::Tensor* const* params, const at::Tensor* const* grads, const at::Tensor* const* exp_avgs,
                         const at::Tensor* const* exp_avg_sqs, const at::Tensor* step, int n, double lr, double beta1,
                         double beta2, double weight_decay, double eps, char* err, size_t cap) {
  try {
    std::vector<at::Tensor> steps(n, *step);
    at::NoGradGuard no_grad;
    at::_fused_adamw_(tensors_of(params, n), tensors_of(grads, n), tensors_of(exp_avgs, n), tensors_of(exp_avg_sqs, n),
                      /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
    return 0;
  } catch (const std::exception& e) {
    tunebook_shim::write_error(e.what(), err, cap);
    return 1;
  }
}

// param.grad = None (torch's zero_grad(set_to_none=True)): the memory goes back until the
// next backward pass allocates it, instead of staying through the forward pass as zeros.
void tunebook_clear_grad(at::Tensor* param) { param->mutable_grad().reset(); }

// param.grad = grad (the data-parallel all-reduce gives a gradient to a parameter this
// worker's batch did not reach).
void tunebook_set_grad(at::Tensor* param, const at::Tensor* grad) { param->mutable_grad() = *grad; }

}  // extern "C"
