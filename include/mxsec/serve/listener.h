// listener.h - the listening sockets of `mxsec serve`.
//
// A listener is "inet:ADDR:PORT" (IPv4, or IPv6 in brackets or not) or
// "unix:PATH". A UNIX socket is created with mode 0600 and only then given
// its owner, group and mode (serve_socket_owner, serve_socket_group,
// serve_socket_mode): no one else can connect in between. An existing
// socket file at PATH is replaced; any other file there is an error.
// Listeners are non-blocking and close-on-exec.
#pragma once

#include <sys/types.h>

#include <string>

#include "mxsec/base/config.h"
#include "mxsec/base/status.h"

namespace mxsec {

// Who may connect to UNIX sockets.
struct SocketAccess {
  mode_t mode = 0660;
  uid_t uid = static_cast<uid_t>(-1);  // -1: unchanged
  gid_t gid = static_cast<gid_t>(-1);
};

// serve_socket_mode/_owner/_group of `cfg`, names looked up; an error
// names the key and the user or group that does not exist.
Result<SocketAccess> ResolveSocketAccess(const Config& cfg);

// An open listening socket; closes it (and removes a UNIX socket's file)
// when destroyed. Movable, not copyable.
class Listener {
 public:
  Listener() = default;
  Listener(std::string spec, int fd) : spec_(std::move(spec)), fd_(fd) {}
  Listener(Listener&& other) noexcept { *this = std::move(other); }
  Listener& operator=(Listener&& other) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  const std::string& spec() const { return spec_; }
  int fd() const { return fd_; }

 private:
  void Close();
  std::string spec_;
  int fd_ = -1;
};

// Opens and listens on `spec`; an error starts with the spec.
Result<Listener> OpenListener(const std::string& spec, const SocketAccess& access);

}  // namespace mxsec
