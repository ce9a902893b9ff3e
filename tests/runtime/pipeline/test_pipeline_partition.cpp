// Cutting a sequential model into pipeline stages: the balance is optimal, stages keep the full model's parameter
// names, and a stage computes exactly what its layers compute in the whole model.

#include "runtime/pipeline/pipeline_partition.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace dtrain::runtime {
namespace {

std::vector<std::pair<int, int>> pairs(const std::vector<LayerRange>& ranges) {
  std::vector<std::pair<int, int>> out;
  for (const auto& r : ranges) out.emplace_back(r.begin, r.end);
  return out;
}

TEST(PipelinePartition, BalancesTheLargestStage) {
  EXPECT_EQ(pairs(balance_layers({1, 1, 1, 1}, 2)), (std::vector<std::pair<int, int>>{{0, 2}, {2, 4}}));
  EXPECT_EQ(pairs(balance_layers({10, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 2)),
            (std::vector<std::pair<int, int>>{{0, 1}, {1, 10}}));
  // Best largest stage is 7 (3+4 | 5 | 6+1); layers without cost still belong to some stage.
  EXPECT_EQ(pairs(balance_layers({3, 4, 5, 6, 1, 0}, 3)), (std::vector<std::pair<int, int>>{{0, 2}, {2, 3}, {3, 6}}));
  EXPECT_EQ(pairs(balance_layers({0, 0, 0}, 3)), (std::vector<std::pair<int, int>>{{0, 1}, {1, 2}, {2, 3}}));
  EXPECT_THROW(balance_layers({1, 2}, 3), std::invalid_argument);
}

TEST(PipelinePartition, StagesKeepNamesAndComputeTheSameAsTheWholeModel) {
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 8), torch::nn::Tanh(),
                              torch::nn::Linear(8, 2));
  EXPECT_EQ(parameter_costs(model), (std::vector<double>{40, 0, 72, 0, 18}));
  const auto ranges = balance_layers(parameter_costs(model), 2);
  EXPECT_EQ(pairs(ranges), (std::vector<std::pair<int, int>>{{0, 2}, {2, 5}}));
  EXPECT_EQ(describe_partition(model, ranges),
            "stage 0: layers 0-1 (40 parameters); stage 1: layers 2-4 (90 parameters)");
  torch::nn::Sequential first = slice_layers(model, ranges[0]), second = slice_layers(model, ranges[1]);
  std::vector<std::string> names;
  for (const auto& p : second->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"2.weight", "2.bias", "4.weight", "4.bias"}));
  const torch::Tensor x = torch::randn({3, 4});
  EXPECT_TRUE(torch::equal(second->forward(first->forward(x)), model->forward(x)));
  EXPECT_THROW(slice_layers(model, {3, 6}), std::invalid_argument);
}

}  // namespace
}  // namespace dtrain::runtime
