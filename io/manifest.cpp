#include "io/manifest.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "io/data_error.h"

namespace dtrain::io {

std::int64_t dtype_size(const std::string& dtype) {
  if (dtype == "uint8") return 1;
  if (dtype == "int32" || dtype == "float32") return 4;
  if (dtype == "int64" || dtype == "float64") return 8;
  throw DataError(fmt::format("unknown dtype '{}' (known: uint8, int32, int64, float32, float64)", dtype));
}

std::int64_t DatasetSpec::sample_bytes() const {
  return std::accumulate(shape.begin(), shape.end(), dtype_size(dtype), std::multiplies<std::int64_t>());
}

Manifest Manifest::load(const std::string& folder) {
  const std::string path = (std::filesystem::path(folder) / kManifestName).string();
  auto fail = [&](const std::string& what) { throw DataError(fmt::format("{}: {}", path, what)); };
  if (!std::filesystem::is_directory(folder)) throw DataError(fmt::format("{}: no such dataset folder", folder));
  std::ifstream in(path);
  if (!in) fail("missing (is this a folder made by dtrain-shard?)");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    fail(fmt::format("not valid JSON: {}", e.what()));
  }
  Manifest m;
  try {
    if (j.at("format") != kShardFormat)
      fail(fmt::format("format is {}, expected {}", j.at("format").dump(), kShardFormat));
    m.samples = j.at("samples");
    m.classes = j.value("classes", 0);
    m.vocabulary = j.value("vocabulary", "");
    m.source = j.value("source", nlohmann::json::object());
    for (const auto& d : j.at("datasets")) {
      DatasetSpec spec{d.at("name"), d.at("dtype"), d.at("shape").get<std::vector<std::int64_t>>()};
      dtype_size(spec.dtype);
      m.datasets.push_back(std::move(spec));
    }
    for (const auto& s : j.at("shards")) {
      ShardSpec shard{s.at("file"), s.at("samples"), s.value("crc32", std::map<std::string, std::string>{})};
      m.shards.push_back(std::move(shard));
    }
  } catch (const DataError& e) {
    fail(e.what());
  } catch (const nlohmann::json::exception& e) {
    fail(fmt::format("malformed: {}", e.what()));
  }
  if (m.datasets.empty()) fail("lists no datasets");
  if (m.shards.empty()) fail("lists no shards");
  std::int64_t total = 0;
  for (const auto& shard : m.shards) {
    if (shard.samples <= 0) fail(fmt::format("shard {} has {} samples", shard.file, shard.samples));
    total += shard.samples;
  }
  if (total != m.samples) fail(fmt::format("its shards hold {} samples but it says {}", total, m.samples));
  return m;
}

void Manifest::save(const std::string& folder) const {
  nlohmann::json j = {{"format", kShardFormat}, {"samples", samples}, {"classes", classes}, {"source", source}};
  if (!vocabulary.empty()) j["vocabulary"] = vocabulary;
  j["datasets"] = nlohmann::json::array();
  for (const auto& d : datasets) j["datasets"].push_back({{"name", d.name}, {"dtype", d.dtype}, {"shape", d.shape}});
  j["shards"] = nlohmann::json::array();
  for (const auto& s : shards) j["shards"].push_back({{"file", s.file}, {"samples", s.samples}, {"crc32", s.crc32}});
  const std::string path = (std::filesystem::path(folder) / kManifestName).string();
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary);
    out << j.dump(2) << "\n";
    out.close();
    if (!out) throw DataError(fmt::format("{}: cannot write", temporary));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) throw DataError(fmt::format("{}: cannot rename", path));
}

const DatasetSpec& Manifest::dataset(const std::string& name) const {
  for (const auto& d : datasets) {
    if (d.name == name) return d;
  }
  std::vector<std::string> names;
  for (const auto& d : datasets) names.push_back(d.name);
  throw DataError(fmt::format("dataset '{}' is not in this data (it has: {})", name, fmt::join(names, ", ")));
}

}  // namespace dtrain::io
