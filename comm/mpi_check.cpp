#include "comm/mpi_check.h"

#include <fmt/format.h>

#include <string_view>

#include "comm/error.h"

namespace dtrain::comm {

void throw_mpi_error(int code, const char* call, const std::string& context) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) {
    length = std::snprintf(text, sizeof(text), "MPI error code %d", code);
  }
  std::string_view name(call);
  name = name.substr(0, name.find('('));
  throw CommError(fmt::format("{}: {} failed: {}", context, name, std::string_view(text, length)));
}

}  // namespace dtrain::comm
