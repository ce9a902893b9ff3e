// Multi-rank tests of the sampler (run with 2 and 4 ranks): every rank computes its share alone, then the ranks
// gather what they read and check that together they read each sample exactly once (or padded / cut exactly as
// specified), in the global order, in the same number of batches, and that they agree on the state to checkpoint.

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "sampler/distributed_sampler.h"
#include "sampler/sampler_state.h"

namespace dtrain::sampler {
namespace {

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// Every rank's `mine`, concatenated in rank order, on every rank; `counts` receives each rank's length.
std::vector<std::int64_t> allgatherv(const std::vector<std::int64_t>& mine, std::vector<int>& counts) {
  const int size = world_size();
  const int count = static_cast<int>(mine.size());
  counts.assign(size, 0);
  MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
  std::vector<int> displacements(size, 0);
  for (int r = 1; r < size; ++r) displacements[r] = displacements[r - 1] + counts[r - 1];
  std::vector<std::int64_t> all(displacements.back() + counts.back());
  MPI_Allgatherv(mine.data(), count, MPI_INT64_T, all.data(), counts.data(), displacements.data(), MPI_INT64_T,
                 MPI_COMM_WORLD);
  return all;
}

SamplerOptions this_rank(std::int64_t n, std::int64_t batch, Mode mode = Mode::kTrain) {
  SamplerOptions options;
  options.dataset_size = n;
  options.world_size = world_size();
  options.rank = world_rank();
  options.batch_size = batch;
  options.mode = mode;
  options.seed = 77;
  return options;
}

std::vector<SamplerOptions> configurations() {
  std::vector<SamplerOptions> all = {this_rank(1000, 32), this_rank(1001, 16, Mode::kEval), this_rank(1003, 7),
                                     this_rank(997, 8), this_rank(3, 2, Mode::kEval)};
  all[2].drop_last = true;
  all[2].drop_last_batch = true;
  all[3].shard_sizes = std::vector<std::int64_t>(9, 100);
  all[3].shard_sizes.push_back(97);
  all[3].window = 64;
  return all;
}

TEST(SamplerAcrossRanks, TogetherTheRanksReadTheGlobalOrderEachSampleOnce) {
  const int world = world_size();
  for (const SamplerOptions& options : configurations()) {
    const std::int64_t n = options.dataset_size;
    DistributedSampler sampler(options);
    for (const std::int64_t epoch : {0, 1, 9}) {
      sampler.start_epoch(epoch);
      std::vector<std::int64_t> indices;
      std::vector<std::int64_t> valid;
      std::int64_t batches = 0;
      while (const std::optional<Batch> batch = sampler.next()) {
        indices.insert(indices.end(), batch->indices.begin(), batch->indices.end());
        valid.insert(valid.end(), batch->valid.begin(), batch->valid.end());
        ++batches;
      }
      const std::string where = "n=" + std::to_string(n) + " mode=" + to_string(options.mode) +
                                " drop_last=" + std::to_string(options.drop_last) + " epoch=" + std::to_string(epoch);

      // Note [Equal step counts]: the same number of batches on every rank.
      std::int64_t fewest = 0;
      std::int64_t most = 0;
      MPI_Allreduce(&batches, &fewest, 1, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
      MPI_Allreduce(&batches, &most, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
      EXPECT_EQ(fewest, most) << where;
      EXPECT_EQ(batches, sampler.batches_per_epoch()) << where;

      std::vector<int> counts;
      const std::vector<std::int64_t> all = allgatherv(indices, counts);
      const std::vector<std::int64_t> all_valid = allgatherv(valid, counts);
      // Each rank's share of the padded or cut order, less a short last batch that drop_last_batch drops.
      const std::int64_t share = options.drop_last ? n / world : (n + world - 1) / world;
      const int read =
          static_cast<int>(options.drop_last_batch ? share / options.batch_size * options.batch_size : share);
      for (int r = 0; r < world; ++r) ASSERT_EQ(counts[r], read) << where << " rank " << r;

      // Rank r's k-th sample is position r + k * world of the global order, extended cyclically for padding.
      const std::vector<std::int64_t> order = global_order(options, epoch);
      std::vector<int> seen(n, 0);
      for (int r = 0; r < world; ++r) {
        for (int k = 0; k < read; ++k) {
          const std::int64_t p = r + static_cast<std::int64_t>(k) * world;
          const std::int64_t index = all[r * read + k];
          ASSERT_EQ(index, order[p % n]) << where << " rank " << r << " sample " << k;
          const bool padding = p >= n;
          ASSERT_EQ(all_valid[r * read + k], options.mode == Mode::kEval && padding ? 0 : 1) << where;
          if (!padding) ++seen[index];
        }
      }
      // Each sample once, except the positions of the order that drop_last and drop_last_batch leave out: its tail.
      for (std::int64_t p = 0; p < n; ++p) {
        const bool dropped = p >= static_cast<std::int64_t>(world) * read;
        EXPECT_EQ(seen[order[p]], dropped ? 0 : 1) << where << " order position " << p;
      }
    }
  }
}

TEST(SamplerAcrossRanks, RanksAgreeOnTheStateAndResumeWhereTheyStopped) {
  for (const SamplerOptions& options : configurations()) {
    DistributedSampler reference(options);
    reference.start_epoch(3);
    const std::int64_t batches = reference.batches_left();
    std::vector<Batch> whole;
    while (std::optional<Batch> batch = reference.next()) whole.push_back(std::move(*batch));

    for (const std::int64_t stop : {std::int64_t{0}, batches / 2, batches}) {
      DistributedSampler first(options);
      first.start_epoch(3);
      for (std::int64_t i = 0; i < stop; ++i) first.next();
      // A checkpoint holds rank 0's state only: every rank must have the same one.
      std::string saved = to_string(first.state());
      int length = static_cast<int>(saved.size());
      MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
      std::string from_root(length, '\0');
      if (world_rank() == 0) from_root = saved;
      MPI_Bcast(from_root.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
      EXPECT_EQ(saved, from_root) << "stop=" << stop;

      DistributedSampler resumed(options);
      resumed.restore(parse_sampler_state(from_root));
      std::int64_t k = stop;
      while (const std::optional<Batch> batch = resumed.next()) {
        ASSERT_LT(k, batches) << from_root;
        EXPECT_EQ(batch->indices, whole[k].indices) << from_root << " batch " << k;
        EXPECT_EQ(batch->valid, whole[k].valid) << from_root << " batch " << k;
        ++k;
      }
      EXPECT_EQ(k, batches) << from_root;
    }
  }
}

}  // namespace
}  // namespace dtrain::sampler
