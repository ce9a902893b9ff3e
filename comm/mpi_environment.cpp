#include "comm/mpi_environment.h"

#include <mpi.h>

#include <cstdlib>

#include "comm/error.h"
#include "comm/mpi_check.h"
#include "comm/watchdog.h"

namespace dtrain::comm {

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  int initialized = 0;
  DTRAIN_MPI_CHECK(MPI_Initialized(&initialized), "starting MPI");
  int provided = 0;
  if (initialized) {
    DTRAIN_MPI_CHECK(MPI_Query_thread(&provided), "starting MPI");
  } else {
    DTRAIN_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "starting MPI");
    owns_mpi_ = true;
  }
  if (provided != MPI_THREAD_MULTIPLE) {
    throw CommError(
        "starting MPI: this MPI library does not provide MPI_THREAD_MULTIPLE, which dtrain's communication threads "
        "need (Open MPI and MPICH provide it; check how your MPI was built)");
  }
  Watchdog::start();
}

MpiEnvironment::~MpiEnvironment() {
  Watchdog::stop();
  if (owns_mpi_) MPI_Finalize();
}

void MpiEnvironment::abort_job(int exit_code) {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort should not return; make sure this rank stops even if it does
}

}  // namespace dtrain::comm
