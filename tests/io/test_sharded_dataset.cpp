// The shard writer and reader: exact round trips (any index order, repeats, across shards, compressed or not), and a
// clear DataError naming the file for every kind of bad input. Runs as one MPI rank (parallel HDF5 wants MPI).

#include "io/sharded_dataset.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "io/data_error.h"
#include "io/manifest.h"
#include "io/prefetcher.h"
#include "io/shard_writer.h"

namespace dtrain::io {
namespace {

namespace fs = std::filesystem;

class ShardedDatasetTest : public testing::Test {
 protected:
  void SetUp() override {
    folder_ = (fs::temp_directory_path() / ("dtrain-io-" + std::to_string(getpid()) + "-" +
                                            testing::UnitTest::GetInstance()->current_test_info()->name()))
                  .string();
    fs::remove_all(folder_);
  }
  void TearDown() override { fs::remove_all(folder_); }

  // 103 samples: "x" float32 [3, 2] with x[i] = 10 i + j, "y" int64 label i % 7.
  void write(std::int64_t per_shard = 25, int gzip = 0, std::int64_t chunk = 8) {
    Manifest m;
    m.samples = kSamples;
    m.classes = 7;
    m.datasets = {{"x", "float32", {3, 2}}, {"y", "int64", {}}};
    ShardWriterOptions options;
    options.samples_per_shard = per_shard;
    options.gzip_level = gzip;
    options.chunk_samples = chunk;
    write_sharded_dataset(
        folder_, m,
        [](std::size_t d, std::int64_t first, std::int64_t count, void* out) {
          for (std::int64_t i = 0; i < count; ++i) {
            if (d == 0) {
              for (int j = 0; j < 6; ++j) static_cast<float*>(out)[i * 6 + j] = 10.0f * (first + i) + j;
            } else {
              static_cast<std::int64_t*>(out)[i] = (first + i) % 7;
            }
          }
        },
        options);
  }

  void expect_reads_exactly(ShardedDataset& dataset, const std::vector<std::int64_t>& indices) {
    std::vector<float> x(indices.size() * 6);
    std::vector<std::int64_t> y(indices.size());
    dataset.read("x", indices, x.data());
    dataset.read("y", indices, y.data());
    for (std::size_t k = 0; k < indices.size(); ++k) {
      for (int j = 0; j < 6; ++j) ASSERT_EQ(x[k * 6 + j], 10.0f * indices[k] + j) << "sample " << indices[k];
      ASSERT_EQ(y[k], indices[k] % 7) << "sample " << indices[k];
    }
  }

  std::string expect_data_error(const std::function<void()>& action) {
    try {
      action();
    } catch (const DataError& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected a DataError";
    return "";
  }

  static constexpr std::int64_t kSamples = 103;
  std::string folder_;
};

TEST_F(ShardedDatasetTest, ReadsAnyIndicesExactlyAcrossShards) {
  write();
  ShardedDataset dataset(folder_, {"x", "y"});
  EXPECT_EQ(dataset.manifest().shards.size(), 5u);  // 25+25+25+25+3
  std::vector<std::int64_t> all(kSamples);
  std::iota(all.begin(), all.end(), 0);
  expect_reads_exactly(dataset, all);
  expect_reads_exactly(dataset, {102, 0, 51, 50, 49, 24, 25, 7, 7, 102});  // unsorted, repeats, shard borders
  expect_reads_exactly(dataset, {});
}

TEST_F(ShardedDatasetTest, CompressedChunkedShardsReadTheSame) {
  write(40, 6, 5);
  ShardedDataset dataset(folder_, {"x", "y"});
  expect_reads_exactly(dataset, {5, 99, 3, 4, 5, 6, 60, 61, 62, 0});
}

TEST_F(ShardedDatasetTest, ChecksumsMatchWhatWasWritten) {
  write();
  ReadOptions options;
  options.verify_checksums = true;
  ShardedDataset dataset(folder_, {"x", "y"}, options);
  EXPECT_EQ(dataset.manifest().shards[0].crc32.size(), 2u);
}

TEST_F(ShardedDatasetTest, AMissingShardIsNamed) {
  write();
  fs::remove(folder_ + "/shard-00002.h5");
  const std::string message = expect_data_error([&] { ShardedDataset dataset(folder_, {"x"}); });
  EXPECT_NE(message.find(folder_ + "/shard-00002.h5: missing shard"), std::string::npos) << message;
}

TEST_F(ShardedDatasetTest, ATruncatedShardIsNamed) {
  write();
  fs::resize_file(folder_ + "/shard-00001.h5", fs::file_size(folder_ + "/shard-00001.h5") / 2);
  const std::string message = expect_data_error([&] { ShardedDataset dataset(folder_, {"x"}); });
  EXPECT_NE(message.find(folder_ + "/shard-00001.h5: cannot open: not an HDF5 file, or truncated"), std::string::npos)
      << message;
}

TEST_F(ShardedDatasetTest, ACorruptShardFailsItsChecksum) {
  write();
  {  // change one value in place, as a bit flip on disk would
    hid_t file = H5Fopen((folder_ + "/shard-00003.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t dataset = H5Dopen2(file, "y", H5P_DEFAULT);
    std::vector<std::int64_t> y(25, 1);
    H5Dwrite(dataset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y.data());
    H5Dclose(dataset);
    H5Fclose(file);
  }
  ReadOptions options;
  options.verify_checksums = true;
  const std::string message = expect_data_error([&] { ShardedDataset dataset(folder_, {"x", "y"}, options); });
  EXPECT_NE(message.find(folder_ + "/shard-00003.h5: dataset 'y' is corrupt: CRC-32"), std::string::npos) << message;
}

TEST_F(ShardedDatasetTest, AManifestThatDisagreesWithItsFilesIsNamed) {
  write();
  const std::string manifest = folder_ + "/manifest.json";
  auto edit = [&](const std::function<void(nlohmann::json&)>& change) {
    std::ifstream in(manifest);
    nlohmann::json j;
    in >> j;
    change(j);
    std::ofstream(manifest) << j.dump();
  };
  edit([](nlohmann::json& j) { j["datasets"][1]["dtype"] = "float64"; });
  std::string message = expect_data_error([&] { ShardedDataset dataset(folder_, {"y"}); });
  EXPECT_NE(message.find("shard-00000.h5: dataset 'y' has dtype int64 but the manifest says float64"),
            std::string::npos)
      << message;

  write();
  edit([](nlohmann::json& j) { j["datasets"][0]["shape"] = {2, 3}; });
  message = expect_data_error([&] { ShardedDataset dataset(folder_, {"x"}); });
  EXPECT_NE(message.find("dataset 'x' has shape [25, 3, 2] but the manifest says [25, 2, 3]"), std::string::npos)
      << message;

  write();
  edit([](nlohmann::json& j) { j["samples"] = 104; });
  message = expect_data_error([&] { ShardedDataset dataset(folder_, {"x"}); });
  EXPECT_NE(message.find("its shards hold 103 samples but it says 104"), std::string::npos) << message;

  write();
  edit([](nlohmann::json& j) {
    j["shards"][4]["samples"] = 4;
    j["samples"] = 104;
  });
  message = expect_data_error([&] { ShardedDataset dataset(folder_, {"x"}); });
  EXPECT_NE(message.find("shard-00004.h5: dataset 'x' has shape [3, 3, 2] but the manifest says [4, 3, 2]"),
            std::string::npos)
      << message;

  write();
  std::ofstream(manifest) << "{ not json";
  message = expect_data_error([&] { ShardedDataset dataset(folder_, {"x"}); });
  EXPECT_NE(message.find(manifest + ": not valid JSON"), std::string::npos) << message;

  message = expect_data_error([&] { ShardedDataset dataset(folder_ + "/nowhere", {"x"}); });
  EXPECT_NE(message.find("no such dataset folder"), std::string::npos) << message;
}

TEST_F(ShardedDatasetTest, UnknownDatasetsAndEmptyDataAreRefused) {
  write();
  std::string message = expect_data_error([&] { ShardedDataset dataset(folder_, {"images"}); });
  EXPECT_NE(message.find("dataset 'images' is not in this data (it has: x, y)"), std::string::npos) << message;
  Manifest empty;
  empty.datasets = {{"x", "uint8", {}}};
  message = expect_data_error([&] { write_sharded_dataset(folder_ + "-empty", empty, {}, {}); });
  EXPECT_NE(message.find("nothing to write (0 samples)"), std::string::npos) << message;
}

TEST_F(ShardedDatasetTest, PrefetcherDeliversInOrderAndRethrowsBackgroundErrors) {
  write();
  Prefetcher prefetcher(folder_, {"x", "y"}, {}, 2);
  prefetcher.schedule({{3, 1}, {102, 0, 0}, {200}});
  auto first = prefetcher.next();
  EXPECT_EQ(first[0].sizes(), (std::vector<int64_t>{2, 3, 2}));
  EXPECT_EQ(first[1][0].item<int64_t>(), 3);
  EXPECT_EQ(first[1][1].item<int64_t>(), 1);
  auto second = prefetcher.next();
  EXPECT_EQ(second[0][0][0][0].item<float>(), 1020.0f);
  const std::string message = expect_data_error([&] { prefetcher.next(); });
  EXPECT_NE(message.find("sample 200 is out of range (0..102)"), std::string::npos) << message;
}

TEST_F(ShardedDatasetTest, PrefetcherReportsABadDatasetAtOnce) {
  const std::string message = expect_data_error([&] { Prefetcher prefetcher(folder_, {"x"}, {}, 2); });
  EXPECT_NE(message.find("no such dataset folder"), std::string::npos) << message;
}

}  // namespace
}  // namespace dtrain::io
