#include "runtime/app/version.h"

#include <fmt/format.h>
#include <hdf5.h>
#include <mpi.h>
#include <torch/version.h>

#include <regex>

#include "dtrain_build_info.h"

#ifdef DTRAIN_WITH_NCCL
#include <nccl.h>
#endif

namespace dtrain::runtime {

namespace {

// MPI's own name for itself, shortened to "name version": Open MPI says "Open MPI v4.1.4, package: ...", MPICH says
// "MPICH Version:\t4.1 ..." over several lines.
std::string mpi_library() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) return "MPI (unknown library)";
  std::string name(text, static_cast<std::size_t>(length));
  name = name.substr(0, name.find_first_of(",\n"));
  return std::regex_replace(name, std::regex(R"((\s+Version:\s*|\s+v)(?=[0-9]))"), " ");
}

std::string nccl_library() {
#ifdef DTRAIN_WITH_NCCL
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "NCCL (version unknown)";
  // NCCL_VERSION(X, Y, Z) is X * 10000 + Y * 100 + Z since 2.9.
  return fmt::format("NCCL {}.{}.{}", code / 10000, code / 100 % 100, code % 100);
#else
  return "NCCL off";
#endif
}

}  // namespace

std::string version_line() {
  const std::string torch_kind =
      std::string(DTRAIN_TORCH_CUDA_VERSION).empty() ? "CPU" : fmt::format("CUDA {}", DTRAIN_TORCH_CUDA_VERSION);
  unsigned hdf5_major = 0;
  unsigned hdf5_minor = 0;
  unsigned hdf5_release = 0;
  H5get_libversion(&hdf5_major, &hdf5_minor, &hdf5_release);
  return fmt::format("dtrain {}: LibTorch {} ({}), {}, {}, HDF5 {}.{}.{}", DTRAIN_VERSION, TORCH_VERSION, torch_kind,
                     nccl_library(), mpi_library(), hdf5_major, hdf5_minor, hdf5_release);
}

}  // namespace dtrain::runtime
