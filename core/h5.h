// Small RAII helpers over the HDF5 C API (datasets now, checkpoints later).
//
// The HDF5 build here is not thread-safe, so every HDF5 call in the project
// must hold h5::mutex(). The helpers below lock it themselves; code that calls
// the C API directly must take h5::lock() first. HDF5's own error printing is
// switched off: failures become vmoe::Error messages naming the file, the
// dataset and the innermost HDF5 error description.
//
// Strings: attributes are written as variable-length UTF-8 strings (no length
// limit, read natively by h5py); fixed-length string attributes are also read.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace vmoe::h5 {

std::recursive_mutex& mutex();

// Locks mutex(); the first call also turns off HDF5's error-stack printing.
std::unique_lock<std::recursive_mutex> lock();

// The innermost description on HDF5's error stack ("" if empty). Call right
// after the failing HDF5 call, with the lock still held.
std::string last_error();
// ": <innermost HDF5 message>", or "" when the stack is empty (for messages).
std::string detail();

// What an hid_t is, which decides how it is closed.
enum class Kind { kFile, kGroup, kDataset, kDataspace, kDatatype, kAttribute, kPropertyList };

// Owns one hid_t; move-only; closing takes the lock.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, Kind kind) : id_(id), kind_(kind) {}
  ~Handle() { reset(); }
  Handle(Handle&& other) noexcept : id_(other.id_), kind_(other.kind_) { other.id_ = -1; }
  Handle& operator=(Handle&& other) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Gives up ownership without closing.
  hid_t release() {
    const hid_t id = id_;
    id_ = -1;
    return id;
  }
  void reset();

 private:
  hid_t id_ = -1;
  Kind kind_ = Kind::kFile;
};

enum class TypeClass { kInteger, kFloat, kString, kOther };

// The on-disk element type of a dataset, enough to validate a schema.
struct Dtype {
  TypeClass type_class = TypeClass::kOther;
  size_t size = 0;
  bool is_signed = false;

  // "uint8", "int32", "float32", "string", ...
  std::string name() const;
  bool operator==(const Dtype&) const = default;
};

// Describes an HDF5 datatype (class, size, sign).
Dtype describe_type(hid_t type);

// The explicit little-endian file type for a native element type, so files
// read the same everywhere.
hid_t file_type_for(hid_t mem_type);

// Element types the helpers read and write (uint8_t, int32_t, int64_t, float).
template <typename T>
hid_t native_type();
template <>
hid_t native_type<uint8_t>();
template <>
hid_t native_type<int32_t>();
template <>
hid_t native_type<int64_t>();
template <>
hid_t native_type<float>();

class Dataset {
 public:
  Dataset() = default;
  Dataset(Handle handle, std::string file_path, std::string name)
      : handle_(std::move(handle)), file_path_(std::move(file_path)), name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  // "/images in /data/train.h5", for messages.
  std::string where() const;
  hid_t id() const { return handle_.get(); }

  std::vector<int64_t> shape() const;
  Dtype dtype() const;

  // Rows are indices along dimension 0; a row is all the remaining dims.
  // Reads rows [first, first + count) into out.
  template <typename T>
  void read_rows(int64_t first, int64_t count, T* out) const {
    read_range(first, count, native_type<T>(), out);
  }
  // Reads the given rows (strictly increasing) into consecutive rows of out:
  // contiguous runs are read with one hyperslab each.
  template <typename T>
  void read_rows(std::span<const int64_t> rows, T* out) const {
    read_list(rows, native_type<T>(), out);
  }
  // Writes rows [first, first + count), growing dimension 0 when needed.
  template <typename T>
  void write_rows(int64_t first, int64_t count, const T* data) {
    write_range(first, count, native_type<T>(), data);
  }
  // Parallel files: every rank calls this together, each with its own rows
  // (count 0 for none); one collective MPI-IO write.
  template <typename T>
  void write_rows_collective(int64_t first, int64_t count, const T* data) {
    write_collective(first, count, native_type<T>(), data);
  }

 private:
  void read_range(int64_t first, int64_t count, hid_t mem_type, void* out) const;
  void read_list(std::span<const int64_t> rows, hid_t mem_type, void* out) const;
  void write_range(int64_t first, int64_t count, hid_t mem_type, const void* data);
  void write_collective(int64_t first, int64_t count, hid_t mem_type, const void* data);
  // A file dataspace with `count` rows selected from `first`, plus its row size.
  Handle select_range(int64_t first, int64_t count, std::vector<hsize_t>& dims) const;

  Handle handle_;
  std::string file_path_;
  std::string name_;
};

// How create_dataset lays out a new dataset.
struct DatasetLayout {
  std::vector<int64_t> shape;  // initial shape; dimension 0 may grow later
  bool growable = true;        // dimension 0 unlimited (requires chunking)
  std::vector<int64_t> chunk;  // chunk shape; empty = contiguous
  bool checksum = false;       // Fletcher32 per chunk (requires chunking)
  bool fill = true;            // false: every element will be written, skip fill values
};

class File {
 public:
  File() = default;

  // Opens an existing file read-only. Errors say whether the file is missing,
  // not HDF5, or truncated/corrupt.
  static File open_read(const std::string& path);
  // Creates (truncating) a file for writing; `checksummed_metadata`: in the
  // HDF5 1.10 format, whose metadata (object headers, B-trees) is checksummed.
  static File create(const std::string& path, bool checksummed_metadata = false);
  // Opens a file made by create(path, true) for collective writing by every
  // rank of `comm` (MPI-IO): datasets and attributes are then created by all
  // ranks with the same arguments, and data written with
  // Dataset::write_rows_collective.
  static File open_parallel(const std::string& path, MPI_Comm comm);

  const std::string& path() const { return path_; }
  hid_t id() const { return handle_.get(); }
  bool is_open() const { return handle_.valid(); }

  bool has_dataset(const std::string& name) const;
  Dataset dataset(const std::string& name) const;
  template <typename T>
  Dataset create_dataset(const std::string& name, const DatasetLayout& layout) {
    return create(name, native_type<T>(), layout);
  }

  bool has_attribute(const std::string& name) const;
  int64_t read_int64_attribute(const std::string& name) const;
  void write_int64_attribute(const std::string& name, int64_t value);
  std::vector<std::string> read_strings_attribute(const std::string& name) const;
  void write_strings_attribute(const std::string& name, const std::vector<std::string>& values);
  // One string as a fixed-length attribute: kept in the object header, which
  // the 1.10 format checksums, not in the global heap that variable-length
  // strings use (unchecksummed, and a damaged one can hang HDF5's reader).
  // read_strings_attribute reads it as one string.
  void write_string_attribute(const std::string& name, const std::string& value);

  void flush();
  // Closes the file, reporting errors (the destructor closes silently).
  void close();

 private:
  File(Handle handle, std::string path) : handle_(std::move(handle)), path_(std::move(path)) {}
  Dataset create(const std::string& name, hid_t mem_type, const DatasetLayout& layout);
  Handle open_attribute(const std::string& name) const;

  Handle handle_;
  std::string path_;
};

}  // namespace vmoe::h5
