#pragma once
// Do the replicas hold the same model? Before any gradient is reduced, the ranks compare one hash of their
// parameters' and buffers' names, shapes and dtypes; where they differ, each rank learns the first difference from
// rank 0's model, so the error names it everywhere instead of a mismatched allreduce later.

#include <string>
#include <vector>

#include "comm/control_plane.h"
#include "runtime/model/named_tensor.h"

namespace dtrain::runtime {

// Collective over `control`: "" on every rank when every rank's model has the same signature, else on every rank
// "the model differs across ranks on rank R: this rank has ... where rank 0 has ..." (or which rank differs).
std::string model_difference(const std::vector<NamedTensor>& parameters, const std::vector<NamedTensor>& buffers,
                             comm::ControlPlane& control);

}  // namespace dtrain::runtime
