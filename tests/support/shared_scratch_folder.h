#pragma once
// A scratch folder that every rank of a multi-rank test names alike (rank 0 writes, every rank reads), fresh for
// the current test and removed after it. Collective over MPI_COMM_WORLD, in construction and destruction.

#include <string>

namespace dtrain::testing_support {

class SharedScratchFolder {
 public:
  explicit SharedScratchFolder(const std::string& prefix);
  ~SharedScratchFolder();
  SharedScratchFolder(const SharedScratchFolder&) = delete;
  SharedScratchFolder& operator=(const SharedScratchFolder&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace dtrain::testing_support
