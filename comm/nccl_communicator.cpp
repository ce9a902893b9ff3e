#include "comm/nccl_communicator.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/call_verifier.h"
#include "comm/cuda_check.h"
#include "comm/error.h"
#include "comm/gpu_sharing.h"
#include "comm/mpi_check.h"
#include "comm/watchdog.h"

namespace dtrain::comm {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kPollInterval = std::chrono::microseconds(20);
// The monitor releases buffers and enforces deadlines; neither needs to be seen sooner than this.
constexpr auto kMonitorInterval = std::chrono::milliseconds(1);

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

// A CUDA event shared by a Work and the monitor: either may be the last to need it. Outside the anonymous namespace:
// NcclCommunicator::State, which has external linkage, holds it.
namespace nccl_internal {
struct Event {
  cudaEvent_t event = nullptr;
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() {
    if (event != nullptr) cudaEventDestroy(event);
  }
};
}  // namespace nccl_internal

namespace {

using nccl_internal::Event;

// In non-blocking mode a NCCL call may return ncclInProgress: the call is then done once the communicator's
// asynchronous error leaves ncclInProgress. Returns the final result, or ncclInProgress if `deadline` came first.
ncclResult_t settle(ncclComm_t comm, ncclResult_t result, Clock::time_point deadline) {
  while (result == ncclInProgress && Clock::now() < deadline) {
    std::this_thread::sleep_for(kPollInterval);
    const ncclResult_t query = ncclCommGetAsyncError(comm, &result);
    if (query != ncclSuccess) return query;
  }
  return result;
}

ncclConfig_t non_blocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

// One point-to-point call in a group of its own, the form NCCL documents for send/recv; in non-blocking mode the
// group's end is also where a connection still being set up shows as ncclInProgress.
ncclResult_t in_group(const std::function<ncclResult_t()>& call) {
  ncclResult_t result = ncclGroupStart();
  if (result != ncclSuccess) return result;
  const ncclResult_t call_result = call();
  result = ncclGroupEnd();  // always, to leave the group even when the call failed
  return call_result != ncclSuccess ? call_result : result;
}

// What a rank tells the other ranks of its node about its device before any NCCL call.
struct DeviceReport {
  int ok = 0;  // the rank's own device checks passed
  int rank = 0;
  int device = 0;
  cudaUUID_t uuid{};
};

}  // namespace

struct NcclCommunicator::State {
  // Set while the communicator is made, read-only afterwards.
  MPI_Comm control = MPI_COMM_NULL;  // for call checks and for splitting
  int device = 0;
  cudaStream_t stream = nullptr;
  std::chrono::milliseconds timeout{};
  std::string where;

  // `comm` is used and ended only under `mutex`: an abort (from the monitor, the watchdog or a failing wait) never
  // frees it under a launch or an error query on another thread.
  std::mutex mutex;
  ncclComm_t comm = nullptr;
  std::atomic<bool> aborted{false};
  std::string reason;
  void* barrier_scratch = nullptr;  // one float, allocated and zeroed by the first barrier

  // The monitor: every operation launched and not yet seen finished, oldest first (one stream: they finish in order).
  struct Pending {
    std::uint64_t id = 0;
    std::shared_ptr<Event> done;
    std::vector<std::shared_ptr<const void>> keepalive;     // the buffers' owners, released once `done` has passed
    Clock::time_point deadline = Clock::time_point::max();  // set by a non-blocking wait
    std::string overdue;                                    // the abort reason if the deadline passes
  };
  std::mutex monitor_mutex;
  std::condition_variable monitor_wakeup;
  std::deque<Pending> pending;
  std::uint64_t next_id = 0;
  bool stopping = false;
  std::thread monitor;

  void abort(const std::string& why) {
    std::lock_guard<std::mutex> lock(mutex);
    if (aborted) return;
    reason = why;
    aborted = true;
    if (comm != nullptr) ncclCommAbort(comm);  // best effort: the communicator is already failing
    comm = nullptr;
  }

  std::string abort_reason() {
    std::lock_guard<std::mutex> lock(mutex);
    return reason;
  }

  // A failure NCCL reports asynchronously (a peer's connection dropped, say), as a message; empty if none.
  std::string async_error() {
    std::lock_guard<std::mutex> lock(mutex);
    if (comm == nullptr) return {};
    ncclResult_t result = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &result) != ncclSuccess || result == ncclSuccess || result == ncclInProgress) {
      return {};
    }
    return fmt::format("NCCL reported an asynchronous error on {}: {} ({})", where, ncclGetErrorString(result),
                       ncclGetLastError(comm));
  }

  // Hands a launched operation to the monitor; returns its id for set_deadline.
  std::uint64_t track(std::shared_ptr<Event> done, std::vector<std::shared_ptr<const void>> keepalive) {
    std::lock_guard<std::mutex> lock(monitor_mutex);
    if (!monitor.joinable()) monitor = std::thread([this] { run_monitor(); });
    Pending entry;
    entry.id = next_id++;
    entry.done = std::move(done);
    entry.keepalive = std::move(keepalive);
    pending.push_back(std::move(entry));
    monitor_wakeup.notify_one();
    return pending.back().id;
  }

  // The operation `id` must finish by `deadline`, else the communicator is aborted with `overdue`. No effect if it
  // has finished already.
  void set_deadline(std::uint64_t id, Clock::time_point deadline, std::string overdue) {
    std::lock_guard<std::mutex> lock(monitor_mutex);
    for (Pending& entry : pending) {
      if (entry.id != id) continue;
      if (deadline < entry.deadline) {
        entry.deadline = deadline;
        entry.overdue = std::move(overdue);
      }
      break;
    }
    monitor_wakeup.notify_one();
  }

  void run_monitor() {
    cudaSetDevice(device);
    std::unique_lock<std::mutex> lock(monitor_mutex);
    while (!stopping) {
      while (!pending.empty() && cudaEventQuery(pending.front().done->event) != cudaErrorNotReady) {
        pending.pop_front();  // finished (or its stream failed, which a wait reports): its buffers may go
      }
      if (pending.empty()) {
        monitor_wakeup.wait(lock);
        continue;
      }
      const auto now = Clock::now();
      const auto late =
          std::find_if(pending.begin(), pending.end(), [&](const Pending& entry) { return entry.deadline <= now; });
      if (late != pending.end() && !aborted) {
        const std::string why = late->overdue;
        lock.unlock();  // abort takes `mutex`, which a launch holds while it takes monitor_mutex
        abort(why);
        lock.lock();
        continue;
      }
      monitor_wakeup.wait_for(lock, kMonitorInterval);
    }
  }

  ~State() {
    cudaSetDevice(device);
    if (comm != nullptr && !aborted) {
      // ncclCommDestroy alone can hang when peers are gone: finalize (which flushes the queued operations) with a
      // deadline, and abort if it does not complete.
      const ncclResult_t result = settle(comm, ncclCommFinalize(comm), Clock::now() + timeout);
      if (result == ncclSuccess) {
        ncclCommDestroy(comm);
      } else {
        ncclCommAbort(comm);
      }
    }
    // The buffers the monitor still holds are released only after the GPU is done with them.
    if (stream != nullptr) cudaStreamSynchronize(stream);
    {
      std::lock_guard<std::mutex> lock(monitor_mutex);
      stopping = true;
    }
    monitor_wakeup.notify_one();
    if (monitor.joinable()) monitor.join();
    pending.clear();
    if (barrier_scratch != nullptr) cudaFree(barrier_scratch);
    if (stream != nullptr) cudaStreamDestroy(stream);
    if (control != MPI_COMM_NULL) MPI_Comm_free(&control);
  }
};

namespace {

class NcclWork final : public Work {
 public:
  NcclWork(OpInfo info, std::chrono::milliseconds default_timeout, std::shared_ptr<CommProgress> progress,
           std::shared_ptr<NcclCommunicator::State> state, std::shared_ptr<Event> done, std::uint64_t id)
      : Work(info, default_timeout, std::move(progress)), state_(std::move(state)), done_(std::move(done)), id_(id) {}

  WorkStatus status() override {
    if (failed()) return WorkStatus::kFailed;
    if (finished_) return WorkStatus::kSucceeded;
    const cudaError_t query = cudaEventQuery(done_->event);
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

  void wait_on_host(std::chrono::milliseconds timeout) {
    Watchdog::Blocked blocked(*this);
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const WorkStatus now = status();
      if (now == WorkStatus::kSucceeded) return;
      if (now == WorkStatus::kFailed) fail();
      if (Clock::now() >= deadline) break;
      std::this_thread::sleep_for(kPollInterval);
    }
    const std::string message = overdue_message(timeout);
    state_->abort(message);
    throw CommTimeout(message + Watchdog::explain_timeout(*this));
  }

 protected:
  // Without blocking the host: the waiting thread's current stream waits for the end event, and the monitor aborts
  // the communicator if the operation has not finished within `timeout`.
  void wait_until_finished(std::chrono::milliseconds timeout) override {
    const WorkStatus now = status();
    if (now == WorkStatus::kFailed) fail();
    if (now == WorkStatus::kSucceeded) return;
    DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(current_stream(state_->device), done_->event, 0),
                      info().describe() + " on " + state_->where);
    state_->set_deadline(id_, Clock::now() + timeout, overdue_message(timeout));
  }

 private:
  bool failed() {
    if (!error_.empty()) return true;
    if (state_->aborted) {
      error_ = fmt::format("{} on {}: the communicator was aborted: {}", info().describe(), state_->where,
                           state_->abort_reason());
      return true;
    }
    error_ = state_->async_error();
    return !error_.empty();
  }

  [[noreturn]] void fail() {
    state_->abort(error_);
    throw CommError(error_);
  }

  std::string overdue_message(std::chrono::milliseconds timeout) const {
    return fmt::format("{} on {} did not finish within {} ms (the NCCL communicator is aborted)", info().describe(),
                       state_->where, timeout.count());
  }

  std::shared_ptr<NcclCommunicator::State> state_;
  std::shared_ptr<Event> done_;
  std::uint64_t id_;
  bool finished_ = false;  // the event was seen complete (status() is called from one thread)
  std::string error_;
};

// Collective over `control`: this rank's device checks (`problem` is empty if they passed), then the node's ranks
// compare GPU UUIDs, then every rank learns whether all passed. Throws the same way on every rank if any failed, so
// no rank goes on to wait for the others in MPI_Bcast.
void agree_on_devices(MPI_Comm control, int rank, DeviceReport mine, std::string problem, const std::string& context) {
  mine.ok = problem.empty() ? 1 : 0;
  mine.rank = rank;
  MPI_Comm node = MPI_COMM_NULL;
  DTRAIN_MPI_CHECK(MPI_Comm_split_type(control, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node), context);
  int node_size = 0;
  MPI_Comm_size(node, &node_size);
  std::vector<DeviceReport> reports(static_cast<std::size_t>(node_size));
  const int exchanged =
      MPI_Allgather(&mine, sizeof(DeviceReport), MPI_BYTE, reports.data(), sizeof(DeviceReport), MPI_BYTE, node);
  MPI_Comm_free(&node);
  DTRAIN_MPI_CHECK(exchanged, context);
  if (problem.empty()) {
    std::vector<RankGpu> node_gpus;
    for (const DeviceReport& report : reports) {
      if (report.ok != 0) node_gpus.push_back({report.rank, report.device, format_gpu_uuid(report.uuid.bytes)});
    }
    // Every rank of the node reports the same line: the node cannot start NCCL as launched.
    if (const std::string shared = shared_gpu_problem(node_gpus); !shared.empty()) problem = context + ": " + shared;
  }

  int size = 0;
  MPI_Comm_size(control, &size);
  int failed = problem.empty() ? 0 : 1;
  std::vector<int> failures(static_cast<std::size_t>(size));
  DTRAIN_MPI_CHECK(MPI_Allgather(&failed, 1, MPI_INT, failures.data(), 1, MPI_INT, control), context);
  if (!problem.empty()) throw CommError(problem);
  std::string failing;
  for (int r = 0; r < size; ++r) {
    if (failures[static_cast<std::size_t>(r)] != 0) failing += (failing.empty() ? "" : ",") + std::to_string(r);
  }
  if (!failing.empty()) {
    throw CommError(
        fmt::format("{}: rank(s) {} failed their device checks (see their errors); no NCCL communicator "
                    "was created",
                    context, failing));
  }
}

}  // namespace

std::unique_ptr<NcclCommunicator> NcclCommunicator::create(MPI_Comm bootstrap, int local_rank, CommOptions options) {
  auto state = std::make_shared<State>();
  state->timeout = options.timeout;
  std::string context = fmt::format("creating NCCL communicator '{}'", options.name);
  DTRAIN_MPI_CHECK(MPI_Comm_dup(bootstrap, &state->control), context);
  DTRAIN_MPI_CHECK(MPI_Comm_set_errhandler(state->control, MPI_ERRORS_RETURN), context);
  int rank = 0;
  int size = 0;
  DTRAIN_MPI_CHECK(MPI_Comm_rank(state->control, &rank), context);
  DTRAIN_MPI_CHECK(MPI_Comm_size(state->control, &size), context);
  context += fmt::format(" on rank {}/{}", rank, size);

  // Everything that can fail on one rank alone happens before the ranks agree, the unique id included.
  DeviceReport mine;
  std::string problem;
  ncclUniqueId id{};
  try {
    int device_count = 0;
    DTRAIN_CUDA_CHECK(cudaGetDeviceCount(&device_count), context);
    if (device_count < 1) throw CommError(context + ": no CUDA device is visible");
    state->device = local_rank % device_count;
    context +=
        fmt::format(", device {} (local rank {} of {} visible devices)", state->device, local_rank, device_count);
    DTRAIN_CUDA_CHECK(cudaSetDevice(state->device), context);
    cudaDeviceProp properties{};
    DTRAIN_CUDA_CHECK(cudaGetDeviceProperties(&properties, state->device), context);
    mine.device = state->device;
    mine.uuid = properties.uuid;
    DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking), context);
    if (rank == 0) DTRAIN_NCCL_CHECK(ncclGetUniqueId(&id), context);
  } catch (const CommError& e) {
    problem = e.what();
  }
  agree_on_devices(state->control, rank, mine, problem, context);

  DTRAIN_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, state->control), context);
  ncclConfig_t config = non_blocking_config();
  ncclResult_t result = ncclCommInitRankConfig(&state->comm, size, id, rank, &config);
  result = settle(state->comm, result, Clock::now() + options.timeout);
  if (result != ncclSuccess) {
    if (state->comm != nullptr) ncclCommAbort(state->comm);
    state->comm = nullptr;
    if (result == ncclInProgress) {
      throw CommTimeout(
          fmt::format("{}: ncclCommInitRankConfig did not finish within {} ms (aborted): a rank did not "
                      "get there, or NCCL found no usable connection (NCCL_DEBUG=WARN says more)",
                      context, options.timeout.count()));
    }
    throw_nccl_error(result, "ncclCommInitRankConfig", context);
  }
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
void NcclCommunicator::abort(const std::string& reason) {
  state_->abort(reason);
}

void NcclCommunicator::wait_on_host(Work& work, std::chrono::milliseconds timeout) {
  auto* nccl = dynamic_cast<NcclWork*>(&work);
  if (nccl == nullptr) {
    throw CommError(fmt::format("{}: wait_on_host is for operations of a NCCL communicator", work.info().describe()));
  }
  nccl->wait_on_host(timeout);
}

void NcclCommunicator::check_usable() const {
  if (!state_->aborted) return;
  throw CommError(fmt::format("{} is unusable: it was aborted after: {}", where(), state_->abort_reason()));
}

WorkPtr NcclCommunicator::launch(const OpInfo& info, bool collective, std::initializer_list<const Buffer*> buffers,
                                 const std::function<ncclResult_t(ncclComm_t, cudaStream_t)>& call) {
  const std::string what = info.describe() + " on " + where();
  try {
    if (collective && options().verify_calls) verify_same_call(state_->control, info, where());
    DTRAIN_CUDA_CHECK(cudaSetDevice(state_->device), what);
    // The inputs are ready once what the producer queued on its current stream so far has run.
    Event inputs_ready;
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&inputs_ready.event, cudaEventDisableTiming), what);
    DTRAIN_CUDA_CHECK(cudaEventRecord(inputs_ready.event, current_stream(state_->device)), what);
    DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(state_->stream, inputs_ready.event, 0), what);
    auto done = std::make_shared<Event>();
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&done->event, cudaEventDisableTiming), what);
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      if (state_->aborted) throw CommError(fmt::format("{}: the communicator was aborted: {}", what, state_->reason));
      const ncclResult_t result =
          settle(state_->comm, call(state_->comm, state_->stream), Clock::now() + options().timeout);
      if (result == ncclInProgress) {
        throw CommTimeout(
            fmt::format("{}: NCCL did not accept the operation within {} ms", what, options().timeout.count()));
      }
      if (result != ncclSuccess) throw_nccl_error(result, to_string(info.type), what);
      DTRAIN_CUDA_CHECK(cudaEventRecord(done->event, state_->stream), what);
    }
    std::vector<std::shared_ptr<const void>> keepalive;
    for (const Buffer* buffer : buffers) {
      if (buffer->keepalive) keepalive.push_back(buffer->keepalive);
    }
    const std::uint64_t id = state_->track(done, std::move(keepalive));
    return std::make_shared<NcclWork>(info, options().timeout, progress(), state_, std::move(done), id);
  } catch (const CommError& e) {
    state_->abort(e.what());
    throw;
  }
}

WorkPtr NcclCommunicator::do_allreduce(const Buffer& buffer, const OpInfo& info) {
  return launch(info, true, {&buffer}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(buffer.data, buffer.data, buffer.count, nccl_datatype(buffer.dtype), nccl_op(info.op), comm,
                         stream);
  });
}

WorkPtr NcclCommunicator::do_broadcast(const Buffer& buffer, const OpInfo& info) {
  return launch(info, true, {&buffer}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclBroadcast(buffer.data, buffer.data, buffer.count, nccl_datatype(buffer.dtype), info.peer, comm, stream);
  });
}

WorkPtr NcclCommunicator::do_allgather(const Buffer& output, const Buffer& input, const OpInfo& info) {
  return launch(info, true, {&output, &input}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllGather(input.data, output.data, input.count, nccl_datatype(input.dtype), comm, stream);
  });
}

WorkPtr NcclCommunicator::do_reduce_scatter(const Buffer& output, const Buffer& input, const OpInfo& info) {
  return launch(info, true, {&output, &input}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclReduceScatter(input.data, output.data, output.count, nccl_datatype(output.dtype), nccl_op(info.op), comm,
                             stream);
  });
}

WorkPtr NcclCommunicator::do_send(const Buffer& buffer, const OpInfo& info) {
  return launch(info, false, {&buffer}, [&](ncclComm_t comm, cudaStream_t stream) {
    return in_group(
        [&] { return ncclSend(buffer.data, buffer.count, nccl_datatype(buffer.dtype), info.peer, comm, stream); });
  });
}

WorkPtr NcclCommunicator::do_recv(const Buffer& buffer, const OpInfo& info) {
  return launch(info, false, {&buffer}, [&](ncclComm_t comm, cudaStream_t stream) {
    return in_group(
        [&] { return ncclRecv(buffer.data, buffer.count, nccl_datatype(buffer.dtype), info.peer, comm, stream); });
  });
}

WorkPtr NcclCommunicator::do_barrier(const OpInfo& info) {
  // NCCL has no barrier: a one-element allreduce on the communicator's stream. The element is zeroed once, so the
  // reduction never reads uninitialised memory (which tools flag, and which could hold a NaN).
  if (state_->barrier_scratch == nullptr) {
    const std::string what = info.describe() + " on " + where();
    DTRAIN_CUDA_CHECK(cudaSetDevice(state_->device), what);
    DTRAIN_CUDA_CHECK(cudaMalloc(&state_->barrier_scratch, sizeof(float)), what);
    DTRAIN_CUDA_CHECK(cudaMemsetAsync(state_->barrier_scratch, 0, sizeof(float), state_->stream), what);
  }
  void* scratch = state_->barrier_scratch;
  return launch(info, true, {}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(scratch, scratch, 1, ncclFloat32, ncclSum, comm, stream);
  });
}

std::unique_ptr<Communicator> NcclCommunicator::do_split(int color, int key, CommOptions options, const OpInfo& info) {
  const std::string what = info.describe() + " on " + where();
  if (this->options().verify_calls) verify_same_call(state_->control, info, where());
  auto child = std::make_shared<State>();
  child->device = state_->device;
  child->timeout = options.timeout;
  DTRAIN_MPI_CHECK(MPI_Comm_split(state_->control, color < 0 ? MPI_UNDEFINED : color, key, &child->control), what);
  ncclConfig_t config = non_blocking_config();
  ncclResult_t result = ncclSuccess;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (state_->aborted) throw CommError(fmt::format("{}: the communicator was aborted: {}", what, state_->reason));
    result = ncclCommSplit(state_->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child->comm, &config);
    // A rank that takes no part gets no communicator; its part of the split is done on the parent.
    result = settle(child->comm != nullptr ? child->comm : state_->comm, result, Clock::now() + options.timeout);
  }
  if (result != ncclSuccess) {
    if (child->comm != nullptr) ncclCommAbort(child->comm);
    child->comm = nullptr;
    if (result == ncclInProgress) {
      throw CommTimeout(
          fmt::format("{}: ncclCommSplit did not finish within {} ms (aborted)", what, options.timeout.count()));
    }
    throw_nccl_error(result, "ncclCommSplit", what);
  }
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
