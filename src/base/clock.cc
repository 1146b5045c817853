// clock.cc - the system clock.
#include "mxsec/base/clock.h"

#include <ctime>

namespace mxsec {
namespace {
class RealClock : public Clock {
 public:
  int64_t Now() const override { return static_cast<int64_t>(::time(nullptr)); }
};
}  // namespace

Clock* SystemClock() {
  static RealClock clock;
  return &clock;
}

}  // namespace mxsec
