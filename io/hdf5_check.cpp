#include "io/hdf5_check.h"

#include <fmt/format.h>

#include <mutex>
#include <string_view>

#include "io/data_error.h"

namespace dtrain::io {

namespace {

herr_t keep_innermost(unsigned n, const H5E_error2_t* error, void* data) {
  if (n == 0 && error->desc != nullptr) *static_cast<std::string*>(data) = error->desc;
  return 0;
}

}  // namespace

void silence_hdf5_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

void throw_hdf5_error(const char* call, const std::string& context) {
  std::string detail;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, keep_innermost, &detail);
  H5Eclear2(H5E_DEFAULT);
  std::string_view name(call);
  name = name.substr(0, name.find('('));
  throw DataError(fmt::format("{}: {} failed{}{}", context, name, detail.empty() ? "" : ": ", detail));
}

H5Handle& H5Handle::operator=(H5Handle&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    close_ = other.close_;
    other.id_ = -1;
  }
  return *this;
}

void H5Handle::reset() {
  if (id_ >= 0 && close_ != nullptr) close_(id_);
  id_ = -1;
}

}  // namespace dtrain::io
