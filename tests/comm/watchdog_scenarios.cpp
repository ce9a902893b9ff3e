// One failure scenario per run, under mpirun, for watchdog.py: the ways a distributed job can get stuck, played out on
// real communicators. Each rank that sees an error prints "watchdog_scenarios: rank R failed after S s: <error>" and
// ends the job as the dtrain command does (MPI_Abort); a run that ends well prints "watchdog_scenarios: ok". Rank 0
// first prints "watchdog_scenarios: started at T" (seconds since the epoch) so that the job's end is timed from the
// scenario's start, not from mpirun's launch: starting processes is slow under the sanitizers and is not the
// watchdog's to answer for.
#include <mpi.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "comm/error.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"

namespace {

using dtrain::comm::Buffer;
using dtrain::comm::Communicator;
using dtrain::comm::ReduceOp;

Buffer view(std::vector<float>& values) {
  Buffer b;
  b.data = values.data();
  b.count = values.size();
  return b;
}

void sleep_s(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

// Every rank but `culprit` runs allreduce #1; `culprit` does `instead`.
template <typename Instead>
void all_but(Communicator& comm, int culprit, Instead instead) {
  std::vector<float> values(1000, 1.0f);
  comm.allreduce(view(values), ReduceOp::kSum)->wait();  // #0: everyone is in step
  if (comm.rank() == culprit) {
    instead();
  } else {
    comm.allreduce(view(values), ReduceOp::kSum)->wait();
  }
}

void run(const std::string& scenario, Communicator& comm) {
  const int culprit = 1;
  std::vector<float> values(1000, 1.0f);
  if (scenario == "skip") {
    // The culprit skips allreduce #1 and waits for a message rank 0 would send after it: a deadlock.
    all_but(comm, culprit, [&] { comm.recv(view(values), 0, 7)->wait(); });
  } else if (scenario == "skip-pipeline") {
    // A two-communicator cycle: rank 0 waits in a collective on a sub-communicator the culprit has not reached,
    // because the culprit waits for a message rank 0 sends only afterwards.
    auto pair = comm.split(comm.rank() <= 1 ? 0 : -1, comm.rank(), "pair");
    if (pair && comm.rank() == 0) {
      pair->allreduce(view(values), ReduceOp::kSum)->wait();
      comm.send(view(values), culprit, 3)->wait();
    } else if (pair) {
      comm.recv(view(values), 0, 3)->wait();
      pair->allreduce(view(values), ReduceOp::kSum)->wait();
    }
  } else if (scenario == "late") {
    // The culprit computes for 7 s before it joins (a slow checkpoint write, a long wait for data): slow, not stuck,
    // and longer than the answer window and than it takes to blame a stopped rank; nobody may fail.
    all_but(comm, culprit, [&] {
      sleep_s(7.0);
      comm.allreduce(view(values), ReduceOp::kSum)->wait();
    });
  } else if (scenario == "timeout") {
    // The culprit computes past the others' deadline (--timeout-ms); they fail, naming it.
    all_but(comm, culprit, [&] {
      sleep_s(30);
      comm.allreduce(view(values), ReduceOp::kSum)->wait();
    });
  } else if (scenario == "stopped") {
    // The culprit's process stops (as a hung node does): it cannot even answer the watchdog.
    all_but(comm, culprit, [&] { std::raise(SIGSTOP); });
  } else if (scenario == "killed") {
    all_but(comm, culprit, [&] { std::raise(SIGKILL); });
  } else if (scenario == "throws") {
    all_but(comm, culprit, [&] { throw std::runtime_error("a planted failure in the culprit's step"); });
  } else if (scenario == "mismatch") {
    all_but(comm, culprit, [&] {
      std::vector<float> fewer(999, 1.0f);
      comm.allreduce(view(fewer), ReduceOp::kSum)->wait();
    });
  } else {
    throw std::invalid_argument("unknown --scenario '" + scenario + "'");
  }
  comm.barrier()->wait();
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string scenario;
  int timeout_ms = 60000;
  po::options_description options("watchdog_scenarios");
  options.add_options()("scenario", po::value(&scenario)->required(), "skip, skip-pipeline, late, timeout, ...")(
      "timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms), "CommOptions::timeout");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, options), vm);
  po::notify(vm);

  dtrain::comm::MpiEnvironment mpi(&argc, &argv);
  dtrain::comm::CommOptions comm_options;
  comm_options.timeout = std::chrono::milliseconds(timeout_ms);
  auto comm = dtrain::comm::MpiCommunicator::create(MPI_COMM_WORLD, comm_options);
  const auto start = std::chrono::steady_clock::now();
  if (comm->rank() == 0) {
    const double epoch_s =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::fprintf(stderr, "watchdog_scenarios: started at %.3f\n", epoch_s);
    std::fflush(stderr);
  }
  try {
    run(scenario, *comm);
  } catch (const std::exception& e) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "watchdog_scenarios: rank %d failed after %.2f s: %s\n", comm->rank(), seconds, e.what());
    std::fflush(stderr);
    dtrain::comm::MpiEnvironment::abort_job(1);
  }
  if (comm->rank() == 0) std::printf("watchdog_scenarios: ok\n");
  comm.reset();
  return 0;
}
