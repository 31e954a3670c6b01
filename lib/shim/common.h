// What the shim's C functions share: handing errors back through the caller's buffer, and
// tensor arrays from Rust as the vectors libtorch's list operators take.
#pragma once
#include <torch/torch.h>

#include <cstring>
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

}  // namespace tunebook_shim
