// env_mem.cc - MemEnv: directories of names pointing at shared inodes (so
// that links, renames over a locked file and nlink behave as on POSIX), each
// directory with the names it had at its last SyncDir and each inode with
// the data it had when last fsynced: the two things a power loss keeps
// (mem_env.h). Error messages read as PosixEnv's ("path: create: File
// exists"), with the same codes.
#include "mxsec/base/mem_env.h"

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

namespace mxsec {
namespace {

struct Inode {
  std::string data;    // as the processes see it
  std::string synced;  // as a power loss leaves it
  uint32_t mode = 0;
  int64_t mtime = 0;
  bool locked = false;
};

using Names = std::map<std::string, std::shared_ptr<Inode>>;

struct Dir {
  uint32_t mode = 0;
  int64_t mtime = 0;
  Names names;   // now
  Names synced;  // as of the last SyncDir
};

// "/q/x" -> ("/q", "x"); "/x" -> ("/", "x"). False for a path that is not absolute or names "/".
bool SplitPath(const std::string& path, std::string* dir, std::string* name) {
  const size_t slash = path.rfind('/');
  if (path.empty() || path[0] != '/' || slash == path.size() - 1) return false;
  *dir = slash == 0 ? "/" : path.substr(0, slash);
  *name = path.substr(slash + 1);
  return true;
}

}  // namespace

struct MemEnv::State {
  explicit State(Clock* c) : clock(c) { dirs["/"].mode = 0755; }

  // Everything below is used with `mu` held.
  Dir* DirOf(const std::string& path) {
    auto it = dirs.find(path);
    return it == dirs.end() ? nullptr : &it->second;
  }
  // The directory holding `path` and the name in it, or null when that directory does not exist.
  Dir* ParentOf(const std::string& path, std::string* name) {
    std::string dir;
    return SplitPath(path, &dir, name) ? DirOf(dir) : nullptr;
  }
  std::shared_ptr<Inode> FileAt(const std::string& path) {
    std::string name;
    Dir* d = ParentOf(path, &name);
    if (!d) return nullptr;
    auto it = d->names.find(name);
    return it == d->names.end() ? nullptr : it->second;
  }
  bool Exists(const std::string& path) { return DirOf(path) != nullptr || FileAt(path) != nullptr; }
  uint64_t LinksTo(const Inode* inode) const {
    uint64_t n = 0;
    for (const auto& [path, d] : dirs)
      for (const auto& [name, file] : d.names) n += file.get() == inode;
    return n;
  }
  FileInfo InfoOf(const Inode& inode) const {
    FileInfo info;
    info.is_regular = true;
    info.mode = inode.mode;
    info.size = inode.data.size();
    info.nlink = LinksTo(&inode);
    info.mtime = inode.mtime;
    return info;
  }

  std::mutex mu;
  Clock* const clock;
  std::map<std::string, Dir> dirs;  // by path, "/" included
  ChangeHook hook;
};

namespace {

class MemFileLock : public FileLock {
 public:
  MemFileLock(std::shared_ptr<MemEnv::State> state, std::shared_ptr<Inode> inode)
      : state_(std::move(state)), inode_(std::move(inode)) {}
  ~MemFileLock() override {
    std::lock_guard<std::mutex> l(state_->mu);
    inode_->locked = false;
  }
  Result<FileInfo> Stat() const override {
    std::lock_guard<std::mutex> l(state_->mu);
    return state_->InfoOf(*inode_);
  }

 private:
  const std::shared_ptr<MemEnv::State> state_;
  const std::shared_ptr<Inode> inode_;
};

}  // namespace

MemEnv::MemEnv(Clock* clock) : state_(std::make_shared<State>(clock)) {}
MemEnv::MemEnv(std::shared_ptr<State> state) : state_(std::move(state)) {}
MemEnv::~MemEnv() = default;

void MemEnv::SetChangeHook(ChangeHook hook) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->hook = std::move(hook);
}

Status MemEnv::BeforeChange(std::string_view op, const std::string& path) const {
  ChangeHook hook;
  {
    std::lock_guard<std::mutex> l(state_->mu);
    hook = state_->hook;
  }
  return hook ? hook(op, path) : Status::Ok();
}

Status MemEnv::WriteNewFile(const std::string& path, std::initializer_list<std::string_view> parts, uint32_t mode) {
  if (Status s = BeforeChange("write", path); !s.ok()) return s;
  std::lock_guard<std::mutex> l(state_->mu);
  std::string name;
  Dir* d = state_->ParentOf(path, &name);
  if (!d) return ErrnoStatus(path + ": create", ENOENT);
  if (state_->Exists(path)) return ErrnoStatus(path + ": create", EEXIST);
  auto inode = std::make_shared<Inode>();
  for (std::string_view part : parts) inode->data.append(part);
  inode->synced = inode->data;
  inode->mode = mode & 07777;
  inode->mtime = state_->clock->Now();
  d->names[name] = std::move(inode);
  return Status::Ok();
}

Status MemEnv::SyncDir(const std::string& dir) {
  if (Status s = BeforeChange("sync", dir); !s.ok()) return s;
  std::lock_guard<std::mutex> l(state_->mu);
  Dir* d = state_->DirOf(dir);
  if (!d) return ErrnoStatus(dir + ": open", ENOENT);
  d->synced = d->names;
  return Status::Ok();
}

Status MemEnv::RenameFile(const std::string& from, const std::string& to) {
  if (Status s = BeforeChange("rename", to); !s.ok()) return s;
  std::lock_guard<std::mutex> l(state_->mu);
  std::string from_name, to_name;
  Dir* from_dir = state_->ParentOf(from, &from_name);
  Dir* to_dir = state_->ParentOf(to, &to_name);
  std::shared_ptr<Inode> file = state_->FileAt(from);
  if (!file || !to_dir) return ErrnoStatus(to + ": rename", ENOENT);
  if (state_->DirOf(to)) return ErrnoStatus(to + ": rename", EISDIR);
  if (state_->FileAt(to) == file) return Status::Ok();  // two names of one file: nothing to do (POSIX)
  to_dir->names[to_name] = file;
  from_dir->names.erase(from_name);
  return Status::Ok();
}

Result<bool> MemEnv::LinkFile(const std::string& from, const std::string& to) {
  if (Status s = BeforeChange("link", to); !s.ok()) return s;
  std::lock_guard<std::mutex> l(state_->mu);
  std::string to_name;
  Dir* to_dir = state_->ParentOf(to, &to_name);
  std::shared_ptr<Inode> file = state_->FileAt(from);
  if (!file || !to_dir) return ErrnoStatus(to + ": link", ENOENT);
  if (state_->Exists(to)) return false;
  to_dir->names[to_name] = std::move(file);
  return true;
}

Status MemEnv::RemoveFile(const std::string& path) {
  if (Status s = BeforeChange("remove", path); !s.ok()) return s;
  std::lock_guard<std::mutex> l(state_->mu);
  std::string name;
  Dir* d = state_->ParentOf(path, &name);
  if (!d || d->names.erase(name) == 0) return ErrnoStatus(path + ": unlink", ENOENT);
  return Status::Ok();
}

Result<std::vector<std::string>> MemEnv::ListDir(const std::string& dir) const {
  std::lock_guard<std::mutex> l(state_->mu);
  const Dir* d = state_->DirOf(dir);
  if (!d) return ErrnoStatus(dir + ": opendir", ENOENT);
  std::vector<std::string> names;
  for (const auto& [name, file] : d->names) names.push_back(name);
  for (const auto& [path, sub] : state_->dirs) {
    std::string parent, name;
    if (SplitPath(path, &parent, &name) && parent == dir) names.push_back(name);
  }
  return names;
}

Status MemEnv::LockFile(const std::string& path, std::unique_ptr<FileLock>* out) const {
  std::lock_guard<std::mutex> l(state_->mu);
  std::shared_ptr<Inode> file = state_->FileAt(path);
  if (!file) return ErrnoStatus(path, state_->DirOf(path) ? EISDIR : ENOENT);
  if (file->locked) return Status::Unavailable(path + ": flock: " + strerror(EWOULDBLOCK));
  file->locked = true;
  *out = std::make_unique<MemFileLock>(state_, std::move(file));
  return Status::Ok();
}

Result<std::string> MemEnv::ReadFile(const std::string& path, size_t max_bytes) const {
  std::lock_guard<std::mutex> l(state_->mu);
  std::shared_ptr<Inode> file = state_->FileAt(path);
  if (!file) return state_->DirOf(path) ? ErrnoStatus(path + ": read", EISDIR) : ErrnoStatus(path, ENOENT);
  if (file->data.size() > max_bytes)
    return Status::Limit(path + ": larger than " + std::to_string(max_bytes) + " octets");
  return file->data;
}

Result<FileInfo> MemEnv::Stat(const std::string& path) const {
  std::lock_guard<std::mutex> l(state_->mu);
  if (const Dir* d = state_->DirOf(path)) {
    FileInfo info;
    info.is_dir = true;
    info.mode = d->mode;
    info.nlink = 2;
    info.mtime = d->mtime;
    return info;
  }
  std::shared_ptr<Inode> file = state_->FileAt(path);
  if (!file) return ErrnoStatus(path, ENOENT);
  return state_->InfoOf(*file);
}

Status MemEnv::CreateDir(const std::string& path, uint32_t mode) {
  if (Status s = BeforeChange("mkdir", path); !s.ok()) return s;
  std::lock_guard<std::mutex> l(state_->mu);
  if (state_->Exists(path)) return Status::Ok();
  std::string name;
  if (!state_->ParentOf(path, &name)) return ErrnoStatus(path, ENOENT);
  Dir& d = state_->dirs[path];
  d.mode = mode & 07777;
  d.mtime = state_->clock->Now();
  return Status::Ok();
}

std::unique_ptr<MemEnv> MemEnv::AfterPowerLoss(PowerLoss reading) const {
  std::lock_guard<std::mutex> l(state_->mu);
  auto after = std::make_shared<State>(state_->clock);
  std::map<const Inode*, std::shared_ptr<Inode>> kept;  // one copy per file, whatever its number of names
  for (const auto& [path, d] : state_->dirs) {
    Dir& copy = after->dirs[path];
    copy.mode = d.mode;
    copy.mtime = d.mtime;
    for (const auto& [name, file] : reading == PowerLoss::kPendingNamesKept ? d.names : d.synced) {
      std::shared_ptr<Inode>& survivor = kept[file.get()];
      if (!survivor) {
        survivor = std::make_shared<Inode>();
        survivor->data = survivor->synced = file->synced;
        survivor->mode = file->mode;
        survivor->mtime = file->mtime;
      }
      copy.names[name] = survivor;
    }
    copy.synced = copy.names;
  }
  return std::unique_ptr<MemEnv>(new MemEnv(std::move(after)));
}

Status MemEnv::OverwriteFile(const std::string& path, std::string_view data) {
  std::lock_guard<std::mutex> l(state_->mu);
  std::shared_ptr<Inode> file = state_->FileAt(path);
  if (!file) return ErrnoStatus(path, ENOENT);
  file->data = data;
  file->mtime = state_->clock->Now();
  return Status::Ok();
}

}  // namespace mxsec
