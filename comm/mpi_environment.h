#pragma once
// MPI's lifetime for a dtrain process: initialized with MPI_THREAD_MULTIPLE (the communication threads call MPI
// concurrently with the caller) and finalized when the environment goes out of scope. It also runs the process's
// watchdog (Note [Watchdog]) from start to finish.

namespace dtrain::comm {

class MpiEnvironment {
 public:
  // Initializes MPI unless the caller already has; throws CommError if MPI_THREAD_MULTIPLE is not available.
  // Collective over MPI_COMM_WORLD (it starts the watchdog).
  MpiEnvironment(int* argc, char*** argv);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  // Ends every rank of the job now (MPI_Abort on MPI_COMM_WORLD). For errors after which ranks cannot agree to stop.
  [[noreturn]] static void abort_job(int exit_code);

 private:
  bool owns_mpi_ = false;
};

}  // namespace dtrain::comm
