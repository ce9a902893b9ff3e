// Sharded-HDF5 read throughput against a plain fread of the same bytes, measured in the same run. Cache state: every
// file is read once right before it is timed (warm page cache; see ENVIRONMENT.md's page-cache note), so the table
// compares the readers, not the disk.

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <vector>

#include "bench/summary.h"
#include "io/manifest.h"
#include "io/shard_writer.h"
#include "io/sharded_dataset.h"
#include "sampler/distributed_sampler.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace dtrain;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void warm(const std::string& path) {
  std::vector<char> buffer(1 << 20);
  FILE* f = std::fopen(path.c_str(), "rb");
  while (f != nullptr && std::fread(buffer.data(), 1, buffer.size(), f) > 0) {
  }
  if (f != nullptr) std::fclose(f);
}

void warm_folder(const std::string& folder) {
  for (const auto& entry : fs::directory_iterator(folder)) warm(entry.path().string());
}

// Seconds to fread `path` in 1 MiB pieces.
double time_fread(const std::string& path) {
  warm(path);
  std::vector<char> buffer(1 << 20);
  const double start = now();
  FILE* f = std::fopen(path.c_str(), "rb");
  std::size_t total = 0;
  for (std::size_t n; (n = std::fread(buffer.data(), 1, buffer.size(), f)) > 0;) total += n;
  std::fclose(f);
  const double seconds = now() - start;
  if (total == 0) std::fprintf(stderr, "io_bench: read nothing from %s\n", path.c_str());
  return seconds;
}

// Seconds to read every sample through the reader, batch by batch, in sequential or shuffled order.
double time_reader(const std::string& folder, std::int64_t samples, std::int64_t sample_bytes, std::int64_t batch,
                   bool shuffled) {
  warm_folder(folder);
  io::ShardedDataset dataset(folder, {"x"});
  sampler::SamplerOptions sampling;
  sampling.dataset_size = samples;
  sampling.batch_size = batch;
  sampling.shuffle = shuffled;
  sampler::DistributedSampler order(sampling);
  std::vector<unsigned char> out(static_cast<std::size_t>(batch * sample_bytes));
  const double start = now();
  while (auto next = order.next()) dataset.read("x", next->indices, out.data());
  return now() - start;
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t samples = 100000, sample_floats = 256, batch = 256, per_shard = 25000;
  std::string folder = "io-bench-data";
  std::string summary;
  po::options_description options("io_bench: sharded HDF5 reads vs fread of the same bytes");
  options.add_options()("help,h", "show this help")("samples", po::value(&samples)->default_value(samples),
                                                    "samples in the test dataset")(
      "sample-floats", po::value(&sample_floats)->default_value(sample_floats), "float32 values per sample")(
      "batch", po::value(&batch)->default_value(batch), "samples per read")(
      "samples-per-shard", po::value(&per_shard)->default_value(per_shard), "samples per shard")(
      "folder", po::value(&folder)->default_value(folder), "scratch folder (removed at the end)")(
      "summary", po::value(&summary), "append each figure to this markdown file (bench/run-all.sh)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "io_bench: %s\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  MPI_Init(&argc, &argv);
  const std::int64_t sample_bytes = sample_floats * 4;
  const double megabytes = static_cast<double>(samples * sample_bytes) / 1e6;
  std::vector<float> data(static_cast<std::size_t>(samples * sample_floats));
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i % 9973) * 0.25f;

  fs::create_directories(folder);
  const std::string raw = folder + "/same-bytes.bin";
  {
    FILE* f = std::fopen(raw.c_str(), "wb");
    std::fwrite(data.data(), 4, data.size(), f);
    std::fclose(f);
  }
  io::Manifest manifest;
  manifest.samples = samples;
  manifest.datasets = {{"x", "float32", {sample_floats}}};
  auto source = [&](std::size_t, std::int64_t first, std::int64_t count, void* out) {
    std::memcpy(out, data.data() + first * sample_floats, static_cast<std::size_t>(count * sample_bytes));
  };
  io::ShardWriterOptions plain;
  plain.samples_per_shard = per_shard;
  io::write_sharded_dataset(folder + "/plain", manifest, source, plain);
  io::ShardWriterOptions gzip = plain;
  gzip.gzip_level = 4;
  io::write_sharded_dataset(folder + "/gzip", manifest, source, gzip);

  std::printf("io_bench: %lld samples x %lld bytes (%.0f MB), batches of %lld, warm page cache\n",
              static_cast<long long>(samples), static_cast<long long>(sample_bytes), megabytes,
              static_cast<long long>(batch));
  std::printf("%-34s %10s %12s %14s\n", "reader", "MB/s", "samples/s", "vs fread");
  const double fread_s = time_fread(raw);
  auto row = [&](const char* name, double seconds, bool peer = false) {
    std::printf("%-34s %10.0f %12.0f %14.3f\n", name, megabytes / seconds, static_cast<double>(samples) / seconds,
                fread_s / seconds);
    if (!peer) {
      dtrain::bench::append_summary_row(summary, "io_bench", fmt::format("{}, batch {}", name, batch),
                                        fmt::format("{:.0f} MB/s", megabytes / seconds), "fread of the same bytes",
                                        fmt::format("{:.0f} MB/s", megabytes / fread_s), fread_s / seconds);
    }
  };
  row("fread, 1 MiB pieces (the peer)", fread_s, /*peer=*/true);
  row("shards, uncompressed, sequential", time_reader(folder + "/plain", samples, sample_bytes, batch, false));
  row("shards, uncompressed, shuffled", time_reader(folder + "/plain", samples, sample_bytes, batch, true));
  row("shards, gzip 4, sequential", time_reader(folder + "/gzip", samples, sample_bytes, batch, false));
  row("shards, gzip 4, shuffled", time_reader(folder + "/gzip", samples, sample_bytes, batch, true));
  std::printf("vs fread = fread time / reader time (goal >= 0.9 for uncompressed shards)\n");
  fs::remove_all(folder);
  MPI_Finalize();
  return 0;
}
