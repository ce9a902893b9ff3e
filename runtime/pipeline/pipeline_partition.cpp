#include "runtime/pipeline/pipeline_partition.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>

namespace dtrain::runtime {

std::vector<LayerRange> balance_layers(const std::vector<double>& costs, int stages) {
  const int n = static_cast<int>(costs.size());
  if (stages < 1) throw std::invalid_argument(fmt::format("a pipeline needs >= 1 stage (got {})", stages));
  if (n < stages) {
    throw std::invalid_argument(
        fmt::format("the model has {} layers, too few for {} pipeline stages (each stage needs one)", n, stages));
  }
  std::vector<double> prefix(n + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + costs[i];
  auto sum = [&](int from, int to) { return prefix[to] - prefix[from]; };
  // best[k][i]: the smallest possible largest stage cost when the first i layers form k stages; cut[k][i] where the
  // last of those stages begins.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<int>> cut(best.size(), std::vector<int>(n + 1, 0));
  best[0][0] = 0;
  for (int k = 1; k <= stages; ++k) {
    for (int i = k; i <= n - (stages - k); ++i) {
      // The latest start that is still optimal: later stages take as few layers as the balance allows.
      for (int j = k - 1; j < i; ++j) {
        const double candidate = std::max(best[k - 1][j], sum(j, i));
        if (candidate <= best[k][i]) {
          best[k][i] = candidate;
          cut[k][i] = j;
        }
      }
    }
  }
  std::vector<LayerRange> ranges(static_cast<std::size_t>(stages));
  int end = n;
  for (int k = stages; k >= 1; --k) {
    const int begin = cut[k][end];
    ranges[k - 1] = {begin, end};
    end = begin;
  }
  return ranges;
}

std::vector<double> parameter_costs(const torch::nn::Sequential& model) {
  std::vector<double> costs;
  for (const auto& child : model->named_children()) {
    double count = 0;
    for (const auto& p : child.value()->parameters(true)) count += static_cast<double>(p.numel());
    costs.push_back(count);
  }
  return costs;
}

const char* to_string(PartitionCost cost) {
  return cost == PartitionCost::kParameters ? "parameters" : "time";
}

std::vector<double> measured_costs(const torch::nn::Sequential& model, const at::Tensor& sample_input, int repeats,
                                   comm::ControlPlane& world) {
  const auto layers = static_cast<std::int64_t>(model->size());
  std::vector<double> costs(static_cast<std::size_t>(layers), 0.0);
  if (world.rank() == 0) {
    std::vector<std::vector<double>> samples(static_cast<std::size_t>(layers));
    for (int r = 0; r < std::max(1, repeats); ++r) {
      at::Tensor x = sample_input;
      for (std::int64_t i = 0; i < layers; ++i) {
        at::Tensor input = x.detach();
        if (input.is_floating_point()) input.requires_grad_(true);
        const auto start = std::chrono::steady_clock::now();
        at::Tensor y = model.ptr()->begin()[i].forward(input);
        if (y.requires_grad()) y.backward(at::ones_like(y));
        samples[i].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        x = y.detach();
      }
    }
    for (auto& p : model->parameters(true)) {
      if (p.grad().defined()) p.mutable_grad() = at::Tensor();  // measuring must not leave gradients behind
    }
    for (std::int64_t i = 0; i < layers; ++i) {
      auto& s = samples[i];
      std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(s.size() / 2), s.end());
      costs[i] = s[s.size() / 2];
    }
  }
  return world.broadcast(std::move(costs), 0);
}

torch::nn::Sequential slice_layers(const torch::nn::Sequential& model, LayerRange range) {
  const auto children = model->named_children();
  if (range.begin < 0 || range.end > static_cast<int>(children.size()) || range.begin >= range.end) {
    throw std::invalid_argument(
        fmt::format("layers [{}, {}) are not a slice of a {}-layer model", range.begin, range.end, children.size()));
  }
  torch::nn::Sequential stage;
  for (int i = range.begin; i < range.end; ++i) {
    stage->push_back(children[i].key(), model.ptr()->begin()[i]);
  }
  return stage;
}

std::string describe_partition(const torch::nn::Sequential& model, const std::vector<LayerRange>& ranges) {
  const std::vector<double> params = parameter_costs(model);
  std::string out;
  for (std::size_t s = 0; s < ranges.size(); ++s) {
    double count = 0;
    for (int i = ranges[s].begin; i < ranges[s].end; ++i) count += params[i];
    out += fmt::format("{}stage {}: layers {}-{} ({:.0f} parameters)", s == 0 ? "" : "; ", s, ranges[s].begin,
                       ranges[s].end - 1, count);
  }
  return out;
}

}  // namespace dtrain::runtime
