// status.h - the result type used across mxsec module boundaries.
//
// Modules never throw across their public interface: they return a Status
// (success, or an error with a message a person can act on) or a Result<T>
// (a value, or such an error). Messages name the thing that was wrong
// ("policy line 3: duplicate key mode"), never just "parse error".
//
// An error also carries a Code, so a caller decides what to do from the code
// and never by reading another module's prose: the message is for people, the
// code is for programs. Status::Error(message) is kGeneric, for errors no
// caller needs to tell apart; a module that has callers which branch on an
// error names the code in its header.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace mxsec {

class Status {
 public:
  enum class Code {
    kOk,
    kGeneric,       // an error no caller branches on
    kNotFound,      // the thing asked for does not exist (no record, no file)
    kInvalid,       // input that was read and is malformed (a policy, a reply, a file)
    kIoError,       // the operating system failed a read, write, rename or sync
    kTimeout,       // a bound on time was reached
    kLimit,         // a bound on size or count was reached (see the named constant)
    kUnavailable,   // a peer or service could not be reached; may succeed later
  };

  Status() = default;  // success
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Error(Code::kGeneric, std::move(message)); }
  static Status Error(Code code, std::string message) {
    Status s;
    s.code_ = code == Code::kOk ? Code::kGeneric : code;
    s.message_ = std::move(message);
    return s;
  }
  static Status NotFound(std::string m) { return Error(Code::kNotFound, std::move(m)); }
  static Status Invalid(std::string m) { return Error(Code::kInvalid, std::move(m)); }
  static Status IoError(std::string m) { return Error(Code::kIoError, std::move(m)); }
  static Status Timeout(std::string m) { return Error(Code::kTimeout, std::move(m)); }
  static Status Limit(std::string m) { return Error(Code::kLimit, std::move(m)); }
  static Status Unavailable(std::string m) { return Error(Code::kUnavailable, std::move(m)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsInvalid() const { return code_ == Code::kInvalid; }
  bool IsIoError() const { return code_ == Code::kIoError; }
  bool IsTimeout() const { return code_ == Code::kTimeout; }
  bool IsLimit() const { return code_ == Code::kLimit; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }
  const std::string& message() const { return message_; }
  // The same error with `prefix` in front of its message; the code is kept,
  // so context can be added on the way up without losing what callers test.
  Status Prefixed(const std::string& prefix) const {
    Status s = *this;
    if (!ok()) s.message_ = prefix + message_;
    return s;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// Either a value of type T or an error Status. Accessing value() of an
// error Result is a programming error (it aborts).
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}           // NOLINT: implicit on purpose
  Result(Status error) : v_(std::move(error)) {        // NOLINT
    if (std::get<Status>(v_).ok()) v_ = Status::Error("internal: Result built from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T* operator->() const { return &std::get<T>(v_); }
  T* operator->() { return &std::get<T>(v_); }
  const T& operator*() const { return std::get<T>(v_); }
  // The error; Status::Ok() when the Result holds a value.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  const std::string& error() const {
    static const std::string kEmpty;
    return ok() ? kEmpty : std::get<Status>(v_).message();
  }

 private:
  std::variant<T, Status> v_;
};

}  // namespace mxsec
