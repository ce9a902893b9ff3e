#include "runtime/model/named_tensor.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace dtrain::runtime {

std::string signature(const NamedTensor& t) {
  return fmt::format("{} {} [{}]", t.name, c10::toString(t.tensor.scalar_type()), fmt::join(t.tensor.sizes(), ", "));
}

std::vector<std::string> signatures(const std::vector<NamedTensor>& tensors) {
  std::vector<std::string> out;
  for (const auto& t : tensors) out.push_back(signature(t));
  return out;
}

}  // namespace dtrain::runtime
