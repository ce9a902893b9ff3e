#pragma once
// The manifest of a sharded dataset (docs/shard-format.md): which shard files hold how many samples, which datasets
// each shard has (name, dtype, per-sample shape), their checksums, and how the dataset was made.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dtrain::io {

constexpr const char* kManifestName = "manifest.json";
constexpr const char* kShardFormat = "dtrain-shards-1";

struct DatasetSpec {
  std::string name;
  std::string dtype;                // uint8 | int32 | int64 | float32 | float64
  std::vector<std::int64_t> shape;  // of one sample ([] for a scalar label)
  std::int64_t sample_bytes() const;
};

struct ShardSpec {
  std::string file;  // relative to the dataset folder
  std::int64_t samples = 0;
  std::map<std::string, std::string> crc32;  // dataset name -> CRC-32 of its bytes in this shard, 8 hex digits
};

struct Manifest {
  std::int64_t samples = 0;
  std::int64_t classes = 0;  // for labelled data; 0 if not a classification set
  std::vector<DatasetSpec> datasets;
  std::vector<ShardSpec> shards;
  std::string vocabulary;                            // text corpora: token id i is vocabulary[i]
  nlohmann::json source = nlohmann::json::object();  // tool, version, inputs, options, time

  // Reads and checks <folder>/manifest.json. Throws DataError naming the file and the problem.
  static Manifest load(const std::string& folder);
  // Writes <folder>/manifest.json atomically (temporary file, then rename).
  void save(const std::string& folder) const;
  // Throws DataError listing the datasets there are.
  const DatasetSpec& dataset(const std::string& name) const;
};

std::int64_t dtype_size(const std::string& dtype);  // throws DataError for unknown dtypes

}  // namespace dtrain::io
