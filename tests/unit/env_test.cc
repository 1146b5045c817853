// env_test.cc - the Env contract (env.h), the same checks on the real file
// system (PosixEnv, in a scratch directory) and in memory (MemEnv); then
// what only MemEnv does: power losses in both readings and a failing disk.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "temp_queue_dir.h"
#include "mxsec/base/env.h"
#include "mxsec/base/mem_env.h"

using namespace mxsec;

namespace {

std::vector<std::string> Sorted(Result<std::vector<std::string>> names) {
  REQUIRE_MESSAGE(names.ok(), names.error());
  std::vector<std::string> v = names.value();
  std::sort(v.begin(), v.end());
  return v;
}

// Every operation of the contract on `env`, in directory `dir` (made here; its parent exists).
void CheckContract(Env* env, const std::string& dir) {
  REQUIRE(env->CreateDir(dir, 0750).ok());
  REQUIRE(env->CreateDir(dir, 0750).ok());  // an existing entry is not an error
  auto dir_info = env->Stat(dir);
  REQUIRE(dir_info.ok());
  CHECK(dir_info->is_dir);
  const std::string a = dir + "/a", b = dir + "/b";

  // WriteNewFile: exclusive, the mode whatever the umask, the parts in order.
  REQUIRE(env->WriteNewFile(a, {"hello ", "world"}, 0640).ok());
  Status again = env->WriteNewFile(a, {"x"}, 0640);
  CHECK_FALSE(again.ok());
  CHECK_MESSAGE(again.message().find(a + ": create: File exists") == 0, again.message());
  CHECK(env->ReadFile(a, 1000).value() == "hello world");
  auto info = env->Stat(a);
  REQUIRE(info.ok());
  CHECK(info->is_regular);
  CHECK(info->mode == 0640);
  CHECK(info->size == 11);
  CHECK(info->nlink == 1);
  CHECK(env->SyncDir(dir).ok());

  // ReadFile: the caller's bound.
  CHECK(env->ReadFile(a, 11).ok());
  CHECK(env->ReadFile(a, 10).status().IsLimit());
  CHECK(env->ReadFile(dir + "/none", 10).status().IsNotFound());

  // LinkFile: a second name unless it exists.
  CHECK(env->LinkFile(a, b).value() == true);
  CHECK(env->LinkFile(a, b).value() == false);
  CHECK(env->Stat(a)->nlink == 2);
  CHECK(env->LinkFile(dir + "/none", dir + "/c").status().IsNotFound());
  CHECK(Sorted(env->ListDir(dir)) == std::vector<std::string>{"a", "b"});

  // LockFile: one holder; another (in this process too) is refused until it is gone.
  std::unique_ptr<FileLock> lock, other;
  REQUIRE(env->LockFile(a, &lock).ok());
  CHECK(env->LockFile(b, &other).IsUnavailable());  // the same file under its other name
  CHECK(env->LockFile(dir + "/none", &other).IsNotFound());
  CHECK(other == nullptr);

  // RenameFile over a name; RemoveFile; the locked file lives on, nlink 0 once nameless.
  REQUIRE(env->WriteNewFile(dir + "/new", {"new"}, 0600).ok());
  REQUIRE(env->RenameFile(dir + "/new", b).ok());
  CHECK(env->ReadFile(b, 100).value() == "new");
  CHECK(env->Stat(a)->nlink == 1);
  CHECK(lock->Stat()->nlink == 1);
  REQUIRE(env->RemoveFile(a).ok());
  CHECK(env->RemoveFile(a).IsNotFound());
  CHECK(lock->Stat()->nlink == 0);
  CHECK(env->Stat(a).status().IsNotFound());
  CHECK(env->RenameFile(a, b).IsNotFound());
  CHECK_FALSE(env->FileExists(a));
  CHECK(env->FileExists(b));

  lock.reset();
  REQUIRE(env->LockFile(b, &lock).ok());  // released on destruction
  lock.reset();
  CHECK(env->ListDir(dir + "/none").status().IsNotFound());
  CHECK(env->CreateDir(dir + "/none/x", 0750).IsNotFound());
  CHECK(env->SyncDir(dir).ok());
}

}  // namespace

TEST_CASE("env: the contract on the real file system (PosixEnv)") {
  mxsec_test::TempQueueDir t("mxsec-env-test");
  CheckContract(Env::Default(), t.path);
}

TEST_CASE("env: PosixEnv reads and locks only regular files: not through a symbolic link, never waiting on a FIFO") {
  mxsec_test::TempQueueDir t("mxsec-env-test");
  Env* env = Env::Default();
  REQUIRE(env->CreateDir(t.path, 0750).ok());
  const std::string secret = t.path + "/secret", link = t.path + "/link", fifo = t.path + "/fifo";
  REQUIRE(env->WriteNewFile(secret, {"not for the queue"}, 0600).ok());
  REQUIRE(symlink(secret.c_str(), link.c_str()) == 0);
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  // Should an open wait for a writer, writers come after 5 s: the checks then fail, not hang.
  std::jthread unblock([&](std::stop_token stop) {  // stopped and joined however the test case ends
    for (int waited_ms = 0; !stop.stop_requested(); waited_ms += 100) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (waited_ms < 5000) continue;
      int fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) close(fd);
    }
  });
  const auto start = std::chrono::steady_clock::now();
  auto via_link = env->ReadFile(link, 1000);
  REQUIRE_FALSE(via_link.ok());
  CHECK(via_link.error() == link + ": not a regular file (a symbolic link)");
  std::unique_ptr<FileLock> lock;
  CHECK(env->LockFile(link, &lock).message() == link + ": not a regular file (a symbolic link)");
  auto from_fifo = env->ReadFile(fifo, 1000);
  REQUIRE_FALSE(from_fifo.ok());
  CHECK(from_fifo.error() == fifo + ": not a regular file");
  Status lock_fifo = env->LockFile(fifo, &lock);
  CHECK(lock_fifo.message() == fifo + ": not a regular file");
  CHECK(lock == nullptr);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(4));
  // The file itself, by its own name, as always.
  CHECK(env->ReadFile(secret, 1000).value() == "not for the queue");
  CHECK(env->LockFile(secret, &lock).ok());
}

TEST_CASE("env: the contract in memory (MemEnv)") {
  MemEnv env;
  CheckContract(&env, "/d");
}

TEST_CASE("env: system errors keep the system's words and get their code") {
  CHECK(ErrnoStatus("/q/x: create", ENOENT).IsNotFound());
  CHECK(ErrnoStatus("/q/x: write", EIO).IsIoError());
  CHECK(ErrnoStatus("/q/x: write", EROFS).IsIoError());
  Status full = ErrnoStatus("/q/x: write", ENOSPC);
  CHECK(full.code() == Status::Code::kGeneric);
  CHECK(full.message() == "/q/x: write: No space left on device");
}

TEST_CASE("MemEnv: a power loss keeps fsynced data, and the pending names in one reading only") {
  FakeClock clock(1700000000);
  MemEnv env(&clock);
  REQUIRE(env.CreateDir("/d", 0750).ok());
  REQUIRE(env.WriteNewFile("/d/kept", {"v1"}, 0640).ok());
  REQUIRE(env.SyncDir("/d").ok());
  // Pending since the sync: a new file, a link, a rename over, a removal; data never fsynced.
  REQUIRE(env.WriteNewFile("/d/new", {"n"}, 0640).ok());
  REQUIRE(env.LinkFile("/d/kept", "/d/second").value());
  REQUIRE(env.WriteNewFile("/d/tmp", {"v2"}, 0640).ok());
  REQUIRE(env.RenameFile("/d/tmp", "/d/kept").ok());
  REQUIRE(env.OverwriteFile("/d/second", "unsynced").ok());
  std::unique_ptr<FileLock> lock;
  REQUIRE(env.LockFile("/d/kept", &lock).ok());

  std::unique_ptr<MemEnv> lost = env.AfterPowerLoss(PowerLoss::kPendingNamesLost);
  CHECK(Sorted(lost->ListDir("/d")) == std::vector<std::string>{"kept"});
  CHECK(lost->ReadFile("/d/kept", 100).value() == "v1");
  CHECK(lost->Stat("/d/kept")->mtime == 1700000000);

  std::unique_ptr<MemEnv> kept = env.AfterPowerLoss(PowerLoss::kPendingNamesKept);
  CHECK(Sorted(kept->ListDir("/d")) == std::vector<std::string>{"kept", "new", "second"});
  CHECK(kept->ReadFile("/d/kept", 100).value() == "v2");
  CHECK(kept->ReadFile("/d/second", 100).value() == "v1");  // its overwrite was never fsynced
  CHECK(kept->Stat("/d/second")->nlink == 1);
  std::unique_ptr<FileLock> after_boot;
  CHECK(kept->LockFile("/d/kept", &after_boot).ok());  // locks die with the power
  CHECK(env.LockFile("/d/kept", &after_boot).IsUnavailable());  // the running env goes on as it was
  CHECK(env.ReadFile("/d/second", 100).value() == "unsynced");

  REQUIRE(env.SyncDir("/d").ok());
  CHECK(Sorted(env.AfterPowerLoss()->ListDir("/d")) == std::vector<std::string>{"kept", "new", "second"});
}

TEST_CASE("MemEnv: the change hook sees every change first and can fail it, nothing changed") {
  MemEnv env;
  std::vector<std::string> seen;
  bool fail = false;
  env.SetChangeHook([&](std::string_view op, const std::string& path) {
    seen.push_back(std::string(op) + " " + path);
    return fail ? Status::IoError(path + ": Input/output error") : Status::Ok();
  });
  REQUIRE(env.CreateDir("/d", 0750).ok());
  REQUIRE(env.WriteNewFile("/d/a", {"a"}, 0640).ok());
  REQUIRE(env.LinkFile("/d/a", "/d/b").value());
  REQUIRE(env.RenameFile("/d/b", "/d/c").ok());
  REQUIRE(env.RemoveFile("/d/a").ok());
  REQUIRE(env.SyncDir("/d").ok());
  CHECK(seen == std::vector<std::string>{"mkdir /d", "write /d/a", "link /d/b", "rename /d/c", "remove /d/a",
                                         "sync /d"});
  fail = true;
  CHECK(env.WriteNewFile("/d/x", {"x"}, 0640).IsIoError());
  CHECK(env.RenameFile("/d/c", "/d/y").IsIoError());
  CHECK(env.RemoveFile("/d/c").IsIoError());
  CHECK(env.LinkFile("/d/c", "/d/z").status().IsIoError());
  CHECK(env.SyncDir("/d").IsIoError());
  CHECK(Sorted(env.ListDir("/d")) == std::vector<std::string>{"c"});
  CHECK(env.ReadFile("/d/c", 10).value() == "a");  // reading is not a change
}
