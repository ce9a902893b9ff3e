#pragma once
// What the trainer trains: a torch::nn::Sequential from the model registry (jobs/model_registry.h), which the pipeline
// engine can also cut into stages, or a TorchScript module file (e.g. exported by torch.jit.script from Python).

#include <torch/nn/modules/container/sequential.h>
#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/model/block_hooks.h"
#include "runtime/model/named_tensor.h"

namespace dtrain::runtime {

class TrainableModel {
 public:
  virtual ~TrainableModel() = default;
  // "cnn", or "torchscript:<file>": checkpoints refuse to load into a model of another name.
  virtual std::string name() const = 0;
  virtual at::Tensor forward(const at::Tensor& input) = 0;
  virtual std::vector<NamedTensor> parameters() = 0;
  virtual std::vector<NamedTensor> buffers() = 0;
  virtual void set_training(bool training) = 0;
  // Moves parameters and buffers to `device` (before an optimizer or a reducer holds them).
  virtual void to(const c10::Device& device) = 0;
  // Writes the model for other tools (dtrain --export-model), atomically: a built-in model as a PyTorch state dict
  // (parameter and buffer names -> CPU tensors) that Python's torch.load reads and load_state_dict takes; a
  // TorchScript module as itself, with its trained weights on the CPU, for torch::jit::load or torch.jit.load.
  virtual void export_to(const std::string& path) = 0;
  // Recompute the activations of every `every`-th block (blocks 0, every, 2 * every, ...) in backward instead of
  // keeping them (runtime/model/activation_checkpoint.h); 0 keeps them all. Only a model made of blocks can; the
  // others throw std::invalid_argument.
  virtual void checkpoint_activations(int every);
  // The names of each block's parameters, block by block (ZeRO stage 3 gathers a block at a time), and the hooks
  // run around every block's forward (nullptr: none). Only a model made of blocks has them; the others throw
  // std::invalid_argument naming `what` needs them.
  virtual std::vector<std::vector<std::string>> block_parameter_names(const std::string& what);
  virtual void set_block_hooks(BlockHooks* hooks);
  // Where the parameters are (the CPU for a model without any).
  c10::Device device();
  std::int64_t parameter_count();
  // CRC-32 of every parameter's bytes (read from CPU copies), in order: equal weights, equal fingerprint (to compare
  // runs bit for bit, on any device).
  std::uint32_t weights_crc32();
};

class SequentialModel final : public TrainableModel {
 public:
  SequentialModel(std::string name, torch::nn::Sequential module);
  std::string name() const override { return name_; }
  at::Tensor forward(const at::Tensor& input) override;
  std::vector<NamedTensor> parameters() override;
  std::vector<NamedTensor> buffers() override;
  void set_training(bool training) override;
  void to(const c10::Device& device) override;
  void export_to(const std::string& path) override;
  void checkpoint_activations(int every) override;
  std::vector<std::vector<std::string>> block_parameter_names(const std::string& what) override;
  void set_block_hooks(BlockHooks* hooks) override { hooks_ = hooks; }
  torch::nn::Sequential& module() { return module_; }

 private:
  std::string name_;
  torch::nn::Sequential module_;
  int checkpoint_every_ = 0;
  BlockHooks* hooks_ = nullptr;
};

class ScriptModel final : public TrainableModel {
 public:
  // Loads `path`; throws std::runtime_error naming the file if it cannot be loaded or has no forward method.
  explicit ScriptModel(const std::string& path);
  std::string name() const override { return "torchscript:" + path_; }
  at::Tensor forward(const at::Tensor& input) override;
  std::vector<NamedTensor> parameters() override;
  std::vector<NamedTensor> buffers() override;
  void set_training(bool training) override;
  void to(const c10::Device& device) override;
  void export_to(const std::string& path) override;

 private:
  std::string path_;
  torch::jit::Module module_;
};

}  // namespace dtrain::runtime
