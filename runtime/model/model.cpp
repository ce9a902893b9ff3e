#include "runtime/model/model.h"

#include <fmt/format.h>

#include <torch/csrc/jit/serialization/pickle.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>

#include "runtime/model/activation_checkpoint.h"

namespace dtrain::runtime {

namespace {

// `write` fills a temporary file, which is then renamed to `path`: a reader never finds half a model there.
void write_model_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string temporary = path + ".tmp";
  try {
    write(temporary);
    std::filesystem::rename(temporary, path);
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(temporary, ec);
    throw;
  }
}

}  // namespace

std::int64_t TrainableModel::parameter_count() {
  std::int64_t count = 0;
  for (const auto& p : parameters()) count += p.tensor.numel();
  return count;
}

c10::Device TrainableModel::device() {
  const auto params = parameters();
  return params.empty() ? c10::Device(c10::kCPU) : params.front().tensor.device();
}

std::uint32_t TrainableModel::weights_crc32() {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& p : parameters()) {
    const at::Tensor t = p.tensor.detach().cpu().contiguous();
    crc = crc32(crc, static_cast<const Bytef*>(t.data_ptr()), static_cast<uInt>(t.numel() * t.element_size()));
  }
  return static_cast<std::uint32_t>(crc);
}

SequentialModel::SequentialModel(std::string name, torch::nn::Sequential module)
    : name_(std::move(name)), module_(std::move(module)) {}

at::Tensor SequentialModel::forward(const at::Tensor& input) {
  if (checkpoint_every_ == 0 && hooks_ == nullptr) return module_->forward(input);
  at::Tensor x = input;
  std::size_t index = 0;
  for (torch::nn::AnyModule& block : *module_) {
    torch::nn::AnyModule* module = &block;
    BlockHooks* hooks = hooks_;
    const std::size_t position = index++;
    const Block run = [module, hooks, position](const at::Tensor& in) {
      if (hooks == nullptr) return module->forward(in);
      hooks->before_forward(position);
      return hooks->after_forward(position, module->forward(in));
    };
    const bool recompute = checkpoint_every_ > 0 && position % static_cast<std::size_t>(checkpoint_every_) == 0;
    x = recompute ? checkpointed(run, x) : run(x);
  }
  return x;
}

void SequentialModel::checkpoint_activations(int every) {
  if (every < 0) throw std::invalid_argument("--activation-checkpointing-every must be >= 1");
  checkpoint_every_ = every;
}

void TrainableModel::checkpoint_activations(int every) {
  if (every != 0) block_parameter_names("--activation-checkpointing");
}

std::vector<std::vector<std::string>> TrainableModel::block_parameter_names(const std::string& what) {
  throw std::invalid_argument(
      fmt::format("{} needs a model made of blocks (a built-in model); {} is one opaque module", what, name()));
}

// Only models made of blocks run hooks around them; block_parameter_names says so.
void TrainableModel::set_block_hooks(BlockHooks* hooks) {
  if (hooks != nullptr) block_parameter_names("hooks around blocks");
}

// Parameter names are "<block's name>.<name in the block>", as parameters() gives them (a pipeline stage's blocks keep
// their names in the whole model).
std::vector<std::vector<std::string>> SequentialModel::block_parameter_names(const std::string&) {
  std::vector<std::vector<std::string>> blocks;
  for (const auto& child : module_->named_children()) {
    std::vector<std::string> names;
    for (const auto& item : child.value()->named_parameters(true)) {
      names.push_back(fmt::format("{}.{}", child.key(), item.key()));
    }
    blocks.push_back(std::move(names));
  }
  return blocks;
}

std::vector<NamedTensor> SequentialModel::parameters() {
  std::vector<NamedTensor> out;
  for (const auto& item : module_->named_parameters(true)) out.push_back({item.key(), item.value()});
  return out;
}

std::vector<NamedTensor> SequentialModel::buffers() {
  std::vector<NamedTensor> out;
  for (const auto& item : module_->named_buffers(true)) out.push_back({item.key(), item.value()});
  return out;
}

void SequentialModel::set_training(bool training) {
  module_->train(training);
}

void SequentialModel::to(const c10::Device& device) {
  module_->to(device);
}

void SequentialModel::export_to(const std::string& path) {
  c10::Dict<std::string, at::Tensor> state;
  for (const auto& p : parameters()) state.insert(p.name, p.tensor.detach().cpu());
  for (const auto& b : buffers()) state.insert(b.name, b.tensor.detach().cpu());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(state));
  write_model_atomically(path, [&](const std::string& file) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) throw std::runtime_error(fmt::format("writing {} failed", file));
  });
}

ScriptModel::ScriptModel(const std::string& path) : path_(path) {
  if (!std::filesystem::exists(path)) throw std::runtime_error(fmt::format("TorchScript file {} does not exist", path));
  try {
    module_ = torch::jit::load(path);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw std::runtime_error(fmt::format("cannot load TorchScript file {}: {}", path, what.substr(0, what.find('\n'))));
  }
  if (!module_.find_method("forward")) {
    throw std::runtime_error(fmt::format("TorchScript file {} has no forward method", path));
  }
}

at::Tensor ScriptModel::forward(const at::Tensor& input) {
  return module_.forward({input}).toTensor();
}

std::vector<NamedTensor> ScriptModel::parameters() {
  std::vector<NamedTensor> out;
  for (const auto& item : module_.named_parameters(true)) out.push_back({item.name, item.value});
  return out;
}

std::vector<NamedTensor> ScriptModel::buffers() {
  std::vector<NamedTensor> out;
  for (const auto& item : module_.named_buffers(true)) out.push_back({item.name, item.value});
  return out;
}

void ScriptModel::set_training(bool training) {
  module_.train(training);
}

void ScriptModel::to(const c10::Device& device) {
  module_.to(device);
}

void ScriptModel::export_to(const std::string& path) {
  torch::jit::Module copy = module_.clone();  // the training module stays on its device
  copy.to(at::kCPU);
  write_model_atomically(path, [&](const std::string& file) { copy.save(file); });
}

}  // namespace dtrain::runtime
