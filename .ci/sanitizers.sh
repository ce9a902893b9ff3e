#!/usr/bin/env bash
# The sanitizer builds of CI: the unit tests, the 2-rank tests and the tests that drive the dtrain command (the error
# paths of bad_inputs among them) under AddressSanitizer + UndefinedBehaviorSanitizer, and the tests of the
# communication threads (the MPI communicator's engine, the watchdog, the reducer's overlap with
# backward) under ThreadSanitizer. Each in its own build folder next to build/ (DTRAIN_SANITIZER_BUILD_ROOT). Exit
# code: the first failing ctest's. Suppressions (.ci/sanitizers/) cover only code outside dtrain: Open MPI, LibTorch.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builds=${DTRAIN_SANITIZER_BUILD_ROOT:-$root}
bash "$root/.ci/setup-debian.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# OpenMP threads in LibTorch are invisible to the sanitizers' view of synchronization: keep them out.
export OMP_NUM_THREADS=1

# -O1 -g1: the sanitizers' reports keep function names and line numbers, and a LibTorch translation unit compiles in
# half the time of -O2 -g with a sixth of the object size (measured on evaluation.cpp: 24 s against 46 s).
configure() {  # build folder, sanitizer
  cmake -S "$root" -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_UNITY_BUILD="${DTRAIN_UNITY_BUILD:-OFF}" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DDTRAIN_SANITIZE="$2" -DDTRAIN_BUILD_BENCH=OFF > /dev/null
}

# Each build makes only what its tests run (.ci/test_targets.py).
asan="$builds/build-asan"
configure "$asan" address,undefined
asan_leak_tests=(-L unit)
asan_tests=(-R '(_np2|^test_dtrain_command|^test_bad_inputs)$')
# shellcheck disable=SC2046 # one argument per target
cmake --build "$asan" --target $(python3 "$root/.ci/test_targets.py" "$asan" "${asan_leak_tests[@]}") \
  $(python3 "$root/.ci/test_targets.py" "$asan" "${asan_tests[@]}")
asan_options="abort_on_error=1:suppressions=$root/.ci/sanitizers/asan.supp"
export LSAN_OPTIONS="suppressions=$root/.ci/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$root/.ci/sanitizers/ubsan.supp"
# Leaks are checked in the single-process tests only: Open MPI unloads its plugins at MPI_Finalize, so what they keep
# until exit shows as leaks from "<unknown module>" that no suppression can name.
(cd "$asan" && ASAN_OPTIONS="detect_leaks=1:$asan_options" ctest --output-on-failure --timeout 600 "${asan_leak_tests[@]}" &&
  ASAN_OPTIONS="detect_leaks=0:$asan_options" ctest --output-on-failure --timeout 600 "${asan_tests[@]}")

tsan="$builds/build-tsan"
configure "$tsan" thread
tsan_tests=(-R '^(test_mpi_communicator_np2|test_progress|test_reducer_np2|test_watchdog_np2)$')
# shellcheck disable=SC2046 # one argument per target
cmake --build "$tsan" --target $(python3 "$root/.ci/test_targets.py" "$tsan" "${tsan_tests[@]}")
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/.ci/sanitizers/tsan.supp"
(cd "$tsan" && ctest --output-on-failure --timeout 600 "${tsan_tests[@]}")
