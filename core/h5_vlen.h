// Variable-length rows in HDF5: a 1-D dataset whose element i is a sequence
// of T of any length (HDF5 "vlen", what h5py writes for
// h5py.vlen_dtype(np.uint8)). Encoded images (uint8 JPEG/PNG bytes) and
// sparse multi-labels (int32 class ids) are stored this way.
//
// In memory a block of rows is flat: `data` holds the rows back to back and
// row i is data[offsets[i], offsets[i + 1]), so reads allocate nothing per row
// beyond HDF5's own temporary buffers (reclaimed before returning).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/h5.h"

namespace vmoe::h5 {

// A new growable 1-D vlen dataset of T (uint8_t or int32_t) in `file`, with
// `chunk_rows` rows per chunk. Unchecksummed: HDF5 allows no filters
// (Fletcher32 included) on vlen data.
template <typename T>
Dataset create_vlen_dataset(File& file, const std::string& name, int64_t chunk_rows);

// Appends/overwrites rows [first, first + count) from flat data + offsets
// (count + 1 entries, offsets[0] == 0), growing the dataset when needed.
template <typename T>
void write_vlen_rows(Dataset& dataset, int64_t first, std::span<const int64_t> offsets,
                     const T* data);

// Reads the given rows (strictly increasing) into flat `data` and `offsets`
// (rows.size() + 1 entries), replacing their contents.
template <typename T>
void read_vlen_rows(const Dataset& dataset, std::span<const int64_t> rows, std::vector<T>& data,
                    std::vector<int64_t>& offsets);
// The same, appended: the rows go after `data`'s contents and `offsets`
// (which must end at data.size()) gains their end offsets. No extra copy for
// a batch gathered from several shards.
template <typename T>
void append_vlen_rows(const Dataset& dataset, std::span<const int64_t> rows, std::vector<T>& data,
                      std::vector<int64_t>& offsets);

// True if `dataset` is a 1-D vlen sequence whose base type is `base`
// (e.g. {kInteger, 1, false} for uint8).
bool is_vlen_of(const Dataset& dataset, const Dtype& base);

}  // namespace vmoe::h5
