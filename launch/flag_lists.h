// Comma-separated flag values ("1,5,10,25", "a.h5,b.h5"), split once here for
// every program.
#pragma once

#include <sstream>
#include <string>
#include <vector>

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

}  // namespace vmoe
