#include "runtime/pipeline/pipeline_engine.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "comm/clock.h"
#include "runtime/device/host_staging.h"
#include "runtime/observability/timeline.h"

namespace dtrain::runtime {

namespace {

using Clock = comm::SteadyClock;
using comm::seconds_since;

// Header layout: kind, step, micro-batch, dtype, rank (number of dims), dims...
constexpr std::int64_t kMaxDims = 8;
constexpr std::int64_t kHeaderSize = 5 + kMaxDims;
constexpr int kTag = 1;  // each link carries one kind of transfer

const char* kind_name(std::int64_t kind) {
  return kind == 1 ? "activation" : kind == 2 ? "gradient" : "unknown transfer";
}

// The schedules of all stages, gathered: each stage contributes (micro-batches, length, op, mb, op, mb, ...).
std::vector<StageSchedule> gather_schedules(comm::ControlPlane& control, const StageSchedule& mine, int micro_batches,
                                            std::vector<int>& all_micro_batches) {
  const std::vector<std::int64_t> lengths =
      control.allgather(std::vector<std::int64_t>{static_cast<std::int64_t>(mine.size())});
  const std::int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  std::vector<std::int64_t> encoded(static_cast<std::size_t>(2 + 2 * longest), -1);
  encoded[0] = micro_batches;
  encoded[1] = static_cast<std::int64_t>(mine.size());
  for (std::size_t i = 0; i < mine.size(); ++i) {
    encoded[2 + 2 * i] = static_cast<std::int64_t>(mine[i].op);
    encoded[3 + 2 * i] = mine[i].micro_batch;
  }
  const std::vector<std::int64_t> all = control.allgather(encoded);
  std::vector<StageSchedule> out(static_cast<std::size_t>(control.size()));
  all_micro_batches.assign(static_cast<std::size_t>(control.size()), 0);
  for (int s = 0; s < control.size(); ++s) {
    const std::int64_t* row = all.data() + s * (2 + 2 * longest);
    all_micro_batches[s] = static_cast<int>(row[0]);
    for (std::int64_t i = 0; i < row[1]; ++i) {
      out[s].push_back({static_cast<PipeOp>(row[2 + 2 * i]), static_cast<int>(row[3 + 2 * i])});
    }
  }
  return out;
}

}  // namespace

PipelineEngine::PipelineEngine(comm::Communicator& pipeline, comm::ControlPlane& control, StageSchedule schedule,
                               int micro_batches, c10::Device device)
    : schedule_(std::move(schedule)),
      micro_batches_(micro_batches),
      stage_(pipeline.rank()),
      stages_(pipeline.size()),
      device_(device) {
  std::vector<int> micro_batches_per_stage;
  const std::vector<StageSchedule> all = gather_schedules(control, schedule_, micro_batches_, micro_batches_per_stage);
  for (int s = 0; s < stages_; ++s) {
    if (micro_batches_per_stage[s] != micro_batches_per_stage[0]) {
      throw PipelineError(
          fmt::format("pipeline stages disagree on micro-batches per step: stage 0 runs {}, stage {} "
                      "runs {}",
                      micro_batches_per_stage[0], s, micro_batches_per_stage[s]));
    }
  }
  const std::string error = check_schedules(all, micro_batches_);
  if (!error.empty()) throw PipelineError(error);
  // Two rounds of splits make every link: first those between stages 0-1, 2-3, ..., then 1-2, 3-4, ...; a stage is
  // an end of at most one link per round.
  for (int parity = 0; parity < 2; ++parity) {
    const bool lower = stage_ % 2 == parity && stage_ + 1 < stages_;
    const bool upper = (stage_ - 1) % 2 == parity && stage_ >= 1;
    const int link = lower ? stage_ : upper ? stage_ - 1 : -1;
    auto make_link = [&](const char* kind) {
      const std::string name = fmt::format("{}-{}-{}", pipeline.name(), kind, link);
      return Link{pipeline.split(link, stage_, name), control.split(link, stage_, name + "-control")};
    };
    Link activations = make_link("activations");
    Link gradients = make_link("gradients");
    if (lower) {
      to_next_ = std::move(activations);
      from_next_ = std::move(gradients);
    } else if (upper) {
      from_prev_ = std::move(activations);
      to_prev_ = std::move(gradients);
    }
  }
}

void PipelineEngine::send(const at::Tensor& tensor, Kind kind, int mb) {
  if (tensor.dim() > kMaxDims) {
    throw PipelineError(fmt::format("pipeline stage {}: a {} of {} dimensions cannot cross stages (at most {})", stage_,
                                    kind_name(static_cast<std::int64_t>(kind)), tensor.dim(), kMaxDims));
  }
  std::vector<std::int64_t> h(kHeaderSize, 0);
  h[0] = static_cast<std::int64_t>(kind);
  h[1] = step_;
  h[2] = mb;
  h[3] = static_cast<std::int64_t>(tensor.scalar_type());
  h[4] = tensor.dim();
  for (std::int64_t d = 0; d < tensor.dim(); ++d) h[5 + d] = tensor.size(d);
  Link& link = kind == Kind::kActivation ? to_next_ : to_prev_;
  const int peer = kind == Kind::kActivation ? 1 : 0;
  at::Tensor payload = tensor.detach().contiguous();
  if (needs_host_staging(*link.data, payload)) payload = payload.to(at::kCPU);  // kept alive by the send
  const auto now = Clock::now();
  comm::WorkPtr header = link.control->send(std::move(h), peer, kTag);
  pending_sends_.push_back({std::move(header), link.data->send(payload, peer, kTag), now});
}

at::Tensor PipelineEngine::recv(Kind kind, int mb) {
  Link& link = kind == Kind::kActivation ? from_prev_ : from_next_;
  const int peer = kind == Kind::kActivation ? 0 : 1;
  const int from = kind == Kind::kActivation ? stage_ - 1 : stage_ + 1;
  const std::vector<std::int64_t> header = link.control->recv(kHeaderSize, peer, kTag);
  const std::int64_t* h = header.data();
  if (h[0] != static_cast<std::int64_t>(kind) || h[1] != step_ || h[2] != mb) {
    throw PipelineError(fmt::format(
        "pipeline stage {} expected the {} of micro-batch {} of step {} from stage {}, but got the {} of micro-batch "
        "{} of step {}",
        stage_, kind_name(static_cast<std::int64_t>(kind)), mb, step_, from, kind_name(h[0]), h[2], h[1]));
  }
  const std::vector<std::int64_t> shape(h + 5, h + 5 + h[4]);
  const auto options = at::TensorOptions().dtype(static_cast<c10::ScalarType>(h[3]));
  const bool staged = device_.is_cuda() && link.data->backend() == comm::Backend::kMpi;  // Note [Host staging]
  at::Tensor tensor = at::empty(shape, options.device(staged ? c10::Device(c10::kCPU) : device_));
  link.data->recv(tensor, peer, kTag)->wait();
  return staged ? tensor.to(device_) : tensor;
}

void PipelineEngine::wait_sends() {
  for (PendingSend& send : pending_sends_) {
    send.header->wait();
    send.payload->wait();
    Timeline::instance().add("send", "pipeline", send.posted, send.payload->finished_at(), Lane::kPipeline);
  }
  pending_sends_.clear();
}

PipelineStepStats PipelineEngine::train_step(const StageFunctions& stage, const std::vector<at::Tensor>& inputs,
                                             Reducer* reducer) {
  if (first() && static_cast<int>(inputs.size()) != micro_batches_) {
    throw PipelineError(
        fmt::format("pipeline stage 0 got {} micro-batch inputs for a step of {}", inputs.size(), micro_batches_));
  }
  PipelineStepStats stats;
  // Per micro-batch, between its forward and its backward: the stage's input (a leaf that collects the gradient to
  // send back) and output.
  std::vector<at::Tensor> input(static_cast<std::size_t>(micro_batches_)), output(input.size());
  std::vector<at::Tensor> output_grad(input.size());
  int live = 0;
  int last_backward = -1;
  for (const auto& in : schedule_) {
    if (in.op == PipeOp::kBackward) last_backward = in.micro_batch;
  }
  for (const PipeInstruction& in : schedule_) {
    const int mb = in.micro_batch;
    auto t = Clock::now();
    switch (in.op) {
      case PipeOp::kRecvActivation: {
        at::Tensor received = recv(Kind::kActivation, mb);
        if (!received.is_floating_point()) {
          throw PipelineError(
              fmt::format("pipeline stage {} received a {} activation: stages must be cut where the "
                          "model carries floating-point tensors",
                          stage_, c10::toString(received.scalar_type())));
        }
        input[mb] = received.requires_grad_(true);
        stats.transfer_wait_s += seconds_since(t);
        Timeline::instance().add("wait activation", "pipeline", t, Clock::now(), Lane::kPipeline, mb);
        break;
      }
      case PipeOp::kForward: {
        if (first()) input[mb] = inputs[mb];
        output[mb] = stage.forward(input[mb]);
        peak_live_ = std::max(peak_live_, ++live);
        stats.forward_s += seconds_since(t);
        Timeline::instance().add("forward", "compute", t, Clock::now(), Lane::kCompute, mb);
        break;
      }
      case PipeOp::kSendActivation:
        send(output[mb], Kind::kActivation, mb);
        break;
      case PipeOp::kRecvGradient:
        output_grad[mb] = recv(Kind::kGradient, mb);
        stats.transfer_wait_s += seconds_since(t);
        Timeline::instance().add("wait gradient", "pipeline", t, Clock::now(), Lane::kPipeline, mb);
        break;
      case PipeOp::kBackward: {
        std::optional<Reducer::NoSync> no_sync;
        if (reducer != nullptr && mb != last_backward) no_sync.emplace(*reducer);
        if (last()) {
          double loss = 0;
          at::Tensor scaled = stage.loss(output[mb], mb, loss);
          stats.loss += loss;
          scaled.backward();
        } else if (output[mb].requires_grad()) {
          output[mb].backward(output_grad[mb]);
        }
        output[mb] = at::Tensor();
        output_grad[mb] = at::Tensor();
        --live;
        stats.backward_s += seconds_since(t);
        Timeline::instance().add("backward", "compute", t, Clock::now(), Lane::kCompute, mb);
        break;
      }
      case PipeOp::kSendGradient: {
        at::Tensor grad = input[mb].grad();
        send(grad.defined() ? grad : at::zeros_like(input[mb]), Kind::kGradient, mb);
        input[mb] = at::Tensor();
        break;
      }
    }
  }
  const auto t = Clock::now();
  wait_sends();
  stats.transfer_wait_s += seconds_since(t);
  ++step_;
  return stats;
}

at::Tensor PipelineEngine::forward_only(const StageFunctions& stage, const at::Tensor& input) {
  at::Tensor x = first() ? input : recv(Kind::kActivation, 0);
  at::Tensor y = stage.forward(x);
  if (!last()) send(y, Kind::kActivation, 0);
  wait_sends();
  ++step_;
  return last() ? y : at::Tensor();
}

}  // namespace dtrain::runtime
