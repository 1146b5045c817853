// cli.cc - argument parsing and the commands of the mxsec program.
//
// Exit codes follow sysexits.h (man/mxsec.8, EXIT STATUS): 64 usage, 78
// configuration, 0 when every domain got an answer. Errors are printed on
// stderr as "mxsec: <what>: <why>" and name the argument, file or key at
// fault. Commands that are part of the contract but not built yet say so
// and exit with a code that loses nothing for their callers.
#include "cli.h"
#include "cli_internal.h"

#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "mxsec/base/config.h"
#include "mxsec/dns/dns.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/policy/local_policy.h"
#include "mxsec/dns/local_validator.h"
#include "mxsec/policy/mta_sts.h"
#include "mxsec/policy/policy.h"
#include "mxsec/queue/submission.h"

#ifndef MXSEC_VERSION
#define MXSEC_VERSION "0.1.0"
#endif

namespace mxsec {

const char* kUsage =
    "usage: mxsec [--config FILE] [-o key=value]... [-v] COMMAND [ARGS]\n"
    "commands:\n"
    "  policy [--json] DOMAIN...   show the TLS policy of each domain (DNS and MTA-STS only)\n"
    "  probe [--json] DOMAIN...    connect to each MX, check STARTTLS and authentication, QUIT\n"
    "  deliver [--json] -f SENDER [--] RCPT...  deliver the message on stdin now\n"
    "  serve --listen inet:ADDR:PORT|unix:PATH...  socketmap TLS policy server for Postfix\n"
    "  sendmail [sendmail options] [RCPT...]  submit the message on stdin to the queue (also as `sendmail`)\n"
    "  queue list [--json]|run|flush|delete ID...  the sendmail queue (list: also as `mailq`)\n"
    "  tlsrpt [--day YYYY-MM-DD] [--dry-run] [DOMAIN...]  send the day's SMTP TLS reports (RFC 8460)\n"
    "  mta-sts refresh             refresh cached MTA-STS policies before they expire (RFC 8461)\n"
    "options: --help, --version\n";

int Fail(int code, const std::string& msg) {
  std::cerr << "mxsec: " << msg << "\n";
  return code;
}

bool MakeDirs(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part + "/";
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return false;
  }
  return true;
}

std::vector<ResolverAddress> ResolversFor(const Config& cfg) {
  if (!cfg.dns_resolver.empty()) return cfg.dns_resolver;
  std::ifstream in("/etc/resolv.conf");
  std::stringstream buf;
  buf << in.rdbuf();
  return ParseResolvConf(buf.str());
}

// Builds the runtime from the configuration; an error names what is wrong
// with the configuration (the caller picks the exit code).
Status BuildRuntime(const Config& cfg, Runtime* rt) {
  std::shared_ptr<const LocalPolicy> local;
  if (!cfg.local_policy_file.empty()) {
    auto loaded = LocalPolicy::Load(cfg.local_policy_file);
    if (!loaded.ok()) return Status::Error(cfg.source + ": local_policy_file: " + loaded.error());
    local = std::make_shared<const LocalPolicy>(std::move(loaded.value()));
  }

  std::vector<ResolverAddress> servers = ResolversFor(cfg);
  if (servers.empty()) return Status::Error("no DNS resolver: set dns_resolver or fix /etc/resolv.conf");

  DnsTransportOptions topt;
  topt.servers = servers;
  topt.timeout_ms = cfg.dns_timeout * 1000;
  topt.tries = cfg.dns_tries;
  rt->transport = NewLdnsTransport(topt);

  ResolverModeOptions ropt;
  std::string names;
  bool all_loopback = true;
  for (const auto& s : servers) {
    names += (names.empty() ? "" : ", ") + s.ToString();
    all_loopback = all_loopback && IsLoopbackAddress(s.address);
  }
  ropt.description = "resolver " + names + " (AD bit)";
  PolicyOptions popt;
  popt.local_policy = local;
  popt.mta_sts = cfg.mta_sts;
  popt.dane = cfg.dane;
  if (!cfg.dane) popt.dane_off_reason = "DANE is switched off (dane = no in " + cfg.source + ")";
  if (cfg.dnssec_validation == DnssecValidation::kOff) {
    popt.dane = false;
    popt.dane_off_reason = "DNSSEC is switched off (dnssec_validation = off): no DANE";
    ropt.trust_ad = false;
    ropt.untrusted_reason = popt.dane_off_reason;
  } else if (!all_loopback && !cfg.dnssec_trust_remote_resolver) {
    ropt.trust_ad = false;
    ropt.untrusted_reason = "resolver " + names +
                            " is not on loopback: its AD bit could be forged on the path, so DANE is off "
                            "(run a validating resolver on 127.0.0.1, or set dnssec_trust_remote_resolver = yes)";
  }
  if (cfg.dnssec_validation == DnssecValidation::kLocal) {
    // The resolver only fetches (DO+CD); signatures are checked here, so
    // where it runs does not matter.
    auto anchors = LoadTrustAnchors(cfg.trust_anchor_file);
    if (!anchors.ok()) return Status::Error(cfg.source + ": trust_anchor_file: " + anchors.error());
    LocalValidatorOptions lopt;
    lopt.description = "local validation (trust anchor " + cfg.trust_anchor_file + ") via resolver " + names;
    rt->resolver = NewLocalValidatingResolver(rt->transport.get(), std::move(anchors.value()), lopt);
  } else {
    ropt.probe_name = cfg.dnssec_probe;
    ropt.secure_name = cfg.dnssec_probe_secure;
    std::unique_ptr<ResolverModeResolver> rm = NewResolverModeResolver(rt->transport.get(), ropt);
    rt->resolver_mode = rm.get();
    rt->resolver = std::move(rm);
  }

  if (cfg.mta_sts) {
    std::string why;
    if (!MakeDirs(cfg.state_dir)) {
      why = cfg.state_dir + ": " + strerror(errno);
    } else {
      auto opened = OpenSqliteStsCache(cfg.state_dir + "/mta-sts.sqlite");
      if (opened.ok()) rt->cache = std::move(opened.value());
      else why = opened.error();
    }
    if (!rt->cache) {
      std::cerr << "mxsec: warning: MTA-STS cache unavailable (" << why
                << "); policies are fetched but not remembered\n";
      rt->cache = NewMemoryStsCache();
    }
    InitCurlOnce();
  }
  StsFetchOptions fopt;
  fopt.ca_file = cfg.ca_file;
  fopt.connect_timeout_ms = cfg.mta_sts_connect_timeout * 1000L;
  fopt.total_timeout_ms = cfg.mta_sts_fetch_timeout * 1000L;
  StsFetcherFactory factory = [fopt]() { return NewCurlStsFetcher(fopt); };
  rt->engine = std::make_unique<PolicyEngine>(rt->resolver.get(), factory, rt->cache.get(), SystemClock(), popt);
  return Status::Ok();
}

// The local policy table must be valid before any command does anything
// (sendmail would otherwise queue a message it cannot route as asked).
Status CheckLocalPolicy(const Config& cfg) {
  if (cfg.local_policy_file.empty()) return Status::Ok();
  auto loaded = LocalPolicy::Load(cfg.local_policy_file);
  if (!loaded.ok()) return Status::Error(cfg.source + ": local_policy_file: " + loaded.error());
  return Status::Ok();
}

std::optional<ResolverCheck> CheckResolver(Runtime* rt, const std::string& who, bool verbose) {
  if (!rt->resolver_mode) return std::nullopt;
  std::optional<ResolverCheck> c = rt->resolver_mode->RunSelfCheck(SystemClock()->Now());
  if (c && c->status != ResolverCheckStatus::kValidates) {
    std::cerr << "mxsec: " << who << "warning: " << c->summary << "\n";
  } else if (c && verbose) {
    std::cerr << "mxsec: " << who << c->summary << "\n";
  }
  return c;
}

int RunPolicy(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args) {
  bool json = false;
  std::vector<std::string> domains;
  bool options_done = false;
  for (const std::string& a : args) {
    if (!options_done && a == "--json") { json = true; continue; }
    if (!options_done && a == "--") { options_done = true; continue; }
    if (!options_done && a.size() > 1 && a[0] == '-') return Fail(EX_USAGE, "policy: unknown option \"" + a + "\"");
    auto n = NormalizeHostName(a);
    if (!n.ok()) return Fail(EX_USAGE, "policy: invalid domain argument: " + n.error());
    domains.push_back(n.value());
  }
  if (domains.empty()) return Fail(EX_USAGE, "policy: no domain given\n" + std::string(kUsage));

  Runtime rt;
  Status built = BuildRuntime(cfg, &rt);
  if (!built.ok()) return Fail(EX_CONFIG, built.message());
  CheckResolver(&rt, "policy: ", g.verbose > 0);
  std::vector<DomainPolicy> results = rt.engine->ResolveMany(domains);
  for (const DomainPolicy& p : results) {
    if (json) std::cout << PolicyToJsonLine(p) << "\n";
    else std::cout << PolicyToText(p);
    if (g.verbose) std::cerr << "mxsec: " << p.domain << ": statuses from " << p.dnssec_source << "\n";
  }
  std::cout.flush();
  if (!std::cout) return Fail(EX_IOERR, "policy: cannot write the output");
  return EX_OK;
}

int RunMxsec(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string prog = argc > 0 ? argv[0] : "mxsec";
  std::string base = prog.substr(prog.rfind('/') == std::string::npos ? 0 : prog.rfind('/') + 1);
  // Set-group-ID (the queue group, mxsec(8)): the caller must not choose the configuration.
  const bool privileged = (getegid() != getgid() || geteuid() != getuid()) && getuid() != 0;
  if (base == "sendmail" || base == "mailq") {
    // Invoked as sendmail(1)/mailq(1): sendmail options only; the configuration comes from
    // $MXSEC_CONFIG or the default file (or -C FILE).
    GlobalOptions g;
    auto opts = ParseSendmailArgs(args);
    std::string cfile = opts.ok() ? opts->config_file : "";
    if (privileged && (!cfile.empty() || (getenv("MXSEC_CONFIG") && *getenv("MXSEC_CONFIG"))))
      return Fail(EX_USAGE, base + ": -C and MXSEC_CONFIG are not allowed in a set-group-ID mxsec");
    g.config_path = cfile.empty() ? DefaultConfigPath() : cfile;
    g.config_explicit = !cfile.empty() || (getenv("MXSEC_CONFIG") && *getenv("MXSEC_CONFIG"));
    Config cfg;
    Status loaded = LoadConfig(g.config_path, g.config_explicit, {}, &cfg);
    if (!loaded.ok()) return Fail(EX_CONFIG, base + ": " + loaded.message());
    loaded = CheckLocalPolicy(cfg);
    if (!loaded.ok()) return Fail(EX_CONFIG, base + ": " + loaded.message());
    return RunSendmail(g, cfg, args, base);
  }

  GlobalOptions g;
  std::string command;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!command.empty()) { rest.push_back(a); continue; }
    if (a == "--help" || a == "-h") { std::cout << kUsage; return EX_OK; }
    if (a == "--version") { std::cout << "mxsec " << MXSEC_VERSION << "\n"; return EX_OK; }
    if (a == "-v") { ++g.verbose; continue; }
    if (a == "--config" || a == "-c") {
      if (i + 1 >= args.size()) return Fail(EX_USAGE, a + " needs a file name");
      g.config_path = args[++i];
      g.config_explicit = true;
      continue;
    }
    if (a.rfind("--config=", 0) == 0) { g.config_path = a.substr(9); g.config_explicit = true; continue; }
    if (a == "-o") {
      if (i + 1 >= args.size()) return Fail(EX_USAGE, "-o needs key=value");
      g.overrides.push_back(args[++i]);
      continue;
    }
    if (a.size() > 2 && a.rfind("-o", 0) == 0) { g.overrides.push_back(a.substr(2)); continue; }
    if (a[0] == '-') return Fail(EX_USAGE, "unknown option \"" + a + "\"\n" + kUsage);
    command = a;
  }
  if (command.empty()) return Fail(EX_USAGE, std::string("no command given\n") + kUsage);
  if (privileged) {
    if (g.config_explicit || !g.overrides.empty() || (getenv("MXSEC_CONFIG") && *getenv("MXSEC_CONFIG")))
      return Fail(EX_USAGE, "--config, -o and MXSEC_CONFIG are not allowed in a set-group-ID mxsec");
    if (command != "sendmail" && command != "queue")
      return Fail(EX_USAGE, "only sendmail and queue are allowed in a set-group-ID mxsec");
  }

  // Global options may also follow the command (mxsec policy -o x=y d).
  std::vector<std::string> cmd_args;
  // Not after `sendmail`: its options are sendmail's (-o, -v, -C).
  for (size_t i = 0; i < rest.size(); ++i) {
    const std::string& a = rest[i];
    if (command == "sendmail") { cmd_args.push_back(a); continue; }
    if (a == "--") { cmd_args.insert(cmd_args.end(), rest.begin() + static_cast<long>(i), rest.end()); break; }
    if (a == "-v") { ++g.verbose; continue; }
    if (a == "--config" && i + 1 < rest.size()) { g.config_path = rest[++i]; g.config_explicit = true; continue; }
    if (a == "-o" && i + 1 < rest.size()) { g.overrides.push_back(rest[++i]); continue; }
    if (a == "--help") { std::cout << kUsage; return EX_OK; }
    cmd_args.push_back(a);
  }

  if (!g.config_explicit) {
    g.config_path = DefaultConfigPath();
    g.config_explicit = getenv("MXSEC_CONFIG") && *getenv("MXSEC_CONFIG");
  }
  Config cfg;
  Status loaded = LoadConfig(g.config_path, g.config_explicit, g.overrides, &cfg);
  if (loaded.ok()) loaded = CheckLocalPolicy(cfg);
  if (command == "deliver") {
    // pipe(8) bounces every exit code but 75 and 71: a local problem must
    // never bounce mail that a corrected setup would deliver.
    if (!loaded.ok()) {
      std::cout << "4.3.5 mxsec configuration error: " << loaded.message() << "\n";
      std::cerr << "mxsec: " << loaded.message() << "\n";
      return EX_TEMPFAIL;
    }
    return RunDeliver(g, cfg, cmd_args);
  }
  if (!loaded.ok()) return Fail(EX_CONFIG, loaded.message());
  if (command == "policy") return RunPolicy(g, cfg, cmd_args);
  if (command == "sendmail") {
    if (!loaded.ok()) return Fail(EX_CONFIG, "sendmail: " + loaded.message());
    return RunSendmail(g, cfg, cmd_args, "sendmail");
  }
  if (command == "probe") return RunProbe(g, cfg, cmd_args);
  if (command == "serve") return RunServe(g, cfg, cmd_args);
  if (command == "tlsrpt") return RunTlsrpt(g, cfg, cmd_args);
  if (command == "mta-sts") return RunMtaSts(g, cfg, cmd_args);
  if (command == "queue") {
    if (privileged && getuid() != 0 && !cmd_args.empty() && cmd_args[0] != "list" && cmd_args[0] != "run" &&
        cmd_args[0] != "flush")
      return Fail(EX_NOPERM, "queue " + cmd_args[0] + ": only root may do that");
    return RunQueue(g, cfg, cmd_args);
  }
  return Fail(EX_USAGE, "unknown command \"" + command + "\"\n" + kUsage);
}

}  // namespace mxsec
