// status_test.cc - Status carries a code that callers test instead of text.
#include <doctest/doctest.h>

#include "mxsec/base/status.h"

using namespace mxsec;

TEST_CASE("status: ok, generic and coded errors") {
  CHECK(Status::Ok().ok());
  CHECK(Status::Ok().code() == Status::Code::kOk);
  Status g = Status::Error("boom");
  CHECK_FALSE(g.ok());
  CHECK(g.code() == Status::Code::kGeneric);
  CHECK(Status::Error(Status::Code::kOk, "not ok").code() == Status::Code::kGeneric);
  CHECK(Status::NotFound("x").IsNotFound());
  CHECK(Status::Invalid("x").IsInvalid());
  CHECK(Status::IoError("x").IsIoError());
  CHECK(Status::Timeout("x").IsTimeout());
  CHECK(Status::Limit("x").IsLimit());
  CHECK(Status::Unavailable("x").IsUnavailable());
  CHECK_FALSE(Status::Invalid("x").IsNotFound());
}

TEST_CASE("status: a prefix keeps the code; a Result hands the code back") {
  Status s = Status::Invalid("line 3: bad").Prefixed("policy: ");
  CHECK(s.IsInvalid());
  CHECK(s.message() == "policy: line 3: bad");
  CHECK(Status::Ok().Prefixed("x: ").ok());
  Result<int> r = Status::Timeout("slow");
  CHECK(r.status().IsTimeout());
  CHECK(r.error() == "slow");
  Result<int> bad = Status::Ok();
  CHECK(bad.status().code() == Status::Code::kGeneric);
}
