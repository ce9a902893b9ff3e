# Finds every dependency of dtrain and defines the helpers the folders share.

# LibTorch's config finds libtorch and libc10 with find_library, which looks in the system's lib/ before LibTorch's
# own: a LibTorch named by its share/cmake folder (torch.utils.cmake_prefix_path) or by Torch_DIR, on a machine with
# Debian's LibTorch in /usr/lib, would get Debian's libc10 (and Debian's Caffe2 config) next to its own libtorch_cpu.
# Searching the named LibTorch's folder first keeps every part from one LibTorch.
set(_torch_dir "${Torch_DIR}")
foreach(_prefix IN LISTS CMAKE_PREFIX_PATH)
  foreach(_candidate "${_prefix}/Torch" "${_prefix}/share/cmake/Torch")
    if(NOT _torch_dir AND EXISTS "${_candidate}/TorchConfig.cmake")
      set(_torch_dir "${_candidate}")
    endif()
  endforeach()
endforeach()
if(_torch_dir)
  get_filename_component(_torch_prefix "${_torch_dir}/../../.." ABSOLUTE)
  list(PREPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
endif()
find_package(Torch REQUIRED)
string(FIND "${c10_LIBRARY}" "${TORCH_INSTALL_PREFIX}/" _c10_in_torch)
if(c10_LIBRARY AND NOT _c10_in_torch EQUAL 0)
  message(FATAL_ERROR "LibTorch in ${TORCH_INSTALL_PREFIX} found another LibTorch's libc10 (${c10_LIBRARY}): "
                      "configure in a fresh build folder with -DCMAKE_PREFIX_PATH=${TORCH_INSTALL_PREFIX}")
endif()
include(DtrainTorchCuda)
find_package(MPI REQUIRED COMPONENTS CXX)
# Parallel HDF5 (MPI-IO reads): must be preferred before the search, and the choice is cached per build folder.
set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "dtrain needs parallel HDF5 (Debian: libhdf5-openmpi-dev); found a serial one: ${HDF5_C_LIBRARIES}")
endif()
find_package(Boost 1.71 REQUIRED COMPONENTS program_options)
if(DTRAIN_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
# LibTorch as pytorch.org builds it (the wheel's torch/, the zip) ships a newer fmt's headers in its include/, which the
# compiler would search before the fmt dtrain links (Debian's, in /usr/include, which CMake never puts on the command
# line): declarations of one fmt against the library of another do not link. A folder holding only the linked fmt's
# headers, searched first by every target here (LibTorch's own headers included), keeps headers and library together.
get_target_property(_fmt_include fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
list(GET _fmt_include 0 _fmt_include)
if(EXISTS "${TORCH_INSTALL_PREFIX}/include/fmt" AND NOT "${TORCH_INSTALL_PREFIX}/include" STREQUAL _fmt_include)
  set(DTRAIN_FMT_FIRST_DIR ${PROJECT_BINARY_DIR}/fmt-first)
  file(MAKE_DIRECTORY ${DTRAIN_FMT_FIRST_DIR})
  file(CREATE_LINK ${_fmt_include}/fmt ${DTRAIN_FMT_FIRST_DIR}/fmt SYMBOLIC)
  include_directories(BEFORE SYSTEM ${DTRAIN_FMT_FIRST_DIR})
  # Such a LibTorch's libtorch.so also exports the std::filesystem of the older libstdc++ it was built with (linked in
  # statically), and a library listed before libstdc++ wins the dynamic linker's symbol search: dtrain's
  # std::filesystem::remove_all would call into it and crash. libstdc++ first in every binary keeps the system's.
  add_link_options("LINKER:--push-state,--no-as-needed" -lstdc++ "LINKER:--pop-state")
endif()
find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)
# Checksums of every tensor of a checkpoint (runtime/training/checksums.h): xxHash, Debian's libxxhash-dev.
find_path(DTRAIN_XXHASH_INCLUDE_DIR xxhash.h REQUIRED)
find_library(DTRAIN_XXHASH_LIBRARY xxhash REQUIRED)
add_library(dtrain::xxhash UNKNOWN IMPORTED)
set_target_properties(dtrain::xxhash PROPERTIES IMPORTED_LOCATION "${DTRAIN_XXHASH_LIBRARY}"
                                                INTERFACE_INCLUDE_DIRECTORIES "${DTRAIN_XXHASH_INCLUDE_DIR}")

# The NCCL backend needs only the CUDA runtime and NCCL itself (raw device pointers), not a CUDA build of LibTorch.
find_package(CUDAToolkit QUIET)
find_path(DTRAIN_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include /usr/local/cuda/include)
find_library(DTRAIN_NCCL_LIBRARY nccl HINTS $ENV{NCCL_HOME}/lib $ENV{NCCL_HOME}/lib64 /usr/local/cuda/lib
             /usr/local/cuda/lib64)
set(_nccl_found OFF)
if(CUDAToolkit_FOUND AND DTRAIN_NCCL_INCLUDE_DIR AND DTRAIN_NCCL_LIBRARY)
  set(_nccl_found ON)
endif()
option(DTRAIN_WITH_NCCL "Build the NCCL backend (on by default when CUDA and NCCL are found)" ${_nccl_found})
if(DTRAIN_WITH_NCCL)
  if(NOT _nccl_found)
    message(FATAL_ERROR "DTRAIN_WITH_NCCL=ON but the CUDA toolkit or NCCL was not found (set NCCL_HOME or CUDAToolkit_ROOT)")
  endif()
  add_library(dtrain::nccl UNKNOWN IMPORTED)
  set_target_properties(dtrain::nccl PROPERTIES IMPORTED_LOCATION ${DTRAIN_NCCL_LIBRARY}
                                                INTERFACE_INCLUDE_DIRECTORIES ${DTRAIN_NCCL_INCLUDE_DIR})
endif()

# Flags that make Open MPI's mpirun work in CI containers and on 2 cores: root allowed, more ranks than cores,
# ranks not pinned to one core, idle ranks yield instead of spinning, and no UCX/openib probing.
set(DTRAIN_MPIEXEC_FLAGS --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 --mca pml ob1
    --mca btl self,vader,tcp CACHE STRING "Flags ctest passes to mpiexec")

# One precompiled header for LibTorch, built once and reused by every target that compiles torch-heavy code.
# Files that only need tensors include <ATen/core/Tensor.h> and opt out with SKIP_PRECOMPILE_HEADERS.
# A PCH only fits code compiled with the same code-model flags, so libraries (-fPIC) and executables (-fPIE) get one
# each; the executables' one is built only if an executable asks for it.
add_library(dtrain_torch_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/torch_pch.cpp)
target_link_libraries(dtrain_torch_pch PRIVATE ${TORCH_LIBRARIES})
target_precompile_headers(dtrain_torch_pch PRIVATE <torch/torch.h>)
add_library(dtrain_torch_pch_exe OBJECT EXCLUDE_FROM_ALL ${CMAKE_CURRENT_LIST_DIR}/torch_pch.cpp)
set_target_properties(dtrain_torch_pch_exe PROPERTIES POSITION_INDEPENDENT_CODE OFF)
target_compile_options(dtrain_torch_pch_exe PRIVATE -fPIE)
target_link_libraries(dtrain_torch_pch_exe PRIVATE ${TORCH_LIBRARIES})
target_precompile_headers(dtrain_torch_pch_exe PRIVATE <torch/torch.h>)
function(dtrain_use_torch_pch target)
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "EXECUTABLE")
    target_precompile_headers(${target} REUSE_FROM dtrain_torch_pch_exe)
  else()
    target_precompile_headers(${target} REUSE_FROM dtrain_torch_pch)
  endif()
endfunction()
