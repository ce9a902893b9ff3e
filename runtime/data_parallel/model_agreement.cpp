#include "runtime/data_parallel/model_agreement.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "comm/hash.h"

namespace dtrain::runtime {

namespace {

std::vector<std::string> model_signature(const std::vector<NamedTensor>& parameters,
                                         const std::vector<NamedTensor>& buffers) {
  std::vector<std::string> out;
  for (const auto& p : parameters) out.push_back("parameter " + signature(p));
  for (const auto& b : buffers) out.push_back("buffer " + signature(b));
  return out;
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    out.push_back(text.substr(start, end - start));
  }
  return out;
}

}  // namespace

std::string model_difference(const std::vector<NamedTensor>& parameters, const std::vector<NamedTensor>& buffers,
                             comm::ControlPlane& control) {
  const std::vector<std::string> mine = model_signature(parameters, buffers);
  const std::string my_text = join(mine);
  if (control.same_everywhere(comm::fnv1a(my_text))) return "";
  const std::vector<std::string> theirs = split_lines(control.broadcast(my_text, 0));
  std::string difference;
  for (std::size_t i = 0; i < std::max(mine.size(), theirs.size()) && difference.empty(); ++i) {
    if (i >= mine.size()) {
      difference = fmt::format("rank 0 has {} that this rank lacks", theirs[i]);
    } else if (i >= theirs.size()) {
      difference = fmt::format("this rank has {} that rank 0 lacks", mine[i]);
    } else if (mine[i] != theirs[i]) {
      difference = fmt::format("this rank has {} where rank 0 has {}", mine[i], theirs[i]);
    }
  }
  const std::int64_t first_bad = control.min(static_cast<std::int64_t>(difference.empty() ? INT_MAX : control.rank()));
  if (difference.empty()) difference = fmt::format("rank {} has a different model (see its error)", first_bad);
  return fmt::format("the model differs across ranks on rank {}: {}", control.rank(), difference);
}

}  // namespace dtrain::runtime
