// Collective (MPI-IO) reads at 2 ranks: the same bytes as independent reads, also when one rank needs nothing from a
// shard; and a dataset that one rank cannot open fails on every rank instead of hanging the collective open.

#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <filesystem>

#include "io/data_error.h"
#include "io/shard_writer.h"
#include "io/sharded_dataset.h"

namespace dtrain::io {
namespace {

namespace fs = std::filesystem;

int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

class CollectiveReadTest : public testing::Test {
 protected:
  void SetUp() override {
    // Every rank needs the same folder name: take rank 0's process id.
    int id = static_cast<int>(getpid());
    MPI_Bcast(&id, 1, MPI_INT, 0, MPI_COMM_WORLD);
    folder_ = (fs::temp_directory_path() / ("dtrain-collective-" + std::to_string(id))).string();
    if (rank() == 0) {
      fs::remove_all(folder_);
      Manifest m;
      m.samples = 50;
      m.classes = 5;
      m.datasets = {{"v", "int32", {4}}};
      ShardWriterOptions options;
      options.samples_per_shard = 20;
      write_sharded_dataset(
          folder_, m,
          [](std::size_t, std::int64_t first, std::int64_t count, void* out) {
            for (std::int64_t i = 0; i < count * 4; ++i) {
              static_cast<std::int32_t*>(out)[i] = static_cast<std::int32_t>(first * 4 + i);
            }
          },
          options);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  void TearDown() override {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank() == 0) fs::remove_all(folder_);
  }
  std::string folder_;
};

TEST_F(CollectiveReadTest, CollectiveReadsGiveTheSameBytesAsIndependentOnes) {
  ReadOptions collective;
  collective.collective = true;
  collective.comm = MPI_COMM_WORLD;
  ShardedDataset together(folder_, {"v"}, collective);
  ShardedDataset alone(folder_, {"v"});
  // Rank 0 reads from shards 0 and 2 only, rank 1 from shard 1 only: each joins the others' shard reads empty.
  const std::vector<std::int64_t> indices =
      rank() == 0 ? std::vector<std::int64_t>{45, 3, 4, 5, 41} : std::vector<std::int64_t>{21, 20, 39};
  std::vector<std::int32_t> a(indices.size() * 4), b(indices.size() * 4);
  together.read("v", indices, a.data());
  alone.read("v", indices, b.data());
  EXPECT_EQ(a, b);
  for (std::size_t k = 0; k < indices.size(); ++k) EXPECT_EQ(a[k * 4 + 1], indices[k] * 4 + 1);
}

TEST_F(CollectiveReadTest, ADatasetOneRankCannotReadFailsOnEveryRank) {
  // Rank 1 is pointed at a copy that lacks a shard.
  const std::string broken = folder_ + "-broken";
  if (rank() == 1) {
    fs::remove_all(broken);
    fs::copy(folder_, broken);
    fs::remove(broken + "/shard-00001.h5");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  ReadOptions collective;
  collective.collective = true;
  collective.comm = MPI_COMM_WORLD;
  try {
    ShardedDataset dataset(rank() == 1 ? broken : folder_, {"v"}, collective);
    FAIL() << "every rank must fail";
  } catch (const DataError& e) {
    const std::string message = e.what();
    if (rank() == 1) {
      EXPECT_NE(message.find(broken + "/shard-00001.h5: missing shard"), std::string::npos) << message;
    } else {
      EXPECT_NE(message.find("another rank cannot read this dataset"), std::string::npos) << message;
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank() == 1) fs::remove_all(broken);
}

}  // namespace
}  // namespace dtrain::io
