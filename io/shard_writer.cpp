#include "io/shard_writer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "io/checksum.h"
#include "io/data_error.h"
#include "io/hdf5_check.h"
#include "io/hdf5_types.h"

namespace dtrain::io {

namespace fs = std::filesystem;

namespace {

void write_dataset(hid_t file, const DatasetSpec& spec, std::int64_t samples, const std::vector<unsigned char>& bytes,
                   const ShardWriterOptions& options, const std::string& where) {
  std::vector<hsize_t> dims = {static_cast<hsize_t>(samples)};
  for (auto d : spec.shape) dims.push_back(static_cast<hsize_t>(d));
  std::vector<hsize_t> chunk = dims;
  chunk[0] = static_cast<hsize_t>(std::min(samples, options.chunk_samples));
  const std::string context = fmt::format("{}: writing dataset '{}'", where, spec.name);
  H5Handle space(DTRAIN_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), context),
                 H5Sclose);
  H5Handle plist(DTRAIN_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), context), H5Pclose);
  // Uncompressed shards stay contiguous: a training batch reads scattered single samples, and with chunks each one
  // would pull in its whole chunk. Compression needs chunks; they are kept small for the same reason.
  if (options.gzip_level > 0) {
    DTRAIN_H5_CHECK(H5Pset_chunk(plist.get(), static_cast<int>(chunk.size()), chunk.data()), context);
    DTRAIN_H5_CHECK(H5Pset_deflate(plist.get(), static_cast<unsigned>(options.gzip_level)), context);
  }
  H5Handle dataset(DTRAIN_H5_CHECK(H5Dcreate2(file, spec.name.c_str(), file_type(spec.dtype), space.get(), H5P_DEFAULT,
                                              plist.get(), H5P_DEFAULT),
                                   context),
                   H5Dclose);
  DTRAIN_H5_CHECK(H5Dwrite(dataset.get(), native_type(spec.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()),
                  context);
}

}  // namespace

void write_sharded_dataset(const std::string& folder, Manifest manifest, const SampleSource& source,
                           const ShardWriterOptions& options, const Progress& progress) {
  if (manifest.samples <= 0) throw DataError(fmt::format("{}: nothing to write (0 samples)", folder));
  if (options.samples_per_shard <= 0) throw DataError("samples per shard must be positive");
  if (options.chunk_samples <= 0) throw DataError("chunk size must be positive");
  if (options.gzip_level < 0 || options.gzip_level > 9) throw DataError("gzip level must be in 0..9");
  silence_hdf5_errors();
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) throw DataError(fmt::format("{}: cannot create folder: {}", folder, ec.message()));
  fs::remove(fs::path(folder) / kManifestName, ec);

  manifest.shards.clear();
  for (std::int64_t first = 0, index = 0; first < manifest.samples; first += options.samples_per_shard, ++index) {
    const std::int64_t count = std::min(options.samples_per_shard, manifest.samples - first);
    ShardSpec shard;
    shard.file = fmt::format("shard-{:05d}.h5", index);
    shard.samples = count;
    const std::string path = (fs::path(folder) / shard.file).string();
    const std::string temporary = path + ".tmp";
    {
      H5Handle file(DTRAIN_H5_CHECK(H5Fcreate(temporary.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                                    fmt::format("{}: creating shard", temporary)),
                    H5Fclose);
      for (std::size_t d = 0; d < manifest.datasets.size(); ++d) {
        const DatasetSpec& spec = manifest.datasets[d];
        std::vector<unsigned char> bytes(static_cast<std::size_t>(count * spec.sample_bytes()));
        source(d, first, count, bytes.data());
        write_dataset(file.get(), spec, count, bytes, options, temporary);
        shard.crc32[spec.name] = crc32_hex(bytes.data(), bytes.size());
      }
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
      throw DataError(fmt::format("{}: cannot rename to {}", temporary, path));
    }
    manifest.shards.push_back(std::move(shard));
    if (progress) progress(first + count, manifest.samples);
  }
  manifest.save(folder);
}

}  // namespace dtrain::io
