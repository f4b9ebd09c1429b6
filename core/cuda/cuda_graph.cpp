// CudaBackend's captured steps: the work a step queues on the compute stream,
// recorded once as a CUDA graph and launched again with one call. The graph
// keeps every address it was recorded with: the caching allocator reserves
// the step's temporaries for it and reports when a block it uses is freed
// (core/caching_allocator.h), which drops the graph.
#include <cstdio>
#include <string>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"

namespace vmoe {

namespace {

bool not_captured(const std::string& why) {
  std::fprintf(stderr,
               "vmoe: the step could not be captured as a CUDA graph (%s); it runs "
               "uncaptured\n",
               why.c_str());
  return false;
}

}  // namespace

bool CudaBackend::capture(const std::function<void()>& body) {
  drop_capture();
  // Thread-local mode: the loader's threads may still pin host memory; only
  // this thread's unsafe calls (a cudaMalloc, a synchronous copy) end it.
  const cudaError_t begun = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
  if (begun != cudaSuccess) {
    (void)cudaGetLastError();
    return not_captured(cudaGetErrorString(begun));
  }
  allocator_.begin_capture();
  bool recorded = true;
  std::string why;
  try {
    body();
  } catch (const std::exception& e) {
    recorded = false;
    why = e.what();
  }
  allocator_.end_capture();
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
  if (end != cudaSuccess) {
    (void)cudaGetLastError();
    if (recorded) why = cudaGetErrorString(end);
    recorded = false;
  }
  if (recorded) {
    const cudaError_t made = cudaGraphInstantiate(&graph_, graph, 0);
    if (made != cudaSuccess) {
      (void)cudaGetLastError();
      why = cudaGetErrorString(made);
      recorded = false;
      graph_ = nullptr;
    }
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (!recorded) {
    allocator_.release_capture();
    return not_captured(why);
  }
  replay();
  return true;
}

void CudaBackend::replay() {
  VMOE_CHECK(graph_ != nullptr, "replay without a captured step");
  VMOE_CUDA_CHECK(cudaGraphLaunch(graph_, stream_));
}

bool CudaBackend::capture_valid() const {
  return graph_ != nullptr && !allocator_.capture_invalidated();
}

void CudaBackend::drop_capture() {
  if (graph_ == nullptr) return;
  // Launches already queued keep their own reference to the executable graph.
  cudaGraphExecDestroy(graph_);
  graph_ = nullptr;
  allocator_.release_capture();
}

}  // namespace vmoe
