// Matrix products on the CPU through oneDNN instead of the BLAS libtorch calls by default.
//
// libtorch sends an fp32 matmul to MKL's sgemm. On AMD CPUs MKL takes its generic AVX2 code
// path even where the CPU has AVX-512 (measured on a Zen 5 here: 130-225 GFLOP/s), while
// oneDNN, also inside libtorch, uses AVX-512 (330-500 GFLOP/s on the same shapes) and
// keeps fp32 accumulation (no bf16 or tf32 rounding unless torch's matmul precision asks).
// libtorch reaches oneDNN for fp32 only when a lower precision is allowed, so the linear
// layer's forward and backward are written here on at::native::mkldnn_matmul, the function
// libtorch's addmm itself calls for bf16.
//
// Signals are held off while oneDNN's kernels run (see SignalsHeld): on the Firecracker
// VMs this project runs on, a signal delivered in the middle of an AVX-512 kernel corrupts
// its state; reproduced with torch alone (oneDNN's fp32 product in a loop, SIGUSR1 from
// another process: glibc reports a corrupted heap within seconds; MKL's AVX2 code is fine).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "common.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <exception>
#include <optional>
#include <thread>

namespace at {
namespace native {
// Exported by libtorch_cpu (ATen/native/mkldnn/Matmul.h is not in the wheel's headers):
// result = beta * result + alpha * mat1 @ mat2. mat1/mat2 may be contiguous or transposed.
TORCH_API void mkldnn_matmul(const Tensor& mat1, const Tensor& mat2, const Tensor& result, float beta, float alpha);
}  // namespace native
}  // namespace at

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Every signal a thread can defer (not the ones its own faults raise).
sigset_t deferrable_signals() {
  sigset_t set;
  sigfillset(&set);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) sigdelset(&set, sig);
  return set;
}

// libtorch's OpenMP threads (which run oneDNN's kernels beside the calling thread) never
// take a signal: the kernel then delivers a process-wide one to a thread outside oneDNN.
// Done again when the thread count changes; new pool threads inherit the caller's mask,
// which is deferring whenever they are created inside a product.
void keep_signals_off_pool_threads() {
  static std::atomic<int> covered{0};
  int threads = at::get_num_threads();
  if (covered.load() == threads) return;
  auto caller = std::this_thread::get_id();
  sigset_t set = deferrable_signals();
  // One index per thread: ATen's OpenMP backend gives each thread one chunk of grain 1.
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    if (std::this_thread::get_id() != caller) pthread_sigmask(SIG_BLOCK, &set, nullptr);
  });
  covered.store(threads);
}

// Signals arriving meanwhile wait until the product is done (a few milliseconds).
struct SignalsHeld {
  sigset_t previous;
  SignalsHeld() {
    keep_signals_off_pool_threads();
    sigset_t set = deferrable_signals();
    pthread_sigmask(SIG_BLOCK, &set, &previous);
  }
  ~SignalsHeld() { pthread_sigmask(SIG_SETMASK, &previous, nullptr); }
};

void mkldnn_matmul_held(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out, float beta) {
  SignalsHeld held;
  at::native::mkldnn_matmul(a, b, out, beta, 1.0f);
}

at::Tensor onednn_mm(const at::Tensor& a, const at::Tensor& b) {
  auto out = at::empty({a.size(0), b.size(1)}, a.options());
  mkldnn_matmul_held(a, b, out, 0.0f);
  return out;
}

// x [.., in] · weight [out, in]ᵀ + bias, with flattened leading dimensions.
at::Tensor linear_forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  auto rows = x.reshape({-1, x.size(-1)});
  auto y = onednn_mm(rows, weight.t());
  if (bias) y.add_(*bias);
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return y.view(sizes);
}

// Saves the input only when the weight is trained: a frozen layer's backward needs just
// the weight, as autograd's own linear.
struct OneDnnLinear : torch::autograd::Function<OneDnnLinear> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias) {
    ctx->save_for_backward({weight.requires_grad() ? x : at::Tensor(), weight});
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    ctx->saved_data["has_bias"] = bias.has_value();
    return linear_forward(x, weight, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    auto grad = grad_outputs[0].reshape({-1, weight.size(0)});
    at::Tensor grad_x, grad_weight, grad_bias;
    if (ctx->needs_input_grad(0)) grad_x = onednn_mm(grad, weight).view(ctx->saved_data["x_sizes"].toIntVector());
    if (ctx->needs_input_grad(1)) grad_weight = onednn_mm(grad.t(), x.reshape({-1, x.size(-1)}));
    // Inputs given as an empty optional have no gradient slot to ask about.
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) grad_bias = grad.sum(0);
    return {grad_x, grad_weight, grad_bias};
  }
};

}  // namespace

extern "C" {

// Returns x·weightᵀ + bias (bias may be null) as a new tensor, recorded for autograd when
// grad mode is on; or null with a message in err.
at::Tensor* tunebook_onednn_linear(const at::Tensor* x, const at::Tensor* weight, const at::Tensor* bias, char* err,
                                   size_t cap) {
  return tunebook_shim::guarded(
      [&] {
        std::optional<at::Tensor> b = bias ? std::optional<at::Tensor>(*bias) : std::nullopt;
        if (tunebook_shim::tracked({x, weight, bias})) return OneDnnLinear::apply(*x, *weight, b);
        return linear_forward(*x, *weight, b);
      },
      err, cap);
}

// out = beta·out + a·b for 2-D a, b (contiguous or transposed views) and a contiguous out
// of matching shape; not recorded for autograd. Returns 0, or 1 with a message in err.
int tunebook_onednn_addmm(const at::Tensor* out, const at::Tensor* a, const at::Tensor* b, float beta, char* err,
                          size_t cap) {
  try {
    at::NoGradGuard no_grad;
    mkldnn_matmul_held(*a, *b, *out, beta);
    return 0;
  } catch (const std::exception& e) {
    tunebook_shim::write_error(e.what(), err, cap);
    return 1;
  }
}

// Whether this libtorch was built with oneDNN (the PyPI wheels are, on x86-64 and arm64).
int tunebook_has_onednn() { return at::hasMKLDNN() ? 1 : 0; }

}  // extern "C"
