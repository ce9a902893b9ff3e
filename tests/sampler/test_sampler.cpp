// Single-process tests of the sampler: the random numbers against their published values and for uniformity, the
// global order (a permutation, deterministic, different per epoch and seed, the same for every world size), padding,
// drop_last and evaluation marks, equal batch counts on every rank, resuming from every position, shard-local
// shuffling, and the errors for bad options and bad states. Every rank of a world is simulated by one sampler each.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "sampler/distributed_sampler.h"
#include "sampler/random.h"
#include "sampler/sampler_state.h"

namespace dtrain::sampler {
namespace {

using Indices = std::vector<std::int64_t>;

SamplerOptions make_options(std::int64_t n, int world, std::int64_t batch, Mode mode = Mode::kTrain) {
  SamplerOptions options;
  options.dataset_size = n;
  options.world_size = world;
  options.batch_size = batch;
  options.mode = mode;
  options.seed = 20240611;
  return options;
}

// Every remaining batch of the sampler's current epoch.
std::vector<Batch> drain(DistributedSampler& sampler) {
  std::vector<Batch> batches;
  while (std::optional<Batch> batch = sampler.next()) batches.push_back(std::move(*batch));
  return batches;
}

// One rank's samples of a batch list, in order, and their valid flags.
struct Samples {
  Indices indices;
  std::vector<std::uint8_t> valid;
};
Samples flatten(const std::vector<Batch>& batches) {
  Samples samples;
  for (const Batch& batch : batches) {
    samples.indices.insert(samples.indices.end(), batch.indices.begin(), batch.indices.end());
    samples.valid.insert(samples.valid.end(), batch.valid.begin(), batch.valid.end());
  }
  return samples;
}

// Every rank's samples of `epoch` from `position`, one sampler per rank.
std::vector<Samples> all_ranks(SamplerOptions options, std::int64_t epoch, std::int64_t position = 0) {
  std::vector<Samples> ranks;
  for (int rank = 0; rank < options.world_size; ++rank) {
    options.rank = rank;
    DistributedSampler sampler(options);
    sampler.start_epoch(epoch, position);
    ranks.push_back(flatten(drain(sampler)));
  }
  return ranks;
}

// The sequence the ranks read together: rank r's k-th sample sits at position r + k * world.
Samples reassemble(const std::vector<Samples>& ranks) {
  const auto world = static_cast<std::int64_t>(ranks.size());
  Samples global;
  global.indices.resize(world * ranks[0].indices.size());
  global.valid.resize(global.indices.size());
  for (std::int64_t r = 0; r < world; ++r) {
    EXPECT_EQ(ranks[r].indices.size(), ranks[0].indices.size()) << "rank " << r;
    for (std::size_t k = 0; k < ranks[r].indices.size(); ++k) {
      global.indices.at(r + k * world) = ranks[r].indices[k];
      global.valid.at(r + k * world) = ranks[r].valid[k];
    }
  }
  return global;
}

std::map<std::int64_t, int> count(const Indices& indices) {
  std::map<std::int64_t, int> counts;
  for (const std::int64_t i : indices) ++counts[i];
  return counts;
}

template <typename F>
void expect_invalid(const F& call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "no exception; expected one mentioning '" << needle << "'";
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(needle), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(Random, SplitMix64MatchesThePublishedSequence) {
  SplitMix64 rng(1234567);
  for (const std::uint64_t expected : {6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL,
                                       4593380528125082431ULL, 16408922859458223821ULL}) {
    EXPECT_EQ(rng.next(), expected);
  }
}

TEST(Random, BelowStaysInRangeAndIsUniform) {
  SplitMix64 rng(99);
  std::vector<int> counts(6);
  for (int i = 0; i < 60000; ++i) ++counts.at(rng.below(6));
  for (int value = 0; value < 6; ++value) EXPECT_NEAR(counts[value], 10000, 500) << value;  // 5 sigma: ~460

  // 2^63 + 1: almost half the draws fall in the rejected zone; the ones kept must cover both halves.
  const std::uint64_t big = (std::uint64_t{1} << 63) + 1;
  int upper_half = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t x = rng.below(big);
    ASSERT_LT(x, big);
    upper_half += x >= big / 2 ? 1 : 0;
  }
  EXPECT_NEAR(upper_half, 500, 80);
  EXPECT_EQ(rng.below(1), 0u);
  EXPECT_THROW(rng.below(0), std::invalid_argument);
}

TEST(Random, ShuffleIsUniformOverPermutations) {
  // A shuffle with an off-by-one (swapping with below(count), or going forwards with the wrong range) is visibly
  // biased on three elements: some permutations get 4/27 of the draws and others 5/27 instead of 1/6.
  std::map<Indices, int> counts;
  for (std::uint64_t epoch = 0; epoch < 60000; ++epoch) {
    SplitMix64 rng = epoch_generator(7, epoch);
    Indices items = {0, 1, 2};
    shuffle(items.data(), 3, rng);
    ++counts[items];
  }
  ASSERT_EQ(counts.size(), 6u);
  for (const auto& [permutation, n] : counts) EXPECT_NEAR(n, 10000, 500);
}

TEST(Random, ShufflingFewerThanTwoItemsDrawsNothing) {
  SplitMix64 used(5);
  SplitMix64 fresh(5);
  std::int64_t one = 42;
  shuffle(&one, 1, used);
  shuffle(&one, 0, used);
  EXPECT_EQ(one, 42);
  EXPECT_EQ(used.next(), fresh.next());
}

TEST(GlobalOrder, IsADeterministicPermutation) {
  for (const std::int64_t n : {1, 2, 7, 1000}) {
    const SamplerOptions options = make_options(n, 1, 1);
    for (const std::int64_t epoch : {0, 1, 1000000}) {
      const Indices order = global_order(options, epoch);
      Indices sorted = order;
      std::sort(sorted.begin(), sorted.end());
      Indices identity(n);
      std::iota(identity.begin(), identity.end(), 0);
      EXPECT_EQ(sorted, identity) << "n=" << n << " epoch=" << epoch;
      EXPECT_EQ(global_order(options, epoch), order);
    }
  }
}

TEST(GlobalOrder, DiffersBetweenEpochsAndSeedsAndIsTheIdentityWithoutShuffle) {
  SamplerOptions options = make_options(1000, 1, 1);
  std::set<Indices> by_epoch;
  for (std::int64_t epoch = 0; epoch < 20; ++epoch) by_epoch.insert(global_order(options, epoch));
  EXPECT_EQ(by_epoch.size(), 20u);
  std::set<Indices> by_seed;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    options.seed = seed;
    by_seed.insert(global_order(options, 3));
  }
  EXPECT_EQ(by_seed.size(), 20u);

  options.shuffle = false;
  Indices identity(1000);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(global_order(options, 0), identity);
  EXPECT_EQ(global_order(options, 17), identity);
}

TEST(GlobalOrder, IgnoresRankWorldModeAndBatching) {
  const Indices reference = global_order(make_options(100, 1, 1), 5);
  SamplerOptions options = make_options(100, 4, 7, Mode::kEval);
  options.rank = 3;
  EXPECT_EQ(global_order(options, 5), reference);
  options = make_options(100, 3, 2);
  options.drop_last = true;
  options.drop_last_batch = true;
  EXPECT_EQ(global_order(options, 5), reference);
}

// The configurations the world-size tests sweep: padding, drop_last, evaluation, shard-local, unshuffled.
std::vector<SamplerOptions> sweep(std::int64_t n, int world, std::int64_t batch) {
  std::vector<SamplerOptions> all = {make_options(n, world, batch), make_options(n, world, batch, Mode::kEval)};
  if (n >= world) {
    all.push_back(make_options(n, world, batch));
    all.back().drop_last = true;
  }
  all.push_back(make_options(n, world, batch));
  all.back().shard_sizes = {n / 2 + 1};
  if (n / 2 + 1 < n) all.back().shard_sizes.push_back(n - n / 2 - 1);
  all.back().window = 3;
  all.push_back(make_options(n, world, batch, Mode::kEval));
  all.back().shuffle = false;
  return all;
}

TEST(DistributedSampler, EveryWorldSizeReadsTheSameGlobalOrder) {
  for (const std::int64_t n : {1, 2, 5, 10, 37, 100}) {
    for (const int world : {1, 2, 3, 4, 7}) {
      for (const std::int64_t batch : {1, 3}) {
        for (const SamplerOptions& options : sweep(n, world, batch)) {
          const std::string where =
              "n=" + std::to_string(n) + " world=" + std::to_string(world) + " batch=" + std::to_string(batch) +
              " drop_last=" + std::to_string(options.drop_last) + " mode=" + to_string(options.mode) +
              " shards=" + std::to_string(options.shard_sizes.size());
          const Indices order = global_order(options, 2);
          SamplerOptions single = options;
          single.world_size = 1;
          const Samples alone = all_ranks(single, 2)[0];
          EXPECT_EQ(alone.indices, order) << where;

          const Samples together = reassemble(all_ranks(options, 2));
          const auto expected_length = options.drop_last ? n / world * world : (n + world - 1) / world * world;
          ASSERT_EQ(static_cast<std::int64_t>(together.indices.size()), expected_length) << where;
          for (std::int64_t p = 0; p < expected_length; ++p) {
            // Padding repeats the order from its start; only evaluation marks it.
            EXPECT_EQ(together.indices[p], order[p % n]) << where << " p=" << p;
            EXPECT_EQ(together.valid[p], options.mode == Mode::kEval && p >= n ? 0 : 1) << where << " p=" << p;
          }
        }
      }
    }
  }
}

TEST(DistributedSampler, PaddingRepeatsTheFirstIndicesAndDropLastCutsTheTail) {
  const SamplerOptions padded = make_options(10, 4, 2);
  const Indices order = global_order(padded, 0);
  const std::vector<Samples> ranks = all_ranks(padded, 0);
  std::map<std::int64_t, int> counts;
  for (const Samples& rank : ranks) {
    EXPECT_EQ(rank.indices.size(), 3u);
    for (const auto& [index, n] : count(rank.indices)) counts[index] += n;
  }
  for (std::int64_t p = 0; p < 10; ++p) EXPECT_EQ(counts[order[p]], p < 2 ? 2 : 1) << "order position " << p;

  SamplerOptions dropped = padded;
  dropped.drop_last = true;
  counts.clear();
  for (const Samples& rank : all_ranks(dropped, 0)) {
    EXPECT_EQ(rank.indices.size(), 2u);
    for (const auto& [index, n] : count(rank.indices)) counts[index] += n;
  }
  for (std::int64_t p = 0; p < 10; ++p) EXPECT_EQ(counts[order[p]], p < 8 ? 1 : 0) << "order position " << p;

  // More ranks than samples: the padding wraps around the order as often as needed, as PyTorch's does.
  const SamplerOptions tiny = make_options(3, 8, 1);
  const Indices tiny_order = global_order(tiny, 0);
  counts.clear();
  for (const Samples& rank : all_ranks(tiny, 0)) {
    ASSERT_EQ(rank.indices.size(), 1u);
    ++counts[rank.indices[0]];
  }
  EXPECT_EQ(counts[tiny_order[0]], 3);
  EXPECT_EQ(counts[tiny_order[1]], 3);
  EXPECT_EQ(counts[tiny_order[2]], 2);
}

TEST(DistributedSampler, EvaluationMarksExactlyThePaddingAndCountsEverySampleOnce) {
  for (std::int64_t n = 1; n <= 30; ++n) {
    for (int world = 1; world <= 6; ++world) {
      const std::vector<Samples> ranks = all_ranks(make_options(n, world, 4, Mode::kEval), 1);
      const std::int64_t share = (n + world - 1) / world;
      std::map<std::int64_t, int> valid_counts;
      std::int64_t invalid = 0;
      for (const Samples& rank : ranks) {
        ASSERT_EQ(static_cast<std::int64_t>(rank.indices.size()), share);
        for (std::int64_t k = 0; k < share; ++k) {
          if (rank.valid[k]) {
            ++valid_counts[rank.indices[k]];
          } else {
            ++invalid;
            EXPECT_EQ(k, share - 1) << "padding before a rank's last sample, n=" << n << " world=" << world;
          }
        }
      }
      EXPECT_EQ(invalid, share * world - n) << "n=" << n << " world=" << world;
      ASSERT_EQ(static_cast<std::int64_t>(valid_counts.size()), n) << "n=" << n << " world=" << world;
      for (const auto& [index, c] : valid_counts) EXPECT_EQ(c, 1) << "index " << index << " n=" << n;
    }
  }
}

TEST(DistributedSampler, EveryRankGetsTheSameBatchCountsAndSizes) {
  // Note [Equal step counts], swept over small sizes and every mode.
  for (std::int64_t n = 1; n <= 40; ++n) {
    for (int world = 1; world <= 5; ++world) {
      for (std::int64_t batch = 1; batch <= 5; ++batch) {
        for (int variant = 0; variant < 4; ++variant) {
          SamplerOptions options = make_options(n, world, batch, variant == 3 ? Mode::kEval : Mode::kTrain);
          options.drop_last = variant == 1;
          options.drop_last_batch = variant == 2;
          const std::int64_t share = options.drop_last ? n / world : (n + world - 1) / world;
          if (share == 0 || (options.drop_last_batch && share < batch)) continue;  // rejected by validate()
          const std::int64_t expected = options.drop_last_batch ? share / batch : (share + batch - 1) / batch;
          std::vector<std::int64_t> sizes;
          for (int rank = 0; rank < world; ++rank) {
            options.rank = rank;
            DistributedSampler sampler(options);
            ASSERT_EQ(sampler.batches_per_epoch(), expected);
            const std::vector<Batch> batches = drain(sampler);
            ASSERT_EQ(static_cast<std::int64_t>(batches.size()), expected)
                << "n=" << n << " world=" << world << " batch=" << batch << " variant=" << variant;
            for (std::size_t k = 0; k < batches.size(); ++k) {
              const auto size = static_cast<std::int64_t>(batches[k].indices.size());
              if (rank == 0) sizes.push_back(size);
              EXPECT_EQ(size, sizes[k]) << "rank " << rank << " batch " << k;
              if (k + 1 < batches.size() || options.drop_last_batch) {
                EXPECT_EQ(size, batch) << "only the last batch may be short";
              }
            }
          }
        }
      }
    }
  }
  // The documented example: 10 samples, 4 ranks, batches of 2: 3 samples per rank, batches of 2 and 1.
  const std::vector<Batch> kept = [] {
    DistributedSampler sampler(make_options(10, 4, 2));
    return drain(sampler);
  }();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[1].indices.size(), 1u);
  SamplerOptions options = make_options(10, 4, 2);
  options.drop_last_batch = true;
  DistributedSampler dropping(options);
  EXPECT_EQ(drain(dropping).size(), 1u);
}

TEST(DistributedSampler, ResumingFromEveryPositionContinuesExactly) {
  std::vector<SamplerOptions> configs = {make_options(23, 3, 2), make_options(23, 4, 3, Mode::kEval),
                                         make_options(23, 3, 2), make_options(61, 4, 3)};
  configs[2].drop_last = true;
  configs[2].drop_last_batch = true;
  configs[3].shard_sizes = {20, 20, 21};
  configs[3].window = 7;
  for (SamplerOptions options : configs) {
    for (int rank = 0; rank < options.world_size; ++rank) {
      options.rank = rank;
      DistributedSampler reference(options);
      reference.start_epoch(4);
      const std::int64_t batches = reference.batches_left();
      const std::vector<Batch> whole = drain(reference);
      for (std::int64_t s = 0; s <= batches; ++s) {
        DistributedSampler first(options);
        first.start_epoch(4);
        for (std::int64_t i = 0; i < s; ++i) first.next();
        const std::string saved = to_string(first.state());
        // Global samples consumed, the same on every rank; the number of samples once the epoch is complete.
        const std::int64_t expected_position =
            s < batches ? options.world_size * options.batch_size * s : options.dataset_size;
        EXPECT_EQ(first.position(), expected_position) << saved;

        DistributedSampler resumed(options);  // at epoch 0, position 0 until restored
        resumed.restore(parse_sampler_state(saved));
        EXPECT_EQ(resumed.state(), first.state());
        EXPECT_EQ(resumed.batches_left(), batches - s);
        const std::vector<Batch> rest = drain(resumed);
        ASSERT_EQ(static_cast<std::int64_t>(rest.size()), batches - s) << saved;
        for (std::size_t k = 0; k < rest.size(); ++k) {
          EXPECT_EQ(rest[k].indices, whole[s + k].indices) << saved << " rank " << rank << " batch " << s + k;
          EXPECT_EQ(rest[k].valid, whole[s + k].valid) << saved << " rank " << rank << " batch " << s + k;
        }
      }
    }
  }
}

TEST(DistributedSampler, ResumingUnderAnotherWorldSizeReadsEachRemainingSampleOnce) {
  const std::int64_t n = 50;
  for (const std::int64_t steps : {0, 1, 2, 4, 5}) {
    // Four ranks read `steps` batches of 3; then the run continues on another number of ranks.
    SamplerOptions before = make_options(n, 4, 3, Mode::kEval);
    std::map<std::int64_t, int> counts;
    std::string saved;
    for (int rank = 0; rank < 4; ++rank) {
      before.rank = rank;
      DistributedSampler sampler(before);
      sampler.start_epoch(1);
      for (std::int64_t i = 0; i < steps; ++i) {
        const Batch batch = *sampler.next();
        for (std::size_t k = 0; k < batch.indices.size(); ++k) counts[batch.indices[k]] += batch.valid[k];
      }
      if (rank == 0) saved = to_string(sampler.state());
      EXPECT_EQ(to_string(sampler.state()), saved) << "rank " << rank;
    }
    for (const int world : {1, 3, 4, 6}) {
      std::map<std::int64_t, int> total = counts;
      SamplerOptions after = make_options(n, world, 5, Mode::kEval);
      for (int rank = 0; rank < world; ++rank) {
        after.rank = rank;
        DistributedSampler sampler(after);
        sampler.restore(parse_sampler_state(saved));
        const Samples rest = flatten(drain(sampler));
        for (std::size_t k = 0; k < rest.indices.size(); ++k) total[rest.indices[k]] += rest.valid[k];
      }
      ASSERT_EQ(static_cast<std::int64_t>(total.size()), n) << saved << " world " << world;
      for (const auto& [index, c] : total) EXPECT_EQ(c, 1) << "index " << index << " " << saved << " world " << world;
    }
  }
}

TEST(DistributedSampler, ACompleteEpochStaysCompleteUnderAnyWorldSize) {
  SamplerOptions options = make_options(10, 4, 2);
  options.drop_last = true;
  DistributedSampler sampler(options);
  drain(sampler);
  EXPECT_EQ(sampler.position(), 10);  // not 8: the dropped tail is not "left" for a smaller world to read
  const SamplerState done = sampler.state();
  options.world_size = 2;
  DistributedSampler smaller(options);
  smaller.restore(done);
  EXPECT_EQ(smaller.batches_left(), 0);
  EXPECT_FALSE(smaller.next().has_value());
  EXPECT_EQ(smaller.state(), done);
}

TEST(SamplerState, RoundTripsThroughItsStringAndRejectsGarbage) {
  SamplerState state;
  state.epoch = 7;
  state.position = 1234;
  state.dataset_size = 60000;
  state.seed = 18446744073709551615ULL;
  state.layout = 99;
  const std::string text = to_string(state);
  EXPECT_EQ(text, "epoch=7 position=1234 dataset_size=60000 seed=18446744073709551615 layout=99");
  EXPECT_EQ(parse_sampler_state(text), state);
  EXPECT_EQ(parse_sampler_state("layout=99 seed=18446744073709551615 dataset_size=60000 position=1234 epoch=7"), state);

  const std::string rest = " dataset_size=60000 seed=1 layout=2";
  expect_invalid([&] { parse_sampler_state("epoch=1" + rest); }, "field 'position' is missing");
  expect_invalid([&] { parse_sampler_state("epoch=1 position=2 step=3" + rest); }, "unknown field 'step'");
  expect_invalid([&] { parse_sampler_state("epoch=1 position=2 epoch=3" + rest); }, "field 'epoch' given twice");
  expect_invalid([&] { parse_sampler_state("epoch=1 position=x" + rest); }, "field 'position'");
  expect_invalid([&] { parse_sampler_state("epoch=-1 position=2" + rest); }, "field 'epoch'");
  expect_invalid([&] { parse_sampler_state("epoch=9223372036854775808 position=2" + rest); }, "field 'epoch'");
  expect_invalid([&] { parse_sampler_state("epoch=1 position=" + rest); }, "field 'position'");
  expect_invalid([&] { parse_sampler_state("epoch=1 position=2 dataset_size=60000 seed=1 layout"); }, "key=value");
  expect_invalid([&] { parse_sampler_state(""); }, "field 'epoch' is missing");
}

TEST(SamplerState, LayoutIsTheDocumentedFingerprint) {
  // Checkpoints store it: a change would make every older checkpoint unrestorable.
  EXPECT_EQ(DistributedSampler(make_options(100, 2, 4)).state().layout, 8841707400507832957ULL);
  SamplerOptions sharded = make_options(100, 2, 4);
  sharded.shard_sizes = {50, 50};
  sharded.window = 10;
  EXPECT_EQ(DistributedSampler(sharded).state().layout, 13323564525503938442ULL);
}

TEST(SamplerState, RestoreRejectsStatesOfAnotherOrderAndPositionsBeyondTheEpoch) {
  SamplerOptions options = make_options(100, 2, 4);
  const SamplerState good = DistributedSampler(options).state();

  SamplerState bad = good;
  bad.position = 101;
  expect_invalid([&] { DistributedSampler(options).restore(bad); }, "position 101");
  bad = good;
  bad.epoch = -1;
  expect_invalid([&] { DistributedSampler(options).restore(bad); }, "epoch");
  bad = good;
  bad.dataset_size = 99;
  expect_invalid([&] { DistributedSampler(options).restore(bad); }, "dataset_size 99");
  bad = good;
  bad.seed = good.seed + 1;
  expect_invalid([&] { DistributedSampler(options).restore(bad); }, "seed");

  SamplerOptions sharded = options;
  sharded.shard_sizes = {50, 50};
  sharded.window = 10;
  expect_invalid([&] { DistributedSampler(sharded).restore(good); }, "layout");
  SamplerOptions unshuffled = options;
  unshuffled.shuffle = false;
  expect_invalid([&] { DistributedSampler(unshuffled).restore(good); }, "layout");

  // What may change on resume: world size, rank, batch size, mode.
  SamplerOptions other = make_options(100, 3, 5, Mode::kEval);
  other.rank = 2;
  DistributedSampler resumed(other);
  resumed.restore(good);
  EXPECT_EQ(resumed.epoch(), good.epoch);
}

TEST(SamplerOptions, BadOptionsAreNamedInOneLine) {
  const auto bad = [](const std::function<void(SamplerOptions&)>& change, const std::string& needle) {
    SamplerOptions options = make_options(10, 4, 2);
    change(options);
    expect_invalid([&] { validate(options); }, needle);
    expect_invalid([&] { DistributedSampler sampler(options); }, needle);
  };
  bad([](SamplerOptions& o) { o.dataset_size = 0; }, "dataset_size must be >= 1 (got 0)");
  bad([](SamplerOptions& o) { o.world_size = 0; }, "world_size must be >= 1");
  bad([](SamplerOptions& o) { o.rank = 4; }, "rank 4 is outside [0, world_size 4)");
  bad([](SamplerOptions& o) { o.rank = -1; }, "rank -1");
  bad([](SamplerOptions& o) { o.batch_size = 0; }, "batch_size must be >= 1");
  bad(
      [](SamplerOptions& o) {
        o.dataset_size = 3;
        o.drop_last = true;
      },
      "drop_last with dataset_size 3 < world_size 4 leaves no sample");
  bad(
      [](SamplerOptions& o) {
        o.batch_size = 4;
        o.drop_last_batch = true;
      },
      "drop_last_batch with batch_size 4 > 3 samples per rank leaves no batch");
  bad(
      [](SamplerOptions& o) {
        o.mode = Mode::kEval;
        o.drop_last = true;
      },
      "drop_last drops samples, but mode eval");
  bad(
      [](SamplerOptions& o) {
        o.mode = Mode::kEval;
        o.drop_last_batch = true;
      },
      "drop_last_batch drops samples, but mode eval");
  bad([](SamplerOptions& o) { o.window = 4; }, "window 4 needs shard_sizes");
  bad(
      [](SamplerOptions& o) {
        o.shard_sizes = {5, 5};
        o.window = 2;
        o.shuffle = false;
      },
      "shard_sizes need shuffle");
  bad(
      [](SamplerOptions& o) {
        o.shard_sizes = {5, 0, 5};
        o.window = 2;
      },
      "shard_sizes[1] must be >= 1");
  bad(
      [](SamplerOptions& o) {
        o.shard_sizes = {5, 4};
        o.window = 2;
      },
      "shard_sizes add up to 9, not to dataset_size 10");
  bad(
      [](SamplerOptions& o) {
        o.shard_sizes = {5, 4, 9};
        o.window = 2;
      },
      "add up to more than dataset_size 10 (at shard_sizes[2])");
  bad([](SamplerOptions& o) { o.shard_sizes = {5, 5}; }, "window must be >= 1 with shard_sizes (got 0)");

  DistributedSampler sampler(make_options(10, 4, 2));
  expect_invalid([&] { sampler.start_epoch(-1); }, "epoch must be >= 0 (got -1)");
  expect_invalid([&] { sampler.start_epoch(0, 11); }, "position 11 is outside [0, dataset_size 10]");
}

SamplerOptions sharded(std::vector<std::int64_t> sizes, std::int64_t window) {
  SamplerOptions options = make_options(std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0}), 1, 1);
  options.shard_sizes = std::move(sizes);
  options.window = window;
  return options;
}

TEST(ShardLocalShuffle, CoversEveryIndexOnceAndKeepsSamplesInTheirWindow) {
  for (const SamplerOptions& options : {sharded({100, 1, 50, 7}, 16), sharded({13, 27}, 1000), sharded({5, 5, 5}, 4),
                                        sharded({30, 31, 29, 1, 40}, 9)}) {
    for (const std::int64_t epoch : {0, 1, 5}) {
      const Indices order = global_order(options, epoch);
      Indices sorted = order;
      std::sort(sorted.begin(), sorted.end());
      Indices identity(options.dataset_size);
      std::iota(identity.begin(), identity.end(), 0);
      ASSERT_EQ(sorted, identity);

      // The shard order is drawn first from the epoch's generator, so window 1 (no shuffling within windows)
      // shows the shard-ordered sequence this order was cut from: whole shards, each once, each ascending.
      SamplerOptions unwindowed = options;
      unwindowed.window = 1;
      const Indices sequence = global_order(unwindowed, epoch);
      std::set<std::int64_t> shards_seen;
      std::int64_t p = 0;
      while (p < options.dataset_size) {
        std::int64_t shard = 0;
        std::int64_t first = 0;
        while (first + options.shard_sizes[shard] <= sequence[p]) first += options.shard_sizes[shard++];
        ASSERT_TRUE(shards_seen.insert(shard).second) << "shard " << shard << " twice";
        for (std::int64_t i = 0; i < options.shard_sizes[shard]; ++i) ASSERT_EQ(sequence[p + i], first + i);
        p += options.shard_sizes[shard];
      }
      EXPECT_EQ(shards_seen.size(), options.shard_sizes.size());

      for (std::int64_t begin = 0; begin < options.dataset_size; begin += options.window) {
        const std::int64_t end = std::min(begin + options.window, options.dataset_size);
        std::multiset<std::int64_t> got(order.begin() + begin, order.begin() + end);
        std::multiset<std::int64_t> want(sequence.begin() + begin, sequence.begin() + end);
        EXPECT_EQ(got, want) << "window at " << begin << ", epoch " << epoch;
      }
    }
  }
}

TEST(ShardLocalShuffle, AlignedWindowsAreWholeShardsInAShuffledOrder) {
  const SamplerOptions options = sharded(std::vector<std::int64_t>(10, 8), 8);
  std::set<Indices> shard_orders;
  for (std::int64_t epoch = 0; epoch < 10; ++epoch) {
    const Indices order = global_order(options, epoch);
    Indices shard_order;
    for (std::int64_t w = 0; w < 10; ++w) {
      const std::int64_t shard = order[w * 8] / 8;
      for (std::int64_t i = 0; i < 8; ++i) ASSERT_EQ(order[w * 8 + i] / 8, shard) << "window " << w;
      shard_order.push_back(shard);
    }
    const Indices within(order.begin(), order.begin() + 8);
    EXPECT_FALSE(std::is_sorted(within.begin(), within.end())) << "window not shuffled, epoch " << epoch;
    shard_orders.insert(shard_order);
  }
  EXPECT_EQ(shard_orders.size(), 10u);  // a new shard order every epoch
}

TEST(ShardLocalShuffle, OneShardInOneWindowIsThePlainShuffle) {
  // Shuffling a single shard draws nothing, so the window shuffle sees the same generator as the plain shuffle.
  const SamplerOptions one = sharded({40}, 40);
  SamplerOptions plain = one;
  plain.shard_sizes.clear();
  plain.window = 0;
  EXPECT_EQ(global_order(one, 3), global_order(plain, 3));
  EXPECT_EQ(global_order(sharded({40}, 1000), 3), global_order(plain, 3));
}

}  // namespace
}  // namespace dtrain::sampler
