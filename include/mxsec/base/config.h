// config.h - mxsec configuration: Postfix-style "key = value" files.
//
// Contract (man/mxsec.conf.5): `#` starts a comment line, blank lines are ignored,
// a line that starts with whitespace continues the previous one (as in
// Postfix main.cf), every key must be known, every value must parse. Any
// problem is reported with the file, the line and the key; the caller maps
// a failed load to EX_CONFIG (78), or to EX_TEMPFAIL in `deliver`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mxsec/base/net_address.h"
#include "mxsec/base/status.h"

namespace mxsec {

enum class DnssecValidation { kResolver, kLocal, kOff };
const char* DnssecValidationName(DnssecValidation v);

struct Config {
  std::string source = "(defaults)";  // file the values came from

  std::vector<ResolverAddress> dns_resolver;  // empty: /etc/resolv.conf
  DnssecValidation dnssec_validation = DnssecValidation::kResolver;
  bool dnssec_trust_remote_resolver = false;
  std::string dnssec_probe;                 // "" = not asked
  std::string dnssec_probe_secure = ".";    // "." = the root, "" = not asked
  std::string trust_anchor_file = "/usr/share/dns/root.key";
  std::string ca_file;  // empty: system trust store
  int smtp_port = 25;
  // The local address SMTP connections are made from, as Postfix's keys of
  // these names: numeric, one per family; empty: the kernel chooses.
  std::string smtp_bind_address;   // IPv4
  std::string smtp_bind_address6;  // IPv6
  std::string helo_name;  // empty: the host's FQDN
  std::string state_dir = "/var/lib/mxsec";
  std::string queue_dir = "/var/spool/mxsec";
  // Where the state a fleet of hosts may share lives (pg_schema.h): "sqlite"
  // (files in state_dir, this host only) or a PostgreSQL connection string
  // (no password in it: state_backend_passfile, else PGPASSFILE). The queue
  // stays in queue_dir on every host.
  std::string state_backend = "sqlite";
  std::string state_backend_passfile;
  int state_backend_connect_timeout = 5;     // seconds
  int state_backend_statement_timeout = 10;  // seconds, per statement
  std::string state_host_name;               // empty: helo_name, else the host's name
  bool dane = true;
  bool mta_sts = true;
  std::string local_policy_file;

  // Sendmail mode and its queue (durations in seconds).
  std::string sender_domain;          // empty: helo_name, else the host's FQDN (like Postfix's myorigin)
  int64_t message_size_limit = 10240000;  // octets; 0: no limit
  int queue_lifetime = 5 * 86400;     // then deferred recipients bounce; 0: one attempt only
  int queue_retry_min = 300;          // first retry delay, doubled per attempt ...
  int queue_retry_max = 4000;         // ... up to this
  int queue_delay_warning = 0;        // a "delayed" DSN this long after arrival (Postfix delay_warning_time); 0: off
  int queue_run_concurrency = 100;    // delivery threads of one queue run (messages and their domains together)
  int default_destination_concurrency_limit = 20;  // deliveries at once to one destination domain
  int queue_max_domains_per_attempt = 1000;  // domains one attempt of one message delivers to; the rest: next run

  // SMTP TLS reports (RFC 8460, `mxsec tlsrpt`).
  std::string tlsrpt_organization;    // organization-name; empty: the report domain (helo_name)
  std::string tlsrpt_contact;         // contact-info; empty: tlsrpt_from
  std::string tlsrpt_from;            // sender of mailto reports; empty: postmaster@<helo_name>

  // `mxsec serve` (mxsec(8) SERVE): per-connection bounds and the UNIX socket.
  int serve_max_connections = 4096;     // more are closed at once (capped by RLIMIT_NOFILE)
  int serve_idle_timeout = 60;          // seconds without a byte in or out, nothing awaited
  int serve_max_query_size = 10000;     // bytes of one request (Postfix's socketmap_max_query_size)
  int serve_max_pending_requests = 32;  // per connection: taken, reply not yet sent
  int serve_max_output_buffer = 16384;  // per connection: bytes of unsent replies
  int serve_socket_mode = 0660;         // of unix: listeners
  std::string serve_socket_owner;       // user name or uid; empty: the server's
  std::string serve_socket_group;       // group name or gid; empty: the server's

  // Timeouts in seconds. DNS: per try; SMTP: RFC 5321 §4.5.3.2.
  int dns_timeout = 5;
  int dns_tries = 2;
  int mta_sts_connect_timeout = 10;
  int mta_sts_fetch_timeout = 60;
  int smtp_connect_timeout = 30;
  int smtp_greeting_timeout = 300;
  int smtp_helo_timeout = 300;
  int smtp_starttls_timeout = 300;
  int smtp_mail_timeout = 300;
  int smtp_rcpt_timeout = 300;
  int smtp_data_init_timeout = 120;
  int smtp_data_xfer_timeout = 180;
  int smtp_data_done_timeout = 600;
  int smtp_quit_timeout = 300;
  // The message as a whole may take smtp_data_xfer_timeout plus size divided
  // by this (octets per second), as Postfix's smtp_min_data_rate.
  int smtp_min_data_rate = 500;

  // Per delivery attempt of a domain, as Postfix's keys of these names: the
  // most MX addresses tried, and the most sessions that reach a mail
  // transaction (failed connections, greetings and TLS do not count).
  int smtp_mx_address_limit = 5;
  int smtp_mx_session_limit = 2;

  // Within one process that delivers many messages (a queue run), as
  // Postfix's keys of these names: messages to one destination share an
  // open session (session_cache.h), and new sessions resume the TLS session
  // of an earlier one under the same policy (tls_session_store.h).
  bool smtp_connection_cache_on_demand = true;
  bool smtp_tls_session_cache = true;
};

// Where the configuration comes from when --config is not given.
std::string DefaultConfigPath();  // $MXSEC_CONFIG, else /etc/mxsec/mxsec.conf

// Loads `path` into `out`, then applies `overrides` ("key=value", as from
// -o). When `must_exist` is false and the file does not exist, the defaults
// are used (a missing default file is not an error; an unreadable one is).
Status LoadConfig(const std::string& path, bool must_exist, const std::vector<std::string>& overrides,
                  Config* out);

// Parses configuration text (for tests); `name` is used in messages.
Status ParseConfigText(const std::string& text, const std::string& name, Config* out);

// Applies one "key=value" override; `origin` names it in messages.
Status ApplyConfigSetting(const std::string& key, const std::string& value, const std::string& origin,
                          Config* out);

// Reads nameservers from resolv.conf-style text.
std::vector<ResolverAddress> ParseResolvConf(const std::string& text);

}  // namespace mxsec
