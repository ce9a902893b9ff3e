#pragma once
// How dtrain's DataType and ReduceOp map onto MPI. MPI has no 16-bit floating types, so bfloat16 and float16 travel
// as 2-byte MPI types with user-defined sum/max/min operators that compute in float32 and round back (the same
// rounding LibTorch uses). kAvg is an MPI sum followed by divide_in_place.

#include <mpi.h>

#include "comm/types.h"

namespace dtrain::comm {

MPI_Datatype mpi_datatype(DataType dtype);
MPI_Op mpi_reduce_op(ReduceOp op, DataType dtype);
// buffer[i] /= divisor, in the buffer's own dtype (16-bit floats via float32). For kAvg; floating dtypes only.
void divide_in_place(const Buffer& buffer, int divisor);

}  // namespace dtrain::comm
