#pragma once
// Note [Watchdog]
// A job whose ranks wait on each other forever is the worst failure distributed training has: it burns the
// allocation and says nothing. Each process runs one watchdog thread (started by MpiEnvironment, over its own
// duplicate of MPI_COMM_WORLD) that answers its peers' questions about this rank's communication at any time, even
// while the rank computes or is blocked inside MPI:
//  - every communicator keeps a CommProgress record (collectives issued and a running fingerprint of them, sends and
//    receives issued per peer), and every thread blocked in Work::wait is registered with the op it waits for;
//  - when a wait times out (CommOptions::timeout), the waiting rank asks every rank the op waits for, and the
//    CommTimeout names the ranks that have not arrived and what each of them is doing (blocked in which op, computing,
//    or not answering at all);
//  - while a thread has been blocked for `deadlock_after`, the watchdog follows the waits-for graph from its op: rank r
//    blocked in collective #s waits for the members that have not issued #s, in its n-th receive from p for p until p
//    has issued n+1 sends to r (and sends likewise). If every rank reached is itself blocked in communication, no rank
//    can ever move (a deadlock: a rank skipped a collective, or called them in another order); if one of them does
//    not answer twice in a row, it is gone. Either way the watchdog abandons the blocked wait with an error naming
//    the ranks and ops, well before the timeout. A rank that is merely slow (computing, or writing a checkpoint) is
//    never blamed: the waiters keep waiting until their timeout.
// The watchdog never touches the communicators' own MPI communicators, so its questions cannot mix with training
// traffic; a communicator made without a running watchdog (MPI initialized by someone else) still works, unwatched.
// Its parts: comm/watchdog.cpp runs the thread and keeps what it watches; comm/watchdog_waits_for.h reasons over the
// peers' answers (pure code, tested without MPI); comm/watchdog_channel.h carries questions and answers, encoded by
// comm/watchdog_json.h; comm/watchdog_comm_id.h agrees on communicator ids.

#include <mpi.h>

#include <memory>
#include <string>

#include "comm/progress.h"
#include "comm/watchdog_options.h"

namespace dtrain::comm {

class Work;

class Watchdog {
 public:
  // Collective over MPI_COMM_WORLD (MPI initialized with MPI_THREAD_MULTIPLE). One per process; MpiEnvironment
  // starts it and stops it before MPI_Finalize.
  static void start(WatchdogOptions options = {});
  static void stop();

  // Collective over `comm`: the record a new communicator keeps (its id agreed across members), registered with the
  // watchdog if it runs.
  static std::shared_ptr<CommProgress> track(MPI_Comm comm, const std::string& name);

  // Registers the calling thread as blocked on `work` for its lifetime (see Work::wait).
  class Blocked {
   public:
    explicit Blocked(Work& work);
    ~Blocked();
    Blocked(const Blocked&) = delete;
    Blocked& operator=(const Blocked&) = delete;

   private:
    Work* work_;
    bool registered_ = false;
  };

  // Why `work`, which timed out on this rank, has not finished: "; ranks 2-3 have not arrived: ...". Asks the peers
  // (at most about answer_within); "" when no watchdog runs.
  static std::string explain_timeout(const Work& work);
};

}  // namespace dtrain::comm
