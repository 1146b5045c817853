// mem_env.h - an Env held in memory, for tests of storage code: no files
// left behind, locks that conflict within one process, storage that fails on
// demand, and power losses at any instant.
//
// What a power loss keeps (AfterPowerLoss): of each file, the data as last
// fsynced (OverwriteFile is not); of the names (new files, renames, links,
// removals) made since their directory's last SyncDir, either none
// (PowerLoss::kPendingNamesLost, env.h's contract in its strictest reading)
// or all (kPendingNamesKept: a file system that wrote them in order, as a
// journal does). Taken just before each change (SetChangeHook), the two
// readings give every state a power loss can leave on such a file system:
// the changes since the last sync lost, or kept up to that instant.
// Directories themselves are kept (a simplification: storage code makes its
// directory before it keeps anything there). Locks are not kept: they
// belong to processes, and a power loss ends them all.
//
// Paths are absolute ("/q/ID.msg"); "/" exists from the start. Modes are
// kept as given (no umask). Thread-safe. A FileLock may outlive its MemEnv.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "mxsec/base/clock.h"
#include "mxsec/base/env.h"

namespace mxsec {

enum class PowerLoss { kPendingNamesLost, kPendingNamesKept };

class MemEnv : public Env {
 public:
  // File times come from `clock` (a FakeClock in tests), which outlives the MemEnv.
  explicit MemEnv(Clock* clock = SystemClock());
  ~MemEnv() override;
  MemEnv(const MemEnv&) = delete;
  MemEnv& operator=(const MemEnv&) = delete;

  Status WriteNewFile(const std::string& path, std::initializer_list<std::string_view> parts,
                      uint32_t mode) override;
  Status SyncDir(const std::string& dir) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Result<bool> LinkFile(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) const override;
  Status LockFile(const std::string& path, std::unique_ptr<FileLock>* out) const override;
  Result<std::string> ReadFile(const std::string& path, size_t max_bytes) const override;
  Result<FileInfo> Stat(const std::string& path) const override;
  Status CreateDir(const std::string& path, uint32_t mode) override;

  // What a power loss at this instant leaves, as a new MemEnv (on the same
  // clock); this one goes on unchanged, as the process that "died" would.
  std::unique_ptr<MemEnv> AfterPowerLoss(PowerLoss reading = PowerLoss::kPendingNamesLost) const;

  // Called before every change (op is "write", "sync", "rename", "link",
  // "remove" or "mkdir"; path the file or directory changed: for rename and
  // link the new name), outside the MemEnv's lock: it may call
  // AfterPowerLoss to take a power loss just before the change. A Status
  // other than ok fails the operation with it, nothing changed (a disk that
  // fails). An empty hook (the default) lets everything through.
  using ChangeHook = std::function<Status(std::string_view op, const std::string& path)>;
  void SetChangeHook(ChangeHook hook);

  // Replaces the data of the existing file `path` in place (its names and
  // its locks stay), without fsync: what a program that opens it with
  // O_TRUNC and writes does. kNotFound when there is no such file.
  Status OverwriteFile(const std::string& path, std::string_view data);

  struct State;  // the files, directories and locks (env_mem.cc)

 private:
  explicit MemEnv(std::shared_ptr<State> state);
  Status BeforeChange(std::string_view op, const std::string& path) const;

  std::shared_ptr<State> state_;  // shared with the FileLocks it hands out
};

}  // namespace mxsec
