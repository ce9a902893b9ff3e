// main() for GoogleTest binaries that run under mpirun: every rank runs every test; rank 0 prints the usual report,
// other ranks print only their failures (prefixed with the rank). A watchdog ends the whole job if a test hangs, so a
// bug in a collective shows up as a failure with a message instead of a stuck CI run.

#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "comm/mpi_environment.h"

namespace {

class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (result.failed()) {
      std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_, result.file_name() ? result.file_name() : "?",
                   result.line_number(), result.summary());
    }
  }

 private:
  int rank_;
};

void start_watchdog(int rank) {
  const char* env = std::getenv("DTRAIN_TEST_WATCHDOG_S");
  const int seconds = env != nullptr ? std::atoi(env) : 240;
  std::thread([rank, seconds] {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    const testing::TestInfo* test = testing::UnitTest::GetInstance()->current_test_info();
    std::fprintf(stderr, "[rank %d] watchdog: test %s.%s still running after %d s; aborting the job\n", rank,
                 test ? test->test_suite_name() : "?", test ? test->name() : "?", seconds);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
  }).detach();
}

}  // namespace

int main(int argc, char** argv) {
  dtrain::comm::MpiEnvironment mpi(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  start_watchdog(rank);
  const int failed = RUN_ALL_TESTS();
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any_failed;
}
