#include "core/h5_vlen.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"

namespace vmoe::h5 {
namespace {

// The file's and memory's vlen types of T.
Handle vlen_type(hid_t base) {
  return Handle(H5Tvlen_create(base), Kind::kDatatype);
}

}  // namespace

template <typename T>
Dataset create_vlen_dataset(File& file, const std::string& name, int64_t chunk_rows) {
  auto guard = lock();
  const hsize_t dims = 0, max_dims = H5S_UNLIMITED, chunk = static_cast<hsize_t>(chunk_rows);
  Handle space(H5Screate_simple(1, &dims, &max_dims), Kind::kDataspace);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), Kind::kPropertyList);
  Handle type = vlen_type(file_type_for(native_type<T>()));
  // No Fletcher32: HDF5 allows no filters on vlen data.
  if (H5Pset_chunk(dcpl.get(), 1, &chunk) < 0) {
    fail("cannot set the layout of ", name, " in ", file.path(), detail());
  }
  Handle dataset(H5Dcreate2(file.id(), name.c_str(), type.get(), space.get(), H5P_DEFAULT,
                            dcpl.get(), H5P_DEFAULT),
                 Kind::kDataset);
  if (!dataset.valid()) fail("cannot create ", name, " in ", file.path(), detail());
  return Dataset(std::move(dataset), file.path(), name);
}

template <typename T>
void write_vlen_rows(Dataset& dataset, int64_t first, std::span<const int64_t> offsets,
                     const T* data) {
  VMOE_ASSERT(!offsets.empty() && offsets[0] == 0);
  const hsize_t count = offsets.size() - 1;
  if (count == 0) return;
  std::vector<hvl_t> rows(count);
  for (hsize_t i = 0; i < count; ++i) {
    rows[i].len = static_cast<size_t>(offsets[i + 1] - offsets[i]);
    rows[i].p = const_cast<T*>(data + offsets[i]);  // HDF5 only reads it
  }
  auto guard = lock();
  const hsize_t start = static_cast<hsize_t>(first), end = start + count;
  Handle space(H5Dget_space(dataset.id()), Kind::kDataspace);
  hsize_t size = 0;
  H5Sget_simple_extent_dims(space.get(), &size, nullptr);
  if (end > size) {
    if (H5Dset_extent(dataset.id(), &end) < 0) {
      fail("cannot grow ", dataset.where(), " to ", end, " rows", detail());
    }
    space = Handle(H5Dget_space(dataset.id()), Kind::kDataspace);
  }
  Handle mem_space(H5Screate_simple(1, &count, nullptr), Kind::kDataspace);
  Handle type = vlen_type(native_type<T>());
  if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr) < 0 ||
      H5Dwrite(dataset.id(), type.get(), mem_space.get(), space.get(), H5P_DEFAULT,
               rows.data()) < 0) {
    fail("cannot write rows [", first, ", ", end, ") of ", dataset.where(), detail());
  }
}

template <typename T>
void read_vlen_rows(const Dataset& dataset, std::span<const int64_t> rows, std::vector<T>& data,
                    std::vector<int64_t>& offsets) {
  data.clear();
  offsets.assign(1, 0);
  append_vlen_rows(dataset, rows, data, offsets);
}

template <typename T>
void append_vlen_rows(const Dataset& dataset, std::span<const int64_t> rows, std::vector<T>& data,
                      std::vector<int64_t>& offsets) {
  VMOE_ASSERT(!offsets.empty() && offsets.back() == static_cast<int64_t>(data.size()));
  if (rows.empty()) return;
  auto guard = lock();
  Handle space(H5Dget_space(dataset.id()), Kind::kDataspace);
  hsize_t size = 0;
  if (!space.valid() || H5Sget_simple_extent_ndims(space.get()) != 1) {
    fail("cannot read the shape of ", dataset.where(), " (expected a 1-D vlen dataset)",
         detail());
  }
  H5Sget_simple_extent_dims(space.get(), &size, nullptr);
  for (size_t i = 0; i < rows.size(); ++i) {
    VMOE_CHECK(rows[i] >= 0 && static_cast<hsize_t>(rows[i]) < size &&
                   (i == 0 || rows[i] > rows[i - 1]),
               "internal error: row list for ", dataset.where(),
               " must be increasing and inside [0, ", size, "), got row ", rows[i]);
  }
  // One read of every row (an element selection): HDF5's cost per read call
  // dominates small rows, and shuffled rows rarely form runs.
  Handle type = vlen_type(native_type<T>());
  const hsize_t count = rows.size();
  std::vector<hsize_t> coords(rows.begin(), rows.end());
  std::vector<hvl_t> buffer(count, hvl_t{0, nullptr});
  Handle mem_space(H5Screate_simple(1, &count, nullptr), Kind::kDataspace);
  if (H5Sselect_elements(space.get(), H5S_SELECT_SET, count, coords.data()) < 0 ||
      H5Dread(dataset.id(), type.get(), mem_space.get(), space.get(), H5P_DEFAULT,
              buffer.data()) < 0) {
    fail("cannot read ", count, " rows (", rows.front(), " to ", rows.back(), ") of ",
         dataset.where(), detail());
  }
  size_t total = data.size();
  for (const hvl_t& row : buffer) total += row.len;
  data.reserve(total);
  for (const hvl_t& row : buffer) {
    const T* p = static_cast<const T*>(row.p);
    data.insert(data.end(), p, p + row.len);
    offsets.push_back(static_cast<int64_t>(data.size()));
  }
  H5Dvlen_reclaim(type.get(), mem_space.get(), H5P_DEFAULT, buffer.data());
}

bool is_vlen_of(const Dataset& dataset, const Dtype& base) {
  auto guard = lock();
  Handle type(H5Dget_type(dataset.id()), Kind::kDatatype);
  if (!type.valid() || H5Tget_class(type.get()) != H5T_VLEN) return false;
  Handle super(H5Tget_super(type.get()), Kind::kDatatype);
  return super.valid() && describe_type(super.get()) == base;
}

template Dataset create_vlen_dataset<uint8_t>(File&, const std::string&, int64_t);
template Dataset create_vlen_dataset<int32_t>(File&, const std::string&, int64_t);
template void write_vlen_rows<uint8_t>(Dataset&, int64_t, std::span<const int64_t>,
                                       const uint8_t*);
template void write_vlen_rows<int32_t>(Dataset&, int64_t, std::span<const int64_t>,
                                       const int32_t*);
template void read_vlen_rows<uint8_t>(const Dataset&, std::span<const int64_t>,
                                      std::vector<uint8_t>&, std::vector<int64_t>&);
template void read_vlen_rows<int32_t>(const Dataset&, std::span<const int64_t>,
                                      std::vector<int32_t>&, std::vector<int64_t>&);
template void append_vlen_rows<uint8_t>(const Dataset&, std::span<const int64_t>,
                                        std::vector<uint8_t>&, std::vector<int64_t>&);
template void append_vlen_rows<int32_t>(const Dataset&, std::span<const int64_t>,
                                        std::vector<int32_t>&, std::vector<int64_t>&);

}  // namespace vmoe::h5
