#include "comm/communicator.h"

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/tensor_buffer.h"

namespace dtrain::comm {

namespace {

bool overlaps(const Buffer& a, const Buffer& b) {
  auto a0 = static_cast<const char*>(a.data);
  auto b0 = static_cast<const char*>(b.data);
  return a.bytes() > 0 && b.bytes() > 0 && a0 < b0 + b.bytes() && b0 < a0 + a.bytes();
}

}  // namespace

const char* to_string(Backend backend) {
  return backend == Backend::kMpi ? "mpi" : "nccl";
}

Communicator::Communicator(int rank, int size, CommOptions options, std::shared_ptr<CommProgress> progress)
    : rank_(rank), size_(size), options_(std::move(options)), progress_(std::move(progress)) {}

std::string Communicator::where() const {
  return fmt::format("communicator '{}' rank {}/{}", options_.name, rank_, size_);
}

OpInfo Communicator::next_collective(OpType type, const Buffer& buffer) {
  OpInfo info;
  info.type = type;
  info.seq = collective_seq_++;
  info.dtype = buffer.dtype;
  info.count = buffer.count;
  return info;
}

OpInfo Communicator::next_p2p(OpType type, const Buffer& buffer, int peer, int tag) {
  OpInfo info;
  info.type = type;
  info.seq = p2p_seq_++;
  info.dtype = buffer.dtype;
  info.count = buffer.count;
  info.peer = peer;
  info.tag = tag;
  return info;
}

void Communicator::check_buffer(const Buffer& buffer, const OpInfo& info, const char* role) const {
  if (buffer.count > 0 && buffer.data == nullptr) {
    throw CommError(
        fmt::format("{} on {}: {} is null but holds {} elements", info.describe(), where(), role, buffer.count));
  }
  if (buffer.device != device()) {
    throw CommError(fmt::format("{} on {}: {} is in {} memory but the {} backend needs {} memory", info.describe(),
                                where(), role, to_string(buffer.device), to_string(backend()), to_string(device())));
  }
}

void Communicator::check_rank(int peer, const OpInfo& info, const char* role) const {
  if (peer < 0 || peer >= size_) {
    throw CommError(fmt::format("{} on {}: {} {} is not a rank of this communicator (0..{})", info.describe(), where(),
                                role, peer, size_ - 1));
  }
}

WorkPtr Communicator::allreduce(const Buffer& buffer, ReduceOp op) {
  std::lock_guard<std::mutex> lock(issue_mutex_);
  check_usable();
  OpInfo info = next_collective(OpType::kAllreduce, buffer);
  info.op = op;
  check_buffer(buffer, info, "buffer");
  if (op == ReduceOp::kAvg && !is_floating_point(buffer.dtype)) {
    throw CommError(
        fmt::format("{} on {}: avg needs a floating-point dtype (use sum for integers)", info.describe(), where()));
  }
  progress_->issued(info);
  return do_allreduce(buffer, info);
}

WorkPtr Communicator::broadcast(const Buffer& buffer, int root) {
  std::lock_guard<std::mutex> lock(issue_mutex_);
  check_usable();
  OpInfo info = next_collective(OpType::kBroadcast, buffer);
  info.peer = root;
  check_buffer(buffer, info, "buffer");
  check_rank(root, info, "root");
  progress_->issued(info);
  return do_broadcast(buffer, info);
}

WorkPtr Communicator::allgather(const Buffer& output, const Buffer& input) {
  std::lock_guard<std::mutex> lock(issue_mutex_);
  check_usable();
  OpInfo info = next_collective(OpType::kAllgather, input);
  check_buffer(input, info, "input");
  check_buffer(output, info, "output");
  if (output.dtype != input.dtype) {
    throw CommError(fmt::format("{} on {}: output is {} but input is {}", info.describe(), where(),
                                to_string(output.dtype), to_string(input.dtype)));
  }
  if (output.count != input.count * static_cast<std::size_t>(size_)) {
    throw CommError(fmt::format("{} on {}: output has {} elements, expected {} ranks x {} = {}", info.describe(),
                                where(), output.count, size_, input.count, input.count * size_));
  }
  const bool in_place = input.data == static_cast<char*>(output.data) + static_cast<std::size_t>(rank_) * input.bytes();
  if (!in_place && overlaps(input, output)) {
    throw CommError(
        fmt::format("{} on {}: input overlaps output but is not this rank's slice of it", info.describe(), where()));
  }
  progress_->issued(info);
  return do_allgather(output, input, info);
}

WorkPtr Communicator::reduce_scatter(const Buffer& output, const Buffer& input, ReduceOp op) {
  std::lock_guard<std::mutex> lock(issue_mutex_);
  check_usable();
  OpInfo info = next_collective(OpType::kReduceScatter, output);
  info.op = op;
  check_buffer(input, info, "input");
  check_buffer(output, info, "output");
  if (output.dtype != input.dtype) {
    throw CommError(fmt::format("{} on {}: output is {} but input is {}", info.describe(), where(),
                                to_string(output.dtype), to_string(input.dtype)));
  }
  if (input.count != output.count * static_cast<std::size_t>(size_)) {
    throw CommError(fmt::format("{} on {}: input has {} elements, expected {} ranks x {} = {}", info.describe(),
                                where(), input.count, size_, output.count, output.count * size_));
  }
  if (overlaps(input, output)) {
    throw CommError(fmt::format("{} on {}: input and output overlap", info.describe(), where()));
  }
  if (op == ReduceOp::kAvg && !is_floating_point(output.dtype)) {
    throw CommError(
        fmt::format("{} on {}: avg needs a floating-point dtype (use sum for integers)", info.describe(), where()));
  }
  progress_->issued(info);
  return do_reduce_scatter(output, input, info);
}

WorkPtr Communicator::send(const Buffer& buffer, int dst, int tag) {
  std::lock_guard<std::mutex> lock(issue_mutex_);
  check_usable();
  OpInfo info = next_p2p(OpType::kSend, buffer, dst, tag);
  check_buffer(buffer, info, "buffer");
  check_rank(dst, info, "destination");
  if (dst == rank_) throw CommError(fmt::format("{} on {}: a rank cannot send to itself", info.describe(), where()));
  if (tag < 0 || tag > max_tag()) {
    throw CommError(fmt::format("{} on {}: tag must be in 0..{}", info.describe(), where(), max_tag()));
  }
  progress_->issued(info);
  return do_send(buffer, info);
}

WorkPtr Communicator::recv(const Buffer& buffer, int src, int tag) {
  std::lock_guard<std::mutex> lock(issue_mutex_);
  check_usable();
  OpInfo info = next_p2p(OpType::kRecv, buffer, src, tag);
  check_buffer(buffer, info, "buffer");
  check_rank(src, info, "source");
  if (src == rank_) {
    throw CommError(fmt::format("{} on {}: a rank cannot receive from itself", info.describe(), where()));
  }
  if (tag < 0 || tag > max_tag()) {
    throw CommError(fmt::format("{} on {}: tag must be in 0..{}", info.describe(), where(), max_tag()));
  }
  progress_->issued(info);
  return do_recv(buffer, info);
}

WorkPtr Communicator::barrier() {
  std::lock_guard<std::mutex> lock(issue_mutex_);
  check_usable();
  OpInfo info = next_collective(OpType::kBarrier, Buffer{});
  progress_->issued(info);
  return do_barrier(info);
}

std::unique_ptr<Communicator> Communicator::split(int color, int key, const std::string& name) {
  std::lock_guard<std::mutex> lock(issue_mutex_);
  check_usable();
  OpInfo info = next_collective(OpType::kSplit, Buffer{});
  CommOptions options = options_;
  options.name = name.empty() ? fmt::format("{}/{}", options_.name, color) : name;
  progress_->issued(info);
  return do_split(color, key, std::move(options), info);
}

WorkPtr Communicator::allreduce(const at::Tensor& tensor, ReduceOp op) {
  return allreduce(as_buffer(tensor), op);
}

WorkPtr Communicator::broadcast(const at::Tensor& tensor, int root) {
  return broadcast(as_buffer(tensor), root);
}

WorkPtr Communicator::allgather(const at::Tensor& output, const at::Tensor& input) {
  return allgather(as_buffer(output, "output"), as_buffer(input, "input"));
}

WorkPtr Communicator::reduce_scatter(const at::Tensor& output, const at::Tensor& input, ReduceOp op) {
  return reduce_scatter(as_buffer(output, "output"), as_buffer(input, "input"), op);
}

WorkPtr Communicator::send(const at::Tensor& tensor, int dst, int tag) {
  return send(as_buffer(tensor), dst, tag);
}

WorkPtr Communicator::recv(const at::Tensor& tensor, int src, int tag) {
  return recv(as_buffer(tensor), src, tag);
}

std::string broadcast_string(Communicator& comm, const std::string& text, int root) {
  std::int64_t length = comm.rank() == root ? static_cast<std::int64_t>(text.size()) : 0;
  Buffer length_buffer;
  length_buffer.data = &length;
  length_buffer.count = 1;
  length_buffer.dtype = DataType::kInt64;
  comm.broadcast(length_buffer, root)->wait();
  std::string out = comm.rank() == root ? text : std::string(static_cast<std::size_t>(length), '\0');
  Buffer bytes;
  bytes.data = out.data();
  bytes.count = out.size();
  bytes.dtype = DataType::kUInt8;
  comm.broadcast(bytes, root)->wait();
  return out;
}

}  // namespace dtrain::comm
