#include "runtime/training/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <regex>

#include "comm/error.h"

namespace dtrain::runtime {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "dtrain-checkpoint-1";
constexpr const char* kParameterShards = "dtrain_parameter_shards";  // in a stage 3 optimizer shard file

c10::List<at::Tensor> cpu_copies(const std::vector<at::Tensor>& tensors) {
  c10::List<at::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().cpu());
  return out;
}

c10::List<at::Tensor> detached(const std::vector<NamedTensor>& tensors) {
  c10::List<at::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.tensor.detach().cpu());
  return out;
}

std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// Writes bytes through a file descriptor so that short writes and ENOSPC become errors, then fsyncs. The writer
// must not throw into LibTorch's archive writer (it writes again from its destructor), so the first failure is kept
// and reported by sync_and_close(); later bytes are dropped.
class SyncedFile {
 public:
  explicit SyncedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw CheckpointError(fmt::format("cannot create {}: {}", path, std::strerror(errno)));
  }
  ~SyncedFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  std::size_t write(const void* data, std::size_t size) noexcept {
    const char* bytes = static_cast<const char*>(data);
    std::size_t done = 0;
    while (error_ == 0 && done < size) {
      const ssize_t n = ::write(fd_, bytes + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) error_ = n < 0 ? errno : ENOSPC;
      if (n > 0) done += static_cast<std::size_t>(n);
    }
    return size;
  }
  void sync_and_close() {
    if (error_ != 0) throw CheckpointError(fmt::format("writing {} failed: {}", path_, std::strerror(error_)));
    if (::fsync(fd_) != 0) throw CheckpointError(fmt::format("fsync of {} failed: {}", path_, std::strerror(errno)));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw CheckpointError(fmt::format("closing {} failed: {}", path_, std::strerror(errno)));
  }

 private:
  std::string path_;
  int fd_ = -1;
  int error_ = 0;
};

void sync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // the rename is done; a folder that cannot be opened for fsync only weakens durability
  ::fsync(fd);
  ::close(fd);
}

// The checkpoints of `part` ("" for whole models) in `folder`, oldest first; with `temporaries`, the files of writes
// that never finished instead (a process killed while writing leaves its ".pt.tmp").
std::vector<std::pair<std::int64_t, std::string>> checkpoints_in(const std::string& folder, const std::string& part,
                                                                 bool temporaries = false) {
  // Parts are the trainer's own names ("stage1-of-2"): letters, digits and dashes, nothing to escape.
  const std::regex name("checkpoint-([0-9]+)" + (part.empty() ? std::string() : "\\." + part) + "\\.pt" +
                        (temporaries ? "\\.tmp" : ""));
  std::vector<std::pair<std::int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    std::smatch match;
    const std::string file = entry.path().filename().string();
    if (std::regex_match(file, match, name)) found.emplace_back(std::stoll(match[1]), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// Removes the optimizer shards of the checkpoint `main` (a main file's path), or the unfinished shard writes of this
// part.
void remove_optimizer_shards(const std::string& folder, const std::string& part, const std::string& main) {
  const std::string stem = fs::path(main).stem().string();  // "checkpoint-000000038[.part]"
  const std::regex unfinished("checkpoint-[0-9]+" + (part.empty() ? std::string() : "\\." + part) +
                              "\\.optimizer-[0-9]+-of-[0-9]+\\.pt\\.tmp");
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    const std::string file = entry.path().filename().string();
    const bool of_main = !main.empty() && file.rfind(stem + ".optimizer-", 0) == 0;
    if (of_main || (main.empty() && std::regex_match(file, unfinished))) doomed.push_back(entry.path());
  }
  for (const auto& file : doomed) fs::remove(file, ec);
}

// Writes `archive` to `path` through a temporary file (Note [Atomic checkpoints]).
void write_atomically(torch::serialize::OutputArchive& archive, const std::string& path) {
  const std::string temporary = path + ".tmp";
  try {
    SyncedFile file(temporary);
    archive.save_to([&](const void* data, std::size_t size) { return file.write(data, size); });
    file.sync_and_close();
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
      throw CheckpointError(fmt::format("renaming {} to {} failed: {}", temporary, path, std::strerror(errno)));
    }
  } catch (...) {
    std::error_code ec;
    fs::remove(temporary, ec);
    throw;
  }
}

// A pipeline stage's own part of each checkpoint: "stage1-of-2" ("" without a pipeline).
std::string part_name(int stage, int stages) {
  return stages > 1 ? fmt::format("stage{}-of-{}", stage, stages) : "";
}

// Rank 0's outcome, shared: every rank returns normally or throws the same message.
// The trainer's own bookkeeping, under the key "extra" of the metadata (the layout of dtrain-checkpoint-1 files).
nlohmann::json extra_of(const TrainingState& state) {
  const auto& early = state.early_stopping;
  return {{"best_metric", early.best_metric ? nlohmann::json(*early.best_metric) : nlohmann::json()},
          {"epochs_without_improvement", early.epochs_without_improvement},
          {"mid_epoch", state.mid_epoch}};
}

at::Tensor rng_state() {
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

// Every rank's generator state (a byte tensor), one row per rank.
at::Tensor gather_rows(comm::ControlPlane& control, const at::Tensor& state) {
  const at::Tensor mine = state.contiguous();
  const auto* mine_bytes = mine.data_ptr<std::uint8_t>();
  const std::vector<std::uint8_t> gathered =
      control.allgather(std::vector<std::uint8_t>(mine_bytes, mine_bytes + mine.numel()));
  return at::from_blob(const_cast<std::uint8_t*>(gathered.data()), {control.size(), mine.numel()}, at::kByte).clone();
}

c10::Device device_of(const CheckpointContents& contents) {
  return contents.device != nullptr ? contents.device->device() : c10::Device(c10::kCPU);
}

}  // namespace

CheckpointStore::CheckpointStore(std::string folder, int keep, int stage, int stages)
    : folder_(std::move(folder)), keep_(keep), part_(part_name(stage, stages)) {
  if (keep_ < 1) throw CheckpointError(fmt::format("keep must be >= 1 (got {})", keep_));
  std::error_code ec;
  fs::create_directories(folder_, ec);
  if (ec || !fs::is_directory(folder_)) {
    throw CheckpointError(
        fmt::format("cannot create checkpoint folder {}: {}", folder_, ec ? ec.message() : "not a folder"));
  }
}

std::string CheckpointStore::save(comm::ControlPlane& control, const CheckpointContents& contents,
                                  const TrainingState& state) {
  const at::Tensor all_rng = gather_rows(control, rng_state());
  const at::Tensor device_rng = contents.device != nullptr ? contents.device->rng_state() : at::Tensor();
  const at::Tensor all_device_rng = device_rng.defined() ? gather_rows(control, device_rng) : at::Tensor();

  const std::string path = path_for(state.step);
  const bool sharded = contents.optimizer != nullptr && !contents.optimizer_shard_layout.empty();
  auto failed = [&](const std::string& what) {
    const auto previous = latest();
    return fmt::format("writing checkpoint {} failed: {}; {}", path, first_line(what),
                       previous ? "the previous checkpoint " + *previous + " is intact" : "no earlier checkpoint");
  };
  if (sharded) {
    const std::string shard = optimizer_shard_file(path, control.rank(), control.size());
    std::string error;
    try {
      torch::serialize::OutputArchive archive;
      contents.optimizer->save(archive);
      if (!contents.parameter_shards.empty()) {
        archive.write(kParameterShards, c10::IValue(cpu_copies(contents.parameter_shards)));
      }
      write_atomically(archive, shard);
    } catch (const std::exception& e) {
      error = failed(e.what());
    }
    try {
      control.raise_if_any_failed(error);
    } catch (const comm::AgreedError&) {
      std::error_code ec;
      fs::remove(shard, ec);  // the step has no checkpoint: none of its shards stays
      throw;
    }
  }
  std::string error;
  if (control.rank() == 0) {
    try {
      nlohmann::json meta = {{"format", kFormat},
                             {"model", contents.model_name},
                             {"optimizer", contents.optimizer_kind},
                             {"world_size", control.size()},
                             {"device", c10::DeviceTypeName(device_of(contents).type(), /*lower_case=*/true)},
                             {"step", state.step},
                             {"epoch", state.epoch},
                             {"sampler_state", state.sampler_state},
                             {"loss_scale", state.loss_scale},
                             {"loss_scale_clean_steps", state.loss_scale_clean_steps},
                             {"extra", extra_of(state)},
                             {"parameters", signatures(contents.parameters)},
                             {"buffers", signatures(contents.buffers)}};
      if (sharded) meta["optimizer_shards"] = contents.optimizer_shard_layout;
      const bool parameters_in_shards = sharded && !contents.parameter_shards.empty();
      if (parameters_in_shards) meta["parameters_in_shards"] = true;
      torch::serialize::OutputArchive archive;
      archive.write("meta", c10::IValue(meta.dump()));
      if (!parameters_in_shards) archive.write("parameters", c10::IValue(detached(contents.parameters)));
      archive.write("buffers", c10::IValue(detached(contents.buffers)));
      archive.write("rng", all_rng);
      if (all_device_rng.defined()) archive.write("device_rng", all_device_rng);
      if (contents.optimizer != nullptr && !sharded) {
        torch::serialize::OutputArchive optimizer;
        contents.optimizer->save(optimizer);
        archive.write("optimizer", optimizer);
      }
      write_atomically(archive, path);
      sync_folder(folder_);
      auto existing = checkpoints_in(folder_, part_);
      for (std::size_t i = 0; i + static_cast<std::size_t>(keep_) < existing.size(); ++i) {
        std::error_code ec;
        fs::remove(existing[i].second, ec);
        remove_optimizer_shards(folder_, part_, existing[i].second);
      }
      for (const auto& [step, unfinished] : checkpoints_in(folder_, part_, /*temporaries=*/true)) {
        std::error_code ec;
        fs::remove(unfinished, ec);
      }
      remove_optimizer_shards(folder_, part_, "");
    } catch (const std::exception& e) {
      error = failed(e.what());
    }
  }
  try {
    control.raise_if_any_failed(error);
  } catch (const comm::AgreedError&) {
    if (sharded) {
      std::error_code ec;
      fs::remove(optimizer_shard_file(path, control.rank(), control.size()), ec);
    }
    throw;
  }
  return path;
}

std::string CheckpointStore::path_for(std::int64_t step) const {
  return part_.empty() ? fmt::format("{}/checkpoint-{:09d}.pt", folder_, step)
                       : fmt::format("{}/checkpoint-{:09d}.{}.pt", folder_, step, part_);
}

std::optional<std::int64_t> CheckpointStore::latest_step() const {
  auto found = checkpoints_in(folder_, part_);
  if (found.empty()) return std::nullopt;
  return found.back().first;
}

std::optional<std::string> CheckpointStore::latest() const {
  auto found = checkpoints_in(folder_, part_);
  if (found.empty()) return std::nullopt;
  return found.back().second;
}

std::string optimizer_shard_file(const std::string& checkpoint, int rank, int ranks) {
  const std::string stem = checkpoint.substr(0, checkpoint.size() - std::string(".pt").size());
  return fmt::format("{}.optimizer-{}-of-{}.pt", stem, rank, ranks);
}

std::string stage_file_of(const std::string& path, int stage, int stages) {
  if (stages == 1) return path;
  return std::regex_replace(path, std::regex("\\.stage[0-9]+-of-[0-9]+\\.pt$"), "." + part_name(stage, stages) + ".pt");
}

TrainingState load_checkpoint(comm::ControlPlane& control, const std::string& path, CheckpointContents& contents) {
  auto fail = [&](const std::string& what) { throw CheckpointError(fmt::format("checkpoint {}: {}", path, what)); };
  if (!fs::exists(path)) fail("no such file");
  torch::serialize::InputArchive archive;
  nlohmann::json meta;
  try {
    archive.load_from(path, device_of(contents));  // the map location: tensors land on this run's device
    c10::IValue text;
    archive.read("meta", text);
    meta = nlohmann::json::parse(text.toStringRef());
  } catch (const std::exception& e) {
    fail("cannot be read (truncated or not a dtrain checkpoint): " + first_line(e.what()));
  }
  if (meta.value("format", "") != kFormat) fail("unknown format '" + meta.value("format", "") + "'");
  if (meta["model"] != contents.model_name) {
    fail(fmt::format("it holds model '{}', this run trains '{}'", meta["model"].get<std::string>(),
                     contents.model_name));
  }
  if (contents.optimizer != nullptr && meta.value("optimizer", "") != contents.optimizer_kind) {
    fail(fmt::format("it holds the state of optimizer '{}', this run uses '{}'", meta.value("optimizer", ""),
                     contents.optimizer_kind));
  }
  if (meta["world_size"] != control.size()) {
    fail(fmt::format("it was written by {} ranks, this run has {}; resume with the same number of ranks",
                     meta["world_size"].get<int>(), control.size()));
  }
  auto compare = [&](const char* key, const std::vector<NamedTensor>& tensors) {
    const auto saved = meta[key].get<std::vector<std::string>>();
    const auto here = signatures(tensors);
    for (std::size_t i = 0; i < std::max(saved.size(), here.size()); ++i) {
      if (i >= saved.size()) fail(fmt::format("it lacks {}", here[i]));
      if (i >= here.size()) fail(fmt::format("it has {} that the model lacks", saved[i]));
      if (saved[i] != here[i]) fail(fmt::format("it has {} where the model has {}", saved[i], here[i]));
    }
  };
  compare("parameters", contents.parameters);
  compare("buffers", contents.buffers);
  const std::string saved_shards = meta.value("optimizer_shards", "");
  if (contents.optimizer != nullptr && saved_shards != contents.optimizer_shard_layout) {
    if (saved_shards.empty()) fail("its optimizer state is not sharded (--zero-stage 0); resume with --zero-stage 0");
    if (contents.optimizer_shard_layout.empty()) {
      fail("its optimizer state is sharded (--zero-stage 1, 2 or 3); resume with the --zero-stage that wrote it");
    }
    fail(fmt::format("its optimizer shards are cut as {}, this run cuts them as {}", saved_shards,
                     contents.optimizer_shard_layout));
  }
  // Every rank reads its own shard: one rank's problem is every rank's error (no rank goes on training alone).
  torch::serialize::InputArchive shard;
  if (contents.optimizer != nullptr && !saved_shards.empty()) {
    const std::string file = optimizer_shard_file(path, control.rank(), control.size());
    std::string problem;
    if (!fs::exists(file)) {
      problem = fmt::format("checkpoint {}: its optimizer shard {} is missing", path, file);
    } else {
      try {
        shard.load_from(file, device_of(contents));
      } catch (const std::exception& e) {
        problem =
            fmt::format("checkpoint {}: its optimizer shard {} cannot be read: {}", path, file, first_line(e.what()));
      }
    }
    control.raise_if_any_failed(problem);
  }

  try {
    at::NoGradGuard no_grad;
    auto restore = [&](const char* key, const std::vector<NamedTensor>& tensors) {
      c10::IValue list;
      archive.read(key, list);
      const auto saved = list.toTensorList();
      for (std::size_t i = 0; i < tensors.size(); ++i) tensors[i].tensor.copy_(saved.get(i));
    };
    if (meta.value("parameters_in_shards", false)) {
      c10::IValue list;
      shard.read(kParameterShards, list);
      const auto saved = list.toTensorList();
      // The shard layout, compared above, names stage 3 and the shard sizes: this holds unless the file was altered.
      if (saved.size() != contents.parameter_shards.size())
        fail("its optimizer shard holds another number of parameter shards");
      for (std::size_t i = 0; i < saved.size(); ++i) contents.parameter_shards[i].copy_(saved.get(i));
    } else {
      restore("parameters", contents.parameters);
    }
    restore("buffers", contents.buffers);
    if (contents.optimizer != nullptr && !saved_shards.empty()) {
      contents.optimizer->load(shard);
    } else if (contents.optimizer != nullptr) {
      torch::serialize::InputArchive optimizer;
      if (!archive.try_read("optimizer", optimizer)) fail("it has no optimizer state");
      contents.optimizer->load(optimizer);
    }
    at::Tensor rng;
    archive.read("rng", rng);
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    // A copy, not a view: LibTorch 2.11's set_state crashes on a tensor with a storage offset.
    generator.set_state(rng[control.rank()].cpu().clone());
    // The device's own generator only from a run on the same kind of device (a CUDA state means nothing to the CPU).
    at::Tensor device_rng;
    if (contents.device != nullptr &&
        meta.value("device", "cpu") == std::string(c10::DeviceTypeName(device_of(contents).type(), true)) &&
        archive.try_read("device_rng", device_rng)) {
      contents.device->set_rng_state(device_rng[control.rank()].cpu());
    }
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    fail("restoring its state failed: " + first_line(e.what()));
  }

  TrainingState state;
  state.step = meta["step"];
  state.epoch = meta["epoch"];
  state.sampler_state = meta["sampler_state"];
  state.loss_scale = meta["loss_scale"];
  state.loss_scale_clean_steps = meta["loss_scale_clean_steps"];
  const nlohmann::json& extra = meta["extra"];
  state.mid_epoch = extra.value("mid_epoch", false);
  if (extra.contains("best_metric") && !extra["best_metric"].is_null()) {
    state.early_stopping.best_metric = extra["best_metric"].get<double>();
  }
  state.early_stopping.epochs_without_improvement = extra.value("epochs_without_improvement", 0);
  return state;
}

}  // namespace dtrain::runtime
