#include "comm/control_plane.h"

#include <fmt/format.h>

#include <type_traits>

#include "comm/error.h"
#include "comm/mpi_communicator.h"

namespace dtrain::comm {

namespace {

// A view of host memory for one blocking call: the caller's variable outlives it.
template <typename T>
Buffer host(T* data, std::size_t count) {
  Buffer buffer;
  buffer.data = data;
  buffer.count = count;
  if constexpr (std::is_same_v<T, std::int64_t>) {
    buffer.dtype = DataType::kInt64;
  } else if constexpr (std::is_same_v<T, double>) {
    buffer.dtype = DataType::kFloat64;
  } else {
    static_assert(sizeof(T) == 1, "bytes: text or uint8");
    buffer.dtype = DataType::kUInt8;
  }
  return buffer;
}

}  // namespace

std::unique_ptr<ControlPlane> ControlPlane::create(MPI_Comm group, CommOptions options) {
  return std::unique_ptr<ControlPlane>(new ControlPlane(MpiCommunicator::create(group, std::move(options))));
}

std::unique_ptr<ControlPlane> ControlPlane::for_group(const Communicator& data) {
  CommOptions options = data.options();
  options.name = data.name() + "-control";
  return create(data.mpi_group(), std::move(options));
}

ControlPlane::ControlPlane(std::unique_ptr<Communicator> comm) : comm_(std::move(comm)) {}
ControlPlane::~ControlPlane() = default;

std::unique_ptr<ControlPlane> ControlPlane::split(int color, int key, const std::string& name) {
  std::unique_ptr<Communicator> part = comm_->split(color, key, name);
  if (!part) return nullptr;
  return std::unique_ptr<ControlPlane>(new ControlPlane(std::move(part)));
}

bool ControlPlane::any(bool mine) {
  return max(static_cast<std::int64_t>(mine ? 1 : 0)) != 0;
}

std::string AgreedError::where() const {
  if (failed_ == plane_size_) return fmt::format("on all {} ranks", failed_);
  if (failed_ == 1) return fmt::format("on rank {}", first_failed_);
  return fmt::format("on rank {} and {} other ranks", first_failed_, failed_ - 1);
}

void ControlPlane::raise_if_any_failed(const std::string& problem) {
  const bool failed = !problem.empty();
  const std::int64_t failures = sum(static_cast<std::int64_t>(failed ? 1 : 0));
  if (failures == 0) return;
  const int first = static_cast<int>(min(static_cast<std::int64_t>(failed ? rank() : size())));
  throw AgreedError(broadcast(problem, first), first, static_cast<int>(failures), size());
}

bool ControlPlane::same_everywhere(std::uint64_t mine) {
  // One MIN over (v, -v) gives both the smallest and the largest value.
  const auto value = static_cast<std::int64_t>(mine);
  const std::vector<std::int64_t> bounds = min(std::vector<std::int64_t>{value, -value});
  return bounds[0] == -bounds[1];
}

std::int64_t ControlPlane::min(std::int64_t mine) {
  comm_->allreduce(host(&mine, 1), ReduceOp::kMin)->wait();
  return mine;
}

std::int64_t ControlPlane::max(std::int64_t mine) {
  comm_->allreduce(host(&mine, 1), ReduceOp::kMax)->wait();
  return mine;
}

double ControlPlane::max(double mine) {
  comm_->allreduce(host(&mine, 1), ReduceOp::kMax)->wait();
  return mine;
}

std::int64_t ControlPlane::sum(std::int64_t mine) {
  comm_->allreduce(host(&mine, 1), ReduceOp::kSum)->wait();
  return mine;
}

std::vector<double> ControlPlane::sum(std::vector<double> mine) {
  comm_->allreduce(host(mine.data(), mine.size()), ReduceOp::kSum)->wait();
  return mine;
}

std::vector<std::int64_t> ControlPlane::min(std::vector<std::int64_t> mine) {
  comm_->allreduce(host(mine.data(), mine.size()), ReduceOp::kMin)->wait();
  return mine;
}

std::string ControlPlane::broadcast(const std::string& text, int root) {
  return broadcast_string(*comm_, text, root);
}

std::vector<std::int64_t> ControlPlane::broadcast(std::vector<std::int64_t> values, int root) {
  comm_->broadcast(host(values.data(), values.size()), root)->wait();
  return values;
}

std::vector<double> ControlPlane::broadcast(std::vector<double> values, int root) {
  comm_->broadcast(host(values.data(), values.size()), root)->wait();
  return values;
}

std::vector<std::int64_t> ControlPlane::allgather(const std::vector<std::int64_t>& mine) {
  std::vector<std::int64_t> all(mine.size() * static_cast<std::size_t>(size()));
  std::vector<std::int64_t> input = mine;
  comm_->allgather(host(all.data(), all.size()), host(input.data(), input.size()))->wait();
  return all;
}

std::vector<std::uint8_t> ControlPlane::allgather(const std::vector<std::uint8_t>& mine) {
  std::vector<std::uint8_t> all(mine.size() * static_cast<std::size_t>(size()));
  std::vector<std::uint8_t> input = mine;
  comm_->allgather(host(all.data(), all.size()), host(input.data(), input.size()))->wait();
  return all;
}

std::vector<double> ControlPlane::allgather_value(double mine) {
  std::vector<double> all(static_cast<std::size_t>(size()));
  comm_->allgather(host(all.data(), all.size()), host(&mine, 1))->wait();
  return all;
}

WorkPtr ControlPlane::send(std::vector<std::int64_t> values, int dst, int tag) {
  auto owned = std::make_shared<std::vector<std::int64_t>>(std::move(values));
  Buffer buffer = host(owned->data(), owned->size());
  buffer.keepalive = owned;
  return comm_->send(buffer, dst, tag);
}

std::vector<std::int64_t> ControlPlane::recv(std::size_t count, int src, int tag) {
  std::vector<std::int64_t> values(count);
  comm_->recv(host(values.data(), values.size()), src, tag)->wait();
  return values;
}

void ControlPlane::send_text(const std::string& text, int dst, int tag) {
  std::int64_t length = static_cast<std::int64_t>(text.size());
  comm_->send(host(&length, 1), dst, tag)->wait();
  std::string bytes = text;
  comm_->send(host(bytes.data(), bytes.size()), dst, tag)->wait();
}

std::string ControlPlane::recv_text(int src, int tag) {
  std::int64_t length = 0;
  comm_->recv(host(&length, 1), src, tag)->wait();
  std::string text(static_cast<std::size_t>(length), '\0');
  comm_->recv(host(text.data(), text.size()), src, tag)->wait();
  return text;
}

}  // namespace dtrain::comm
