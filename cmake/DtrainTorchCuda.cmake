# Is the LibTorch just found a CUDA build? Sets DTRAIN_TORCH_CUDA (ON/OFF) and DTRAIN_TORCH_CUDA_VERSION ("13.0").
# Debian's LibTorch (1.13 on bookworm, 2.6 on trixie) is CPU-only and none of this applies to it. A CUDA build (the
# PyPI wheel's torch/, or the pytorch.org zip) has run LibTorch's own CUDA set-up already, which found a toolkit
# (CUDAToolkit_VERSION); that toolkit's libcudart and libnccl are the ones every process loads, so LibTorch must have
# been built for the same CUDA major version: a mismatch would put two libcudart in one process, and fails here.

set(DTRAIN_TORCH_CUDA OFF)
set(DTRAIN_TORCH_CUDA_VERSION "")
if(NOT TARGET torch_cuda)
  return()
endif()
set(DTRAIN_TORCH_CUDA ON)

# The CUDA version LibTorch was built for: the wheel says it in torch/version.py (cuda = '13.0'), the zip in
# build-version (2.11.0+cu130). Either way the libcudart soname that libc10_cuda needs gives the major version.
if(EXISTS "${TORCH_INSTALL_PREFIX}/version.py")
  file(STRINGS "${TORCH_INSTALL_PREFIX}/version.py" _line REGEX "^cuda.*=.*'[0-9]+\\.[0-9]+'")
  string(REGEX MATCH "[0-9]+\\.[0-9]+" DTRAIN_TORCH_CUDA_VERSION "${_line}")
elseif(EXISTS "${TORCH_INSTALL_PREFIX}/build-version")
  file(STRINGS "${TORCH_INSTALL_PREFIX}/build-version" _line REGEX "\\+cu[0-9]+")
  if(_line MATCHES "\\+cu([0-9]+)([0-9])$")
    set(DTRAIN_TORCH_CUDA_VERSION "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
  endif()
endif()
file(STRINGS "${C10_CUDA_LIBRARY}" _cudart REGEX "^libcudart\\.so\\.[0-9]+$" LIMIT_COUNT 1)
string(REGEX MATCH "[0-9]+$" _torch_cuda_major "${_cudart}")
if(NOT _torch_cuda_major)
  message(FATAL_ERROR "LibTorch in ${TORCH_INSTALL_PREFIX} has CUDA, but ${C10_CUDA_LIBRARY} names no libcudart.so.N")
endif()
if(NOT DTRAIN_TORCH_CUDA_VERSION)
  set(DTRAIN_TORCH_CUDA_VERSION "${_torch_cuda_major}")
endif()

if(NOT _torch_cuda_major STREQUAL CUDAToolkit_VERSION_MAJOR)
  message(FATAL_ERROR
          "LibTorch ${Torch_VERSION} in ${TORCH_INSTALL_PREFIX} was built for CUDA ${DTRAIN_TORCH_CUDA_VERSION} (it needs "
          "${_cudart}), but the CUDA toolkit found is ${CUDAToolkit_VERSION} in ${CUDAToolkit_BIN_DIR}/..: the CUDA major "
          "versions differ. Point -DCUDAToolkit_ROOT at a CUDA ${_torch_cuda_major} toolkit, or use a LibTorch built for "
          "CUDA ${CUDAToolkit_VERSION_MAJOR}.")
endif()
if(NOT TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  message(WARNING "TORCH_CUDA_ARCH_LIST is not set: LibTorch chose the GPU architectures by looking for a GPU "
                  "(set it explicitly, e.g. -DTORCH_CUDA_ARCH_LIST=\"8.0;9.0\", on machines without one)")
endif()
