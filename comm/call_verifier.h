#pragma once
// Cross-rank check that every rank is about to run the same collective (see Note [Communicator contract]).

#include <mpi.h>

#include <string>

#include "comm/types.h"

namespace dtrain::comm {

// Collective over `comm`: compares kind, sequence number, dtype, count, reduction and root of `info` across ranks
// with one small allreduce. If any rank differs, every rank throws the same CommError listing which ranks called
// what, e.g. "ranks 0,2-3 called allreduce #7 (float32 x 100, sum); rank 1 called allreduce #7 (float32 x 96, sum)".
// `where` names the communicator in that message.
void verify_same_call(MPI_Comm comm, const OpInfo& info, const std::string& where);

}  // namespace dtrain::comm
