// pg_test.cc - what of base/pg.h and base/pg_schema.h runs without a server:
// reading `state_backend`, refusing a password in it, the error a server
// that cannot be reached gives, and the host name the shared state uses.
// The statements themselves run against the test bed's PostgreSQL
// (tests/integration/test_fleet*.py).
#include <doctest/doctest.h>

#include <string>

#include "mxsec/base/config.h"
#include "mxsec/base/pg.h"
#include "mxsec/base/pg_schema.h"

using namespace mxsec;

TEST_CASE("pg: state_backend is sqlite or a libpq connection string, never one with a password") {
  CHECK(IsPgBackend("postgresql://mxsec@127.0.0.1/mxsec"));
  CHECK(IsPgBackend("postgres://h/db"));
  CHECK(IsPgBackend("host=127.0.0.1 dbname=mxsec"));
  CHECK_FALSE(IsPgBackend("sqlite"));
  CHECK_FALSE(IsPgBackend(""));

  CHECK(ParsePgConnectionString("postgresql://mxsec@127.0.0.1:5432/mxsec?connect_timeout=3").ok());
  CHECK(ParsePgConnectionString("host=127.0.0.1 port=5432 user=mxsec dbname=mxsec").ok());
  Result<std::string> in_uri = ParsePgConnectionString("postgresql://mxsec:secret@127.0.0.1/mxsec");
  REQUIRE_FALSE(in_uri.ok());
  CHECK(in_uri.error().find("password") != std::string::npos);
  CHECK(in_uri.error().find("secret") == std::string::npos);  // never repeated in a message
  CHECK_FALSE(ParsePgConnectionString("host=h password=secret").ok());
  CHECK_FALSE(ParsePgConnectionString("postgresql://h/db?password=secret").ok());
  // An empty password is no password: nothing secret is in the file.
  CHECK(ParsePgConnectionString("host=h password=''").ok());
  Result<std::string> broken = ParsePgConnectionString("host=h port");
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.error().find("libpq cannot read it") != std::string::npos);
  CHECK(broken.status().IsInvalid());
  CHECK_FALSE(ParsePgConnectionString("sqlite").ok());
}

TEST_CASE("pg: configuration keys of the shared state") {
  Config c;
  CHECK(c.state_backend == "sqlite");
  Status s = ParseConfigText(
      "state_backend = postgresql://mxsec@127.0.0.1:5432/mxsec\nstate_backend_passfile = /etc/mxsec/pgpass\n"
      "state_backend_connect_timeout = 3\nstate_backend_statement_timeout = 20\nstate_host_name = Relay1.Example.ORG\n",
      "fleet.conf", &c);
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(c.state_backend == "postgresql://mxsec@127.0.0.1:5432/mxsec");
  CHECK(c.state_host_name == "relay1.example.org");
  CHECK(StateHostName(c) == "relay1.example.org");
  PgOptions o = PgOptionsOf(c);
  CHECK(o.passfile == "/etc/mxsec/pgpass");
  CHECK(o.connect_timeout_s == 3);
  CHECK(o.statement_timeout_ms == 20000);

  Config bad;
  Status pw = ParseConfigText("state_backend = postgresql://u:pw@h/db\n", "fleet.conf", &bad);
  REQUIRE_FALSE(pw.ok());
  CHECK(pw.message().find("fleet.conf") != std::string::npos);
  CHECK(pw.message().find("state_backend") != std::string::npos);
  CHECK(pw.message().find("passfile") != std::string::npos);
  CHECK_FALSE(ParseConfigText("state_backend = mysql\n", "fleet.conf", &bad).ok());
  // Nor does an override's error repeat the secret.
  Config o_cfg;
  Status o_pw = LoadConfig("/nonexistent/mxsec.conf", false, {"state_backend=postgresql://u:hunter2@h/db"}, &o_cfg);
  REQUIRE_FALSE(o_pw.ok());
  CHECK(o_pw.message().find("-o state_backend") != std::string::npos);
  CHECK(o_pw.message().find("hunter2") == std::string::npos);
  CHECK_FALSE(ParseConfigText("state_backend_connect_timeout = 1\n", "fleet.conf", &bad).ok());

  Config helo;
  REQUIRE(ParseConfigText("helo_name = mx.example.net\n", "h.conf", &helo).ok());
  CHECK(StateHostName(helo) == "mx.example.net");
}

TEST_CASE("pg: a server that cannot be reached is kUnavailable, within the connect timeout") {
  PgOptions o;
  // Port 1 of a loopback address: refused at once, no waiting.
  o.conninfo = "postgresql://mxsec@127.0.0.1:1/mxsec";
  o.connect_timeout_s = 2;
  Result<PgConnection> c = PgConnection::Connect(o);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == Status::Code::kUnavailable);
  CHECK(c.error().find("127.0.0.1") != std::string::npos);

  Config cfg;
  CHECK_FALSE(ConnectPgState(cfg).ok());  // sqlite: there is no server to connect to
}
