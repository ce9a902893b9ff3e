#include "runtime/data_parallel/distributed_data_parallel.h"

namespace dtrain::runtime {

namespace {

template <typename Named>
std::vector<NamedTensor> to_named(const Named& items) {
  std::vector<NamedTensor> out;
  for (const auto& item : items) out.push_back({item.name, item.value});
  return out;
}

std::vector<NamedTensor> to_named(const torch::OrderedDict<std::string, at::Tensor>& items) {
  std::vector<NamedTensor> out;
  for (const auto& item : items) out.push_back({item.key(), item.value()});
  return out;
}

}  // namespace

DistributedDataParallel::DistributedDataParallel(const std::shared_ptr<torch::nn::Module>& module,
                                                 comm::Communicator& comm, ReducerOptions options)
    : reducer_(std::make_unique<Reducer>(to_named(module->named_parameters(true)),
                                         to_named(module->named_buffers(true)), comm, std::move(options))) {}

DistributedDataParallel::DistributedDataParallel(const torch::jit::Module& module, comm::Communicator& comm,
                                                 ReducerOptions options)
    : reducer_(std::make_unique<Reducer>(to_named(module.named_parameters(true)), to_named(module.named_buffers(true)),
                                         comm, std::move(options))) {}

void DistributedDataParallel::backward(const at::Tensor& loss) {
  loss.backward();
  reducer_->finish_backward();
}

}  // namespace dtrain::runtime
