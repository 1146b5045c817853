// clock.h - wall-clock time behind an interface, so that cache expiry and
// signature windows can be unit-tested with a fake clock.
#pragma once

#include <cstdint>

namespace mxsec {

class Clock {
 public:
  virtual ~Clock() = default;
  // Seconds since the Unix epoch.
  virtual int64_t Now() const = 0;
};

// The process-wide real clock; never null, never freed.
Clock* SystemClock();

// A clock that returns whatever the test sets.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t now = 1700000000) : now_(now) {}
  int64_t Now() const override { return now_; }
  void Set(int64_t now) { now_ = now; }
  void Advance(int64_t seconds) { now_ += seconds; }

 private:
  int64_t now_;
};

}  // namespace mxsec
