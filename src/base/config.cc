// config.cc - loading and checking mxsec.conf.
//
// Strict on purpose: a typo in a security setting ("dane = yess") must stop
// the program with a message naming file, line and key, never fall back to a
// default that may be weaker than what the administrator meant.
#include "mxsec/base/config.h"
#include "mxsec/base/pg.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "mxsec/base/domain_name.h"
#include "mxsec/base/mailbox.h"

namespace mxsec {

const char* DnssecValidationName(DnssecValidation v) {
  switch (v) {
    case DnssecValidation::kResolver: return "resolver";
    case DnssecValidation::kLocal: return "local";
    case DnssecValidation::kOff: return "off";
  }
  return "?";
}

std::string DefaultConfigPath() {
  const char* env = getenv("MXSEC_CONFIG");
  if (env && *env) return env;
  return "/etc/mxsec/mxsec.conf";
}

namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool ParseBool(const std::string& v, bool* out) {
  std::string l = AsciiLower(v);
  if (l == "yes" || l == "true" || l == "on" || l == "1") { *out = true; return true; }
  if (l == "no" || l == "false" || l == "off" || l == "0") { *out = false; return true; }
  return false;
}

bool ParseInt(const std::string& v, int lo, int hi, int* out) {
  if (v.empty() || v.size() > 9) return false;
  for (char c : v) if (c < '0' || c > '9') return false;
  long n = strtol(v.c_str(), nullptr, 10);
  if (n < lo || n > hi) return false;
  *out = static_cast<int>(n);
  return true;
}

bool ParseResolverList(const std::string& v, std::vector<ResolverAddress>* out, std::string* why) {
  std::vector<ResolverAddress> list;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = Trim(item);
    if (item.empty()) { *why = "empty entry in list"; return false; }
    ResolverAddress ra;
    std::string addr = item, port;
    if (item.front() == '[') {
      size_t close = item.find(']');
      if (close == std::string::npos) { *why = "\"" + item + "\": missing ]"; return false; }
      addr = item.substr(1, close - 1);
      if (close + 1 < item.size()) {
        if (item[close + 1] != ':') { *why = "\"" + item + "\": expected :port after ]"; return false; }
        port = item.substr(close + 2);
      }
    } else if (std::count(item.begin(), item.end(), ':') == 1) {
      size_t colon = item.find(':');
      addr = item.substr(0, colon);
      port = item.substr(colon + 1);
    }
    in_addr a4;
    in6_addr a6;
    if (inet_pton(AF_INET, addr.c_str(), &a4) != 1 && inet_pton(AF_INET6, addr.c_str(), &a6) != 1) {
      *why = "\"" + item + "\" is not an IP address (give addr, addr:port or [v6addr]:port)";
      return false;
    }
    ra.address = addr;
    if (!port.empty()) {
      int p;
      if (!ParseInt(port, 1, 65535, &p)) { *why = "\"" + item + "\": bad port"; return false; }
      ra.port = static_cast<uint16_t>(p);
    }
    list.push_back(ra);
  }
  if (list.empty()) { *why = "no resolver given"; return false; }
  *out = std::move(list);
  return true;
}

using Setter = std::function<bool(const std::string& value, Config* c, std::string* why)>;

Setter Str(std::string Config::*field, bool allow_empty = true) {
  return [field, allow_empty](const std::string& v, Config* c, std::string* why) {
    if (!allow_empty && v.empty()) { *why = "must not be empty"; return false; }
    c->*field = v;
    return true;
  };
}
Setter Bool(bool Config::*field) {
  return [field](const std::string& v, Config* c, std::string* why) {
    if (!ParseBool(v, &(c->*field))) { *why = "\"" + v + "\" is not yes or no"; return false; }
    return true;
  };
}
Setter Int(int Config::*field, int lo, int hi) {
  return [field, lo, hi](const std::string& v, Config* c, std::string* why) {
    if (!ParseInt(v, lo, hi, &(c->*field))) {
      *why = "\"" + v + "\" is not a number from " + std::to_string(lo) + " to " + std::to_string(hi);
      return false;
    }
    return true;
  };
}
// A numeric address of one family, as inet_pton(3) reads it (no names: the
// source address is not looked up in DNS); empty clears it.
Setter NumericAddress(std::string Config::*field, int family) {
  return [field, family](const std::string& v, Config* c, std::string* why) {
    unsigned char buf[sizeof(in6_addr)];
    if (!v.empty() && inet_pton(family, v.c_str(), buf) != 1) {
      *why = "\"" + v + "\" is not a numeric " + (family == AF_INET ? "IPv4" : "IPv6") + " address";
      return false;
    }
    c->*field = v;
    return true;
  };
}
Setter Timeout(int Config::*field) { return Int(field, 1, 86400); }
// A duration: seconds, or a number with a unit s, m, h, d or w (Postfix style: "5d").
Setter Duration(int Config::*field, int lo, int hi) {
  return [field, lo, hi](const std::string& v, Config* c, std::string* why) {
    std::string num = v;
    long mult = 1;
    if (!num.empty() && !std::isdigit(static_cast<unsigned char>(num.back()))) {
      switch (std::tolower(static_cast<unsigned char>(num.back()))) {
        case 's': mult = 1; break;
        case 'm': mult = 60; break;
        case 'h': mult = 3600; break;
        case 'd': mult = 86400; break;
        case 'w': mult = 7 * 86400; break;
        default: *why = "\"" + v + "\": unit must be s, m, h, d or w"; return false;
      }
      num.pop_back();
    }
    int n;
    if (!ParseInt(num, 0, 999999999, &n) || n * mult < lo || n * mult > hi) {
      *why = "\"" + v + "\" is not a duration from " + std::to_string(lo) + "s to " + std::to_string(hi) + "s";
      return false;
    }
    c->*field = static_cast<int>(n * mult);
    return true;
  };
}

// A user or group for a socket's owner: a name (letters, digits, ".", "_",
// "-") or a number; whether it exists is checked where it is used.
Setter Account(std::string Config::*field) {
  return [field](const std::string& v, Config* c, std::string* why) {
    for (char ch : v) {
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-') {
        *why = "\"" + v + "\" is not a user or group name or number";
        return false;
      }
    }
    bool numeric = !v.empty() && std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (numeric && v.size() > 9) {
      *why = "\"" + v + "\" is too large a user or group number";
      return false;
    }
    c->*field = v;
    return true;
  };
}

const std::map<std::string, Setter>& Setters() {
  static const std::map<std::string, Setter> setters = {
      {"dns_resolver",
       [](const std::string& v, Config* c, std::string* why) { return ParseResolverList(v, &c->dns_resolver, why); }},
      {"dnssec_validation",
       [](const std::string& v, Config* c, std::string* why) {
         if (v == "resolver") c->dnssec_validation = DnssecValidation::kResolver;
         else if (v == "local") c->dnssec_validation = DnssecValidation::kLocal;
         else if (v == "off") c->dnssec_validation = DnssecValidation::kOff;
         else { *why = "\"" + v + "\" is not resolver, local or off"; return false; }
         return true;
       }},
      {"dnssec_trust_remote_resolver", Bool(&Config::dnssec_trust_remote_resolver)},
      {"dnssec_probe",
       [](const std::string& v, Config* c, std::string* why) {
         if (v.empty()) { c->dnssec_probe.clear(); return true; }
         auto n = NormalizeDnsName(v);
         if (!n.ok()) { *why = n.error(); return false; }
         c->dnssec_probe = n.value();
         return true;
       }},
      {"dnssec_probe_secure",
       [](const std::string& v, Config* c, std::string* why) {
         if (v.empty() || v == ".") { c->dnssec_probe_secure = v; return true; }
         auto n = NormalizeDnsName(v);
         if (!n.ok()) { *why = n.error(); return false; }
         c->dnssec_probe_secure = n.value();
         return true;
       }},
      {"trust_anchor_file", Str(&Config::trust_anchor_file, false)},
      {"ca_file", Str(&Config::ca_file)},
      {"smtp_port", Int(&Config::smtp_port, 1, 65535)},
      {"smtp_bind_address", NumericAddress(&Config::smtp_bind_address, AF_INET)},
      {"smtp_bind_address6", NumericAddress(&Config::smtp_bind_address6, AF_INET6)},
      {"helo_name",
       [](const std::string& v, Config* c, std::string* why) {
         if (v.empty()) { c->helo_name.clear(); return true; }
         auto n = NormalizeHostName(v);
         if (!n.ok()) { *why = n.error(); return false; }
         c->helo_name = n.value();
         return true;
       }},
      {"state_dir", Str(&Config::state_dir, false)},
      {"queue_dir", Str(&Config::queue_dir, false)},
      {"state_backend",
       [](const std::string& v, Config* c, std::string* why) {
         if (v == "sqlite") { c->state_backend = v; return true; }
         auto pg = ParsePgConnectionString(v);
         if (!pg.ok()) { *why = "\"sqlite\" or a PostgreSQL connection string: " + pg.status().message(); return false; }
         c->state_backend = pg.value();
         return true;
       }},
      {"state_backend_passfile", Str(&Config::state_backend_passfile)},
      {"state_backend_connect_timeout", Duration(&Config::state_backend_connect_timeout, 2, 300)},
      {"state_backend_statement_timeout", Duration(&Config::state_backend_statement_timeout, 1, 3600)},
      {"state_host_name",
       [](const std::string& v, Config* c, std::string* why) {
         if (v.empty()) { c->state_host_name.clear(); return true; }
         auto n = NormalizeHostName(v);
         if (!n.ok()) { *why = n.error(); return false; }
         c->state_host_name = n.value();
         return true;
       }},
      {"dane", Bool(&Config::dane)},
      {"mta_sts", Bool(&Config::mta_sts)},
      {"local_policy_file", Str(&Config::local_policy_file)},
      {"sender_domain",
       [](const std::string& v, Config* c, std::string* why) {
         if (v.empty()) { c->sender_domain.clear(); return true; }
         auto n = NormalizeHostName(v);
         if (!n.ok()) { *why = n.error(); return false; }
         c->sender_domain = n.value();
         return true;
       }},
      {"tlsrpt_organization", Str(&Config::tlsrpt_organization)},
      {"tlsrpt_contact", Str(&Config::tlsrpt_contact)},
      {"tlsrpt_from",
       [](const std::string& v, Config* c, std::string* why) {
         if (v.empty()) { c->tlsrpt_from.clear(); return true; }
         auto m = ParseMailbox(v, false);
         if (!m.ok()) { *why = m.error(); return false; }
         if (m->domain.empty()) { *why = "\"" + v + "\" has no domain"; return false; }
         c->tlsrpt_from = m->ToString();
         return true;
       }},
      {"message_size_limit",
       [](const std::string& v, Config* c, std::string* why) {
         bool digits = !v.empty() && v.size() <= 12 &&
                       std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
         if (!digits) { *why = "\"" + v + "\" is not a number of octets (0: no limit)"; return false; }
         c->message_size_limit = std::stoll(v);
         return true;
       }},
      {"queue_lifetime", Duration(&Config::queue_lifetime, 0, 100 * 86400)},
      {"queue_retry_min", Duration(&Config::queue_retry_min, 1, 86400)},
      {"queue_delay_warning", Duration(&Config::queue_delay_warning, 0, 100 * 86400)},
      {"queue_retry_max", Duration(&Config::queue_retry_max, 1, 7 * 86400)},
      // Each thread is a stack and, while it delivers, an SMTP session: a few hundred at most.
      {"queue_run_concurrency", Int(&Config::queue_run_concurrency, 1, 256)},
      {"default_destination_concurrency_limit", Int(&Config::default_destination_concurrency_limit, 1, 256)},
      {"queue_max_domains_per_attempt", Int(&Config::queue_max_domains_per_attempt, 1, 1000000)},
      {"serve_max_connections", Int(&Config::serve_max_connections, 1, 1000000)},
      {"serve_idle_timeout", Duration(&Config::serve_idle_timeout, 1, 86400)},
      {"serve_max_query_size", Int(&Config::serve_max_query_size, 64, 1000000)},
      {"serve_max_pending_requests", Int(&Config::serve_max_pending_requests, 1, 10000)},
      {"serve_max_output_buffer", Int(&Config::serve_max_output_buffer, 1024, 16 << 20)},
      {"serve_socket_mode",
       [](const std::string& v, Config* c, std::string* why) {
         // Permission bits only, octal as for chmod(1): no setuid, setgid or sticky bit.
         bool octal = !v.empty() && v.size() <= 4 &&
                      std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '7'; });
         long mode = octal ? strtol(v.c_str(), nullptr, 8) : -1;
         if (mode < 0 || mode > 0777) { *why = "\"" + v + "\" is not an octal mode from 0000 to 0777"; return false; }
         c->serve_socket_mode = static_cast<int>(mode);
         return true;
       }},
      {"serve_socket_owner", Account(&Config::serve_socket_owner)},
      {"serve_socket_group", Account(&Config::serve_socket_group)},
      {"dns_timeout", Int(&Config::dns_timeout, 1, 60)},
      {"dns_tries", Int(&Config::dns_tries, 1, 10)},
      {"mta_sts_connect_timeout", Timeout(&Config::mta_sts_connect_timeout)},
      {"mta_sts_fetch_timeout", Timeout(&Config::mta_sts_fetch_timeout)},
      {"smtp_connect_timeout", Timeout(&Config::smtp_connect_timeout)},
      {"smtp_greeting_timeout", Timeout(&Config::smtp_greeting_timeout)},
      {"smtp_helo_timeout", Timeout(&Config::smtp_helo_timeout)},
      {"smtp_starttls_timeout", Timeout(&Config::smtp_starttls_timeout)},
      {"smtp_mail_timeout", Timeout(&Config::smtp_mail_timeout)},
      {"smtp_rcpt_timeout", Timeout(&Config::smtp_rcpt_timeout)},
      {"smtp_data_init_timeout", Timeout(&Config::smtp_data_init_timeout)},
      {"smtp_data_xfer_timeout", Timeout(&Config::smtp_data_xfer_timeout)},
      {"smtp_data_done_timeout", Timeout(&Config::smtp_data_done_timeout)},
      {"smtp_quit_timeout", Timeout(&Config::smtp_quit_timeout)},
      // No 0 "no limit" as Postfix has: every limit here is finite.
      {"smtp_min_data_rate", Int(&Config::smtp_min_data_rate, 1, 100000000)},
      {"smtp_mx_address_limit", Int(&Config::smtp_mx_address_limit, 1, 1000)},
      {"smtp_mx_session_limit", Int(&Config::smtp_mx_session_limit, 1, 100)},
      {"smtp_connection_cache_on_demand", Bool(&Config::smtp_connection_cache_on_demand)},
      {"smtp_tls_session_cache", Bool(&Config::smtp_tls_session_cache)},
  };
  return setters;
}

}  // namespace

Status ApplyConfigSetting(const std::string& key, const std::string& value, const std::string& origin,
                          Config* out) {
  auto it = Setters().find(key);
  if (it == Setters().end()) return Status::Error(origin + ": unknown key \"" + key + "\"");
  std::string why;
  if (!it->second(value, out, &why)) return Status::Error(origin + ": bad value for \"" + key + "\": " + why);
  return Status::Ok();
}

Status ParseConfigText(const std::string& text, const std::string& name, Config* out) {
  out->source = name;
  std::vector<std::pair<int, std::string>> logical;  // (first line number, text)
  std::stringstream ss(text);
  std::string line;
  int lineno = 0;
  while (std::getline(ss, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    for (char c : line) {
      if (c == '\0') return Status::Error(name + ":" + std::to_string(lineno) + ": NUL byte in configuration");
    }
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    if (line[0] == ' ' || line[0] == '\t') {
      if (logical.empty())
        return Status::Error(name + ":" + std::to_string(lineno) + ": continuation line without a key before it");
      logical.back().second += " " + t;
      continue;
    }
    logical.emplace_back(lineno, t);
  }
  for (const auto& [n, l] : logical) {
    std::string origin = name + ":" + std::to_string(n);
    size_t eq = l.find('=');
    if (eq == std::string::npos)
      return Status::Error(origin + ": expected \"key = value\", got \"" + l.substr(0, 60) + "\"");
    std::string key = Trim(l.substr(0, eq));
    std::string value = Trim(l.substr(eq + 1));
    if (key.empty()) return Status::Error(origin + ": missing key before \"=\"");
    Status s = ApplyConfigSetting(key, value, origin, out);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status LoadConfig(const std::string& path, bool must_exist, const std::vector<std::string>& overrides,
                  Config* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    if (err == ENOENT && !must_exist) {
      out->source = "(defaults; " + path + " does not exist)";
    } else {
      return Status::Error(path + ": cannot read configuration: " + strerror(err));
    }
  } else {
    std::stringstream buf;
    buf << in.rdbuf();
    if (in.bad()) return Status::Error(path + ": read error");
    Status s = ParseConfigText(buf.str(), path, out);
    if (!s.ok()) return s;
  }
  for (const std::string& o : overrides) {
    size_t eq = o.find('=');
    if (eq == std::string::npos) return Status::Error("-o " + o + ": expected key=value");
    // The origin names the key, not the value: a value may be a secret
    // given by mistake (a password in state_backend), and errors reach logs.
    const std::string key = Trim(o.substr(0, eq));
    Status s = ApplyConfigSetting(key, Trim(o.substr(eq + 1)), "-o " + key, out);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

std::vector<ResolverAddress> ParseResolvConf(const std::string& text) {
  std::vector<ResolverAddress> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    std::stringstream ls(line);
    std::string word, addr;
    ls >> word >> addr;
    if (word != "nameserver" || addr.empty()) continue;
    size_t pct = addr.find('%');  // scoped IPv6: drop the zone
    if (pct != std::string::npos) addr = addr.substr(0, pct);
    in_addr a4;
    in6_addr a6;
    if (inet_pton(AF_INET, addr.c_str(), &a4) == 1 || inet_pton(AF_INET6, addr.c_str(), &a6) == 1) {
      out.push_back(ResolverAddress{addr, 53});
    }
  }
  return out;
}

}  // namespace mxsec
