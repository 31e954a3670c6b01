// c10d process groups for tunebook: the engine PyTorch's DistributedDataParallel uses
// (TCPStore rendezvous, Gloo on CPU, NCCL on CUDA), exposed as a handful of C functions
// because tch has no binding for torch.distributed.
#include <torch/torch.h>

#include "common.h"
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef TUNEBOOK_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

using tunebook_shim::tensors_of;
using tunebook_shim::write_error;

// Waits for a collective with the group's timeout, so a dead peer is an error, not a hang.
void finish(Group* g, c10::intrusive_ptr<c10d::Work> work) {
  if (!work->wait(g->timeout)) throw std::runtime_error("collective did not complete");
}

template <typename F>
int guarded(char* err, size_t cap, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    write_error(e.what(), err, cap);
    return 1;
  }
}

c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                       std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  // As torch.distributed does: GLOO_SOCKET_IFNAME picks the interface, otherwise the
  // address this host name resolves to (loopback when it does not resolve).
  const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
  options->devices.push_back(interface && *interface ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
                                                     : c10d::ProcessGroupGloo::createDefaultDevice());
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
}

c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                       std::chrono::milliseconds timeout) {
#ifdef TUNEBOOK_NCCL
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
#else
  (void)store, (void)rank, (void)world, (void)timeout;
  throw std::runtime_error("the NCCL backend needs tunebook built with the `cuda` feature");
#endif
}

}  // namespace

extern "C" {

// Rendezvous at master_addr:master_port (rank 0 hosts the TCPStore, as torchrun's
// MASTER_ADDR/MASTER_PORT convention has it) and build the backend ("gloo" or "nccl").
void* tunebook_dist_init(const char* backend, const char* master_addr, int master_port, int rank, int world,
                         long timeout_ms, char* err, size_t cap) {
  try {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(master_port);
    options.isServer = rank == 0;
    options.numWorkers = world;
    options.waitWorkers = true;
    options.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(master_addr, options);
    auto store = c10::make_intrusive<c10d::PrefixStore>("tunebook/default_pg/", tcp);
    std::string name(backend);
    auto group = new Group{store, nullptr, timeout};
    try {
      if (name == "gloo") {
        group->backend = make_gloo(store, rank, world, timeout);
      } else if (name == "nccl") {
        group->backend = make_nccl(store, rank, world, timeout);
      } else {
        throw std::runtime_error("unknown backend " + name + " (supported: gloo, nccl)");
      }
    } catch (...) {
      delete group;
      throw;
    }
    return group;
  } catch (const std::exception& e) {
    write_error(e.what(), err, cap);
    return nullptr;
  }
}

void tunebook_dist_free(void* group) { delete static_cast<Group*>(group); }

// In-place sum across ranks.
int tunebook_dist_all_reduce_sum(void* group, at::Tensor** tensors, int n, char* err, size_t cap) {
  return guarded(err, cap, [&] {
    auto g = static_cast<Group*>(group);
    auto ts = tensors_of(tensors, n);
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    finish(g, g->backend->allreduce(ts, opts));
  });
}

// In place: every rank ends with root's values.
int tunebook_dist_broadcast(void* group, at::Tensor** tensors, int n, int root, char* err, size_t cap) {
  return guarded(err, cap, [&] {
    auto g = static_cast<Group*>(group);
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = g->timeout;
    for (int i = 0; i < n; ++i) {
      std::vector<at::Tensor> one{*tensors[i]};
      finish(g, g->backend->broadcast(one, opts));
    }
  });
}

int tunebook_dist_barrier(void* group, char* err, size_t cap) {
  return guarded(err, cap, [&] {
    auto g = static_cast<Group*>(group);
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    finish(g, g->backend->barrier(opts));
  });
}

}  // extern "C"
