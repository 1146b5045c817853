// status.h - the result type used across mxsec module boundaries.
//
// Modules never throw across their public interface: they return a Status
// (success, or an error with a message a person can act on) or a Result<T>
// (a value, or such an error). Messages name the thing that was wrong
// ("policy line 3: duplicate key mode"), never just "parse error".
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace mxsec {

class Status {
 public:
  Status() = default;  // success
  static Status Ok() { return Status(); }
  static Status Error(std::string message) {
    Status s;
    s.error_ = true;
    s.message_ = std::move(message);
    return s;
  }

  bool ok() const { return !error_; }
  const std::string& message() const { return message_; }

 private:
  bool error_ = false;
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
