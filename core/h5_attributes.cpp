// h5::File's attributes: 64-bit integers, strings and string lists, read
// and written under h5::lock() (core/h5.h).
#include <cstring>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/h5.h"

namespace vmoe::h5 {

bool File::has_attribute(const std::string& name) const {
  auto guard = lock();
  const htri_t exists = H5Aexists(id(), name.c_str());
  if (exists < 0) fail("cannot look up attribute ", name, " in ", path_, detail());
  return exists > 0;
}

Handle File::open_attribute(const std::string& name) const {
  VMOE_CHECK(has_attribute(name), path_, ": missing attribute ", name);
  Handle attribute(H5Aopen(id(), name.c_str(), H5P_DEFAULT), Kind::kAttribute);
  if (!attribute.valid()) fail("cannot open attribute ", name, " in ", path_, detail());
  return attribute;
}

int64_t File::read_int64_attribute(const std::string& name) const {
  auto guard = lock();
  Handle attribute = open_attribute(name);
  Handle type(H5Aget_type(attribute.get()), Kind::kDatatype);
  Handle space(H5Aget_space(attribute.get()), Kind::kDataspace);
  const Dtype dtype = describe_type(type.get());
  const hssize_t points = H5Sget_simple_extent_npoints(space.get());
  VMOE_CHECK(dtype.type_class == TypeClass::kInteger && points == 1, "attribute ", name, " in ",
             path_, ": expected one integer, found ", points, " value(s) of type ", dtype.name());
  int64_t value = 0;
  if (H5Aread(attribute.get(), H5T_NATIVE_INT64, &value) < 0) {
    fail("cannot read attribute ", name, " in ", path_, detail());
  }
  return value;
}

void File::write_int64_attribute(const std::string& name, int64_t value) {
  auto guard = lock();
  if (has_attribute(name)) H5Adelete(id(), name.c_str());
  Handle space(H5Screate(H5S_SCALAR), Kind::kDataspace);
  Handle attribute(
      H5Acreate2(id(), name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
      Kind::kAttribute);
  if (!attribute.valid() || H5Awrite(attribute.get(), H5T_NATIVE_INT64, &value) < 0) {
    fail("cannot write attribute ", name, " in ", path_, detail());
  }
}

std::vector<std::string> File::read_strings_attribute(const std::string& name) const {
  auto guard = lock();
  Handle attribute = open_attribute(name);
  Handle type(H5Aget_type(attribute.get()), Kind::kDatatype);
  Handle space(H5Aget_space(attribute.get()), Kind::kDataspace);
  VMOE_CHECK(H5Tget_class(type.get()) == H5T_STRING, "attribute ", name, " in ", path_,
             ": expected strings, found ", describe_type(type.get()).name());
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) fail("cannot read the size of attribute ", name, " in ", path_, detail());
  std::vector<std::string> values;
  values.reserve(n);
  Handle mem_type(H5Tcopy(H5T_C_S1), Kind::kDatatype);
  H5Tset_cset(mem_type.get(), H5Tget_cset(type.get()));
  if (H5Tis_variable_str(type.get()) > 0) {
    H5Tset_size(mem_type.get(), H5T_VARIABLE);
    std::vector<char*> buffer(n, nullptr);
    if (H5Aread(attribute.get(), mem_type.get(), buffer.data()) < 0) {
      fail("cannot read attribute ", name, " in ", path_, detail());
    }
    for (char* s : buffer) values.emplace_back(s != nullptr ? s : "");
    H5Dvlen_reclaim(mem_type.get(), space.get(), H5P_DEFAULT, buffer.data());
  } else {
    const size_t size = H5Tget_size(type.get());
    H5Tset_size(mem_type.get(), size);
    // Null-padded: a null-terminated memory type would give up the last byte.
    H5Tset_strpad(mem_type.get(), H5T_STR_NULLPAD);
    std::vector<char> buffer(n * size);
    if (H5Aread(attribute.get(), mem_type.get(), buffer.data()) < 0) {
      fail("cannot read attribute ", name, " in ", path_, detail());
    }
    // Fixed-length strings may be NUL-padded (or, without room, unterminated).
    for (hssize_t i = 0; i < n; ++i) {
      const char* s = buffer.data() + i * size;
      values.emplace_back(s, strnlen(s, size));
    }
  }
  return values;
}

void File::write_string_attribute(const std::string& name, const std::string& value) {
  auto guard = lock();
  if (has_attribute(name)) H5Adelete(id(), name.c_str());
  Handle type(H5Tcopy(H5T_C_S1), Kind::kDatatype);
  H5Tset_size(type.get(), std::max<size_t>(value.size(), 1));  // HDF5 has no 0-byte strings
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const hsize_t n = 1;
  Handle space(H5Screate_simple(1, &n, nullptr), Kind::kDataspace);
  Handle attribute(
      H5Acreate2(id(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
      Kind::kAttribute);
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  if (!attribute.valid() || H5Awrite(attribute.get(), type.get(), padded.data()) < 0) {
    fail("cannot write attribute ", name, " in ", path_, detail());
  }
}

void File::write_strings_attribute(const std::string& name,
                                   const std::vector<std::string>& values) {
  auto guard = lock();
  if (has_attribute(name)) H5Adelete(id(), name.c_str());
  Handle type(H5Tcopy(H5T_C_S1), Kind::kDatatype);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr), Kind::kDataspace);
  std::vector<const char*> pointers;
  for (const std::string& v : values) pointers.push_back(v.c_str());
  Handle attribute(
      H5Acreate2(id(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
      Kind::kAttribute);
  if (!attribute.valid() || H5Awrite(attribute.get(), type.get(), pointers.data()) < 0) {
    fail("cannot write attribute ", name, " in ", path_, detail());
  }
}

}  // namespace vmoe::h5
