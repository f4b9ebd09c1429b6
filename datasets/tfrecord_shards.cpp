#include "datasets/tfrecord_shards.h"

#include <filesystem>
#include <limits>

#include "core/check.h"
#include "datasets/dataset_info.h"
#include "datasets/dataset_writer.h"
#include "datasets/encoded_shards.h"
#include "datasets/image_codec.h"
#include "datasets/tfrecord.h"

namespace vmoe {
namespace {

struct Counts {
  int64_t written = 0, skipped = 0;
};

Counts write_shard(const std::string& input, const std::string& path, const DatasetSpec& spec,
                   const TfRecordImport& o, std::vector<std::string>& skipped) {
  EncodedShardWriter shard(path, spec);
  TfRecordReader reader(input);
  std::vector<uint8_t> record;
  Counts counts;
  while (reader.next(record)) {
    const std::string what = str_cat(input, ": record at byte ", reader.offset());
    const auto features = parse_tf_example(record.data(), record.size(), what);
    const auto image = features.find(o.image_key);
    VMOE_CHECK(image != features.end() && image->second.bytes.size() == 1, what, ": no '",
               o.image_key, "' bytes feature holding one image (--image_key names it)");
    const auto label = features.find(o.label_key);
    VMOE_CHECK(label != features.end() && label->second.int64s.size() == 1, what, ": no '",
               o.label_key, "' int64 feature holding one label (--label_key names it)");
    const int64_t y = label->second.int64s[0];
    VMOE_CHECK(y >= 0 && y < spec.num_classes, what, ": label ", y, " is outside [0, ",
               spec.num_classes, ")");
    const auto* bytes = reinterpret_cast<const uint8_t*>(image->second.bytes[0].data());
    const size_t size = image->second.bytes[0].size();
    try {
      read_image_header(bytes, size, what);
    } catch (const std::exception& e) {
      VMOE_CHECK(o.skip_bad, e.what(), " (--skip_bad skips such records)");
      skipped.push_back(e.what());
      ++counts.skipped;
      continue;
    }
    shard.add(bytes, size, static_cast<int32_t>(y));
  }
  counts.written = shard.finish();
  return counts;
}

}  // namespace

TfRecordResult import_tfrecords(const TfRecordImport& o) {
  VMOE_CHECK(!o.class_names.empty(),
             "the number of classes is needed: pass --num_classes=N or "
             "--class_names=FILE (one name per line)");
  VMOE_CHECK(o.height > 0 && o.width > 0, "--image_size must be positive, got ", o.height, "x",
             o.width);
  VMOE_CHECK(o.channels == 1 || o.channels == 3, "--channels must be 1 or 3, got ", o.channels);
  VMOE_CHECK(!o.train_files.empty(), "no training TFRecord files (--input)");
  const DatasetSpec spec{.height = o.height,
                         .width = o.width,
                         .channels = o.channels,
                         .encoded = true,
                         .num_classes = static_cast<int64_t>(o.class_names.size()),
                         .class_names = o.class_names};
  struct Job {
    std::string input, output;
  };
  std::vector<Job> mine;
  for (const auto& [split, files] :
       {std::pair{"train", &o.train_files}, std::pair{"test", &o.test_files}}) {
    const auto n = static_cast<int64_t>(files->size());
    for (int64_t i = o.rank; i < n; i += o.world)
      mine.push_back({(*files)[i], encoded_shard_path(o.output_dir, split, i, n)});
  }
  std::error_code ec;
  std::filesystem::create_directories(o.output_dir, ec);
  VMOE_CHECK(!ec, o.output_dir, ": cannot create the folder: ", ec.message());
  TfRecordResult result;
  int64_t done = 0;
  for (const Job& job : mine) {
    int64_t images = 0;
    if (encoded_shard_complete(job.output, std::numeric_limits<int64_t>::max(), spec)) {
      images = inspect_dataset(job.output).size;
      result.kept += images;
    } else {
      const Counts c = write_shard(job.input, job.output, spec, o, result.skipped_records);
      images = c.written;
      result.written += c.written;
      result.skipped += c.skipped;
    }
    ++done;
    if (o.progress) o.progress(job.output, images, done, static_cast<int64_t>(mine.size()));
  }
  return result;
}

}  // namespace vmoe
