// config_test.cc - strict configuration parsing.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "mxsec/base/config.h"

using namespace mxsec;

TEST_CASE("config: keys, comments, continuation lines") {
  Config c;
  Status s = ParseConfigText(
      "# comment\n\ndns_resolver = 127.0.0.1, 127.0.0.2:5353,\n   [::1]:53\n"
      "dnssec_validation = resolver\ndane = no\nmta_sts=yes\nsmtp_port = 2525\nstate_dir = /tmp/x\n"
      "helo_name = Mail.Example.ORG\nsmtp_data_done_timeout = 900\n",
      "test.conf", &c);
  REQUIRE_MESSAGE(s.ok(), s.message());
  REQUIRE(c.dns_resolver.size() == 3);
  CHECK(c.dns_resolver[1].port == 5353);
  CHECK(c.dns_resolver[2].address == "::1");
  CHECK(c.dns_resolver[2].ToString() == "[::1]:53");
  CHECK_FALSE(c.dane);
  CHECK(c.smtp_port == 2525);
  CHECK(c.helo_name == "mail.example.org");
  CHECK(c.smtp_data_done_timeout == 900);
}

TEST_CASE("config: errors name file, line and key") {
  Config c;
  Status s = ParseConfigText("dane = yes\nfoo = bar\n", "/etc/mxsec/mxsec.conf", &c);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("/etc/mxsec/mxsec.conf:2") != std::string::npos);
  CHECK(s.message().find("\"foo\"") != std::string::npos);

  for (const char* bad : {"dane = yess", "smtp_port = 0", "smtp_port = 70000", "dns_resolver = example.org",
                          "dnssec_validation = maybe", "no equals sign", "= value", " indented = first",
                          "helo_name = bad_name", "state_dir =", "dns_resolver = 1.2.3.4:99999",
                          "smtp_mx_address_limit = 0", "smtp_mx_session_limit = 0", "smtp_min_data_rate = 0",
                          "smtp_mx_address_limit = 1001", "smtp_bind_address = mail.example.org",
                          "smtp_bind_address = ::1", "smtp_bind_address6 = 127.0.0.1", "smtp_bind_address = 1.2.3"}) {
    Config d;
    Status e = ParseConfigText(std::string(bad) + "\n", "f.conf", &d);
    CHECK_MESSAGE(!e.ok(), bad);
    CHECK(e.message().find("f.conf:1") != std::string::npos);
  }
}

TEST_CASE("config: file loading and -o overrides") {
  Config c;
  CHECK(LoadConfig("/nonexistent/mxsec.conf", false, {}, &c).ok());
  Status s = LoadConfig("/nonexistent/mxsec.conf", true, {}, &c);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("/nonexistent/mxsec.conf") != std::string::npos);

  char path[] = "/tmp/mxsec-config-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(path) << "dane = yes\nsmtp_port = 25\n";
  Config d;
  REQUIRE(LoadConfig(path, true, {"dane=no", "smtp_port = 2525"}, &d).ok());
  CHECK_FALSE(d.dane);
  CHECK(d.smtp_port == 2525);
  s = LoadConfig(path, true, {"bogus_key=1"}, &d);
  CHECK(s.message().find("-o bogus_key") != std::string::npos);
  remove(path);
}

TEST_CASE("config: resolv.conf nameservers") {
  auto r = ParseResolvConf("search example.org\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver junk\n");
  REQUIRE(r.size() == 2);
  CHECK(r[0].address == "127.0.0.53");
  CHECK(r[1].address == "fe80::1");
}

TEST_CASE("config: serve limits and the unix socket's mode, owner and group") {
  Config d;
  CHECK(d.serve_max_connections == 4096);
  CHECK(d.serve_idle_timeout == 60);
  CHECK(d.serve_max_query_size == 10000);
  CHECK(d.serve_max_pending_requests == 32);
  CHECK(d.serve_max_output_buffer == 16384);
  CHECK(d.serve_socket_mode == 0660);
  CHECK(d.serve_socket_owner.empty());
  CHECK(d.serve_socket_group.empty());
  Config c;
  Status s = ParseConfigText(
      "serve_max_connections = 100\nserve_idle_timeout = 2m\nserve_max_query_size = 512\n"
      "serve_max_pending_requests = 4\nserve_max_output_buffer = 4096\nserve_socket_mode = 0600\n"
      "serve_socket_owner = mxsec\nserve_socket_group = 118\n",
      "t.conf", &c);
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(c.serve_max_connections == 100);
  CHECK(c.serve_idle_timeout == 120);
  CHECK(c.serve_max_query_size == 512);
  CHECK(c.serve_max_pending_requests == 4);
  CHECK(c.serve_max_output_buffer == 4096);
  CHECK(c.serve_socket_mode == 0600);
  CHECK(c.serve_socket_owner == "mxsec");
  CHECK(c.serve_socket_group == "118");
  REQUIRE(ParseConfigText("serve_socket_mode = 666\n", "t.conf", &c).ok());
  CHECK(c.serve_socket_mode == 0666);
  for (const char* bad : {"serve_max_connections = 0", "serve_idle_timeout = 0", "serve_max_query_size = 8",
                          "serve_max_pending_requests = 0", "serve_max_output_buffer = 10",
                          "serve_socket_mode = 0800", "serve_socket_mode = 4755", "serve_socket_mode = rw",
                          "serve_socket_mode =", "serve_socket_owner = a b", "serve_socket_group = x:y",
                          "serve_socket_owner = 99999999999999999999"}) {
    Config e;
    Status st = ParseConfigText(std::string(bad) + "\n", "f.conf", &e);
    CHECK_MESSAGE(!st.ok(), bad);
  }
}

TEST_CASE("config: MX address and session limits, minimum data rate") {
  Config c;
  CHECK(c.smtp_mx_address_limit == 5);
  CHECK(c.smtp_mx_session_limit == 2);
  CHECK(c.smtp_min_data_rate == 500);
  REQUIRE(ParseConfigText("smtp_mx_address_limit = 12\nsmtp_mx_session_limit = 1\nsmtp_min_data_rate = 2000\n",
                          "f.conf", &c)
              .ok());
  CHECK(c.smtp_mx_address_limit == 12);
  CHECK(c.smtp_mx_session_limit == 1);
  CHECK(c.smtp_min_data_rate == 2000);
}

TEST_CASE("config: smtp_bind_address and smtp_bind_address6 take numeric addresses of their family") {
  Config c;
  REQUIRE(ParseConfigText("smtp_bind_address = 192.0.2.7\nsmtp_bind_address6 = 2001:db8::7\n", "f.conf", &c).ok());
  CHECK(c.smtp_bind_address == "192.0.2.7");
  CHECK(c.smtp_bind_address6 == "2001:db8::7");
  Config d;
  Status e = ParseConfigText("smtp_bind_address = mail.example.org\n", "f.conf", &d);
  REQUIRE_FALSE(e.ok());
  CHECK(e.message().find("not a numeric IPv4 address") != std::string::npos);
}
