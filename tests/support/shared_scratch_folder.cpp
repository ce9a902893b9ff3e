#include "shared_scratch_folder.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <filesystem>

namespace dtrain::testing_support {

namespace {

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

}  // namespace

SharedScratchFolder::SharedScratchFolder(const std::string& prefix) {
  int id = static_cast<int>(getpid());
  MPI_Bcast(&id, 1, MPI_INT, 0, MPI_COMM_WORLD);  // rank 0's process id names the folder for everyone
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  path_ = (std::filesystem::temp_directory_path() /
           (prefix + "-" + std::to_string(id) + "-" + (test != nullptr ? test->name() : "outside-a-test")))
              .string();
  if (world_rank() == 0) std::filesystem::remove_all(path_);
  MPI_Barrier(MPI_COMM_WORLD);
}

SharedScratchFolder::~SharedScratchFolder() {
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove_all(path_);
}

}  // namespace dtrain::testing_support
