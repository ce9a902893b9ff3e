#pragma once
// How the watchdogs ask each other (Note [Watchdog] in comm/watchdog.h): questions and answers as nonblocking MPI
// messages on the watchdog's own duplicate of MPI_COMM_WORLD, so that they never mix with training traffic. Used by the
// watchdog thread only.

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "comm/watchdog_waits_for.h"

namespace dtrain::comm {

class WatchdogChannel final : public RankAsker {
 public:
  // This rank's own answer about communicator `comm` (point-to-point counts towards member `about`).
  using LocalAnswer = std::function<Answer(std::uint64_t comm, int about)>;

  // Takes ownership of `comm`, which must return errors (MPI_ERRORS_RETURN) rather than abort.
  WatchdogChannel(MPI_Comm comm, int world_rank, std::chrono::milliseconds answer_within, LocalAnswer local);
  ~WatchdogChannel() override;
  WatchdogChannel(const WatchdogChannel&) = delete;
  WatchdogChannel& operator=(const WatchdogChannel&) = delete;

  // Answers every question that has arrived.
  void serve();

  // Asks world rank `world_rank` (this rank answers itself at once), serving others' questions while it waits, so two
  // watchdogs asking each other never block.
  std::optional<Answer> ask(int world_rank, std::uint64_t comm, int about) override;

 private:
  struct PendingSend {
    // MPI reads the text until the send completes; behind a pointer, it stays put while the deque moves entries.
    std::shared_ptr<std::string> bytes;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  void send_async(int dest, int tag, std::string bytes);
  void reap_sends();
  std::optional<std::string> receive_if_any(int source, int tag, int* from);

  MPI_Comm comm_;
  const int world_rank_;
  const std::chrono::milliseconds answer_within_;
  const LocalAnswer local_;
  std::deque<PendingSend> sends_;
  std::uint64_t last_qid_ = 0;
};

}  // namespace dtrain::comm
