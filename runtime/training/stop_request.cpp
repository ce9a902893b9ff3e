#include "runtime/training/stop_request.h"

#include <csignal>

namespace dtrain::runtime {

namespace {

volatile std::sig_atomic_t stop_signal = 0;  // the only thing a signal handler may safely touch

extern "C" void on_stop_signal(int signal) {
  stop_signal = signal;
}

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action = {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // system calls in flight (file reads, MPI's) go on instead of failing with EINTR
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool stop_requested_here() {
  return stop_signal != 0;
}

void clear_stop_request() {
  stop_signal = 0;
}

bool agree_to_stop(comm::ControlPlane& control) {
  return control.any(stop_requested_here());
}

}  // namespace dtrain::runtime
