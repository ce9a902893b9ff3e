// dtrain-shard: converts data into dtrain's sharded HDF5 format (docs/shard-format.md): Fashion-MNIST IDX files,
// datasets of an existing HDF5 file, or a plain-text corpus as character token ids. Also verifies a dataset.

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mpi.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>
#include <sstream>

#include "io/data_error.h"
#include "io/hdf5_check.h"
#include "io/hdf5_types.h"
#include "io/idx_file.h"
#include "io/manifest.h"
#include "io/shard_writer.h"
#include "io/sharded_dataset.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace dtrain::io;

namespace {

struct Options {
  std::string output, fashion_mnist, split = "train", input_hdf5, datasets, text, text_range = "0:1", verify;
  std::int64_t shards = 0, samples_per_shard = 0, chunk_samples = 64, limit = 0, sequence_length = 128, classes = 0;
  int gzip = 0;
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  for (char c : text + ",") {
    if (c != ',') {
      item += c;
    } else if (!item.empty()) {
      out.push_back(item);
      item.clear();
    }
  }
  return out;
}

nlohmann::json made_by(const Options& o, const std::vector<std::string>& inputs) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"tool", "dtrain-shard"},
          {"version", "0.1.0"},
          {"inputs", inputs},
          {"time", stamp},
          {"options", {{"chunk_samples", o.chunk_samples}, {"gzip", o.gzip}, {"limit", o.limit}}}};
}

// Prints "converted N/M samples" at most every two seconds, and at the end.
Progress progress_printer() {
  auto last = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  return [last](std::int64_t written, std::int64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (written == total || now - *last > std::chrono::seconds(2)) {
      std::fprintf(stderr, "dtrain-shard: %lld/%lld samples (%.0f%%)\n", static_cast<long long>(written),
                   static_cast<long long>(total), 100.0 * static_cast<double>(written) / static_cast<double>(total));
      *last = now;
    }
  };
}

ShardWriterOptions writer_options(const Options& o, std::int64_t samples) {
  ShardWriterOptions w;
  w.chunk_samples = o.chunk_samples;
  w.gzip_level = o.gzip;
  if (o.samples_per_shard > 0) {
    w.samples_per_shard = o.samples_per_shard;
  } else {
    const std::int64_t shards = o.shards > 0 ? o.shards : 1;
    w.samples_per_shard = (samples + shards - 1) / shards;
  }
  return w;
}

// Bytes of `samples` samples, each `sample_bytes` long, served to the writer shard by shard.
SampleSource from_memory(std::vector<const unsigned char*> data, std::vector<std::int64_t> sample_bytes) {
  return [data, sample_bytes](std::size_t d, std::int64_t first, std::int64_t count, void* out) {
    std::memcpy(out, data[d] + first * sample_bytes[d], static_cast<std::size_t>(count * sample_bytes[d]));
  };
}

void convert_fashion_mnist(const Options& o) {
  const std::string images_path = fmt::format("{}/{}-images-idx3-ubyte.gz", o.fashion_mnist, o.split);
  const std::string labels_path = fmt::format("{}/{}-labels-idx1-ubyte.gz", o.fashion_mnist, o.split);
  const IdxFile images = read_idx(images_path);
  const IdxFile labels = read_idx(labels_path);
  if (images.dims.size() != 3)
    throw DataError(fmt::format("{}: expected 3 dimensions (N, rows, columns)", images_path));
  if (labels.dims.size() != 1 || labels.dims[0] != images.dims[0]) {
    throw DataError(fmt::format("{}: {} labels for {} images", labels_path, labels.dims[0], images.dims[0]));
  }
  Manifest m;
  m.samples = o.limit > 0 ? std::min(o.limit, images.dims[0]) : images.dims[0];
  m.classes = 10;
  m.datasets = {{"images", "uint8", {images.dims[1], images.dims[2]}}, {"labels", "uint8", {}}};
  m.source = made_by(o, {images_path, labels_path});
  m.source["dataset"] = "Fashion-MNIST " + o.split;
  write_sharded_dataset(o.output, m,
                        from_memory({images.data.data(), labels.data.data()}, {images.dims[1] * images.dims[2], 1}),
                        writer_options(o, m.samples), progress_printer());
}

void convert_text(const Options& o) {
  std::ifstream in(o.text, std::ios::binary);
  if (!in) throw DataError(fmt::format("{}: cannot open", o.text));
  const std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (o.sequence_length < 1) throw DataError("--sequence-length must be >= 1");
  // The vocabulary comes from the whole text, so that a training and an evaluation range share token ids.
  const std::set<unsigned char> symbols(whole.begin(), whole.end());
  double from = 0, to = 1;
  char colon = 0;
  std::istringstream range(o.text_range);
  if (!(range >> from >> colon >> to) || colon != ':' || !range.eof() || from < 0 || to > 1 || from >= to) {
    throw DataError(fmt::format("--text-range '{}' is not FROM:TO with 0 <= FROM < TO <= 1", o.text_range));
  }
  const auto begin = static_cast<std::size_t>(from * static_cast<double>(whole.size()));
  const auto end = static_cast<std::size_t>(to * static_cast<double>(whole.size()));
  const std::string text = whole.substr(begin, end - begin);
  Manifest m;
  m.vocabulary.assign(symbols.begin(), symbols.end());
  unsigned char id[256] = {};
  for (std::size_t i = 0; i < m.vocabulary.size(); ++i)
    id[static_cast<unsigned char>(m.vocabulary[i])] = static_cast<unsigned char>(i);
  const std::int64_t window = o.sequence_length + 1;  // inputs and the next-token targets, shifted by one
  std::int64_t samples = text.size() > 1 ? static_cast<std::int64_t>(text.size() - 1) / o.sequence_length : 0;
  while (samples > 0 && (samples - 1) * o.sequence_length + window > static_cast<std::int64_t>(text.size())) --samples;
  if (o.limit > 0) samples = std::min(samples, o.limit);
  if (samples == 0) throw DataError(fmt::format("{}: too short for one sequence of {} characters", o.text, window));
  std::vector<unsigned char> tokens(static_cast<std::size_t>(samples * window));
  for (std::int64_t s = 0; s < samples; ++s) {
    for (std::int64_t t = 0; t < window; ++t) {
      tokens[static_cast<std::size_t>(s * window + t)] =
          id[static_cast<unsigned char>(text[static_cast<std::size_t>(s * o.sequence_length + t)])];
    }
  }
  m.samples = samples;
  m.classes = static_cast<std::int64_t>(m.vocabulary.size());
  m.datasets = {{"tokens", "uint8", {window}}};
  m.source = made_by(o, {o.text});
  m.source["tokenizer"] = "characters (bytes); token id = rank of the byte among the distinct bytes of the text";
  m.source["text_range"] = o.text_range;
  write_sharded_dataset(o.output, m, from_memory({tokens.data()}, {window}), writer_options(o, samples),
                        progress_printer());
}

void convert_hdf5(const Options& o) {
  silence_hdf5_errors();
  const std::vector<std::string> names = split_list(o.datasets);
  if (names.empty()) throw DataError("--datasets: name at least one dataset of the input file");
  H5Handle file(DTRAIN_H5_CHECK(H5Fopen(o.input_hdf5.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT),
                                fmt::format("{}: opening (is it an HDF5 file?)", o.input_hdf5)),
                H5Fclose);
  Manifest m;
  std::vector<H5Handle> datasets;
  for (const auto& name : names) {
    const std::string where = fmt::format("{}: dataset '{}'", o.input_hdf5, name);
    if (H5Lexists(file.get(), name.c_str(), H5P_DEFAULT) <= 0) throw DataError(where + " does not exist");
    H5Handle dataset(DTRAIN_H5_CHECK(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), where), H5Dclose);
    H5Handle type(DTRAIN_H5_CHECK(H5Dget_type(dataset.get()), where), H5Tclose);
    const std::string dtype = dtype_of(type.get());
    if (dtype.empty())
      throw DataError(where + " has a type dtrain cannot read (use uint8, int32, int64, float32, float64)");
    H5Handle space(DTRAIN_H5_CHECK(H5Dget_space(dataset.get()), where), H5Sclose);
    const int rank = DTRAIN_H5_CHECK(H5Sget_simple_extent_ndims(space.get()), where);
    if (rank < 1) throw DataError(where + " is a scalar; its first dimension must count samples");
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    DTRAIN_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), where);
    const auto samples = static_cast<std::int64_t>(dims[0]);
    if (!m.datasets.empty() && samples != m.samples) {
      throw DataError(fmt::format("{} has {} samples but '{}' has {}", where, samples, m.datasets[0].name, m.samples));
    }
    m.samples = samples;
    m.datasets.push_back({name, dtype, std::vector<std::int64_t>(dims.begin() + 1, dims.end())});
    datasets.push_back(std::move(dataset));
  }
  if (m.samples == 0) throw DataError(fmt::format("{}: the datasets are empty", o.input_hdf5));
  if (o.limit > 0) m.samples = std::min(m.samples, o.limit);
  m.classes = o.classes;
  m.source = made_by(o, {o.input_hdf5});
  const auto specs = m.datasets;
  SampleSource source = [&](std::size_t d, std::int64_t first, std::int64_t count, void* out) {
    const std::string where = fmt::format("{}: reading '{}'", o.input_hdf5, specs[d].name);
    H5Handle space(DTRAIN_H5_CHECK(H5Dget_space(datasets[d].get()), where), H5Sclose);
    std::vector<hsize_t> start(specs[d].shape.size() + 1, 0), block = {static_cast<hsize_t>(count)};
    start[0] = static_cast<hsize_t>(first);
    for (auto e : specs[d].shape) block.push_back(static_cast<hsize_t>(e));
    DTRAIN_H5_CHECK(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, block.data(), nullptr),
                    where);
    H5Handle memory(DTRAIN_H5_CHECK(H5Screate_simple(static_cast<int>(block.size()), block.data(), nullptr), where),
                    H5Sclose);
    DTRAIN_H5_CHECK(
        H5Dread(datasets[d].get(), native_type(specs[d].dtype), memory.get(), space.get(), H5P_DEFAULT, out), where);
  };
  write_sharded_dataset(o.output, m, source, writer_options(o, m.samples), progress_printer());
}

void verify(const Options& o) {
  const Manifest m = Manifest::load(o.verify);
  std::vector<std::string> names;
  for (const auto& d : m.datasets) names.push_back(d.name);
  ReadOptions read;
  read.verify_checksums = true;
  ShardedDataset dataset(o.verify, names, read);
  std::printf("dtrain-shard: %s: %lld samples in %zu shards, datasets %s: checksums match\n", o.verify.c_str(),
              static_cast<long long>(m.samples), m.shards.size(), fmt::format("{}", fmt::join(names, ", ")).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  po::options_description input("Input (exactly one)");
  input.add_options()("fashion-mnist", po::value(&o.fashion_mnist), "folder of Fashion-MNIST *-idx*-ubyte.gz files")(
      "split", po::value(&o.split)->default_value(o.split), "Fashion-MNIST split: train | t10k")(
      "input-hdf5", po::value(&o.input_hdf5), "an HDF5 file whose datasets (first dimension: samples) to shard")(
      "datasets", po::value(&o.datasets), "comma-separated dataset names of --input-hdf5")(
      "text", po::value(&o.text), "a plain-text corpus, sharded as character token sequences")(
      "text-range", po::value(&o.text_range)->default_value(o.text_range),
      "--text: shard only this part of the text, as fractions FROM:TO (e.g. 0:0.9 and 0.9:1 for a train and an "
      "evaluation split with the same token ids)")(
      "verify", po::value(&o.verify), "check an existing sharded dataset against its manifest's checksums, then exit");
  po::options_description output("Output");
  output.add_options()("output,o", po::value(&o.output), "the dataset folder to write")(
      "shards", po::value(&o.shards)->default_value(o.shards), "number of shards (default 1)")(
      "samples-per-shard", po::value(&o.samples_per_shard)->default_value(o.samples_per_shard),
      "samples per shard (instead of --shards)")("chunk-samples",
                                                 po::value(&o.chunk_samples)->default_value(o.chunk_samples),
                                                 "HDF5 chunk length in samples (compressed shards)")(
      "gzip", po::value(&o.gzip)->default_value(o.gzip), "deflate level 1-9 (0: uncompressed)")(
      "limit", po::value(&o.limit)->default_value(o.limit), "convert only the first N samples (0: all)")(
      "sequence-length", po::value(&o.sequence_length)->default_value(o.sequence_length),
      "--text: input characters per sample (each sample stores one more: the targets)")(
      "classes", po::value(&o.classes)->default_value(o.classes), "--input-hdf5: number of label classes, if any");
  po::options_description all("dtrain-shard: make a sharded HDF5 dataset for dtrain");
  all.add(input).add(output).add_options()("help,h", "show this help");

  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, all), vm);
    if (vm.count("help")) {
      std::cout << all << "\n";
      return 0;
    }
    po::notify(vm);
    const int inputs = !o.fashion_mnist.empty() + !o.input_hdf5.empty() + !o.text.empty() + !o.verify.empty();
    if (inputs != 1) throw DataError("give exactly one of --fashion-mnist, --input-hdf5, --text, --verify");
    if (o.verify.empty() && o.output.empty()) throw DataError("--output is required");
    if (o.split != "train" && o.split != "t10k")
      throw DataError(fmt::format("--split: '{}' is not train or t10k", o.split));
    if (o.shards < 0 || o.samples_per_shard < 0) throw DataError("--shards and --samples-per-shard must be >= 0");
    if (o.shards > 0 && o.samples_per_shard > 0) throw DataError("give --shards or --samples-per-shard, not both");
    if (o.gzip < 0 || o.gzip > 9) throw DataError(fmt::format("--gzip must be in 0..9 (got {})", o.gzip));
    if (o.chunk_samples < 1) throw DataError("--chunk-samples must be >= 1");
    if (o.limit < 0) throw DataError("--limit must be >= 0");
    // Parallel HDF5 is built on MPI; a single process initializes it as a world of one.
    MPI_Init(&argc, &argv);
    try {
      if (!o.verify.empty()) {
        verify(o);
      } else if (!o.fashion_mnist.empty()) {
        convert_fashion_mnist(o);
      } else if (!o.input_hdf5.empty()) {
        convert_hdf5(o);
      } else {
        convert_text(o);
      }
    } catch (...) {
      MPI_Finalize();
      throw;
    }
    MPI_Finalize();
    if (o.verify.empty()) std::printf("dtrain-shard: wrote %s\n", o.output.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dtrain-shard: error: %s\n", e.what());
    return 1;
  }
}
