// env.h - the file system behind an interface, so that storage code (the
// queue) says exactly which operations it needs and what each makes durable,
// and can be tested in memory with power losses at any instant
// (mxsec/base/mem_env.h). Env::Default() is the real one (PosixEnv).
//
// Durability, as POSIX promises it and as MemEnv models it: a file's data is
// durable once it was fsynced (WriteNewFile does); a name (a new file, a
// rename, a link, a removal) is durable only once its directory was synced
// (SyncDir). Until then a power loss may undo the change.
//
// Errors are Status codes, never exceptions, with the message naming the
// path and the system's reason ("/var/spool/mxsec/x: write: No space left on
// device"). Codes callers may branch on:
//   kNotFound  the path (or a directory on it) does not exist (ENOENT);
//   kIoError   the storage failed: EIO, EROFS, EBADF, EFAULT (retrying the
//              same operation will not help);
//   kUnavailable  LockFile only: another holder has the lock (or the system
//              has no memory for locks now);
//   kLimit     ReadFile only: the file is larger than the bound given;
//   kGeneric   any other failure (EACCES, ENOSPC, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mxsec/base/status.h"

namespace mxsec {

// What Stat reports of a file or directory (symbolic links are followed).
struct FileInfo {
  bool is_dir = false;
  bool is_regular = false;
  uint32_t mode = 0;    // permission bits (07777)
  uint64_t size = 0;    // octets
  uint64_t nlink = 0;   // names the file has; 0 once removed (FileLock::Stat)
  int64_t mtime = 0;    // seconds since the epoch, last change of the data
};

// An exclusive, advisory lock on one file (flock(2) LOCK_EX on POSIX), held
// while this object lives: released on destruction, and by the operating
// system when the process dies. Non-copyable: one owner releases it once.
class FileLock {
 public:
  FileLock() = default;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  virtual ~FileLock() = default;
  // The locked file itself (not whatever its name points to now): nlink is 0
  // once every name of it was removed.
  virtual Result<FileInfo> Stat() const = 0;
  // The descriptor that holds the lock, for a process that closes its other
  // descriptors and keeps this one (after fork); -1 when there is none.
  virtual int fd() const { return -1; }
};

class Env {
 public:
  virtual ~Env() = default;

  // The real file system (PosixEnv); never null, never freed.
  static Env* Default();

  // Creates `path`, which must not exist (never follows or replaces
  // anything), with permission bits `mode` whatever the umask; its group is
  // what the system gives a new file there (a set-group-ID directory's
  // group). Writes the `parts` one after another and fsyncs. On return the
  // data is durable, the name not yet (SyncDir). On error nothing is left
  // under `path`.
  virtual Status WriteNewFile(const std::string& path, std::initializer_list<std::string_view> parts,
                              uint32_t mode) = 0;

  // Makes every change of names in directory `dir` made before the call
  // durable (fsync of the directory).
  virtual Status SyncDir(const std::string& dir) = 0;

  // Replaces `to` by `from` atomically: at any instant `to` names the old
  // file or the new one. Durable once the directory is synced.
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;

  // Gives the file `from` the second name `to` unless `to` exists: true when
  // linked, false when `to` exists (nothing changed). Durable once the
  // directory is synced.
  virtual Result<bool> LinkFile(const std::string& from, const std::string& to) = 0;

  // Removes the name `path` (kNotFound when there is none). The file lives
  // on while it has other names or holders (FileLock). Durable once the
  // directory is synced.
  virtual Status RemoveFile(const std::string& path) = 0;

  // The names in directory `dir` ("." and ".." left out), in no order.
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) const = 0;

  // LockFile and ReadFile open only a regular file, never through a
  // symbolic link and never waiting on a FIFO (kGeneric "PATH: not a
  // regular file", "... (a symbolic link)"): what they open is the
  // storage's own file, not something another user of a group-writable
  // directory put in its place to make a privileged reader block or read
  // elsewhere.

  // Takes the exclusive lock on the existing file `path` without waiting:
  // kNotFound when there is no such file, kUnavailable when another holder
  // (another process, or another FileLock of this one) has it.
  virtual Status LockFile(const std::string& path, std::unique_ptr<FileLock>* out) const = 0;

  // The whole content of `path`, at most `max_bytes` octets (kLimit beyond:
  // the caller states the bound of what it reads).
  virtual Result<std::string> ReadFile(const std::string& path, size_t max_bytes) const = 0;

  virtual Result<FileInfo> Stat(const std::string& path) const = 0;

  // Creates directory `path` with `mode` (the umask applies, as mkdir(2));
  // an existing entry of that name is not an error (the caller Stats it).
  // Its parent must exist. Durable once the parent directory is synced.
  virtual Status CreateDir(const std::string& path, uint32_t mode) = 0;

  bool FileExists(const std::string& path) const { return Stat(path).ok(); }
};

// The Status of a system call on `what` ("path" or "path: op") that failed
// with errno `err`: "what: strerror(err)", coded as listed at the top.
Status ErrnoStatus(const std::string& what, int err);

}  // namespace mxsec
