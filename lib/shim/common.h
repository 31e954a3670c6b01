// What the shim's C functions share: handing errors back through the caller's buffer,
// tensor arrays from Rust as the vectors libtorch's list operators take, and the choice
// between recording an autograd node and plain computation.
#pragma once
#include <torch/torch.h>

#include <cstring>
#include <exception>
#include <initializer_list>
#include <vector>

namespace tunebook_shim {

// Copies `what` into err (capacity cap), truncated and NUL-terminated.
inline void write_error(const char* what, char* err, size_t cap) {
  if (cap == 0) return;
  std::strncpy(err, what, cap - 1);
  err[cap - 1] = 0;
}

inline std::vector<at::Tensor> tensors_of(const at::Tensor* const* tensors, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

// A new heap tensor from f() (tch's C_tensor), or null after writing f's exception to err.
template <typename F>
at::Tensor* guarded(F f, char* err, size_t cap) {
  try {
    return new at::Tensor(f());
  } catch (const std::exception& e) {
    write_error(e.what(), err, cap);
    return nullptr;
  }
}

// Whether an operation on these inputs must be recorded for autograd.
inline bool tracked(std::initializer_list<const at::Tensor*> inputs) {
  if (!at::GradMode::is_enabled()) return false;
  for (auto t : inputs)
    if (t != nullptr && t->requires_grad()) return true;
  return false;
}

}  // namespace tunebook_shim
