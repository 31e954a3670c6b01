// Custom autograd functions whose forward and backward are Rust closures.
//
// tch has no binding for torch::autograd::Function; gradient checkpointing (recompute a
// layer in the backward pass instead of keeping its activations) and QLoRA's linear
// (dequantize again in the backward pass instead of saving the fp32 weight) need one.
// Rust hands in an opaque context and three callbacks; everything else is libtorch.
#include <torch/torch.h>

#include "common.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Callbacks return a heap at::Tensor (tch's C_tensor) or null after writing a message.
typedef at::Tensor* (*ForwardFn)(void* ctx, const at::Tensor* input, char* err, size_t cap);
typedef at::Tensor* (*BackwardFn)(void* ctx, const at::Tensor* input, const at::Tensor* grad_output, char* err, size_t cap);
typedef void (*DropFn)(void* ctx);

at::Tensor take(at::Tensor* owned, const char* err) {
  if (owned == nullptr) throw std::runtime_error(err[0] ? err : "tunebook: a Rust autograd callback failed");
  at::Tensor result = std::move(*owned);
  delete owned;
  return result;
}

// Owns the Rust closure; held by the autograd graph until its node is freed.
struct RustClosure : torch::CustomClassHolder {
  void* ctx;
  ForwardFn forward_fn;
  BackwardFn backward_fn;
  DropFn drop_fn;
  RustClosure(void* c, ForwardFn f, BackwardFn b, DropFn d) : ctx(c), forward_fn(f), backward_fn(b), drop_fn(d) {}
  ~RustClosure() override { drop_fn(ctx); }

  at::Tensor forward(const at::Tensor& input) const {
    char err[4096] = {0};
    return take(forward_fn(ctx, &input, err, sizeof err), err);
  }
  at::Tensor backward(const at::Tensor& input, const at::Tensor& grad_output) const {
    char err[4096] = {0};
    return take(backward_fn(ctx, &input, &grad_output, err, sizeof err), err);
  }
};

// Random-number state of the input's device, so a recomputed dropout draws the same mask.
struct RngSnapshot {
  at::Tensor cpu, device;
  c10::Device where = c10::Device(c10::kCPU);

  static RngSnapshot take(const c10::Device& d) {
    RngSnapshot s;
    s.where = d;
    s.cpu = state_of(c10::Device(c10::kCPU));
    if (!d.is_cpu()) s.device = state_of(d);
    return s;
  }
  void restore() const {
    set(c10::Device(c10::kCPU), cpu);
    if (device.defined()) set(where, device);
  }
  static at::Tensor state_of(const c10::Device& d) {
    auto gen = at::globalContext().defaultGenerator(d);
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
  }
  static void set(const c10::Device& d, const at::Tensor& state) {
    auto gen = at::globalContext().defaultGenerator(d);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
};

struct RustFunction : torch::autograd::Function<RustFunction> {
  // `anchor` is a fresh leaf that requires grad, so the output joins the graph even when
  // the input does not (frozen embeddings under LoRA), as transformers'
  // enable_input_require_grads does for checkpointed layers.
  // Checkpointing needs the input again (`keep_input`, which also replays the RNG); a
  // backward that only needs the incoming gradient must not keep it alive: for a frozen
  // linear layer autograd itself would not.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& anchor,
                            c10::intrusive_ptr<RustClosure> closure, bool keep_input) {
    (void)anchor;
    ctx->save_for_backward(keep_input ? variable_list{input} : variable_list{});
    if (keep_input) {
      auto rng = RngSnapshot::take(input.device());
      ctx->saved_data["rng_cpu"] = rng.cpu;
      if (rng.device.defined()) ctx->saved_data["rng_device"] = rng.device;
    }
    at::Tensor output = closure->forward(input);
    ctx->saved_data["closure"] = c10::IValue::make_capsule(std::move(closure));
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    at::Tensor input = saved.empty() ? at::Tensor() : saved[0];
    auto closure = c10::static_intrusive_pointer_cast<RustClosure>(ctx->saved_data["closure"].toCapsule());
    at::Tensor grad_input;
    if (ctx->saved_data.count("rng_cpu")) {
      // Replay the forward's random draws, then put the caller's generator back.
      RngSnapshot now = RngSnapshot::take(input.device());
      RngSnapshot then = now;
      then.cpu = ctx->saved_data["rng_cpu"].toTensor();
      if (ctx->saved_data.count("rng_device")) then.device = ctx->saved_data["rng_device"].toTensor();
      then.restore();
      try {
        at::AutoGradMode grad(true);
        grad_input = closure->backward(input, grad_outputs[0]);
      } catch (...) {
        now.restore();
        throw;
      }
      now.restore();
    } else {
      at::AutoGradMode grad(true);
      grad_input = closure->backward(input, grad_outputs[0]);
    }
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void write_error(const std::exception& e, char* err, size_t cap) { tunebook_shim::write_error(e.what(), err, cap); }

}  // namespace

extern "C" {

// output = closure.forward(input), recorded so that backward calls closure.backward.
// Returns a new tensor, or null with a message in err. The closure is dropped exactly once.
at::Tensor* tunebook_apply_function(const at::Tensor* input, void* ctx, ForwardFn forward_fn, BackwardFn backward_fn,
                                    DropFn drop_fn, int keep_input, char* err, size_t cap) {
  try {
    auto closure = c10::make_intrusive<RustClosure>(ctx, forward_fn, backward_fn, drop_fn);
    auto anchor = torch::zeros({}, torch::TensorOptions().device(input->device()).requires_grad(true));
    return new at::Tensor(RustFunction::apply(*input, anchor, std::move(closure), keep_input != 0));
  } catch (const std::exception& e) {
    write_error(e, err, cap);
    return nullptr;
  }
}

// torch.autograd.backward(output, grad): accumulates into the leaves' .grad.
int tunebook_backward_with_grad(const at::Tensor* output, const at::Tensor* grad, char* err, size_t cap) {
  try {
    torch::autograd::backward({*output}, {*grad});
    return 0;
  } catch (const std::exception& e) {
    write_error(e, err, cap);
    return 1;
  }
}

int tunebook_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }

}  // extern "C"
