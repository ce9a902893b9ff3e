#include "comm/nccl_communicator.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <mutex>
#include <thread>

#include "comm/call_verifier.h"
#include "comm/cuda_check.h"
#include "comm/error.h"
#include "comm/mpi_check.h"
#include "comm/watchdog.h"

namespace dtrain::comm {

namespace {

constexpr auto kPollInterval = std::chrono::microseconds(20);

ncclDataType_t nccl_datatype(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32:
      return ncclFloat32;
    case DataType::kFloat64:
      return ncclFloat64;
    case DataType::kBFloat16:
      return ncclBfloat16;
    case DataType::kFloat16:
      return ncclFloat16;
    case DataType::kInt32:
      return ncclInt32;
    case DataType::kInt64:
      return ncclInt64;
    case DataType::kUInt8:
      return ncclUint8;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

}  // namespace

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  MPI_Comm control = MPI_COMM_NULL;  // for call checks and for splitting
  int device = 0;
  cudaStream_t stream = nullptr;
  cudaStream_t input_stream = nullptr;
  void* barrier_scratch = nullptr;  // one float, allocated by the first barrier
  std::string where;
  std::atomic<bool> aborted{false};
  std::mutex mutex;
  std::string reason;

  void abort(const std::string& why) {
    std::lock_guard<std::mutex> lock(mutex);
    if (aborted) return;
    reason = why;
    aborted = true;
    ncclCommAbort(comm);  // best effort: the communicator is already failing
  }

  // A failure NCCL reports asynchronously (a peer's connection dropped, say), as a message; empty if none.
  std::string async_error() {
    ncclResult_t result = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &result) != ncclSuccess || result == ncclSuccess || result == ncclInProgress) {
      return {};
    }
    return fmt::format("NCCL reported an asynchronous error on {}: {}", where, ncclGetErrorString(result));
  }

  ~State() {
    cudaSetDevice(device);
    if (comm != nullptr && !aborted) ncclCommDestroy(comm);
    if (barrier_scratch != nullptr) cudaFree(barrier_scratch);
    if (stream != nullptr) cudaStreamDestroy(stream);
    if (control != MPI_COMM_NULL) MPI_Comm_free(&control);
  }
};

namespace {

class NcclWork final : public Work {
 public:
  NcclWork(OpInfo info, std::chrono::milliseconds default_timeout, std::shared_ptr<CommProgress> progress,
           std::shared_ptr<NcclCommunicator::State> state, cudaEvent_t done)
      : Work(info, default_timeout, std::move(progress)), state_(std::move(state)), done_(done) {}
  ~NcclWork() override { cudaEventDestroy(done_); }

  WorkStatus status() override {
    if (failed()) return WorkStatus::kFailed;
    if (finished_) return WorkStatus::kSucceeded;
    const cudaError_t query = cudaEventQuery(done_);
    if (query == cudaSuccess) {
      set_finished_now();  // when the host first saw the event (the GPU finished a little earlier)
      finished_ = true;
      return WorkStatus::kSucceeded;
    }
    if (query == cudaErrorNotReady) return WorkStatus::kPending;
    error_ =
        fmt::format("{} on {}: cudaEventQuery failed: {}", info().describe(), state_->where, cudaGetErrorString(query));
    return WorkStatus::kFailed;
  }

  // The kernels of an op that can never finish are stopped by aborting the communicator (ncclCommAbort).
  void abandon(const std::string& reason) override { state_->abort(reason); }

 protected:
  void wait_until_finished(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const WorkStatus now = status();
      if (now == WorkStatus::kSucceeded) return;
      if (now == WorkStatus::kFailed) {
        state_->abort(error_);
        throw CommError(error_);
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(kPollInterval);
    }
    const std::string message =
        fmt::format("{} on {} did not finish within {} ms", info().describe(), state_->where, timeout.count());
    state_->abort(message);
    throw CommTimeout(message + " (the NCCL communicator is aborted)");
  }

 private:
  bool failed() {
    if (!error_.empty()) return true;
    if (state_->aborted) {
      error_ =
          fmt::format("{} on {}: the communicator was aborted: {}", info().describe(), state_->where, state_->reason);
      return true;
    }
    error_ = state_->async_error();
    return !error_.empty();
  }

  std::shared_ptr<NcclCommunicator::State> state_;
  cudaEvent_t done_;
  bool finished_ = false;  // the event was seen complete (status() is called from one thread)
  std::string error_;
};

}  // namespace

std::unique_ptr<NcclCommunicator> NcclCommunicator::create(MPI_Comm bootstrap, int device, CommOptions options) {
  auto state = std::make_shared<State>();
  std::string context = fmt::format("creating NCCL communicator '{}'", options.name);
  DTRAIN_MPI_CHECK(MPI_Comm_dup(bootstrap, &state->control), context);
  DTRAIN_MPI_CHECK(MPI_Comm_set_errhandler(state->control, MPI_ERRORS_RETURN), context);
  int rank = 0;
  int size = 0;
  DTRAIN_MPI_CHECK(MPI_Comm_rank(state->control, &rank), context);
  DTRAIN_MPI_CHECK(MPI_Comm_size(state->control, &size), context);
  context += fmt::format(" on rank {}/{}, device {}", rank, size, device);

  int device_count = 0;
  DTRAIN_CUDA_CHECK(cudaGetDeviceCount(&device_count), context);
  if (device < 0 || device >= device_count) {
    throw CommError(fmt::format("{}: this node has {} CUDA devices (0..{})", context, device_count, device_count - 1));
  }
  state->device = device;
  DTRAIN_CUDA_CHECK(cudaSetDevice(device), context);
  DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking), context);

  ncclUniqueId id{};
  if (rank == 0) DTRAIN_NCCL_CHECK(ncclGetUniqueId(&id), context);
  DTRAIN_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, state->control), context);
  DTRAIN_NCCL_CHECK(ncclCommInitRank(&state->comm, size, id, rank), context);
  auto progress = Watchdog::track(state->control, options.name);
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(std::move(state), rank, size, std::move(options), std::move(progress)));
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<State> state, int rank, int size, CommOptions options,
                                   std::shared_ptr<CommProgress> progress)
    : Communicator(rank, size, std::move(options), std::move(progress)), state_(std::move(state)) {
  state_->where = where();
}

NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::max_tag() const {
  return INT_MAX;
}
MPI_Comm NcclCommunicator::mpi_group() const {
  return state_->control;
}
int NcclCommunicator::device_index() const {
  return state_->device;
}
cudaStream_t NcclCommunicator::stream() const {
  return state_->stream;
}
void NcclCommunicator::set_input_stream(cudaStream_t stream) {
  state_->input_stream = stream;
}
void NcclCommunicator::abort(const std::string& reason) {
  state_->abort(reason);
}

void NcclCommunicator::check_usable() const {
  if (!state_->aborted) return;
  std::lock_guard<std::mutex> lock(state_->mutex);
  throw CommError(fmt::format("{} is unusable: it was aborted after: {}", where(), state_->reason));
}

WorkPtr NcclCommunicator::launch(const OpInfo& info, bool collective,
                                 const std::function<ncclResult_t(ncclComm_t, cudaStream_t)>& call) {
  const std::string what = info.describe() + " on " + where();
  try {
    if (collective && options().verify_calls) verify_same_call(state_->control, info, where());
    DTRAIN_CUDA_CHECK(cudaSetDevice(state_->device), what);
    cudaEvent_t inputs_ready = nullptr;
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&inputs_ready, cudaEventDisableTiming), what);
    DTRAIN_CUDA_CHECK(cudaEventRecord(inputs_ready, state_->input_stream), what);
    DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(state_->stream, inputs_ready, 0), what);
    DTRAIN_CUDA_CHECK(cudaEventDestroy(inputs_ready), what);  // released once the wait has been satisfied
    DTRAIN_NCCL_CHECK(call(state_->comm, state_->stream), what);
    cudaEvent_t done = nullptr;
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), what);
    DTRAIN_CUDA_CHECK(cudaEventRecord(done, state_->stream), what);
    return std::make_shared<NcclWork>(info, options().timeout, progress(), state_, done);
  } catch (const CommError& e) {
    state_->abort(e.what());
    throw;
  }
}

WorkPtr NcclCommunicator::do_allreduce(const Buffer& buffer, const OpInfo& info) {
  return launch(info, true, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(buffer.data, buffer.data, buffer.count, nccl_datatype(buffer.dtype), nccl_op(info.op), comm,
                         stream);
  });
}

WorkPtr NcclCommunicator::do_broadcast(const Buffer& buffer, const OpInfo& info) {
  return launch(info, true, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclBroadcast(buffer.data, buffer.data, buffer.count, nccl_datatype(buffer.dtype), info.peer, comm, stream);
  });
}

WorkPtr NcclCommunicator::do_allgather(const Buffer& output, const Buffer& input, const OpInfo& info) {
  return launch(info, true, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllGather(input.data, output.data, input.count, nccl_datatype(input.dtype), comm, stream);
  });
}

WorkPtr NcclCommunicator::do_reduce_scatter(const Buffer& output, const Buffer& input, const OpInfo& info) {
  return launch(info, true, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclReduceScatter(input.data, output.data, output.count, nccl_datatype(output.dtype), nccl_op(info.op), comm,
                             stream);
  });
}

WorkPtr NcclCommunicator::do_send(const Buffer& buffer, const OpInfo& info) {
  return launch(info, false, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclSend(buffer.data, buffer.count, nccl_datatype(buffer.dtype), info.peer, comm, stream);
  });
}

WorkPtr NcclCommunicator::do_recv(const Buffer& buffer, const OpInfo& info) {
  return launch(info, false, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclRecv(buffer.data, buffer.count, nccl_datatype(buffer.dtype), info.peer, comm, stream);
  });
}

WorkPtr NcclCommunicator::do_barrier(const OpInfo& info) {
  // NCCL has no barrier: a one-element allreduce on the communicator's stream, then the Work waits for it.
  if (state_->barrier_scratch == nullptr) {
    DTRAIN_CUDA_CHECK(cudaSetDevice(state_->device), info.describe() + " on " + where());
    DTRAIN_CUDA_CHECK(cudaMalloc(&state_->barrier_scratch, sizeof(float)), info.describe() + " on " + where());
  }
  void* scratch = state_->barrier_scratch;
  return launch(info, true, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(scratch, scratch, 1, ncclFloat32, ncclSum, comm, stream);
  });
}

std::unique_ptr<Communicator> NcclCommunicator::do_split(int color, int key, CommOptions options, const OpInfo& info) {
  const std::string what = info.describe() + " on " + where();
  if (this->options().verify_calls) verify_same_call(state_->control, info, where());
  auto child = std::make_shared<State>();
  child->device = state_->device;
  DTRAIN_MPI_CHECK(MPI_Comm_split(state_->control, color < 0 ? MPI_UNDEFINED : color, key, &child->control), what);
  DTRAIN_NCCL_CHECK(ncclCommSplit(state_->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child->comm, nullptr),
                    what);
  if (color < 0) return nullptr;
  int rank = 0;
  int size = 0;
  DTRAIN_MPI_CHECK(MPI_Comm_rank(child->control, &rank), what);
  DTRAIN_MPI_CHECK(MPI_Comm_size(child->control, &size), what);
  DTRAIN_CUDA_CHECK(cudaSetDevice(child->device), what);
  DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&child->stream, cudaStreamNonBlocking), what);
  DTRAIN_MPI_CHECK(MPI_Comm_set_errhandler(child->control, MPI_ERRORS_RETURN), what);
  auto progress = Watchdog::track(child->control, options.name);
  return std::unique_ptr<Communicator>(
      new NcclCommunicator(std::move(child), rank, size, std::move(options), std::move(progress)));
}

}  // namespace dtrain::comm
