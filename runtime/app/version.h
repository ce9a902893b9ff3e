#pragma once
// What `dtrain --version` prints: which dtrain, and which LibTorch, NCCL, MPI and HDF5 it runs with.

#include <string>

namespace dtrain::runtime {

// One line, e.g. "dtrain 0.1.0: LibTorch 2.11.0 (CUDA 13.0), NCCL 2.28.9, Open MPI 4.1.4, HDF5 1.10.8". NCCL, MPI and
// HDF5 are asked at run time, so the line names the libraries this process loaded, not only the headers it was built
// with. Callable before MPI_Init.
std::string version_line();

}  // namespace dtrain::runtime
