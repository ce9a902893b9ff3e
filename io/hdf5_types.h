#pragma once
// dtrain's dtype names and HDF5's types: the in-memory (native) type to read and write with, the little-endian file
// type shards are written in, and the check that a dataset found in a file has the dtype the manifest promises.

#include <hdf5.h>

#include <string>

namespace dtrain::io {

hid_t native_type(const std::string& dtype);
hid_t file_type(const std::string& dtype);
// The dtype name of an HDF5 type, or "" if dtrain cannot read it.
std::string dtype_of(hid_t type);

}  // namespace dtrain::io
