#pragma once
// Note [Control plane and data plane]
// dtrain moves two kinds of traffic. The data plane carries the tensors that live with the model — gradients,
// parameters, activations — on the run's backend (NCCL on GPUs, MPI on CPUs), in the model's device memory. The
// control plane carries everything ranks decide together: agreements (stop now? was any gradient non-finite? are
// the bucket plans equal?), metric sums, strings (paths, error messages), pipeline transfer headers, RNG states,
// timeline clocks. It is always an MPI communicator on host memory, whatever the data plane is: NCCL takes device
// memory only, and a decision needs no device.
// A ControlPlane spans the same ranks as the data communicator it goes with, in the same rank order (for_group
// duplicates that communicator's MPI group), so rank r on one is rank r on the other. Every call is collective over
// the control plane (point-to-point calls: over the two ranks) and blocks until done; each one is a Communicator
// operation underneath, so it is checked, verified across ranks and watched like any other (Note [Watchdog]).

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace dtrain::comm {

class ControlPlane {
 public:
  // Collective over `group`: a duplicate of it.
  static std::unique_ptr<ControlPlane> create(MPI_Comm group, CommOptions options = {});
  // Collective over `data`: the control plane of the same ranks, named "<data's name>-control".
  static std::unique_ptr<ControlPlane> for_group(const Communicator& data);
  ~ControlPlane();

  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }
  const std::string& name() const { return comm_->name(); }

  // Ranks with the same colour form a new control plane, ordered by (key, rank); a negative colour gets nullptr.
  std::unique_ptr<ControlPlane> split(int color, int key, const std::string& name);

  // Agreements: the same answer on every rank.
  bool any(bool mine);
  bool same_everywhere(std::uint64_t mine);
  std::int64_t min(std::int64_t mine);
  std::int64_t max(std::int64_t mine);
  double max(double mine);
  std::int64_t sum(std::int64_t mine);
  // Element-wise over every rank's vector (all of one length).
  std::vector<double> sum(std::vector<double> mine);
  std::vector<std::int64_t> min(std::vector<std::int64_t> mine);
  // Returns if no rank has a `problem`; else every rank throws AgreedError with the lowest failing rank's problem
  // (Note [Agreed errors]).
  void raise_if_any_failed(const std::string& problem);

  // `root`'s value on every rank (the others' arguments are ignored, but vectors must have root's length).
  std::string broadcast(const std::string& text, int root);
  std::vector<std::int64_t> broadcast(std::vector<std::int64_t> values, int root);
  std::vector<double> broadcast(std::vector<double> values, int root);

  // Every rank's values (all of one length), concatenated in rank order.
  std::vector<std::int64_t> allgather(const std::vector<std::int64_t>& mine);
  std::vector<std::uint8_t> allgather(const std::vector<std::uint8_t>& mine);
  std::vector<double> allgather_value(double mine);

  // Point-to-point, matched by (peer, tag) in issue order. The send does not block: its Work finishes once the
  // values are sent (they are kept alive until then).
  WorkPtr send(std::vector<std::int64_t> values, int dst, int tag);
  std::vector<std::int64_t> recv(std::size_t count, int src, int tag);
  void send_text(const std::string& text, int dst, int tag);
  std::string recv_text(int src, int tag);

 private:
  explicit ControlPlane(std::unique_ptr<Communicator> comm);
  std::unique_ptr<Communicator> comm_;
};

}  // namespace dtrain::comm
