#include "comm/mpi_communicator.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <optional>
#include <thread>

#include "comm/call_verifier.h"
#include "comm/clock.h"
#include "comm/error.h"
#include "comm/mpi_check.h"
#include "comm/mpi_datatypes.h"
#include "comm/watchdog.h"

namespace dtrain::comm {

// Note [MPI communication thread]
// Each MpiCommunicator owns one Engine: a FIFO of operations and the thread that runs them. Collectives run as
// blocking MPI calls on that thread, one at a time and in issue order, which is what MPI requires of collectives on one
// communicator. Point-to-point operations are posted as MPI_Isend/MPI_Irecv and then polled (MPI_Test) between
// operations, so a rank may send and receive in both directions without deadlock; blocking collectives progress
// them too. Completion is reported in issue order (an op whose MPI part finished early is held back until everything
// issued before it has finished), which gives Note [Communicator contract]'s ordering guarantee.
// Once any operation fails or times out the engine is broken: queued and later operations fail at once with the
// first failure's message, because the ranks can no longer be assumed to be in step.

namespace {

constexpr auto kPollInterval = std::chrono::microseconds(50);
// Before either side of a hand-off goes to sleep on a condition variable it spins this long: a futex wake-up costs
// 10-20 us on these machines, which would make a 1 MiB collective several percent slower than the raw MPI call.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(60);

template <typename Predicate>
bool spin_until(Predicate done) {
  const auto until = SteadyClock::now() + kSpinBeforeSleep;
  while (!done()) {
    if (SteadyClock::now() >= until) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

// What an error message needs to name an operation, formatted only if an error happens (formatting on every call
// would cost more than a small collective).
struct OpContext {
  OpInfo info;
  const std::string* where;  // the engine's, which outlives its operations
  std::string str() const { return info.describe() + " on " + *where; }
};

class MpiWork final : public Work {
 public:
  MpiWork(OpInfo info, std::chrono::milliseconds default_timeout, std::shared_ptr<CommProgress> progress,
          std::function<void(const std::string&)> on_failure, std::shared_ptr<std::atomic<int>> waiters)
      : Work(info, default_timeout, std::move(progress)),
        on_failure_(std::move(on_failure)),
        waiters_(std::move(waiters)) {}

  WorkStatus status() override { return status_.load(std::memory_order_acquire); }

  void abandon(const std::string& reason) override {
    on_failure_(reason);
    complete(reason);
  }

 protected:
  void wait_until_finished(std::chrono::milliseconds timeout) override {
    // While a caller is blocked here, the engine polls without pausing (see Engine::loop).
    waiters_->fetch_add(1, std::memory_order_relaxed);
    struct Leave {
      std::atomic<int>& waiters;
      ~Leave() { waiters.fetch_sub(1, std::memory_order_relaxed); }
    } leave{*waiters_};
    spin_until([&] { return status() != WorkStatus::kPending; });
    std::unique_lock<std::mutex> lock(mutex_);
    if (!done_.wait_for(lock, timeout, [&] { return status_ != WorkStatus::kPending; })) {
      lock.unlock();
      const std::string message = fmt::format("{} on communicator '{}' did not finish within {} ms", info().describe(),
                                              progress().name(), timeout.count());
      on_failure_(message);
      throw CommTimeout(message + " (the communicator is aborted)");
    }
    if (status_ == WorkStatus::kFailed) throw CommError(error_);
  }

 public:
  // The first call decides the outcome: an op the watchdog abandoned stays failed when MPI returns after all.
  void complete(const std::string& error) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (status_.load(std::memory_order_relaxed) != WorkStatus::kPending) return;
      error_ = error;
      set_finished_now();
      status_.store(error.empty() ? WorkStatus::kSucceeded : WorkStatus::kFailed, std::memory_order_release);
    }
    done_.notify_all();
  }

 private:
  std::function<void(const std::string&)> on_failure_;  // marks the communicator unusable
  std::shared_ptr<std::atomic<int>> waiters_;           // the engine's count of blocked callers
  std::mutex mutex_;
  std::condition_variable done_;
  std::atomic<WorkStatus> status_{WorkStatus::kPending};
  std::string error_;  // written before status_ leaves kPending, read after
};

class MpiCommunicator::Engine : public std::enable_shared_from_this<Engine> {
 public:
  struct Op {
    explicit Op(std::shared_ptr<MpiWork> w) : work(std::move(w)) {}
    std::shared_ptr<MpiWork> work;
    std::function<void()> run;                      // a blocking collective, or
    std::function<MPI_Request()> post;              // a nonblocking point-to-point op ...
    std::function<void(const MPI_Status&)> finish;  // ... and its check once complete
    // The memory a point-to-point op reads or writes: MPI uses it until the request completes, long after post()
    // returned (a large send is only read once the receiver has matched it).
    std::shared_ptr<const void> keepalive;
  };

  Engine(MPI_Comm comm, std::string where) : comm_(comm), where_(std::move(where)) {}

  ~Engine() {
    if (comm_ != MPI_COMM_NULL && !broken_) MPI_Comm_free(&comm_);
  }

  MPI_Comm comm() const { return comm_; }
  const std::string& where() const { return where_; }
  const std::shared_ptr<std::atomic<int>>& waiters() const { return waiters_; }

  void start() {
    // The thread holds the engine alive: after a timeout it may stay blocked in MPI past the communicator's life.
    std::promise<void> exited;
    exited_ = exited.get_future();
    thread_ = std::thread([self = shared_from_this(), exited = std::move(exited)]() mutable {
      self->loop();
      exited.set_value();
    });
  }

  void stop(std::chrono::milliseconds grace) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (exited_.wait_for(broken_ ? std::chrono::milliseconds(100) : grace) == std::future_status::ready) {
      thread_.join();
    } else {
      thread_.detach();  // blocked in MPI on a peer that never came; the process is going down
    }
  }

  void enqueue(Op op) {
    bool sleeping = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(op));
      queued_.fetch_add(1, std::memory_order_release);
      sleeping = sleeping_;
    }
    if (sleeping) wake_.notify_one();
  }

  // Queues a send or a receive of `buffer` (as the work's OpInfo::type says): posted nonblocking, then polled.
  WorkPtr enqueue_point_to_point(std::shared_ptr<MpiWork> work, const Buffer& buffer);

  void mark_broken(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!broken_) {
      broken_reason_ = reason;
      broken_ = true;
    }
  }

  void check_usable() const {
    if (!broken_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    throw CommError(fmt::format("{} is unusable after an earlier failure: {}", where_, broken_reason_));
  }

 private:
  struct InFlight {
    std::shared_ptr<MpiWork> work;
    std::function<void(const MPI_Status&)> finish;
    std::shared_ptr<const void> keepalive;
    MPI_Request request = MPI_REQUEST_NULL;
    bool done = false;
    std::string error;
  };

  void loop() {
    std::deque<InFlight> in_flight;
    for (;;) {
      std::optional<Op> op;
      if (in_flight.empty()) spin_until([&] { return queued_.load(std::memory_order_acquire) > 0; });
      {
        std::unique_lock<std::mutex> lock(mutex_);
        auto ready = [&] { return stopping_ || !queue_.empty(); };
        sleeping_ = true;
        if (in_flight.empty()) {
          wake_.wait(lock, ready);
        } else if (queue_.empty() && waiters_->load(std::memory_order_relaxed) == 0) {
          // Nobody is blocked on a result (sends draining while the caller computes): poll now and then. When
          // someone is, poll back to back: its core is idle anyway, and each pause would add to its wait (a
          // rendezvous transfer takes several polls on each side).
          wake_.wait_for(lock, kPollInterval, ready);
        }
        sleeping_ = false;
        if (!queue_.empty()) {
          op = std::move(queue_.front());
          queue_.pop_front();
          queued_.fetch_sub(1, std::memory_order_relaxed);
        } else if (stopping_ && (in_flight.empty() || broken_)) {
          lock.unlock();
          cancel(in_flight);
          return;
        }
      }
      if (op) in_flight.push_back(start_op(*op));
      poll(in_flight);
      if (!in_flight.empty()) std::this_thread::yield();  // polling back to back: let the core's other threads run
      while (!in_flight.empty() && in_flight.front().done) {
        in_flight.front().work->complete(in_flight.front().error);
        in_flight.pop_front();
      }
    }
  }

  InFlight start_op(Op& op) {
    InFlight entry;
    entry.work = op.work;
    entry.finish = std::move(op.finish);
    entry.keepalive = std::move(op.keepalive);
    try {
      check_usable();
      if (op.run) {
        op.run();
        entry.done = true;
      } else {
        entry.request = op.post();
      }
    } catch (const std::exception& e) {
      fail(entry, e.what());
    }
    return entry;
  }

  void poll(std::deque<InFlight>& in_flight) {
    for (InFlight& entry : in_flight) {
      if (entry.done) continue;
      try {
        int flag = 0;
        MPI_Status status;
        const int rc = MPI_Test(&entry.request, &flag, &status);
        if (rc != MPI_SUCCESS) {
          int error_class = 0;
          MPI_Error_class(rc, &error_class);
          const std::string what = entry.work->info().describe() + " on " + where_;
          if (error_class == MPI_ERR_TRUNCATE) {
            throw CommError(fmt::format("{}: the matching send is larger than this receive buffer", what));
          }
          throw_mpi_error(rc, "MPI_Test", what);
        }
        if (!flag) continue;
        entry.done = true;
        if (entry.finish) entry.finish(status);
      } catch (const std::exception& e) {
        fail(entry, e.what());
      }
    }
  }

  // A broken communicator is going away with receives that will never match: withdraw them so that MPI holds no
  // reference to their buffers.
  void cancel(std::deque<InFlight>& in_flight) {
    for (InFlight& entry : in_flight) {
      if (!entry.done && entry.request != MPI_REQUEST_NULL) {
        MPI_Cancel(&entry.request);
        MPI_Request_free(&entry.request);
      }
      entry.work->complete(entry.error.empty() ? "cancelled: " + where_ + " was destroyed after a failure"
                                               : entry.error);
    }
    in_flight.clear();
  }

  void fail(InFlight& entry, const std::string& error) {
    entry.done = true;
    entry.error = error;
    mark_broken(error);
  }

  MPI_Comm comm_;
  const std::string where_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Op> queue_;
  std::atomic<std::size_t> queued_{0};  // queue_.size(), readable without the mutex while spinning
  std::shared_ptr<std::atomic<int>> waiters_ = std::make_shared<std::atomic<int>>(0);  // callers blocked in wait()
  bool sleeping_ = false;  // the thread waits on wake_ (or is about to): enqueue must notify
  bool stopping_ = false;
  std::atomic<bool> broken_{false};
  std::string broken_reason_;
  std::thread thread_;
  std::future<void> exited_;
};

namespace {

// MPI counts are int: operations above INT_MAX elements are cut into pieces (allreduce, broadcast) or refused.
void check_fits_int(std::size_t count, const OpContext& what) {
  if (count > static_cast<std::size_t>(INT_MAX)) {
    throw CommError(fmt::format("{}: {} elements per rank exceeds MPI's limit of {}", what.str(), count, INT_MAX));
  }
}

template <typename PerPiece>
void for_each_piece(const Buffer& buffer, PerPiece per_piece) {
  constexpr std::size_t kPiece = static_cast<std::size_t>(1) << 30;
  char* data = static_cast<char*>(buffer.data);
  std::size_t left = buffer.count;
  do {
    const std::size_t n = std::min(left, kPiece);
    per_piece(data, static_cast<int>(n));
    data += n * element_size(buffer.dtype);
    left -= n;
  } while (left > 0);
}

}  // namespace

WorkPtr MpiCommunicator::Engine::enqueue_point_to_point(std::shared_ptr<MpiWork> work, const Buffer& buffer) {
  const OpContext what{work->info(), &where_};
  check_fits_int(buffer.count, what);
  Op op(work);
  op.keepalive = buffer.keepalive;
  op.post = [this, buffer, what] {
    const OpInfo& info = what.info;
    const int count = static_cast<int>(buffer.count);
    const MPI_Datatype type = mpi_datatype(buffer.dtype);
    MPI_Request request = MPI_REQUEST_NULL;
    if (info.type == OpType::kSend) {
      DTRAIN_MPI_CHECK(MPI_Isend(buffer.data, count, type, info.peer, info.tag, comm_, &request), what.str());
    } else {
      DTRAIN_MPI_CHECK(MPI_Irecv(buffer.data, count, type, info.peer, info.tag, comm_, &request), what.str());
    }
    return request;
  };
  if (what.info.type == OpType::kRecv) {
    op.finish = [buffer, what](const MPI_Status& status) {
      int received = 0;
      DTRAIN_MPI_CHECK(MPI_Get_count(&status, mpi_datatype(buffer.dtype), &received), what.str());
      if (static_cast<std::size_t>(received) != buffer.count) {
        throw CommError(fmt::format("{}: the matching send had {} elements, this receive expects {}", what.str(),
                                    received, buffer.count));
      }
    };
  }
  enqueue(std::move(op));
  return work;
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::create(MPI_Comm parent, CommOptions options) {
  const std::string context = fmt::format("creating MPI communicator '{}'", options.name);
  int thread_level = 0;
  DTRAIN_MPI_CHECK(MPI_Query_thread(&thread_level), context);
  if (thread_level != MPI_THREAD_MULTIPLE) {
    throw CommError(context + ": MPI must be initialized with MPI_THREAD_MULTIPLE (use dtrain::comm::MpiEnvironment)");
  }
  MPI_Comm comm = MPI_COMM_NULL;
  DTRAIN_MPI_CHECK(MPI_Comm_dup(parent, &comm), context);
  return adopt(comm, std::move(options));
}

MPI_Comm MpiCommunicator::mpi_group() const {
  return engine_->comm();
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::adopt(MPI_Comm comm, CommOptions options) {
  const std::string context = fmt::format("creating MPI communicator '{}'", options.name);
  int rank = 0;
  int size = 0;
  DTRAIN_MPI_CHECK(MPI_Comm_rank(comm, &rank), context);
  DTRAIN_MPI_CHECK(MPI_Comm_size(comm, &size), context);
  DTRAIN_MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), context);
  int* tag_ub = nullptr;
  int found = 0;
  DTRAIN_MPI_CHECK(MPI_Comm_get_attr(comm, MPI_TAG_UB, &tag_ub, &found), context);
  auto progress = Watchdog::track(comm, options.name);
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(comm, rank, size, found && tag_ub ? *tag_ub : 32767,
                                                              std::move(options), std::move(progress)));
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, int rank, int size, int max_tag, CommOptions options,
                                 std::shared_ptr<CommProgress> progress)
    : Communicator(rank, size, std::move(options), std::move(progress)), max_tag_(max_tag) {
  engine_ = std::make_shared<Engine>(comm, where());
  engine_->start();
}

MpiCommunicator::~MpiCommunicator() {
  engine_->stop(options().timeout);
}

void MpiCommunicator::check_usable() const {
  engine_->check_usable();
}

std::shared_ptr<MpiWork> MpiCommunicator::new_work(const OpInfo& info) {
  return std::make_shared<MpiWork>(
      info, options().timeout, progress(), [engine = engine_](const std::string& why) { engine->mark_broken(why); },
      engine_->waiters());
}

WorkPtr MpiCommunicator::enqueue_collective(const OpInfo& info, std::function<void(MPI_Comm, const OpContext&)> body) {
  auto work = new_work(info);
  Engine::Op op(work);
  op.run = [engine = engine_.get(), info, verify = options().verify_calls, body = std::move(body)] {
    if (verify) verify_same_call(engine->comm(), info, engine->where());
    body(engine->comm(), OpContext{info, &engine->where()});
  };
  engine_->enqueue(std::move(op));
  return work;
}

WorkPtr MpiCommunicator::do_allreduce(const Buffer& buffer, const OpInfo& info) {
  return enqueue_collective(info, [buffer, info, size = size()](MPI_Comm comm, const OpContext& what) {
    const MPI_Datatype type = mpi_datatype(buffer.dtype);
    const MPI_Op op = mpi_reduce_op(info.op, buffer.dtype);
    for_each_piece(buffer, [&](void* data, int n) {
      DTRAIN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, n, type, op, comm), what.str());
    });
    if (info.op == ReduceOp::kAvg) divide_in_place(buffer, size);
  });
}

WorkPtr MpiCommunicator::do_broadcast(const Buffer& buffer, const OpInfo& info) {
  return enqueue_collective(info, [buffer, root = info.peer](MPI_Comm comm, const OpContext& what) {
    const MPI_Datatype type = mpi_datatype(buffer.dtype);
    for_each_piece(buffer,
                   [&](void* data, int n) { DTRAIN_MPI_CHECK(MPI_Bcast(data, n, type, root, comm), what.str()); });
  });
}

WorkPtr MpiCommunicator::do_allgather(const Buffer& output, const Buffer& input, const OpInfo& info) {
  check_fits_int(input.count, OpContext{info, &engine_->where()});
  const bool in_place =
      input.data == static_cast<char*>(output.data) + static_cast<std::size_t>(rank()) * input.bytes();
  return enqueue_collective(info, [output, input, in_place](MPI_Comm comm, const OpContext& what) {
    const MPI_Datatype type = mpi_datatype(input.dtype);
    const int n = static_cast<int>(input.count);
    DTRAIN_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : input.data, n, type, output.data, n, type, comm),
                     what.str());
  });
}

WorkPtr MpiCommunicator::do_reduce_scatter(const Buffer& output, const Buffer& input, const OpInfo& info) {
  check_fits_int(output.count, OpContext{info, &engine_->where()});
  return enqueue_collective(info, [output, input, info, size = size()](MPI_Comm comm, const OpContext& what) {
    const MPI_Datatype type = mpi_datatype(output.dtype);
    const MPI_Op op = mpi_reduce_op(info.op, output.dtype);
    DTRAIN_MPI_CHECK(MPI_Reduce_scatter_block(input.data, output.data, static_cast<int>(output.count), type, op, comm),
                     what.str());
    if (info.op == ReduceOp::kAvg) divide_in_place(output, size);
  });
}

WorkPtr MpiCommunicator::do_barrier(const OpInfo& info) {
  return enqueue_collective(
      info, [](MPI_Comm comm, const OpContext& what) { DTRAIN_MPI_CHECK(MPI_Barrier(comm), what.str()); });
}

WorkPtr MpiCommunicator::do_send(const Buffer& buffer, const OpInfo& info) {
  return engine_->enqueue_point_to_point(new_work(info), buffer);
}

WorkPtr MpiCommunicator::do_recv(const Buffer& buffer, const OpInfo& info) {
  return engine_->enqueue_point_to_point(new_work(info), buffer);
}

std::unique_ptr<Communicator> MpiCommunicator::do_split(int color, int key, CommOptions options, const OpInfo& info) {
  auto result = std::make_shared<MPI_Comm>(MPI_COMM_NULL);
  WorkPtr work = enqueue_collective(info, [result, color, key](MPI_Comm comm, const OpContext& what) {
    DTRAIN_MPI_CHECK(MPI_Comm_split(comm, color < 0 ? MPI_UNDEFINED : color, key, result.get()), what.str());
  });
  work->wait();
  if (*result == MPI_COMM_NULL) return nullptr;
  return adopt(*result, std::move(options));
}

}  // namespace dtrain::comm
