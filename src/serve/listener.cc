// listener.cc - see listener.h.
#include "mxsec/serve/listener.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace mxsec {
namespace {

bool IsNumeric(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; }

Result<Listener> OpenUnixListener(const std::string& spec, const SocketAccess& access) {
  std::string path = spec.substr(5);
  sockaddr_un sa{};
  if (path.empty() || path.size() >= sizeof sa.sun_path) return Status::Error(spec + ": bad socket path");
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status::Error(spec + ": exists and is not a socket");
    unlink(path.c_str());
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status::Error(spec + ": " + strerror(errno));
  // bind() creates the socket file with the umask's mode: 0600 here, so
  // that no one else can connect before its owner, group and mode are
  // set (no worker thread runs yet to create files meanwhile).
  mode_t old_mask = umask(0177);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int err = errno;
  umask(old_mask);
  if (rc != 0) {
    close(fd);
    return Status::Error(spec + ": " + strerror(err));
  }
  Listener l(spec, fd);  // from here on it owns the socket file too
  if ((access.uid != static_cast<uid_t>(-1) || access.gid != static_cast<gid_t>(-1)) &&
      lchown(path.c_str(), access.uid, access.gid) != 0)
    return Status::Error(spec + ": cannot set the owner or group (serve_socket_owner, serve_socket_group): " +
                         strerror(errno));
  if (chmod(path.c_str(), access.mode) != 0)
    return Status::Error(spec + ": cannot set the mode (serve_socket_mode): " + strerror(errno));
  if (listen(fd, 1024) != 0) return Status::Error(spec + ": " + strerror(errno));
  return l;
}

Result<Listener> OpenInetListener(const std::string& spec) {
  std::string rest = spec.substr(5);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return Status::Error(spec + ": missing port");
  std::string addr = rest.substr(0, colon), port_s = rest.substr(colon + 1);
  if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
  int port = atoi(port_s.c_str());
  if (port <= 0 || port > 65535 || port_s.find_first_not_of("0123456789") != std::string::npos)
    return Status::Error(spec + ": bad port");
  sockaddr_storage ss{};
  socklen_t len;
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, addr.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof *s4;
  } else if (inet_pton(AF_INET6, addr.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof *s6;
  } else {
    return Status::Error(spec + ": \"" + addr + "\" is not an IP address");
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status::Error(spec + ": " + strerror(errno));
  Listener l(spec, fd);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 1024) != 0)
    return Status::Error(spec + ": " + strerror(errno));
  return l;
}

}  // namespace

Result<SocketAccess> ResolveSocketAccess(const Config& cfg) {
  SocketAccess a;
  a.mode = static_cast<mode_t>(cfg.serve_socket_mode);
  if (!cfg.serve_socket_owner.empty()) {
    if (IsNumeric(cfg.serve_socket_owner)) {
      a.uid = static_cast<uid_t>(std::stoul(cfg.serve_socket_owner));
    } else {
      passwd pw, *res = nullptr;
      std::vector<char> buf(16384);
      if (getpwnam_r(cfg.serve_socket_owner.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || !res)
        return Status::Error("serve_socket_owner: no user \"" + cfg.serve_socket_owner + "\"");
      a.uid = pw.pw_uid;
    }
  }
  if (!cfg.serve_socket_group.empty()) {
    if (IsNumeric(cfg.serve_socket_group)) {
      a.gid = static_cast<gid_t>(std::stoul(cfg.serve_socket_group));
    } else {
      group gr, *res = nullptr;
      std::vector<char> buf(65536);
      if (getgrnam_r(cfg.serve_socket_group.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || !res)
        return Status::Error("serve_socket_group: no group \"" + cfg.serve_socket_group + "\"");
      a.gid = gr.gr_gid;
    }
  }
  return a;
}

Listener& Listener::operator=(Listener&& other) noexcept {
  if (this != &other) {
    Close();
    spec_ = std::move(other.spec_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

Listener::~Listener() { Close(); }

void Listener::Close() {
  if (fd_ < 0) return;
  close(fd_);
  fd_ = -1;
  if (spec_.rfind("unix:", 0) == 0) unlink(spec_.substr(5).c_str());
}

Result<Listener> OpenListener(const std::string& spec, const SocketAccess& access) {
  if (spec.rfind("unix:", 0) == 0) return OpenUnixListener(spec, access);
  if (spec.rfind("inet:", 0) != 0) return Status::Error(spec + ": expected inet:ADDR:PORT or unix:PATH");
  return OpenInetListener(spec);
}

}  // namespace mxsec
