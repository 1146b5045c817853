// temp_queue_dir.h - a scratch queue directory for unit tests that need the
// real filesystem (the queue store has no filesystem seam yet).
//
// TempQueueDir creates a fresh directory under /tmp and names a not yet
// existing "q" inside it as the queue directory; the destructor removes the
// whole tree. Non-copyable: one owner removes it once.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

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

}  // namespace mxsec_test
