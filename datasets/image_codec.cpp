#include "datasets/image_codec.h"

// jpeglib.h needs size_t and FILE declared first.
#include <cstdio>
#include <csetjmp>
#include <cstdlib>
#include <cstring>

#include <jpeglib.h>
#include <jerror.h>  // JWRN_* message codes
#include <png.h>

#include <algorithm>

#include "core/check.h"
#include "datasets/png_reader.h"

namespace vmoe {
namespace {

// Corrupt headers can claim up to 65500^2 (JPEG) or 10^12 (PNG) pixels: refuse
// before allocating rather than die in bad_alloc.
constexpr int64_t kMaxPixels = int64_t{1} << 28;

void check_size(int64_t height, int64_t width, const std::string& what) {
  VMOE_CHECK(height > 0 && width > 0, what, ": image has no pixels (", height, "x", width, ")");
  VMOE_CHECK(height * width <= kMaxPixels, what, ": image too large (", height, "x", width,
             ", at most ", kMaxPixels, " pixels)");
}

void check_image(const Image& image, const char* op) {
  VMOE_CHECK(image.height > 0 && image.width > 0 && (image.channels == 1 || image.channels == 3) &&
                 image.pixels.size() ==
                     static_cast<size_t>(image.height) * image.width * image.channels,
             op, ": need a non-empty 1- or 3-channel image with matching pixels, got ",
             image.height, "x", image.width, "x", image.channels, " with ", image.pixels.size(),
             " bytes");
}

// ---- libjpeg error handling --------------------------------------------------
// libjpeg reports errors through error_exit, which must not return. Throwing
// through libjpeg's C frames is undefined (no unwind tables), so error_exit
// longjmps back to the setjmp in run_protected. Everything that frame and the
// libjpeg calls own lives in the caller's state object (no C++ destructors
// are skipped); the caller then throws normally and destroys that state.
struct JpegErrors {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void on_jpeg_error(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

// Warnings that leave the pixels intact. Everything else (premature end of
// file, bad Huffman code, missing restart marker...) means libjpeg made up
// pixels, so it is an error.
bool harmless_warning(int code) {
  return code == JWRN_EXTRANEOUS_DATA || code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM ||
         code == JWRN_BOGUS_ICC;
}

void on_jpeg_message(j_common_ptr cinfo, int level) {
  // level >= 0 is trace output; never print it (the default writes to stderr).
  if (level < 0 && !harmless_warning(cinfo->err->msg_code)) on_jpeg_error(cinfo);
}

void install_errors(JpegErrors& errors) {
  jpeg_std_error(&errors.pub);
  errors.pub.error_exit = on_jpeg_error;
  errors.pub.emit_message = on_jpeg_message;
  errors.pub.output_message = [](j_common_ptr) {};
  errors.message[0] = '\0';
}

// ---- JPEG decoding -----------------------------------------------------------
struct JpegDecode {
  jpeg_decompress_struct cinfo;
  JpegErrors errors;
  Image image;               // decoded pixels (1, 3 or, for CMYK, 4 channels)
  bool cmyk = false;
  bool adobe = false;        // CMYK from an Adobe file: stored inverted
  JpegDecode() {
    std::memset(&cinfo, 0, sizeof(cinfo));  // jpeg_destroy is a no-op on a zeroed struct
    install_errors(errors);
    cinfo.err = &errors.pub;
  }
  ~JpegDecode() { jpeg_destroy_decompress(&cinfo); }
  JpegDecode(const JpegDecode&) = delete;
  JpegDecode& operator=(const JpegDecode&) = delete;
};

// The two stages of a decode, each returning false if libjpeg reported an
// error. Only trivially destructible locals below each setjmp (see JpegErrors).
bool jpeg_header(JpegDecode* d, const uint8_t* data, size_t size) {
  if (setjmp(d->errors.jump) != 0) return false;
  jpeg_create_decompress(&d->cinfo);
  jpeg_mem_src(&d->cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&d->cinfo, TRUE);
  d->image.height = static_cast<int>(d->cinfo.image_height);
  d->image.width = static_cast<int>(d->cinfo.image_width);
  d->image.channels = d->cinfo.jpeg_color_space == JCS_GRAYSCALE ? 1 : 3;
  return true;
}

bool jpeg_pixels(JpegDecode* d, int channels, int min_height, int min_width) {
  if (setjmp(d->errors.jump) != 0) return false;
  jpeg_decompress_struct& c = d->cinfo;
  if (c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK) {
    c.out_color_space = JCS_CMYK;  // libjpeg cannot convert CMYK to RGB itself
    d->cmyk = true;
    d->adobe = c.saw_Adobe_marker != 0;
  } else if (c.jpeg_color_space == JCS_GRAYSCALE && channels == 1) {
    c.out_color_space = JCS_GRAYSCALE;
  } else {
    c.out_color_space = JCS_RGB;  // gray -> RGB replicates, as convert_channels
  }
  c.scale_num =
      static_cast<unsigned>(jpeg_scale_eighths(d->image.height, d->image.width, min_height, min_width));
  c.scale_denom = 8;
  jpeg_start_decompress(&c);
  const int out_channels = c.output_components;
  d->image.height = static_cast<int>(c.output_height);
  d->image.width = static_cast<int>(c.output_width);
  d->image.channels = out_channels;
  d->image.pixels.resize(static_cast<size_t>(c.output_height) * c.output_width * out_channels);
  const size_t stride = static_cast<size_t>(c.output_width) * out_channels;
  while (c.output_scanline < c.output_height) {
    JSAMPROW rows[16];
    const int n = std::min<int>(16, static_cast<int>(c.output_height - c.output_scanline));
    for (int i = 0; i < n; ++i) rows[i] = d->image.pixels.data() + (c.output_scanline + i) * stride;
    jpeg_read_scanlines(&c, rows, static_cast<JDIMENSION>(n));
  }
  jpeg_finish_decompress(&c);  // reads up to EOI: a missing tail is an error too
  return true;
}

// CMYK to RGB as TensorFlow's decode_jpeg: Adobe files store inverted CMYK.
Image cmyk_to_rgb(const Image& in, bool adobe) {
  const size_t n = static_cast<size_t>(in.height) * in.width;
  Image out{in.height, in.width, 3, std::vector<uint8_t>(n * 3)};
  for (size_t i = 0; i < n; ++i) {
    const int cyan = in.pixels[4 * i], magenta = in.pixels[4 * i + 1],
              yellow = in.pixels[4 * i + 2], black = in.pixels[4 * i + 3];
    const int ink[3] = {cyan, magenta, yellow};
    for (int k = 0; k < 3; ++k) {
      out.pixels[3 * i + k] = static_cast<uint8_t>(
          adobe ? black * ink[k] / 255 : (255 - black) * (255 - ink[k]) / 255);
    }
  }
  return out;
}

Image decode_jpeg(const uint8_t* data, size_t size, int channels, const std::string& what,
                  int min_height, int min_width) {
  JpegDecode d;
  VMOE_CHECK(jpeg_header(&d, data, size), what, ": corrupt JPEG: ", d.errors.message);
  check_size(d.image.height, d.image.width, what);  // before libjpeg allocates the image
  VMOE_CHECK(jpeg_pixels(&d, channels, min_height, min_width), what, ": corrupt JPEG: ",
             d.errors.message);
  Image image = std::move(d.image);
  if (d.cmyk) image = cmyk_to_rgb(image, d.adobe);
  return image.channels == channels ? image : convert_channels(image, channels);
}

// ---- PNG ---------------------------------------------------------------------
// png_image reports errors through its return value and message (it setjmps
// internally), so no handler is needed here; PngImage is png_reader.h's.

void begin_png(PngImage& png, const uint8_t* data, size_t size, const std::string& what) {
  VMOE_CHECK(png_image_begin_read_from_memory(png.get(), data, size) != 0, what,
             ": corrupt PNG header: ", png.get()->message);
  check_size(png.get()->height, png.get()->width, what);
}

int png_channels(const png_image& png) { return (png.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1; }

// libpng stops reading after the image data, so a file cut after it would
// pass; require the IEND chunk (searching back from the end: some writers
// append bytes after it).
bool has_iend(const uint8_t* data, size_t size) {
  static constexpr uint8_t kIend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
  for (size_t i = size; i >= 8 + 12; --i) {
    if (std::memcmp(data + i - 12, kIend, 12) == 0) return true;
  }
  return false;
}

// The same conversions as read_png (png_reader.cpp), from memory.
Image decode_png(const uint8_t* data, size_t size, int channels, const std::string& what) {
  PngImage image;
  begin_png(image, data, size, what);
  VMOE_CHECK(has_iend(data, size), what, ": corrupt PNG: truncated (no IEND chunk)");
  png_image& png = *image.get();
  const int native = png_channels(png);
  const bool alpha = (png.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  // Keep alpha so libpng does not composite onto a background; dropped below.
  png.format =
      (native == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY) | (alpha ? PNG_FORMAT_FLAG_ALPHA : 0U);
  png.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;  // 16-bit data without gAMA is sRGB, not linear
  std::vector<uint8_t> buffer(PNG_IMAGE_SIZE(png));
  VMOE_CHECK(png_image_finish_read(&png, nullptr, buffer.data(), 0, nullptr) != 0, what,
             ": corrupt PNG: ", png.message);
  Image out{static_cast<int>(png.height), static_cast<int>(png.width), native, {}};
  if (!alpha) {
    out.pixels = std::move(buffer);
  } else {
    const size_t pixels = static_cast<size_t>(out.height) * out.width;
    out.pixels.resize(pixels * native);
    for (size_t i = 0; i < pixels; ++i) {
      for (int c = 0; c < native; ++c) out.pixels[i * native + c] = buffer[i * (native + 1) + c];
    }
  }
  return native == channels ? out : convert_channels(out, channels);
}

std::string magic_of(const uint8_t* data, size_t size) {
  std::string out;
  char hex[4];
  for (size_t i = 0; i < std::min<size_t>(size, 8); ++i) {
    std::snprintf(hex, sizeof(hex), i ? " %02x" : "%02x", data[i]);
    out += hex;
  }
  return out.empty() ? std::string("none: 0 bytes") : out;
}

void check_format(ImageFormat format, const uint8_t* data, size_t size, const std::string& what) {
  VMOE_CHECK(format != ImageFormat::kUnknown, what,
             ": unknown image format (not JPEG or PNG; first bytes ", magic_of(data, size), ")");
}

}  // namespace

ImageFormat detect_image_format(const uint8_t* data, size_t size) {
  static constexpr uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (data == nullptr) return ImageFormat::kUnknown;
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return ImageFormat::kJpeg;
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return ImageFormat::kPng;
  return ImageFormat::kUnknown;
}

int jpeg_scale_eighths(int height, int width, int min_height, int min_width) {
  if (min_height <= 0 && min_width <= 0) return 8;
  for (int m : kJpegScales) {
    if (jpeg_scaled_size(height, m) >= min_height && jpeg_scaled_size(width, m) >= min_width) {
      return m;
    }
  }
  return 8;
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  check_image(image, "encode_jpeg");
  VMOE_CHECK(quality >= 1 && quality <= 100, "encode_jpeg: quality must be in 1..100, got ",
             quality);
  // Same pattern as decoding: state outside the setjmp frame.
  struct State {
    jpeg_compress_struct cinfo;
    JpegErrors errors;
    unsigned char* buffer = nullptr;
    unsigned long bytes = 0;
    State() {
      std::memset(&cinfo, 0, sizeof(cinfo));
      install_errors(errors);
      cinfo.err = &errors.pub;
    }
    ~State() {
      jpeg_destroy_compress(&cinfo);
      std::free(buffer);  // jpeg_mem_dest's buffer is malloc'ed
    }
  } state;
  const auto run = [](State* s, const Image* im, int q) -> bool {
    if (setjmp(s->errors.jump) != 0) return false;
    jpeg_compress_struct& c = s->cinfo;
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &s->buffer, &s->bytes);
    c.image_width = static_cast<JDIMENSION>(im->width);
    c.image_height = static_cast<JDIMENSION>(im->height);
    c.input_components = im->channels;
    c.in_color_space = im->channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, q, TRUE);
    if (im->channels == 3) {  // 4:2:0 explicitly (it is also the default)
      c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 2;
      for (int k = 1; k < 3; ++k) c.comp_info[k].h_samp_factor = c.comp_info[k].v_samp_factor = 1;
    }
    jpeg_start_compress(&c, TRUE);
    const size_t stride = static_cast<size_t>(im->width) * im->channels;
    while (c.next_scanline < c.image_height) {
      JSAMPROW row = const_cast<JSAMPROW>(im->pixels.data() + c.next_scanline * stride);
      jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    return true;
  };
  VMOE_CHECK(run(&state, &image, quality), "encode_jpeg: ", state.errors.message);
  return std::vector<uint8_t>(state.buffer, state.buffer + state.bytes);
}

std::vector<uint8_t> encode_png(const Image& image) {
  check_image(image, "encode_png");
  PngImage png;
  png.get()->width = static_cast<png_uint_32>(image.width);
  png.get()->height = static_cast<png_uint_32>(image.height);
  png.get()->format = image.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  png_alloc_size_t bytes = 0;  // first call: the size only
  VMOE_CHECK(png_image_write_to_memory(png.get(), nullptr, &bytes, 0, image.pixels.data(), 0,
                                       nullptr) != 0,
             "encode_png: ", png.get()->message);
  std::vector<uint8_t> out(bytes);
  VMOE_CHECK(png_image_write_to_memory(png.get(), out.data(), &bytes, 0, image.pixels.data(), 0,
                                       nullptr) != 0,
             "encode_png: ", png.get()->message);
  out.resize(bytes);
  return out;
}

ImageHeader read_image_header(const uint8_t* data, size_t size, const std::string& what) {
  const ImageFormat format = detect_image_format(data, size);
  check_format(format, data, size, what);
  if (format == ImageFormat::kJpeg) {
    JpegDecode d;
    VMOE_CHECK(jpeg_header(&d, data, size), what, ": corrupt JPEG: ", d.errors.message);
    check_size(d.image.height, d.image.width, what);
    return {format, d.image.height, d.image.width, d.image.channels};
  }
  PngImage png;
  begin_png(png, data, size, what);
  return {format, static_cast<int>(png.get()->height), static_cast<int>(png.get()->width),
          png_channels(*png.get())};
}

Image decode_image(const uint8_t* data, size_t size, int channels, const std::string& what,
                   int min_height, int min_width) {
  VMOE_CHECK(channels == 1 || channels == 3, what, ": can decode to 1 or 3 channels, not ",
             channels);
  const ImageFormat format = detect_image_format(data, size);
  check_format(format, data, size, what);
  if (format == ImageFormat::kJpeg) {
    return decode_jpeg(data, size, channels, what, min_height, min_width);
  }
  return decode_png(data, size, channels, what);
}

}  // namespace vmoe
