#include "io/sharded_dataset.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "io/checksum.h"
#include "io/data_error.h"
#include "io/hdf5_check.h"
#include "io/hdf5_types.h"

namespace dtrain::io {

namespace fs = std::filesystem;

struct ShardedDataset::State {
  std::string folder;
  Manifest manifest;
  ReadOptions options;
  MPI_Comm comm = MPI_COMM_NULL;
  std::vector<std::int64_t> starts;  // first global index of each shard, then the total
  std::vector<H5Handle> files;
  std::vector<std::string> names;               // the datasets opened
  std::vector<std::vector<H5Handle>> datasets;  // [dataset][shard]
  H5Handle transfer;                            // dataset transfer properties (collective or not)
  H5Handle dataset_access;                      // chunk cache size

  std::string path(std::size_t shard) const { return (fs::path(folder) / manifest.shards[shard].file).string(); }
  std::size_t dataset_index(const std::string& name) const;
  void check(std::size_t shard, const DatasetSpec& spec, hid_t dataset) const;
  void verify_checksum(std::size_t shard, const DatasetSpec& spec, hid_t dataset) const;
};

namespace {

// Every rank learns whether any rank failed; the failing ranks' own messages are more precise, so they keep them.
void agree(MPI_Comm comm, const std::string& local_error, const std::string& folder) {
  int failed = local_error.empty() ? 0 : 1;
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, comm);
  if (!local_error.empty()) throw DataError(local_error);
  if (any) throw DataError(fmt::format("{}: another rank cannot read this dataset (see its error)", folder));
}

}  // namespace

std::size_t ShardedDataset::State::dataset_index(const std::string& name) const {
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return i;
  }
  throw DataError(fmt::format("{}: dataset '{}' was not opened (opened: {})", folder, name, fmt::join(names, ", ")));
}

void ShardedDataset::State::check(std::size_t shard, const DatasetSpec& spec, hid_t dataset) const {
  const std::string where = fmt::format("{}: dataset '{}'", path(shard), spec.name);
  H5Handle type(DTRAIN_H5_CHECK(H5Dget_type(dataset), where), H5Tclose);
  const std::string dtype = dtype_of(type.get());
  if (dtype != spec.dtype) {
    throw DataError(fmt::format("{} has dtype {} but the manifest says {}", where,
                                dtype.empty() ? "(unsupported)" : dtype, spec.dtype));
  }
  H5Handle space(DTRAIN_H5_CHECK(H5Dget_space(dataset), where), H5Sclose);
  const int rank = DTRAIN_H5_CHECK(H5Sget_simple_extent_ndims(space.get()), where);
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
  DTRAIN_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), where);
  std::vector<std::int64_t> found(dims.begin(), dims.end());
  std::vector<std::int64_t> expected = {manifest.shards[shard].samples};
  expected.insert(expected.end(), spec.shape.begin(), spec.shape.end());
  if (found != expected) {
    throw DataError(fmt::format("{} has shape [{}] but the manifest says [{}] ({} samples of shape [{}])", where,
                                fmt::join(found, ", "), fmt::join(expected, ", "), manifest.shards[shard].samples,
                                fmt::join(spec.shape, ", ")));
  }
}

void ShardedDataset::State::verify_checksum(std::size_t shard, const DatasetSpec& spec, hid_t dataset) const {
  const auto it = manifest.shards[shard].crc32.find(spec.name);
  if (it == manifest.shards[shard].crc32.end()) return;
  std::vector<unsigned char> bytes(static_cast<std::size_t>(manifest.shards[shard].samples * spec.sample_bytes()));
  const std::string where = fmt::format("{}: dataset '{}'", path(shard), spec.name);
  DTRAIN_H5_CHECK(H5Dread(dataset, native_type(spec.dtype), H5S_ALL, H5S_ALL, transfer.get(), bytes.data()), where);
  const std::string crc = crc32_hex(bytes.data(), bytes.size());
  if (crc != it->second) {
    throw DataError(fmt::format("{} is corrupt: CRC-32 {} but the manifest says {}", where, crc, it->second));
  }
}

ShardedDataset::ShardedDataset(const std::string& folder, const std::vector<std::string>& datasets, ReadOptions options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  silence_hdf5_errors();
  s.folder = folder;
  s.options = options;
  s.names = datasets;
  if (options.collective) {
    if (options.comm == MPI_COMM_NULL) throw DataError("collective reads need a communicator");
    MPI_Comm_dup(options.comm, &s.comm);
  }
  // Everything that can go wrong with the inputs is found here, before any rank reads (and, collectively, agreed on).
  std::string error;
  try {
    s.manifest = Manifest::load(folder);
    for (const auto& name : datasets) s.manifest.dataset(name);
    s.starts.push_back(0);
    for (const auto& shard : s.manifest.shards) s.starts.push_back(s.starts.back() + shard.samples);
    for (std::size_t i = 0; i < s.manifest.shards.size(); ++i) {
      std::error_code ec;
      if (!fs::is_regular_file(s.path(i), ec)) {
        throw DataError(fmt::format("{}: missing shard (listed in {}/manifest.json)", s.path(i), folder));
      }
    }
  } catch (const DataError& e) {
    error = e.what();
  }
  if (options.collective) agree(s.comm, error, folder);
  if (!error.empty()) throw DataError(error);

  try {
    H5Handle access(DTRAIN_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS), folder), H5Pclose);
    s.transfer = H5Handle(DTRAIN_H5_CHECK(H5Pcreate(H5P_DATASET_XFER), folder), H5Pclose);
    if (options.collective) {
      DTRAIN_H5_CHECK(H5Pset_fapl_mpio(access.get(), s.comm, MPI_INFO_NULL), folder);
      DTRAIN_H5_CHECK(H5Pset_dxpl_mpio(s.transfer.get(), H5FD_MPIO_COLLECTIVE), folder);
    }
    // Compressed shards: room for the chunks that shuffled batches revisit (HDF5's default cache is 1 MiB).
    s.dataset_access = H5Handle(DTRAIN_H5_CHECK(H5Pcreate(H5P_DATASET_ACCESS), folder), H5Pclose);
    DTRAIN_H5_CHECK(H5Pset_chunk_cache(s.dataset_access.get(), 12421, std::size_t{32} << 20, 1.0), folder);
    s.datasets.resize(datasets.size());
    for (std::size_t i = 0; i < s.manifest.shards.size(); ++i) {
      const std::string path = s.path(i);
      const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, access.get());
      if (file < 0) {
        H5Eclear2(H5E_DEFAULT);
        throw DataError(fmt::format("{}: cannot open: not an HDF5 file, or truncated", path));
      }
      s.files.emplace_back(file, H5Fclose);
      for (std::size_t d = 0; d < datasets.size(); ++d) {
        const DatasetSpec& spec = s.manifest.dataset(datasets[d]);
        if (H5Lexists(file, spec.name.c_str(), H5P_DEFAULT) <= 0) {
          throw DataError(fmt::format("{}: has no dataset '{}' (the manifest lists it)", path, spec.name));
        }
        H5Handle dataset(DTRAIN_H5_CHECK(H5Dopen2(file, spec.name.c_str(), s.dataset_access.get()),
                                         fmt::format("{}: opening dataset '{}'", path, spec.name)),
                         H5Dclose);
        s.check(i, spec, dataset.get());
        if (options.verify_checksums) s.verify_checksum(i, spec, dataset.get());
        s.datasets[d].push_back(std::move(dataset));
      }
    }
  } catch (const DataError& e) {
    error = e.what();
  }
  if (options.collective) agree(s.comm, error, folder);
  if (!error.empty()) throw DataError(error);
}

ShardedDataset::~ShardedDataset() {
  if (!state_) return;
  state_->datasets.clear();
  state_->files.clear();
  state_->transfer.reset();
  state_->dataset_access.reset();
  if (state_->comm != MPI_COMM_NULL) MPI_Comm_free(&state_->comm);
}

const Manifest& ShardedDataset::manifest() const {
  return state_->manifest;
}

void ShardedDataset::read(const std::string& name, const std::vector<std::int64_t>& indices, void* out) {
  State& s = *state_;
  const std::size_t d = s.dataset_index(name);
  const DatasetSpec& spec = s.manifest.dataset(name);
  const std::int64_t sample_bytes = spec.sample_bytes();
  for (std::int64_t index : indices) {
    if (index < 0 || index >= s.manifest.samples) {
      throw DataError(fmt::format("{}: sample {} is out of range (0..{})", s.folder, index, s.manifest.samples - 1));
    }
  }
  std::vector<std::int64_t> unique = indices;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  // Indices already in increasing order without repeats (sequential reads) go straight into `out`; others are read
  // in file order into a staging buffer and put in the requested order afterwards.
  const bool in_order = unique.size() == indices.size() && std::equal(unique.begin(), unique.end(), indices.begin());
  std::vector<unsigned char> staging(in_order ? 0 : unique.size() * static_cast<std::size_t>(sample_bytes));
  unsigned char* sorted = in_order ? static_cast<unsigned char*>(out) : staging.data();

  std::size_t next = 0;  // first unique index not read yet
  for (std::size_t shard = 0; shard < s.manifest.shards.size(); ++shard) {
    const std::int64_t begin = s.starts[shard];
    const std::int64_t end = s.starts[shard + 1];
    std::size_t last = next;
    while (last < unique.size() && unique[last] < end) ++last;
    const std::size_t count = last - next;
    if (count == 0 && !s.options.collective) continue;  // collectively, every rank joins every shard's read

    const hid_t dataset = s.datasets[d][shard].get();
    const std::string where = fmt::format("{}: reading {} samples of '{}'", s.path(shard), count, name);
    H5Handle file_space(DTRAIN_H5_CHECK(H5Dget_space(dataset), where), H5Sclose);
    std::vector<hsize_t> start(spec.shape.size() + 1, 0);
    std::vector<hsize_t> block = {1};
    for (auto extent : spec.shape) block.push_back(static_cast<hsize_t>(extent));
    DTRAIN_H5_CHECK(H5Sselect_none(file_space.get()), where);
    for (std::size_t i = next; i < last;) {  // one hyperslab per contiguous run
      std::size_t j = i;
      while (j + 1 < last && unique[j + 1] == unique[j] + 1) ++j;
      start[0] = static_cast<hsize_t>(unique[i] - begin);
      block[0] = static_cast<hsize_t>(j - i + 1);
      DTRAIN_H5_CHECK(
          H5Sselect_hyperslab(file_space.get(), H5S_SELECT_OR, start.data(), nullptr, block.data(), nullptr), where);
      i = j + 1;
    }
    std::vector<hsize_t> memory_dims = {static_cast<hsize_t>(std::max<std::size_t>(count, 1))};
    for (auto extent : spec.shape) memory_dims.push_back(static_cast<hsize_t>(extent));
    H5Handle memory_space(
        DTRAIN_H5_CHECK(H5Screate_simple(static_cast<int>(memory_dims.size()), memory_dims.data(), nullptr), where),
        H5Sclose);
    if (count == 0) DTRAIN_H5_CHECK(H5Sselect_none(memory_space.get()), where);
    unsigned char dummy = 0;
    void* target = count == 0 ? &dummy : sorted + next * static_cast<std::size_t>(sample_bytes);
    DTRAIN_H5_CHECK(
        H5Dread(dataset, native_type(spec.dtype), memory_space.get(), file_space.get(), s.transfer.get(), target),
        where);
    next = last;
  }

  if (in_order) return;
  // Back to the requested order, repeats included.
  unsigned char* destination = static_cast<unsigned char*>(out);
  for (std::size_t i = 0; i < indices.size(); ++i) {
    const auto position =
        static_cast<std::size_t>(std::lower_bound(unique.begin(), unique.end(), indices[i]) - unique.begin());
    std::memcpy(destination + i * static_cast<std::size_t>(sample_bytes),
                sorted + position * static_cast<std::size_t>(sample_bytes),
                static_cast<std::size_t>(sample_bytes));
  }
}

}  // namespace dtrain::io
