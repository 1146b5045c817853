// temp_queue_dir.h - queue directories for unit tests: in memory (MemEnv),
// as most tests use, or on the real file system for the few that test what
// only it does (modes under a umask, a process killed with SIGKILL).
//
// TempQueueDir creates a fresh directory under /tmp and names a not yet
// existing "q" inside it as the queue directory; the destructor removes the
// whole tree. MemQueueDir is the same for a MemEnv: `path` names a queue
// directory not yet made in `env`, in a directory that exists. Both non-copyable: one owner.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "mxsec/base/mem_env.h"

namespace mxsec_test {

class TempQueueDir {
 public:
  explicit TempQueueDir(const char* prefix = "mxsec-test") {
    std::string tmpl = std::string("/tmp/") + prefix + ".XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) root_ = tmpl;
    path = root_ + "/q";
  }
  ~TempQueueDir() {
    // A leftover scratch directory is not worth failing a test over.
    std::error_code ignored;
    if (!root_.empty()) std::filesystem::remove_all(root_, ignored);
  }
  TempQueueDir(const TempQueueDir&) = delete;
  TempQueueDir& operator=(const TempQueueDir&) = delete;

  std::string path;  // the queue directory (created by the code under test)

 private:
  std::string root_;
};

// The names in directory `dir` of `env` (none when it does not exist).
inline std::vector<std::string> FilesIn(const mxsec::MemEnv& env, const std::string& dir) {
  auto names = env.ListDir(dir);
  return names.ok() ? names.value() : std::vector<std::string>{};
}

struct MemQueueDir {
  MemQueueDir() {
    (void)env.CreateDir("/var", 0755);
    (void)env.CreateDir("/var/spool", 0755);
  }
  MemQueueDir(const MemQueueDir&) = delete;
  MemQueueDir& operator=(const MemQueueDir&) = delete;

  std::vector<std::string> Files() const { return FilesIn(env, path); }

  mxsec::MemEnv env;                          // file times from the system clock, as on disk
  const std::string path = "/var/spool/mxsec";  // the queue directory (created by the code under test)
};

}  // namespace mxsec_test
