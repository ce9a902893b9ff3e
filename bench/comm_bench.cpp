// Collective bandwidth of dtrain's MPI communicator against the same raw MPI call, measured in the same run on the
// same ranks: allreduce, broadcast and allgather from 4 KiB to 64 MiB. Times are the slowest rank's mean per op;
// algbw and busbw follow nccl-tests (busbw = algbw x 2(n-1)/n for allreduce, x (n-1)/n for allgather, x 1 for
// broadcast). "checked" is the default communicator (every collective compared across ranks first,
// CommOptions::verify_calls); "unchecked" turns that off.

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <mpi.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "bench/summary.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"

namespace po = boost::program_options;
using dtrain::comm::Communicator;
using dtrain::comm::MpiCommunicator;
using dtrain::comm::ReduceOp;

namespace {

struct Options {
  std::size_t min_bytes = 4096;
  std::size_t max_bytes = 64u << 20;
  double seconds_per_point = 0.3;
  std::vector<std::string> ops = {"allreduce", "broadcast", "allgather"};
  std::string summary;  // bench/run-all.sh's summary file
};

// Mean seconds per call of `call` on the slowest rank. Every rank runs the same number of calls: rank 0 picks it
// from a first timed call and broadcasts it.
double time_per_call(const std::function<void()>& call, double budget_s) {
  MPI_Barrier(MPI_COMM_WORLD);
  auto start = std::chrono::steady_clock::now();
  call();
  double first = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int iterations = static_cast<int>(std::max(3.0, std::min(2000.0, budget_s / std::max(first, 1e-6))));
  MPI_Bcast(&iterations, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) call();
  double mean = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iterations;
  MPI_Allreduce(MPI_IN_PLACE, &mean, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return mean;
}

double bus_factor(const std::string& op, int n) {
  if (op == "allreduce") return 2.0 * (n - 1) / n;
  if (op == "allgather") return static_cast<double>(n - 1) / n;
  return 1.0;
}

Options parse(int argc, char** argv) {
  Options o;
  std::string ops = "allreduce,broadcast,allgather";
  po::options_description desc("comm_bench: dtrain collectives vs raw MPI (run under mpirun)");
  desc.add_options()("help,h", "show this help")("min-bytes", po::value(&o.min_bytes)->default_value(o.min_bytes),
                                                 "smallest message, bytes per rank")(
      "max-bytes", po::value(&o.max_bytes)->default_value(o.max_bytes), "largest message, bytes per rank")(
      "seconds", po::value(&o.seconds_per_point)->default_value(o.seconds_per_point), "time budget per measurement")(
      "ops", po::value(&ops)->default_value(ops), "comma-separated: allreduce, broadcast, allgather")(
      "summary", po::value(&o.summary), "append each figure from 1 MiB up to this markdown file (bench/run-all.sh)");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, desc), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    std::exit(0);
  }
  if (o.min_bytes < 4 || o.max_bytes < o.min_bytes)
    throw std::invalid_argument("--min-bytes must be >= 4 and <= --max-bytes");
  if (o.seconds_per_point <= 0) throw std::invalid_argument("--seconds must be positive");
  o.ops.clear();
  std::string item;
  for (char c : ops + ",") {
    if (c != ',') {
      item += c;
    } else if (!item.empty()) {
      if (item != "allreduce" && item != "broadcast" && item != "allgather") {
        throw std::invalid_argument("--ops: unknown operation '" + item + "'");
      }
      o.ops.push_back(item);
      item.clear();
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  dtrain::comm::MpiEnvironment mpi(&argc, &argv);
  Options options;
  try {
    options = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "comm_bench: %s\n", e.what());
    return 2;
  }
  dtrain::comm::CommOptions checked_options;
  auto checked = MpiCommunicator::create(MPI_COMM_WORLD, checked_options);
  dtrain::comm::CommOptions unchecked_options;
  unchecked_options.name = "unchecked";
  unchecked_options.verify_calls = false;
  auto unchecked = MpiCommunicator::create(MPI_COMM_WORLD, unchecked_options);
  MPI_Comm raw;
  MPI_Comm_dup(MPI_COMM_WORLD, &raw);
  const int rank = checked->rank();
  const int size = checked->size();

  if (rank == 0) {
    std::printf("dtrain comm_bench: %d ranks, float32, times are the slowest rank's mean per call\n", size);
    std::printf("%-10s %10s %11s %13s %8s %15s %8s %10s %10s\n", "op", "bytes", "raw MPI us", "dtrain us", "ratio",
                "unchecked us", "ratio", "algbw GB/s", "busbw GB/s");
  }
  for (const std::string& op : options.ops) {
    for (std::size_t bytes = options.min_bytes; bytes <= options.max_bytes; bytes *= 4) {
      const int64_t count = static_cast<int64_t>(bytes / 4);
      at::Tensor input = at::ones({count}, at::kFloat);
      at::Tensor output = at::empty({count * (op == "allgather" ? size : 1)}, at::kFloat);
      auto run_dtrain = [&](Communicator& comm) {
        return [&] {
          if (op == "allreduce") comm.allreduce(input, ReduceOp::kSum)->wait();
          if (op == "broadcast") comm.broadcast(input, 0)->wait();
          if (op == "allgather") comm.allgather(output, input)->wait();
        };
      };
      auto run_raw = [&] {
        const int n = static_cast<int>(count);
        if (op == "allreduce") MPI_Allreduce(MPI_IN_PLACE, input.data_ptr(), n, MPI_FLOAT, MPI_SUM, raw);
        if (op == "broadcast") MPI_Bcast(input.data_ptr(), n, MPI_FLOAT, 0, raw);
        if (op == "allgather") MPI_Allgather(input.data_ptr(), n, MPI_FLOAT, output.data_ptr(), n, MPI_FLOAT, raw);
      };
      // Interleaved twice, best of each, so drift in machine load hits both sides alike.
      double raw_s = 1e30, checked_s = 1e30, unchecked_s = 1e30;
      for (int round = 0; round < 2; ++round) {
        raw_s = std::min(raw_s, time_per_call(run_raw, options.seconds_per_point));
        checked_s = std::min(checked_s, time_per_call(run_dtrain(*checked), options.seconds_per_point));
        unchecked_s = std::min(unchecked_s, time_per_call(run_dtrain(*unchecked), options.seconds_per_point));
      }
      if (rank == 0) {
        const double algbw = static_cast<double>(bytes) / checked_s / 1e9;
        std::printf("%-10s %10zu %11.1f %13.1f %8.3f %15.1f %8.3f %10.2f %10.2f\n", op.c_str(), bytes, raw_s * 1e6,
                    checked_s * 1e6, raw_s / checked_s, unchecked_s * 1e6, raw_s / unchecked_s, algbw,
                    algbw * bus_factor(op, size));
        std::fflush(stdout);
        if (bytes >= (1u << 20)) {
          dtrain::bench::append_summary_row(options.summary, "comm_bench",
                                            fmt::format("{} {} MiB, {} ranks", op, bytes >> 20, size),
                                            fmt::format("{:.1f} us", checked_s * 1e6), "raw MPI",
                                            fmt::format("{:.1f} us", raw_s * 1e6), raw_s / checked_s);
        }
      }
    }
  }
  if (rank == 0)
    std::printf("ratio = raw MPI time / dtrain time (1.0 = as fast as raw MPI; goal >= 0.97 from 1 MiB)\n");
  checked.reset();
  unchecked.reset();
  MPI_Comm_free(&raw);
  return 0;
}
