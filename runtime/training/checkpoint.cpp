#include "runtime/training/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <regex>

#include "comm/error.h"
#include "runtime/training/checksums.h"
#include "runtime/training/optimizers.h"

namespace dtrain::runtime {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "dtrain-checkpoint-2";  // 1: before checksums (Note [Verified checkpoints])
constexpr const char* kParameterShards = "dtrain_parameter_shards";  // in a stage 3 optimizer shard file

// Every file starts with its metadata, then that text's own checksum (returned: a manifest records it); the metadata
// holds the checksum of every other entry ("checksums": part name -> checksum).
std::string write_meta(torch::serialize::OutputArchive& archive, nlohmann::json meta, const nlohmann::json& checksums) {
  meta["checksums"] = checksums;
  const std::string text = meta.dump();
  const std::string checksum = checksum_of(text);
  archive.write("meta", c10::IValue(text));
  archive.write("meta_checksum", c10::IValue(checksum));
  return checksum;
}

nlohmann::json layout_json(const ShardLayout& layout) {
  return {{"ranks", layout.ranks},
          {"bucket_plan", fmt::format("{:016x}", layout.plan)},
          {"parameters", layout.parameters},
          {"bucket_numel", layout.numel}};
}

ShardLayout layout_of(const nlohmann::json& meta) {
  ShardLayout layout;
  if (!meta.contains("optimizer_shards")) return layout;
  const nlohmann::json& j = meta["optimizer_shards"];
  layout.ranks = j.at("ranks").get<int>();
  layout.plan = std::stoull(j.at("bucket_plan").get<std::string>(), nullptr, 16);
  layout.parameters = j.at("parameters").get<bool>();
  layout.numel = j.at("bucket_numel").get<std::vector<std::int64_t>>();
  return layout;
}

// Copies in host memory that training does not change while a background write reads them, made into the buffers
// of the previous checkpoint (CheckpointStore::host_buffers_): the same tensors come in the same order every time,
// and a copy into pages already there takes a quarter of the time of a fresh allocation's (measured here: 20 vs
// 90 ms for 100 MB). A GPU tensor's buffer is pinned.
class HostCopier {
 public:
  explicit HostCopier(std::vector<at::Tensor>& buffers) : buffers_(buffers) {}
  at::Tensor operator()(const at::Tensor& t) {
    if (next_ == buffers_.size()) buffers_.emplace_back();
    at::Tensor& buffer = buffers_[next_++];
    if (!buffer.defined() || buffer.sizes() != t.sizes() || buffer.scalar_type() != t.scalar_type()) {
      buffer = at::empty(t.sizes(), t.options().device(at::kCPU).pinned_memory(t.is_cuda()));
    }
    buffer.copy_(t.detach());
    return buffer;
  }
  c10::List<at::Tensor> operator()(const std::vector<at::Tensor>& tensors) {
    c10::List<at::Tensor> out;
    for (const auto& t : tensors) out.push_back((*this)(t));
    return out;
  }
  c10::List<at::Tensor> operator()(const std::vector<NamedTensor>& tensors) {
    c10::List<at::Tensor> out;
    for (const auto& t : tensors) out.push_back((*this)(t.tensor));
    return out;
  }

 private:
  std::vector<at::Tensor>& buffers_;
  std::size_t next_ = 0;
};

std::vector<at::Tensor> optimizer_parameters(torch::optim::Optimizer& optimizer) {
  std::vector<at::Tensor> out;
  for (auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) out.push_back(p);
  }
  return out;
}

// The optimizer's state as plain tensors, each an entry with its own checksum ("optimizer state <i> exp_avg"), and
// under the metadata's "optimizer_state" its groups' options and each parameter's step count and entries: copied in
// a memcpy while training waits (no serialization), and cut element by element on another number of ranks.
std::string optimizer_part(std::size_t parameter, const std::string& name) {
  return fmt::format("optimizer state {} {}", parameter, name);
}

struct OptimizerRecord {
  nlohmann::json meta;
  std::vector<std::string> parts;
  c10::List<at::Tensor> tensors;
};

OptimizerRecord record_of(torch::optim::Optimizer& optimizer, HostCopier& host_copy) {
  OptimizerRecord record;
  nlohmann::json groups = nlohmann::json::array(), parameters = nlohmann::json::array();
  for (std::size_t g = 0; g < optimizer.param_groups().size(); ++g) groups.push_back(group_options(optimizer, g));
  const std::vector<at::Tensor> params = optimizer_parameters(optimizer);
  for (std::size_t i = 0; i < params.size(); ++i) {
    const ParameterState state = parameter_state(optimizer, params[i]);
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [name, t] : state.tensors) {
      names.push_back(name);
      record.parts.push_back(optimizer_part(i, name));
      record.tensors.push_back(host_copy(t));
    }
    parameters.push_back({{"step", state.step}, {"tensors", names}});
  }
  record.meta = {{"groups", groups}, {"parameters", parameters}};
  return record;
}

void write_record(torch::serialize::OutputArchive& archive, nlohmann::json& meta, nlohmann::json& checksums,
                  const OptimizerRecord& record) {
  meta["optimizer_state"] = record.meta;
  for (std::size_t i = 0; i < record.tensors.size(); ++i)
    checksums[record.parts[i]] = checksum_of(record.tensors.get(i));
  archive.write("optimizer_state", c10::IValue(record.tensors));
}

// What a checkpoint holds of an optimizer, read and verified.
struct OptimizerSnapshot {
  std::vector<std::map<std::string, double>> groups;
  std::vector<ParameterState> states;  // per parameter, in the optimizer's order
};

// "" when `snapshot` fits `optimizer` (as many groups and parameters), else what differs.
std::string misfit(torch::optim::Optimizer& optimizer, const OptimizerSnapshot& snapshot) {
  const std::size_t params = optimizer_parameters(optimizer).size();
  if (snapshot.states.size() == params && snapshot.groups.size() == optimizer.param_groups().size()) return "";
  return fmt::format("its optimizer state covers {} parameters in {} groups, this run's optimizer has {} in {}",
                     snapshot.states.size(), snapshot.groups.size(), params, optimizer.param_groups().size());
}

void restore_optimizer(torch::optim::Optimizer& optimizer, const OptimizerSnapshot& snapshot) {
  const std::vector<at::Tensor> params = optimizer_parameters(optimizer);
  for (std::size_t g = 0; g < snapshot.groups.size(); ++g) set_group_options(optimizer, g, snapshot.groups[g]);
  for (std::size_t i = 0; i < params.size(); ++i) set_parameter_state(optimizer, params[i], snapshot.states[i]);
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

// Writes `archive` to `temporary` and fsyncs it (Note [Atomic checkpoints]); a failed write removes it.
void write_synced(torch::serialize::OutputArchive& archive, const std::string& temporary) {
  try {
    SyncedFile file(temporary);
    archive.save_to([&](const void* data, std::size_t size) { return file.write(data, size); });
    file.sync_and_close();
  } catch (...) {
    std::error_code ec;
    fs::remove(temporary, ec);
    throw;
  }
}

// "" or why the rename failed.
std::string renamed(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) == 0) return "";
  return fmt::format("renaming {} to {} failed: {}", from, to, std::strerror(errno));
}

// A pipeline stage's own part of each checkpoint: "stage1-of-2" ("" without a pipeline).
std::string part_name(int stage, int stages) {
  return stages > 1 ? fmt::format("stage{}-of-{}", stage, stages) : "";
}

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

// The seed of rank `rank`'s generator when the checkpoint's `rows` (one state per writing rank) have none for it:
// from the state of the rank it stands in for (rank mod rows) and its own number.
std::uint64_t derived_seed(const at::Tensor& rows, int rank) {
  const std::string text = checksum_of(rows[rank % rows.size(0)]) + fmt::format("/rank {}", rank);
  return std::stoull(checksum_of(text), nullptr, 16);
}

c10::Device device_of(const CheckpointContents& contents) {
  return contents.device != nullptr ? contents.device->device() : c10::Device(c10::kCPU);
}

}  // namespace

CheckpointStore::CheckpointStore(std::string folder, int keep, int stage, int stages)
    : folder_(std::move(folder)), keep_(keep), stages_(stages), part_(part_name(stage, stages)) {
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
  complete(control, /*wait=*/true);  // the next checkpoint waits for the previous write
  const at::Tensor all_rng = gather_rows(control, rng_state());
  const at::Tensor device_rng = contents.device != nullptr ? contents.device->rng_state() : at::Tensor();
  const at::Tensor all_device_rng = device_rng.defined() ? gather_rows(control, device_rng) : at::Tensor();

  const std::string path = path_for(state.step);
  const bool sharded = contents.optimizer != nullptr && contents.optimizer_shards.sharded();
  Pending pending;
  pending.path = path;
  pending.step = state.step;
  pending.previous = latest().value_or("");
  if (sharded) pending.shard = optimizer_shard_file(path, control.rank(), control.size());

  // Host copies of everything written (Note [Background checkpoint writes]): training changes the originals in
  // place while the files are written.
  HostCopier host_copy(host_buffers_);
  auto shard_archive = std::make_shared<torch::serialize::OutputArchive>();
  std::string shard_meta_checksum;
  if (sharded) {
    nlohmann::json shard_meta = {
        {"format", kFormat}, {"step", state.step}, {"rank", control.rank()}, {"ranks", control.size()}};
    nlohmann::json checksums;
    write_record(*shard_archive, shard_meta, checksums, record_of(*contents.optimizer, host_copy));
    if (!contents.parameter_shards.empty()) {
      const c10::List<at::Tensor> shards = host_copy(contents.parameter_shards);
      for (std::size_t i = 0; i < shards.size(); ++i) {
        checksums[fmt::format("parameter shard {}", i)] = checksum_of(shards.get(i));
      }
      shard_archive->write(kParameterShards, c10::IValue(shards));
    }
    shard_meta_checksum = write_meta(*shard_archive, shard_meta, checksums);
  }
  // The manifest: rank 0's main file records the checksum of every shard's metadata.
  std::vector<std::string> shard_checksums;
  if (sharded) {
    const std::vector<std::uint8_t> gathered =
        control.allgather(std::vector<std::uint8_t>(shard_meta_checksum.begin(), shard_meta_checksum.end()));
    const std::size_t width = shard_meta_checksum.size();
    for (int r = 0; r < control.size(); ++r) {
      shard_checksums.emplace_back(gathered.begin() + r * width, gathered.begin() + (r + 1) * width);
    }
  }
  std::shared_ptr<torch::serialize::OutputArchive> main_archive;
  if (control.rank() == 0) {
    main_archive = std::make_shared<torch::serialize::OutputArchive>();
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
    if (sharded) {
      meta["optimizer_shards"] = layout_json(contents.optimizer_shards);
      meta["shard_meta_checksums"] = shard_checksums;
    }
    const bool parameters_in_shards = sharded && !contents.parameter_shards.empty();
    if (parameters_in_shards) meta["parameters_in_shards"] = true;
    nlohmann::json checksums;
    const auto write_named = [&](const char* key, const char* kind, const std::vector<NamedTensor>& tensors) {
      const c10::List<at::Tensor> copies = host_copy(tensors);
      for (std::size_t i = 0; i < copies.size(); ++i) {
        checksums[fmt::format("{} {}", kind, tensors[i].name)] = checksum_of(copies.get(i));
      }
      main_archive->write(key, c10::IValue(copies));
    };
    if (!parameters_in_shards) write_named("parameters", "parameter", contents.parameters);
    write_named("buffers", "buffer", contents.buffers);
    checksums["rng state"] = checksum_of(all_rng);
    main_archive->write("rng", all_rng);
    if (all_device_rng.defined()) {
      checksums["device rng state"] = checksum_of(all_device_rng);
      main_archive->write("device_rng", all_device_rng);
    }
    if (contents.optimizer != nullptr && !sharded) {
      write_record(*main_archive, meta, checksums, record_of(*contents.optimizer, host_copy));
    }
    write_meta(*main_archive, meta, checksums);
  }
  // The copies are made: the rest touches neither the model nor the communicators.
  const std::string shard = pending.shard;
  pending.write = std::async(std::launch::async, [shard, path, shard_archive, main_archive]() {
    const auto start = std::chrono::steady_clock::now();
    WriteOutcome outcome;
    try {
      if (!shard.empty()) write_synced(*shard_archive, shard + ".tmp");
      if (main_archive) write_synced(*main_archive, path + ".tmp");
    } catch (const std::exception& e) {
      outcome.error = first_line(e.what());
    }
    outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return outcome;
  });
  pending_ = std::move(pending);
  return path;
}

void CheckpointStore::remove_files_of(const Pending& pending) const {
  std::error_code ec;
  for (const std::string& file : {pending.shard, pending.path}) {
    if (file.empty()) continue;
    fs::remove(file + ".tmp", ec);
    fs::remove(file, ec);
  }
}

std::optional<CheckpointStore::Written> CheckpointStore::complete(comm::ControlPlane& control, bool wait) {
  if (!pending_) return std::nullopt;
  const bool written = pending_->write.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  if (!wait && control.any(!written)) return std::nullopt;  // some rank still writes: ask again after the next step
  Pending pending = std::move(*pending_);
  pending_.reset();
  const WriteOutcome outcome = pending.write.get();
  const auto failed = [&](const std::string& what) {
    return what.empty()
               ? what
               : fmt::format("writing checkpoint {} failed: {}; {}", pending.path, what,
                             pending.previous.empty() ? "no earlier checkpoint"
                                                      : "the previous checkpoint " + pending.previous + " is intact");
  };
  const auto agree = [&](const std::string& problem) {
    try {
      control.raise_if_any_failed(failed(problem));
    } catch (const comm::AgreedError&) {
      remove_files_of(pending);  // the step has no checkpoint: none of its files stays
      throw;
    }
  };
  agree(outcome.error);
  // Note [Atomic checkpoints]: the shards take their final names first, the main file last.
  std::string problem;
  if (!pending.shard.empty()) problem = renamed(pending.shard + ".tmp", pending.shard);
  agree(problem);
  if (control.rank() == 0) {
    problem = renamed(pending.path + ".tmp", pending.path);
    if (problem.empty()) {
      sync_folder(folder_);
      prune();
    }
  }
  agree(problem);
  return Written{pending.path, pending.step, outcome.seconds};
}

void CheckpointStore::prune() const {
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
}

std::string CheckpointStore::path_for(std::int64_t step) const {
  return part_.empty() ? fmt::format("{}/checkpoint-{:09d}.pt", folder_, step)
                       : fmt::format("{}/checkpoint-{:09d}.{}.pt", folder_, step, part_);
}

std::optional<std::int64_t> CheckpointStore::latest_step(std::int64_t before) const {
  const auto found = checkpoints_in(folder_, part_);
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    if (it->first < before) return it->first;
  }
  return std::nullopt;
}

std::optional<std::string> CheckpointStore::latest(std::int64_t before) const {
  const auto step = latest_step(before);
  return step ? std::optional<std::string>(path_for(*step)) : std::nullopt;
}

std::optional<std::string> CheckpointStore::of_another_pipeline() const {
  const std::regex any("checkpoint-[0-9]+(\\.stage[0-9]+-of-([0-9]+))?\\.pt");
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_, ec)) {
    std::smatch match;
    const std::string file = entry.path().filename().string();
    if (!std::regex_match(file, match, any)) continue;
    const int stages = match[2].matched ? std::stoi(match[2].str()) : 1;
    if (stages != stages_) return entry.path().string();
  }
  return std::nullopt;
}

std::string optimizer_shard_file(const std::string& checkpoint, int rank, int ranks) {
  const std::string stem = checkpoint.substr(0, checkpoint.size() - std::string(".pt").size());
  return fmt::format("{}.optimizer-{}-of-{}.pt", stem, rank, ranks);
}

std::string stage_file_of(const std::string& path, int stage, int stages) {
  if (stages == 1) return path;
  return std::regex_replace(path, std::regex("\\.stage[0-9]+-of-[0-9]+\\.pt$"), "." + part_name(stage, stages) + ".pt");
}

namespace {

// The metadata of a file read by load_from, after its checksum (it holds every other entry's checksum). `file`
// names the file in errors: "checkpoint <path>" or "checkpoint <path>, optimizer shard <path>".
nlohmann::json verified_meta(torch::serialize::InputArchive& archive, const std::string& file) {
  c10::IValue text, checksum;
  archive.read("meta", text);
  if (!archive.try_read("meta_checksum", checksum)) {
    throw CheckpointError(
        fmt::format("{}: it has no checksums (written by a dtrain older than {}); it "
                    "cannot be verified, so it is not resumed",
                    file, kFormat));
  }
  if (checksum_of(text.toStringRef()) != checksum.toStringRef()) {
    throw DamagedCheckpointError(fmt::format("{}: its metadata is damaged (checksum mismatch)", file));
  }
  return nlohmann::json::parse(text.toStringRef());
}

// Reads entry `key` of `archive` (a tensor, or with `count` a list of that many) and checks each against the
// checksum of `parts[i]` in `meta`: a damaged file is found before anything of it reaches the model.
class VerifiedReader {
 public:
  VerifiedReader(torch::serialize::InputArchive& archive, const nlohmann::json& meta, std::string file)
      : archive_(archive), checksums_(meta.at("checksums")), file_(std::move(file)) {}

  at::Tensor tensor(const char* key, const std::string& part) {
    at::Tensor t;
    if (!archive_.try_read(key, t)) damaged(part, "is missing");
    verify(t, part);
    return t;
  }
  std::vector<at::Tensor> list(const char* key, const std::vector<std::string>& parts) {
    c10::IValue value;
    if (!archive_.try_read(key, value) || !value.isTensorList()) damaged(key, "are missing");
    const auto saved = value.toTensorList();
    if (saved.size() != parts.size()) damaged(key, fmt::format("are {}, not {}", saved.size(), parts.size()));
    std::vector<at::Tensor> out;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      out.push_back(saved.get(i));
      verify(out.back(), parts[i]);
    }
    return out;
  }

 private:
  void verify(const at::Tensor& t, const std::string& part) {
    if (!checksums_.contains(part) || checksums_[part] != checksum_of(t))
      damaged(part, "is damaged (checksum mismatch)");
  }
  [[noreturn]] void damaged(const std::string& part, const std::string& how) {
    throw DamagedCheckpointError(fmt::format("{}: its {} {}", file_, part, how));
  }

  torch::serialize::InputArchive& archive_;
  const nlohmann::json& checksums_;
  std::string file_;
};

std::vector<std::string> parts_named(const char* kind, const std::vector<NamedTensor>& tensors) {
  std::vector<std::string> parts;
  for (const auto& t : tensors) parts.push_back(fmt::format("{} {}", kind, t.name));
  return parts;
}

// The optimizer state a file's metadata describes (record_of), its tensors read and verified.
OptimizerSnapshot read_optimizer(VerifiedReader& reader, const nlohmann::json& meta, const std::string& file) {
  if (!meta.contains("optimizer_state")) throw DamagedCheckpointError(file + ": its optimizer state is missing");
  const nlohmann::json& record = meta["optimizer_state"];
  OptimizerSnapshot snapshot;
  for (const auto& group : record.at("groups")) snapshot.groups.push_back(group.get<std::map<std::string, double>>());
  std::vector<std::string> parts;
  for (const auto& parameter : record.at("parameters")) {
    ParameterState state;
    state.step = parameter.at("step").get<std::int64_t>();
    for (const auto& name : parameter.at("tensors")) {
      parts.push_back(optimizer_part(snapshot.states.size(), name.get<std::string>()));
      state.tensors.emplace_back(name.get<std::string>(), at::Tensor());
    }
    snapshot.states.push_back(state);
  }
  const std::vector<at::Tensor> tensors = reader.list("optimizer_state", parts);
  std::size_t next = 0;
  for (ParameterState& state : snapshot.states) {
    for (auto& named : state.tensors) named.second = tensors[next++];
  }
  return snapshot;
}

// This rank's optimizer shard file of the checkpoint, verified: its optimizer state and (stage 3) parameter shards.
struct VerifiedShard {
  OptimizerSnapshot optimizer;
  std::vector<at::Tensor> parameter_shards;
};

// Rank `rank`'s (of `ranks`) optimizer shard file of the checkpoint, verified against its own checksums and the
// main file's manifest (`manifest`: its metadata's checksum); read onto `device`.
VerifiedShard read_shard(const std::string& path, std::int64_t step, int rank, int ranks, const std::string& manifest,
                         std::size_t parameter_shards, const c10::Device& device) {
  const std::string file = optimizer_shard_file(path, rank, ranks);
  const std::string label = fmt::format("checkpoint {}, optimizer shard {}", path, file);
  if (!fs::exists(file)) {
    throw DamagedCheckpointError(fmt::format("checkpoint {}: its optimizer shard {} is missing", path, file));
  }
  torch::serialize::InputArchive shard;
  nlohmann::json meta;
  c10::IValue meta_checksum;
  try {
    shard.load_from(file, device);
    meta = verified_meta(shard, label);
    shard.read("meta_checksum", meta_checksum);
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw DamagedCheckpointError(
        fmt::format("checkpoint {}: its optimizer shard {} cannot be read: {}", path, file, first_line(e.what())));
  }
  if (meta.value("step", std::int64_t{-1}) != step || meta.value("rank", -1) != rank ||
      meta.value("ranks", -1) != ranks || meta_checksum.toStringRef() != manifest) {
    throw DamagedCheckpointError(
        fmt::format("{}: it is not the shard the main file lists (it says step {}, rank {} of {})", label,
                    meta.value("step", std::int64_t{-1}), meta.value("rank", -1), meta.value("ranks", -1)));
  }
  VerifiedReader reader(shard, meta, label);
  VerifiedShard out;
  out.optimizer = read_optimizer(reader, meta, label);
  if (parameter_shards > 0) {
    std::vector<std::string> parts;
    for (std::size_t i = 0; i < parameter_shards; ++i) parts.push_back(fmt::format("parameter shard {}", i));
    out.parameter_shards = reader.list(kParameterShards, parts);
  }
  return out;
}

// Note [Re-sharding]: this rank's shards under `here`, cut from the verified shards `old` of the writing ranks
// (indexed by their rank; only source_ranks(saved, here, rank) are read). `optimizer` is this run's, over this rank's
// shards in bucket order; nothing of it changes here.
struct ReshardedState {
  std::vector<ParameterState> states;        // per bucket
  std::vector<at::Tensor> parameter_shards;  // per bucket, stage 3
  std::vector<std::map<std::string, double>> group_options;
};
ReshardedState reshard(const ShardLayout& saved, const ShardLayout& here, int rank,
                       const std::map<int, VerifiedShard>& old, torch::optim::Optimizer& optimizer) {
  const std::size_t buckets = here.numel.size();
  const std::vector<at::Tensor> mine = optimizer_parameters(optimizer);
  std::map<int, std::vector<ParameterState>> old_states;
  ReshardedState out;
  for (const auto& [from, shard] : old) {
    if (shard.optimizer.states.size() != buckets) {
      throw DamagedCheckpointError(fmt::format("optimizer shard {} holds the state of {} buckets, not {}", from,
                                               shard.optimizer.states.size(), buckets));
    }
    old_states[from] = shard.optimizer.states;
    if (out.group_options.empty()) out.group_options = shard.optimizer.groups;
  }
  for (std::size_t b = 0; b < buckets; ++b) {
    const std::vector<ShardPiece> pieces = pieces_of(saved, here, rank, b);
    // Every old shard of a bucket has the same kind of state and step count; a shard of padding only takes them too.
    ParameterState state;
    if (!old_states.empty()) {
      const ParameterState& like = old_states.begin()->second[b];
      state.step = like.step;
      for (const auto& [name, t] : like.tensors) {
        at::Tensor cut = at::zeros({here.shard_numel(b)}, t.options());
        for (const ShardPiece& piece : pieces) {
          const ParameterState& from = old_states.at(piece.from_rank)[b];
          const auto source = std::find_if(from.tensors.begin(), from.tensors.end(),
                                           [&](const auto& named) { return named.first == name; });
          if (source == from.tensors.end()) {
            throw DamagedCheckpointError(
                fmt::format("optimizer shard {} lacks the {} of bucket {}", piece.from_rank, name, b));
          }
          cut.narrow(0, piece.to_offset, piece.numel).copy_(source->second.narrow(0, piece.from_offset, piece.numel));
        }
        state.tensors.emplace_back(name, cut);
      }
    }
    out.states.push_back(state);
    if (here.parameters) {
      at::Tensor cut = at::zeros({here.shard_numel(b)}, mine[b].options());
      for (const ShardPiece& piece : pieces) {
        cut.narrow(0, piece.to_offset, piece.numel)
            .copy_(old.at(piece.from_rank).parameter_shards.at(b).narrow(0, piece.from_offset, piece.numel));
      }
      out.parameter_shards.push_back(cut);
    }
  }
  return out;
}

}  // namespace

namespace {

// One entry's verdict for inspect_checkpoint: read, shaped and checked on its own, so one damaged entry does not
// hide the others.
CheckpointEntry inspected(torch::serialize::InputArchive& archive, const nlohmann::json& checksums,
                          const std::string& file, const std::string& key, const std::string& part, int list_index) {
  CheckpointEntry entry{file, part, "", ""};
  try {
    at::Tensor t;
    if (list_index < 0) {
      if (!archive.try_read(key, t)) {
        entry.status = "missing";
        return entry;
      }
    } else {
      c10::IValue list;
      if (!archive.try_read(key, list) || !list.isTensorList() ||
          list.toTensorList().size() <= static_cast<std::size_t>(list_index)) {
        entry.status = "missing";
        return entry;
      }
      t = list.toTensorList().get(static_cast<std::size_t>(list_index));
    }
    entry.shape = fmt::format("{} [{}]", c10::toString(t.scalar_type()), fmt::join(t.sizes(), ", "));
    entry.status = checksums.contains(part) && checksums[part] == checksum_of(t) ? "ok" : "damaged (checksum mismatch)";
  } catch (const std::exception& e) {
    entry.status = "cannot be read: " + first_line(e.what());
  }
  return entry;
}

// The part names of a list entry, from the metadata's signatures ("0.weight Float [3, 4]").
std::vector<std::string> named_parts(const nlohmann::json& meta, const char* key, const char* kind) {
  std::vector<std::string> parts;
  for (const auto& signature : meta.value(key, std::vector<std::string>{})) {
    parts.push_back(fmt::format("{} {}", kind, signature.substr(0, signature.find(' '))));
  }
  return parts;
}

// The entries of the optimizer state a file's metadata lists (none without one).
void add_optimizer_entries(CheckpointInspection& out, torch::serialize::InputArchive& archive,
                           const nlohmann::json& meta, const std::string& file) {
  if (!meta.contains("optimizer_state")) return;
  std::size_t index = 0;
  const auto& parameters = meta["optimizer_state"].value("parameters", nlohmann::json::array());
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    for (const auto& name : parameters[i].value("tensors", std::vector<std::string>{})) {
      out.entries.push_back(inspected(archive, meta["checksums"], file, "optimizer_state", optimizer_part(i, name),
                                      static_cast<int>(index++)));
    }
  }
}

}  // namespace

CheckpointInspection inspect_checkpoint(const std::string& path) {
  if (!fs::exists(path)) throw CheckpointError(fmt::format("checkpoint {}: no such file", path));
  torch::serialize::InputArchive archive;
  nlohmann::json meta;
  try {
    archive.load_from(path, c10::Device(c10::kCPU));
    meta = verified_meta(archive, "checkpoint " + path);
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw DamagedCheckpointError(fmt::format("checkpoint {}: cannot be read: {}", path, first_line(e.what())));
  }
  CheckpointInspection out{meta.dump(), "", {}};
  try {
    const ShardLayout layout = layout_of(meta);
    if (layout.sharded()) out.shard_layout = layout.describe();
  } catch (const std::exception& e) {
    out.shard_layout = "unreadable (" + first_line(e.what()) + ")";
  }
  out.entries.push_back({path, "metadata", "", "ok"});
  const nlohmann::json& checksums = meta["checksums"];
  const bool parameters_in_shards = meta.value("parameters_in_shards", false);
  for (const auto& [key, kind] :
       {std::pair<const char*, const char*>{"parameters", "parameter"}, {"buffers", "buffer"}}) {
    if (parameters_in_shards && std::string(key) == "parameters") continue;
    const std::vector<std::string> parts = named_parts(meta, key, kind);
    for (std::size_t i = 0; i < parts.size(); ++i) {
      out.entries.push_back(inspected(archive, checksums, path, key, parts[i], static_cast<int>(i)));
    }
  }
  out.entries.push_back(inspected(archive, checksums, path, "rng", "rng state", -1));
  if (checksums.contains("device rng state")) {
    out.entries.push_back(inspected(archive, checksums, path, "device_rng", "device rng state", -1));
  }
  add_optimizer_entries(out, archive, meta, path);
  if (!meta.contains("optimizer_shards")) return out;
  const int ranks = meta.value("world_size", 0);
  for (int rank = 0; rank < ranks; ++rank) {
    const std::string file = optimizer_shard_file(path, rank, ranks);
    if (!fs::exists(file)) {
      out.entries.push_back({file, "optimizer shard", "", "missing"});
      continue;
    }
    torch::serialize::InputArchive shard;
    nlohmann::json shard_meta;
    try {
      shard.load_from(file, c10::Device(c10::kCPU));
      shard_meta = verified_meta(shard, "optimizer shard " + file);
    } catch (const std::exception& e) {
      out.entries.push_back({file, "metadata", "", first_line(e.what())});
      continue;
    }
    out.entries.push_back({file, "metadata", "", "ok"});
    const nlohmann::json& shard_checksums = shard_meta["checksums"];
    add_optimizer_entries(out, shard, shard_meta, file);
    for (std::size_t i = 0; shard_checksums.contains(fmt::format("parameter shard {}", i)); ++i) {
      out.entries.push_back(inspected(shard, shard_checksums, file, kParameterShards,
                                      fmt::format("parameter shard {}", i), static_cast<int>(i)));
    }
  }
  return out;
}

TrainingState load_checkpoint(comm::ControlPlane& control, const std::string& path, CheckpointContents& contents) {
  auto fail = [&](const std::string& what) { throw CheckpointError(fmt::format("checkpoint {}: {}", path, what)); };
  if (!fs::exists(path)) fail("no such file");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, device_of(contents));  // the map location: tensors land on this run's device
  } catch (const std::exception& e) {
    throw DamagedCheckpointError(
        fmt::format("checkpoint {}: cannot be read (truncated, damaged or not a dtrain "
                    "checkpoint): {}",
                    path, first_line(e.what())));
  }
  nlohmann::json meta;
  try {
    meta = verified_meta(archive, "checkpoint " + path);
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw DamagedCheckpointError(
        fmt::format("checkpoint {}: its metadata cannot be read: {}", path, first_line(e.what())));
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
  const int written_by = meta["world_size"].get<int>();
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
  ShardLayout saved_shards;
  try {
    saved_shards = layout_of(meta);
  } catch (const std::exception& e) {
    fail("its optimizer shard layout cannot be read: " + first_line(e.what()));
  }
  const ShardLayout& here_shards = contents.optimizer_shards;
  if (contents.optimizer != nullptr && !saved_shards.same_buckets(here_shards)) {
    if (!saved_shards.sharded()) {
      fail("its optimizer state is not sharded (--zero-stage 0); resume with --zero-stage 0");
    }
    if (!here_shards.sharded()) {
      fail("its optimizer state is sharded (--zero-stage 1, 2 or 3); resume with the --zero-stage that wrote it");
    }
    fail(
        fmt::format("its optimizer shards are cut as {}, this run cuts them as {} (other gradient buckets: the "
                    "same model, --bucket-mb and --first-bucket-mb resume it on any number of ranks)",
                    saved_shards.describe(), here_shards.describe()));
  }
  const bool parameters_in_shards = meta.value("parameters_in_shards", false);
  if (parameters_in_shards && (!saved_shards.sharded() || contents.optimizer == nullptr)) {
    fail("its parameters are in its optimizer shards (--zero-stage 3); resume with --zero-stage 3");
  }

  // Note [Verified checkpoints]: every entry is read and checked against its checksum before anything is restored.
  VerifiedReader reader(archive, meta, "checkpoint " + path);
  std::vector<at::Tensor> parameters;
  if (!parameters_in_shards) parameters = reader.list("parameters", parts_named("parameter", contents.parameters));
  const std::vector<at::Tensor> buffers = reader.list("buffers", parts_named("buffer", contents.buffers));
  const at::Tensor rng = reader.tensor("rng", "rng state");
  at::Tensor device_rng;
  if (meta["checksums"].contains("device rng state")) device_rng = reader.tensor("device_rng", "device rng state");
  std::optional<OptimizerSnapshot> optimizer;
  if (contents.optimizer != nullptr && !saved_shards.sharded()) {
    optimizer = read_optimizer(reader, meta, "checkpoint " + path);
    const std::string problem = misfit(*contents.optimizer, *optimizer);
    if (!problem.empty()) fail(problem);
  }
  // Every rank reads the shards it needs (its own, or with another number of ranks those its new shards are cut
  // from): one rank's problem is every rank's error (no rank goes on training alone).
  const bool resharded = saved_shards.sharded() && saved_shards.ranks != control.size();
  std::map<int, VerifiedShard> shards;
  ReshardedState recut;
  if (contents.optimizer != nullptr && saved_shards.sharded()) {
    std::string problem;
    try {
      const auto manifest = meta.at("shard_meta_checksums").get<std::vector<std::string>>();
      if (manifest.size() != static_cast<std::size_t>(saved_shards.ranks)) {
        throw DamagedCheckpointError(fmt::format("checkpoint {}: its manifest lists {} shards, not {}", path,
                                                 manifest.size(), saved_shards.ranks));
      }
      const std::vector<int> sources =
          resharded ? source_ranks(saved_shards, here_shards, control.rank()) : std::vector<int>{control.rank()};
      for (int from : sources) {
        shards[from] = read_shard(path, meta["step"].get<std::int64_t>(), from, saved_shards.ranks, manifest[from],
                                  parameters_in_shards ? saved_shards.numel.size() : 0, device_of(contents));
      }
      if (resharded) {
        recut = reshard(saved_shards, here_shards, control.rank(), shards, *contents.optimizer);
      } else {
        const std::string misfits = misfit(*contents.optimizer, shards.at(control.rank()).optimizer);
        if (!misfits.empty()) throw CheckpointError(fmt::format("checkpoint {}: {}", path, misfits));
      }
    } catch (const std::exception& e) {
      problem = first_line(e.what());
    }
    control.raise_if_any_failed(problem);
  }

  try {
    at::NoGradGuard no_grad;
    for (std::size_t i = 0; i < parameters.size(); ++i) contents.parameters[i].tensor.copy_(parameters[i]);
    for (std::size_t i = 0; i < buffers.size(); ++i) contents.buffers[i].tensor.copy_(buffers[i]);
    if (optimizer) restore_optimizer(*contents.optimizer, *optimizer);
    if (saved_shards.sharded() && contents.optimizer != nullptr && !resharded) {
      const VerifiedShard& own = shards.at(control.rank());
      for (std::size_t i = 0; i < own.parameter_shards.size(); ++i) {
        contents.parameter_shards[i].copy_(own.parameter_shards[i]);
      }
      restore_optimizer(*contents.optimizer, own.optimizer);
    }
    if (resharded) {
      for (std::size_t i = 0; i < recut.parameter_shards.size(); ++i) {
        contents.parameter_shards[i].copy_(recut.parameter_shards[i]);
      }
      restore_optimizer(*contents.optimizer, {recut.group_options, recut.states});
    }
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    if (control.rank() < rng.size(0)) {
      // A copy, not a view: LibTorch 2.11's set_state crashes on a tensor with a storage offset.
      generator.set_state(rng[control.rank()].cpu().clone());
    } else {
      // A rank the writing run did not have: a stream of its own, the same in every resume of this checkpoint.
      generator.set_current_seed(derived_seed(rng, control.rank()));
    }
    // The device's own generator only from a run on the same kind of device (a CUDA state means nothing to the CPU),
    // and only for ranks that wrote one; a new rank's device generator keeps the run's seeding.
    if (contents.device != nullptr && device_rng.defined() && control.rank() < device_rng.size(0) &&
        meta.value("device", "cpu") == std::string(c10::DeviceTypeName(device_of(contents).type(), true))) {
      contents.device->set_rng_state(device_rng[control.rank()].cpu());
    }
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
  state.written_by_replicas = written_by;
  return state;
}

}  // namespace dtrain::runtime
