#include "core/h5.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/check.h"

namespace vmoe::h5 {
namespace {


herr_t keep_innermost(unsigned n, const H5E_error2_t* error, void* client) {
  // Walking upward, n == 0 is the function that detected the error.
  if (n == 0 && error->desc != nullptr) *static_cast<std::string*>(client) = error->desc;
  return 0;
}

std::vector<hsize_t> to_hsize(const std::vector<int64_t>& v) {
  return std::vector<hsize_t>(v.begin(), v.end());
}

}  // namespace

// Files get explicit little-endian types so they read the same everywhere.
hid_t file_type_for(hid_t mem_type) {
  if (H5Tequal(mem_type, H5T_NATIVE_UINT8) > 0) return H5T_STD_U8LE;
  if (H5Tequal(mem_type, H5T_NATIVE_INT32) > 0) return H5T_STD_I32LE;
  if (H5Tequal(mem_type, H5T_NATIVE_INT64) > 0) return H5T_STD_I64LE;
  if (H5Tequal(mem_type, H5T_NATIVE_FLOAT) > 0) return H5T_IEEE_F32LE;
  fail("internal error: h5::File::create_dataset got an unsupported element type");
}

Dtype describe_type(hid_t type) {
  Dtype d;
  d.size = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      d.type_class = TypeClass::kInteger;
      d.is_signed = H5Tget_sign(type) == H5T_SGN_2;
      break;
    case H5T_FLOAT:
      d.type_class = TypeClass::kFloat;
      d.is_signed = true;
      break;
    case H5T_STRING:
      d.type_class = TypeClass::kString;
      break;
    default:
      d.type_class = TypeClass::kOther;
  }
  return d;
}

std::recursive_mutex& mutex() {
  static std::recursive_mutex m;
  return m;
}

std::unique_lock<std::recursive_mutex> lock() {
  std::unique_lock<std::recursive_mutex> guard(mutex());
  // Per thread because thread-safe HDF5 builds keep one error stack per thread.
  thread_local bool quiet = false;
  if (!quiet) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    quiet = true;
  }
  return guard;
}

std::string detail() {
  const std::string message = last_error();
  return message.empty() ? "" : ": " + message;
}

std::string last_error() {
  auto guard = lock();
  std::string innermost;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, &innermost);
  return innermost;
}

template <>
hid_t native_type<uint8_t>() {
  return H5T_NATIVE_UINT8;
}
template <>
hid_t native_type<int32_t>() {
  return H5T_NATIVE_INT32;
}
template <>
hid_t native_type<int64_t>() {
  return H5T_NATIVE_INT64;
}
template <>
hid_t native_type<float>() {
  return H5T_NATIVE_FLOAT;
}

// ---- Handle -----------------------------------------------------------------

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    kind_ = other.kind_;
    other.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ < 0) return;
  auto guard = lock();
  switch (kind_) {
    case Kind::kFile:
      H5Fclose(id_);
      break;
    case Kind::kGroup:
      H5Gclose(id_);
      break;
    case Kind::kDataset:
      H5Dclose(id_);
      break;
    case Kind::kDataspace:
      H5Sclose(id_);
      break;
    case Kind::kDatatype:
      H5Tclose(id_);
      break;
    case Kind::kAttribute:
      H5Aclose(id_);
      break;
    case Kind::kPropertyList:
      H5Pclose(id_);
      break;
  }
  id_ = -1;
}

// ---- Dtype ------------------------------------------------------------------

std::string Dtype::name() const {
  const std::string bits = std::to_string(size * 8);
  switch (type_class) {
    case TypeClass::kInteger:
      return (is_signed ? "int" : "uint") + bits;
    case TypeClass::kFloat:
      return "float" + bits;
    case TypeClass::kString:
      return "string";
    case TypeClass::kOther:
      break;
  }
  return "an unsupported type (" + std::to_string(size) + " bytes)";
}

// ---- Dataset ----------------------------------------------------------------

std::string Dataset::where() const {
  return name_ + " in " + file_path_;
}

std::vector<int64_t> Dataset::shape() const {
  auto guard = lock();
  Handle space(H5Dget_space(id()), Kind::kDataspace);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0) fail("cannot read the shape of ", where(), detail());
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

Dtype Dataset::dtype() const {
  auto guard = lock();
  Handle type(H5Dget_type(id()), Kind::kDatatype);
  if (!type.valid()) fail("cannot read the element type of ", where(), detail());
  return describe_type(type.get());
}

Handle Dataset::select_range(int64_t first, int64_t count, std::vector<hsize_t>& dims) const {
  Handle space(H5Dget_space(id()), Kind::kDataspace);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 1) fail("cannot read the shape of ", where(), detail());
  dims.resize(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  VMOE_CHECK(first >= 0 && count >= 0 && static_cast<hsize_t>(first + count) <= dims[0], "rows [",
             first, ", ", first + count, ") are outside ", where(), " which has ", dims[0],
             " rows");
  std::vector<hsize_t> start(rank, 0), extent = dims;
  start[0] = static_cast<hsize_t>(first);
  extent[0] = static_cast<hsize_t>(count);
  // No rows selects nothing (a rank without rows still joins a collective write).
  const herr_t selected = count > 0 ? H5Sselect_hyperslab(space.get(), H5S_SELECT_SET,
                                                          start.data(), nullptr, extent.data(),
                                                          nullptr)
                                    : H5Sselect_none(space.get());
  if (selected < 0) fail("cannot select rows of ", where(), detail());
  dims[0] = static_cast<hsize_t>(count);  // now the memory shape
  return space;
}

void Dataset::read_range(int64_t first, int64_t count, hid_t mem_type, void* out) const {
  if (count == 0) return;
  auto guard = lock();
  std::vector<hsize_t> mem_dims;
  Handle file_space = select_range(first, count, mem_dims);
  Handle mem_space(H5Screate_simple(static_cast<int>(mem_dims.size()), mem_dims.data(), nullptr),
                   Kind::kDataspace);
  if (H5Dread(id(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0) {
    fail("cannot read rows [", first, ", ", first + count, ") of ", where(), detail());
  }
}

void Dataset::read_list(std::span<const int64_t> rows, hid_t mem_type, void* out) const {
  if (rows.empty()) return;
  auto guard = lock();
  Handle space(H5Dget_space(id()), Kind::kDataspace);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 1) fail("cannot read the shape of ", where(), detail());
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  size_t row_bytes = H5Tget_size(mem_type);
  for (int d = 1; d < rank; ++d) row_bytes *= dims[d];
  // One read per contiguous run: HDF5 1.10 maps a union of hyperslabs onto
  // chunks element by element, which is far slower than separate reads.
  std::vector<hsize_t> start(rank, 0), extent = dims;
  char* dst = static_cast<char*>(out);
  for (size_t i = 0; i < rows.size();) {
    size_t end = i + 1;
    while (end < rows.size() && rows[end] == rows[end - 1] + 1) ++end;
    VMOE_CHECK(rows[i] >= 0 && static_cast<hsize_t>(rows[end - 1]) < dims[0] &&
                   (i == 0 || rows[i] > rows[i - 1]),
               "internal error: row list for ", where(), " must be increasing and inside [0, ",
               dims[0], "), got row ", rows[i]);
    start[0] = static_cast<hsize_t>(rows[i]);
    extent[0] = static_cast<hsize_t>(end - i);
    Handle mem_space(H5Screate_simple(rank, extent.data(), nullptr), Kind::kDataspace);
    if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, extent.data(),
                            nullptr) < 0 ||
        H5Dread(id(), mem_type, mem_space.get(), space.get(), H5P_DEFAULT, dst) < 0) {
      fail("cannot read rows [", rows[i], ", ", rows[end - 1] + 1, ") of ", where(), detail());
    }
    dst += row_bytes * (end - i);
    i = end;
  }
}

void Dataset::write_range(int64_t first, int64_t count, hid_t mem_type, const void* data) {
  if (count == 0) return;
  auto guard = lock();
  const std::vector<int64_t> current = shape();
  if (first + count > current[0]) {
    std::vector<hsize_t> grown = to_hsize(current);
    grown[0] = static_cast<hsize_t>(first + count);
    if (H5Dset_extent(id(), grown.data()) < 0) {
      fail("cannot grow ", where(), " to ", first + count, " rows", detail());
    }
  }
  std::vector<hsize_t> mem_dims;
  Handle file_space = select_range(first, count, mem_dims);
  Handle mem_space(H5Screate_simple(static_cast<int>(mem_dims.size()), mem_dims.data(), nullptr),
                   Kind::kDataspace);
  if (H5Dwrite(id(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data) < 0) {
    fail("cannot write rows [", first, ", ", first + count, ") of ", where(), detail());
  }
}

void Dataset::write_collective(int64_t first, int64_t count, hid_t mem_type, const void* data) {
  auto guard = lock();
  std::vector<hsize_t> mem_dims;
  Handle file_space = select_range(first, count, mem_dims);
  Handle mem_space(H5Screate_simple(static_cast<int>(mem_dims.size()), mem_dims.data(), nullptr),
                   Kind::kDataspace);
  const herr_t selected = count == 0 ? H5Sselect_none(mem_space.get()) : 0;
  Handle dxpl(H5Pcreate(H5P_DATASET_XFER), Kind::kPropertyList);
  if (selected < 0 || H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE) < 0 ||
      H5Dwrite(id(), mem_type, mem_space.get(), file_space.get(), dxpl.get(), data) < 0) {
    fail("cannot write rows [", first, ", ", first + count, ") of ", where(), detail());
  }
}

// ---- File -------------------------------------------------------------------

File File::open_read(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  VMOE_CHECK(fs::exists(status), path, ": no such file");
  VMOE_CHECK(!fs::is_directory(status), path, ": is a directory, expected an HDF5 file");
  auto guard = lock();
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 < 0) fail(path, ": cannot read the file", detail());
  VMOE_CHECK(is_hdf5 > 0, path, ": not an HDF5 file (no HDF5 signature found)");
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), Kind::kFile);
  if (!file.valid()) fail(path, ": cannot open the HDF5 file (truncated or corrupt?)", detail());
  return File(std::move(file), path);
}

File File::create(const std::string& path, bool checksummed_metadata) {
  auto guard = lock();
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), Kind::kPropertyList);
  // The 1.10 format checksums metadata too (object headers, B-trees), so a
  // damaged file is reported instead of misread; HDF5 >= 1.10 reads it.
  if (checksummed_metadata &&
      H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110) < 0)
    fail(path, ": cannot select the HDF5 1.10 file format", detail());
  Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), Kind::kFile);
  if (!file.valid()) fail(path, ": cannot create the HDF5 file", detail());
  return File(std::move(file), path);
}

File File::open_parallel(const std::string& path, MPI_Comm comm) {
  auto guard = lock();
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), Kind::kPropertyList);
  if (H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL) < 0)
    fail(path, ": cannot set up parallel (MPI-IO) access", detail());
  // Keeps the format the file was created with (1.10 when checksummed).
  if (H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110) < 0)
    fail(path, ": cannot select the HDF5 1.10 file format", detail());
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get()), Kind::kFile);
  if (!file.valid()) fail(path, ": cannot open the HDF5 file for parallel writing", detail());
  return File(std::move(file), path);
}

bool File::has_dataset(const std::string& name) const {
  auto guard = lock();
  const htri_t exists = H5Lexists(id(), name.c_str(), H5P_DEFAULT);
  if (exists < 0) fail("cannot look up ", name, " in ", path_, detail());
  return exists > 0;
}

Dataset File::dataset(const std::string& name) const {
  VMOE_CHECK(has_dataset(name), path_, ": missing dataset ", name);
  auto guard = lock();
  Handle dataset(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), Kind::kDataset);
  if (!dataset.valid()) fail("cannot open ", name, " in ", path_, detail());
  return Dataset(std::move(dataset), path_, name);
}

Dataset File::create(const std::string& name, hid_t mem_type, const DatasetLayout& layout) {
  auto guard = lock();
  const int rank = static_cast<int>(layout.shape.size());
  VMOE_ASSERT(rank >= 1);
  VMOE_ASSERT(layout.chunk.empty() || static_cast<int>(layout.chunk.size()) == rank);
  VMOE_ASSERT(!(layout.growable || layout.checksum) || !layout.chunk.empty());
  std::vector<hsize_t> dims = to_hsize(layout.shape), max_dims = dims;
  if (layout.growable) max_dims[0] = H5S_UNLIMITED;
  Handle space(H5Screate_simple(rank, dims.data(), max_dims.data()), Kind::kDataspace);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), Kind::kPropertyList);
  if (!layout.chunk.empty()) {
    const std::vector<hsize_t> chunk = to_hsize(layout.chunk);
    if (H5Pset_chunk(dcpl.get(), rank, chunk.data()) < 0) {
      fail("cannot set the chunk shape of ", name, " in ", path_, detail());
    }
  }
  if (layout.checksum && H5Pset_fletcher32(dcpl.get()) < 0) {
    fail("cannot enable checksums on ", name, " in ", path_, detail());
  }
  // Parallel HDF5 allocates at creation and would write fill values there
  // first (all the data twice); a writer that writes every element says so.
  if (!layout.fill && H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER) < 0) {
    fail("cannot turn off fill values of ", name, " in ", path_, detail());
  }
  // Names like "params/encoder/block_0/..." create their groups on the way.
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), Kind::kPropertyList);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle dataset(H5Dcreate2(id(), name.c_str(), file_type_for(mem_type), space.get(), lcpl.get(),
                            dcpl.get(), H5P_DEFAULT),
                 Kind::kDataset);
  if (!dataset.valid()) fail("cannot create ", name, " in ", path_, detail());
  return Dataset(std::move(dataset), path_, name);
}

void File::flush() {
  auto guard = lock();
  if (H5Fflush(id(), H5F_SCOPE_LOCAL) < 0) fail("cannot flush ", path_, detail());
}

void File::close() {
  if (!handle_.valid()) return;
  auto guard = lock();
  if (H5Fclose(handle_.release()) < 0) fail("cannot close ", path_, detail());
}

}  // namespace vmoe::h5
