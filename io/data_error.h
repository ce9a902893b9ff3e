#pragma once

#include <stdexcept>

namespace dtrain::io {

// Bad input data: a missing, truncated or corrupt shard, a manifest that disagrees with its files, a wrong dtype or
// shape. The message names the file and what is wrong with it.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace dtrain::io
