#pragma once
// DTRAIN_H5_CHECK wraps every HDF5 call: a negative return (HDF5's failure value for herr_t and hid_t alike) throws
// DataError with the caller's context (file, dataset, operation), the call's name and the innermost message of
// HDF5's error stack. HDF5's own printing of that stack is switched off once, so one failure is one line.
// H5Handle closes an identifier with the right H5*close when it goes out of scope.

#include <hdf5.h>

#include <string>

namespace dtrain::io {

[[noreturn]] void throw_hdf5_error(const char* call, const std::string& context);
// Switches off HDF5's automatic error printing (idempotent).
void silence_hdf5_errors();

class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  H5Handle(H5Handle&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  H5Handle& operator=(H5Handle&& other) noexcept;
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }

  hid_t get() const { return id_; }
  void reset();

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

}  // namespace dtrain::io

#define DTRAIN_H5_CHECK(call, context)                                       \
  ([&]() {                                                                   \
    const auto dtrain_h5_rc_ = (call);                                       \
    if (dtrain_h5_rc_ < 0) ::dtrain::io::throw_hdf5_error(#call, (context)); \
    return dtrain_h5_rc_;                                                    \
  }())
