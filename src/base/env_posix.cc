// env_posix.cc - Env on the real file system (POSIX calls, flock(2) locks):
// see env.h for what each operation promises.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mxsec/base/env.h"

namespace mxsec {

Status ErrnoStatus(const std::string& what, int err) {
  std::string message = what + ": " + strerror(err);
  if (err == ENOENT) return Status::NotFound(message);
  if (err == EIO || err == EROFS || err == EBADF || err == EFAULT) return Status::IoError(message);
  return Status::Error(message);
}

namespace {

Status Errno(const std::string& what) { return ErrnoStatus(what, errno); }

FileInfo InfoOf(const struct stat& st) {
  FileInfo info;
  info.is_dir = S_ISDIR(st.st_mode);
  info.is_regular = S_ISREG(st.st_mode);
  info.mode = st.st_mode & 07777;
  info.size = static_cast<uint64_t>(st.st_size);
  info.nlink = st.st_nlink;
  info.mtime = st.st_mtime;
  return info;
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(path + ": write");
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Opens `path` for reading if it is a regular file (env.h): O_NOFOLLOW
// refuses a symbolic link as the last component (ELOOP), O_NONBLOCK makes the open
// of a FIFO return at once (it changes nothing for a regular file), and the
// fstat then refuses anything but a regular file. -1 with `error` set.
int OpenRegularFile(const std::string& path, Status* error) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    // ELOOP: the name is a symbolic link (or one on the way loops).
    *error = errno == ELOOP ? Status::Error(path + ": not a regular file (a symbolic link)") : Errno(path);
    return -1;
  }
  struct stat st{};
  if (fstat(fd, &st) != 0) *error = Errno(path + ": fstat");
  else if (!S_ISREG(st.st_mode)) *error = Status::Error(path + ": not a regular file");
  else return fd;
  close(fd);
  return -1;
}

// The descriptor holding a flock(2); closing it releases the lock (unless a
// forked child still has the open file).
class PosixFileLock : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override { close(fd_); }
  Result<FileInfo> Stat() const override {
    struct stat st{};
    if (fstat(fd_, &st) != 0) return Errno("fstat");
    return InfoOf(st);
  }
  int fd() const override { return fd_; }

 private:
  const int fd_;
};

class PosixEnv : public Env {
 public:
  Status WriteNewFile(const std::string& path, std::initializer_list<std::string_view> parts,
                      uint32_t mode) override {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
    if (fd < 0) return Errno(path + ": create");
    // The umask may have taken bits away; the caller's mode is the file's.
    Status s = fchmod(fd, static_cast<mode_t>(mode)) == 0 ? Status::Ok() : Errno(path + ": chmod");
    for (std::string_view part : parts)
      if (s.ok()) s = WriteAll(fd, part, path);
    if (s.ok() && fsync(fd) != 0) s = Errno(path + ": fsync");
    close(fd);  // after a successful fsync the data is on disk whatever close says
    if (!s.ok()) unlink(path.c_str());
    return s;
  }

  Status SyncDir(const std::string& dir) override {
    int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno(dir + ": open");
    Status s = fsync(fd) == 0 ? Status::Ok() : Errno(dir + ": fsync");
    close(fd);
    return s;
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (rename(from.c_str(), to.c_str()) != 0) return Errno(to + ": rename");
    return Status::Ok();
  }

  Result<bool> LinkFile(const std::string& from, const std::string& to) override {
    if (link(from.c_str(), to.c_str()) == 0) return true;
    if (errno == EEXIST) return false;
    return Errno(to + ": link");
  }

  Status RemoveFile(const std::string& path) override {
    if (unlink(path.c_str()) != 0) return Errno(path + ": unlink");
    return Status::Ok();
  }

  Result<std::vector<std::string>> ListDir(const std::string& dir) const override {
    DIR* d = opendir(dir.c_str());
    if (!d) return Errno(dir + ": opendir");
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(std::move(n));
    }
    closedir(d);
    return names;
  }

  Status LockFile(const std::string& path, std::unique_ptr<FileLock>* out) const override {
    Status opened;
    int fd = OpenRegularFile(path, &opened);
    if (fd < 0) return opened;
    auto lock = std::make_unique<PosixFileLock>(fd);  // closes fd on every return below
    // EWOULDBLOCK: another holder; ENOLCK: no memory for locks now. Both may succeed later.
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) return Status::Unavailable(path + ": flock: " + strerror(errno));
    *out = std::move(lock);
    return Status::Ok();
  }

  Result<std::string> ReadFile(const std::string& path, size_t max_bytes) const override {
    Status opened;
    int fd = OpenRegularFile(path, &opened);
    if (fd < 0) return opened;
    std::string out;
    Status s;
    char buf[65536];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        s = Errno(path + ": read");
        break;
      }
      if (n == 0) break;
      if (static_cast<size_t>(n) > max_bytes - out.size()) {
        s = Status::Limit(path + ": larger than " + std::to_string(max_bytes) + " octets");
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    if (!s.ok()) return s;
    return out;
  }

  Result<FileInfo> Stat(const std::string& path) const override {
    struct stat st{};
    if (stat(path.c_str(), &st) != 0) return Errno(path);
    return InfoOf(st);
  }

  Status CreateDir(const std::string& path, uint32_t mode) override {
    if (mkdir(path.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) return Errno(path);
    return Status::Ok();
  }
};

}  // namespace

Env* Env::Default() {
  static PosixEnv env;
  return &env;
}

}  // namespace mxsec
