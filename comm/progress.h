#pragma once
// What this rank has issued on one communicator, kept for the watchdog (comm/watchdog.h, Note [Watchdog]): when a rank
// seems stuck, it asks its peers for their record to tell "has not arrived" from "arrived and waits", and to find
// deadlocks across communicators. Updated at issue time under the communicator's issue lock; read by the watchdog.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "comm/types.h"

namespace dtrain::comm {

// One rank's record as a peer receives it.
struct ProgressSnapshot {
  std::uint64_t collectives = 0;  // collectives issued
  std::uint64_t history = 0;      // running fingerprint of every collective issued (kind, dtype, count, op, root, seq)
  std::string last_collective;    // OpInfo::describe() of the latest, "" before the first
  std::uint64_t sends_to = 0;     // sends issued to the rank asked about
  std::uint64_t recvs_from = 0;   // receives issued from the rank asked about
};

class CommProgress {
 public:
  // `id` is the same on every member (agreed when the communicator is made); `world_ranks[r]` is the MPI_COMM_WORLD
  // rank of member r.
  CommProgress(std::uint64_t id, std::string name, int rank, std::vector<int> world_ranks);

  // Records an operation about to be issued; numbers info.peer_seq of point-to-point operations.
  void issued(OpInfo& info);
  // This rank's record, with the point-to-point counts towards member `about` (ignored if not a member).
  ProgressSnapshot snapshot(int about) const;

  std::uint64_t id() const { return id_; }
  const std::string& name() const { return name_; }
  int rank() const { return rank_; }
  const std::vector<int>& world_ranks() const { return world_ranks_; }

 private:
  const std::uint64_t id_;
  const std::string name_;
  const int rank_;
  const std::vector<int> world_ranks_;
  mutable std::mutex mutex_;
  ProgressSnapshot totals_;  // sends_to and recvs_from unused; see the maps
  std::map<int, std::uint64_t> sends_to_;
  std::map<int, std::uint64_t> recvs_from_;
};

}  // namespace dtrain::comm
