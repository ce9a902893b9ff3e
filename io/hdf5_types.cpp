#include "io/hdf5_types.h"

#include "io/manifest.h"

namespace dtrain::io {

hid_t native_type(const std::string& dtype) {
  dtype_size(dtype);  // rejects unknown names
  if (dtype == "uint8") return H5T_NATIVE_UINT8;
  if (dtype == "int32") return H5T_NATIVE_INT32;
  if (dtype == "int64") return H5T_NATIVE_INT64;
  if (dtype == "float32") return H5T_NATIVE_FLOAT;
  return H5T_NATIVE_DOUBLE;
}

hid_t file_type(const std::string& dtype) {
  dtype_size(dtype);
  if (dtype == "uint8") return H5T_STD_U8LE;
  if (dtype == "int32") return H5T_STD_I32LE;
  if (dtype == "int64") return H5T_STD_I64LE;
  if (dtype == "float32") return H5T_IEEE_F32LE;
  return H5T_IEEE_F64LE;
}

std::string dtype_of(hid_t type) {
  const H5T_class_t kind = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (kind == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    if (!is_signed && size == 1) return "uint8";
    if (is_signed && size == 4) return "int32";
    if (is_signed && size == 8) return "int64";
  }
  if (kind == H5T_FLOAT) {
    if (size == 4) return "float32";
    if (size == 8) return "float64";
  }
  return "";
}

}  // namespace dtrain::io
