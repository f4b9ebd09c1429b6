// Comma-separated and HxW flag values ("1,5,10,25", "a.h5,b.h5"), split once here for
// every program.
#pragma once

#include <charconv>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"

namespace vmoe {

// Every item, empty ones included unless skip_empty (so parsers can name a
// bad empty item, and file lists can tolerate "a.h5,").
inline std::vector<std::string> split_commas(const std::string& text, bool skip_empty = false) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!skip_empty || !item.empty()) out.push_back(item);
  return out;
}

// "HxW" -> {H, W}; "N" -> {N, N}; "" -> {0, 0} (keep the source size). Errors name `flag`.
inline std::pair<int, int> parse_image_size(const std::string& text,
                                            const char* flag = "--image_size") {
  if (text.empty()) return {0, 0};
  int side = 0;
  const auto n = std::from_chars(text.data(), text.data() + text.size(), side);
  if (n.ec == std::errc() && n.ptr == text.data() + text.size() && side > 0) return {side, side};
  const size_t x = text.find('x');
  int height = 0, width = 0;
  const char* end = text.data() + text.size();
  bool ok = x != std::string::npos && x > 0;
  if (ok) {
    const auto h = std::from_chars(text.data(), text.data() + x, height);
    const auto w = std::from_chars(text.data() + x + 1, end, width);
    ok = h.ec == std::errc() && h.ptr == text.data() + x && w.ec == std::errc() && w.ptr == end &&
         x + 1 < text.size() && height > 0 && width > 0;
  }
  if (!ok) {
    std::string message = flag;
    message += " must be HxW or N (for NxN) with positive integers (e.g. 28x28), got '";
    message += text;
    message += "'";
    throw Error(message);
  }
  return {height, width};
}

}  // namespace vmoe
