// Free space where checkpoints go, and sizes for messages.
#pragma once

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/check.h"

namespace vmoe {

// Free bytes on the file system holding `dir` for an unprivileged writer
// (-1 if unknown).
inline int64_t free_bytes(const std::string& dir) {
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return -1;
  return static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
}

// "12.3 MiB".
inline std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

// Reserves `bytes` of disk for the file `path`, so that writing it up to that
// size cannot meet a full disk: fallocate with FALLOC_FL_KEEP_SIZE (the size
// stays), or where the file system lacks it posix_fallocate (which writes
// zeros and extends the file; HDF5 ignores bytes past its end of data).
// Throws, naming the free and the needed space, when there is no room.
inline void reserve_space(const std::string& path, int64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  VMOE_CHECK(fd >= 0, "cannot open ", path, ": ", std::strerror(errno));
  int error = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(bytes)) == 0 ? 0 : errno;
  const char* emulate = std::getenv("VMOE_TEST_EMULATED_RESERVE");  // tests: the fallback
  if (error == EOPNOTSUPP || error == ENOSYS || (emulate != nullptr && emulate[0] == '1'))
    error = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  ::close(fd);
  if (error == 0) return;
  const std::string dir = std::filesystem::path(path).parent_path().string();
  VMOE_CHECK(error != ENOSPC && error != EDQUOT, "No space left on device: ", dir, " has ",
             mib(free_bytes(dir)), " free, the checkpoint needs about ", mib(bytes));
  fail("cannot reserve ", mib(bytes), " for ", path, ": ", std::strerror(error));
}

}  // namespace vmoe
