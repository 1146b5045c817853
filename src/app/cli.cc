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
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mxsec/base/config.h"
#include "mxsec/base/pg.h"
#include "mxsec/base/pg_schema.h"
#include "mxsec/dns/dns.h"
#include "mxsec/base/domain_name.h"
#include "mxsec/policy/local_policy.h"
#include "mxsec/dns/local_validator.h"
#include "mxsec/dns/resolver_trust.h"
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
    "  deliver [--json] [--requiretls] -f SENDER [--] RCPT...  deliver the message on stdin now\n"
    "  serve --listen inet:ADDR:PORT|unix:PATH... [--metrics inet:ADDR:PORT|unix:PATH]\n"
    "                              socketmap TLS policy server for Postfix (metrics: Prometheus, HTTP)\n"
    "  sendmail [sendmail options] [RCPT...]  submit the message on stdin to the queue (also as `sendmail`)\n"
    "  queue list [--json]|run|flush|delete ID...  the sendmail queue (list: also as `mailq`)\n"
    "  tlsrpt [--day YYYY-MM-DD] [--dry-run] [DOMAIN...]  send the day's SMTP TLS reports (RFC 8460)\n"
    "  mta-sts refresh             refresh cached MTA-STS policies before they expire (RFC 8461)\n"
    "  stats [--since DURATION] [--json|--prometheus PATH] [DOMAIN...]  share of mail authenticated, encrypted, clear\n"
    "  survey [--concurrency N] [--rate R/s] [--probe|--no-probe] [--out FILE.jsonl] [--json] [--svg FILE] FILE\n"
    "                              how the domains of FILE protect inbound mail (DANE, MTA-STS, STARTTLS)\n"
    "  db init|migrate|status|forward  the shared state on PostgreSQL (state_backend = postgresql://...)\n"
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

namespace {

// The local policy table of local_policy_file, or null when none is set.
Result<std::shared_ptr<const LocalPolicy>> LoadLocalPolicyTable(const Config& cfg) {
  if (cfg.local_policy_file.empty()) return std::shared_ptr<const LocalPolicy>();
  auto loaded = LocalPolicy::Load(cfg.local_policy_file);
  if (!loaded.ok()) return Status::Error(cfg.source + ": local_policy_file: " + loaded.error());
  return std::make_shared<const LocalPolicy>(std::move(loaded.value()));
}

// The resolver of dnssec_validation over rt->transport: the local
// validator, or the resolver-mode resolver that believes the AD bit as far
// as `trust` allows.
Status BuildResolver(const Config& cfg, const ResolverTrust& trust, Runtime* rt) {
  if (cfg.dnssec_validation == DnssecValidation::kLocal) {
    // The resolver only fetches (DO+CD); signatures are checked here.
    auto anchors = LoadTrustAnchors(cfg.trust_anchor_file);
    if (!anchors.ok()) return Status::Error(cfg.source + ": trust_anchor_file: " + anchors.error());
    LocalValidatorOptions lopt;
    lopt.description =
        "local validation (trust anchor " + cfg.trust_anchor_file + ") via resolver " + trust.resolver_names;
    rt->resolver = NewLocalValidatingResolver(rt->transport.get(), std::move(anchors.value()), lopt);
    return Status::Ok();
  }
  ResolverModeOptions ropt;
  ropt.description = "resolver " + trust.resolver_names + " (AD bit)";
  ropt.trust_ad = trust.ad_trusted;
  ropt.untrusted_reason = trust.ad_untrusted_reason;
  ropt.probe_name = cfg.dnssec_probe;
  ropt.secure_name = cfg.dnssec_probe_secure;
  std::unique_ptr<ResolverModeResolver> rm = NewResolverModeResolver(rt->transport.get(), ropt);
  rt->resolver_mode = rm.get();
  rt->resolver = std::move(rm);
  return Status::Ok();
}

// The MTA-STS cache in state_dir; one in memory (with a warning) when that
// cannot be opened, so policies are still fetched and enforced.
std::unique_ptr<StsCache> OpenLocalStsCache(const Config& cfg) {
  std::string why;
  if (!MakeDirs(cfg.state_dir)) {
    why = cfg.state_dir + ": " + strerror(errno);
  } else {
    auto opened = OpenSqliteStsCache(cfg.state_dir + "/mta-sts.sqlite");
    if (opened.ok()) return std::move(opened.value());
    why = opened.error();
  }
  std::cerr << "mxsec: warning: MTA-STS cache unavailable (" << why
            << "); policies are fetched but not remembered\n";
  return NewMemoryStsCache();
}

// The cache of the configuration: the local one, or with state_backend on
// PostgreSQL the shared store over the local copy (mta_sts_cache_pg.h). A
// server that cannot be reached is not an error (the local copy answers
// until it can); a database without this mxsec's schema is.
Status OpenStsCache(const Config& cfg, Runtime* rt) {
  if (!IsPgBackend(cfg.state_backend)) {
    rt->cache = OpenLocalStsCache(cfg);
    return Status::Ok();
  }
  std::string down;
  auto shared = OpenPgStsCache(cfg, StateHostName(cfg), true, &down);
  if (!shared.ok()) return shared.status().Prefixed(cfg.source + ": state_backend: ");
  StateStoreListener listener = rt->state_store_listener;
  if (!listener) {
    listener = [](bool up, const std::string& why) {
      if (up) std::cerr << "mxsec: shared state store answers again\n";
      else std::cerr << "mxsec: warning: shared state store unavailable (" << why
                     << "): MTA-STS policies from the local copy\n";
    };
  }
  if (!down.empty()) listener(false, down);
  auto layered = NewLayeredStsCache(std::move(shared).value(), OpenLocalStsCache(cfg), listener, down);
  rt->layered_cache = layered.get();
  rt->cache = std::move(layered);
  return Status::Ok();
}

StsFetcherFactory CurlFetchers(const Config& cfg) {
  StsFetchOptions fopt;
  fopt.ca_file = cfg.ca_file;
  fopt.connect_timeout_ms = cfg.mta_sts_connect_timeout * 1000L;
  fopt.total_timeout_ms = cfg.mta_sts_fetch_timeout * 1000L;
  return [fopt]() { return NewCurlStsFetcher(fopt); };
}

}  // namespace

// Builds the runtime from the configuration; an error names what is wrong
// with the configuration (the caller picks the exit code).
Status BuildRuntime(const Config& cfg, Runtime* rt) {
  auto local = LoadLocalPolicyTable(cfg);
  if (!local.ok()) return local.status();
  for (const std::string& w : local.value() ? local.value()->ExpiryWarnings() : std::vector<std::string>())
    std::cerr << "mxsec: warning: " << w << "\n";

  ResolverTrustSettings trust_settings;
  trust_settings.resolvers = ResolversFor(cfg);
  if (trust_settings.resolvers.empty())
    return Status::Error("no DNS resolver: set dns_resolver or fix /etc/resolv.conf");
  trust_settings.validation = cfg.dnssec_validation;
  trust_settings.trust_remote_resolver = cfg.dnssec_trust_remote_resolver;
  trust_settings.dane = cfg.dane;
  trust_settings.config_source = cfg.source;
  const ResolverTrust trust = DecideResolverTrust(trust_settings);

  DnsTransportOptions topt;
  topt.servers = trust_settings.resolvers;
  topt.timeout_ms = cfg.dns_timeout * 1000;
  topt.tries = cfg.dns_tries;
  rt->transport = NewLdnsTransport(topt);
  Status resolver = BuildResolver(cfg, trust, rt);
  if (!resolver.ok()) return resolver;

  // libcurl is loaded by the first policy fetch (https_client.h), if any.
  if (cfg.mta_sts) {
    Status cache = OpenStsCache(cfg, rt);
    if (!cache.ok()) return cache;
  }
  PolicyOptions popt;
  popt.local_policy = local.value();
  popt.mta_sts = cfg.mta_sts;
  popt.dane = trust.dane;
  popt.dane_off_reason = trust.dane_off_reason;
  rt->engine =
      std::make_unique<PolicyEngine>(rt->resolver.get(), CurlFetchers(cfg), rt->cache.get(), SystemClock(), popt);
  return Status::Ok();
}

// The local policy table must be valid before any command does anything
// (sendmail would otherwise queue a message it cannot route as asked).
Status CheckLocalPolicy(const Config& cfg) { return LoadLocalPolicyTable(cfg).status(); }

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

int ParseDomainArguments(const std::string& command, const std::vector<std::string>& args, bool accept_end_of_options,
                         DomainArguments* out) {
  bool options_done = false;
  for (const std::string& a : args) {
    if (!options_done && a == "--json") { out->json = true; continue; }
    if (accept_end_of_options && !options_done && a == "--") { options_done = true; continue; }
    if (!options_done && a.size() > 1 && a[0] == '-')
      return Fail(EX_USAGE, command + ": unknown option \"" + a + "\"");
    auto n = NormalizeHostName(a);
    if (!n.ok()) return Fail(EX_USAGE, command + ": invalid domain argument: " + n.error());
    out->domains.push_back(n.value());
  }
  if (out->domains.empty()) return Fail(EX_USAGE, command + ": no domain given\n" + std::string(kUsage));
  return EX_OK;
}

namespace {

// With a shared state store, where the MTA-STS policy in force came from:
// the fleet's store (and which host fetched it) or this host's local copy
// because the store does not answer. A note, so the contract's fields stay
// as they are.
void NoteStsSource(Runtime& rt, DomainPolicy* p) {
  if (rt.layered_cache == nullptr || !p->mta_sts || p->mta_sts->source != "cache") return;
  if (!rt.layered_cache->StateStoreUp()) {
    p->notes.push_back("MTA-STS policy from this host's local copy: shared state store unavailable (" +
                       rt.layered_cache->StateStoreError() + ")");
    return;
  }
  std::optional<CachedStsPolicy> cached = rt.layered_cache->Get(p->domain);
  if (cached && !cached->fetched_by.empty()) {
    p->notes.push_back("MTA-STS policy cached in the shared state store, fetched by " + cached->fetched_by);
  }
}

}  // namespace

int RunPolicy(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args) {
  DomainArguments parsed;
  if (int bad = ParseDomainArguments("policy", args, true, &parsed); bad != EX_OK) return bad;

  Runtime rt;
  Status built = BuildRuntime(cfg, &rt);
  if (!built.ok()) return Fail(EX_CONFIG, built.message());
  CheckResolver(&rt, "policy: ", g.verbose > 0);
  std::vector<DomainPolicy> results = rt.engine->ResolveMany(parsed.domains);
  for (DomainPolicy& p : results) NoteStsSource(rt, &p);
  for (const DomainPolicy& p : results) {
    if (parsed.json) std::cout << PolicyToJsonLine(p) << "\n";
    else std::cout << PolicyToText(p);
    if (g.verbose) std::cerr << "mxsec: " << p.domain << ": statuses from " << p.dnssec_source << "\n";
  }
  std::cout.flush();
  if (!std::cout) return Fail(EX_IOERR, "policy: cannot write the output");
  return EX_OK;
}

namespace {

// The command line of `mxsec [global options] COMMAND [ARGS]`.
struct CommandLine {
  GlobalOptions global;
  std::string command;
  std::vector<std::string> args;  // the command's own arguments
};

bool ConfigFromEnvironment() {
  const char* env = getenv("MXSEC_CONFIG");
  return env && *env;
}

// Set-group-ID (the queue group, mxsec(8)): the caller must not choose the configuration.
bool RunsPrivileged() { return (getegid() != getgid() || geteuid() != getuid()) && getuid() != 0; }

// Invoked as sendmail(1)/mailq(1): sendmail options only; the configuration comes from
// $MXSEC_CONFIG or the default file (or -C FILE).
int RunAsSendmail(const std::string& invoked_as, const std::vector<std::string>& args, bool privileged) {
  GlobalOptions g;
  auto opts = ParseSendmailArgs(args);
  std::string cfile = opts.ok() ? opts->config_file : "";
  if (privileged && (!cfile.empty() || ConfigFromEnvironment()))
    return Fail(EX_USAGE, invoked_as + ": -C and MXSEC_CONFIG are not allowed in a set-group-ID mxsec");
  g.config_path = cfile.empty() ? DefaultConfigPath() : cfile;
  g.config_explicit = !cfile.empty() || ConfigFromEnvironment();
  Config cfg;
  Status loaded = LoadConfig(g.config_path, g.config_explicit, {}, &cfg);
  if (!loaded.ok()) return Fail(EX_CONFIG, invoked_as + ": " + loaded.message());
  loaded = CheckLocalPolicy(cfg);
  if (!loaded.ok()) return Fail(EX_CONFIG, invoked_as + ": " + loaded.message());
  return RunSendmail(g, cfg, args, invoked_as);
}

// The global options before the command, and the command; everything after
// it goes to `rest`. Returns an exit code when the program ends here
// (--help, --version, a usage error).
std::optional<int> ParseOptionsBeforeCommand(const std::vector<std::string>& args, CommandLine* cl,
                                             std::vector<std::string>* rest) {
  GlobalOptions& g = cl->global;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!cl->command.empty()) { rest->push_back(a); continue; }
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
    cl->command = a;
  }
  if (cl->command.empty()) return Fail(EX_USAGE, std::string("no command given\n") + kUsage);
  return std::nullopt;
}

std::optional<int> RefusePrivileged(const CommandLine& cl) {
  const GlobalOptions& g = cl.global;
  if (g.config_explicit || !g.overrides.empty() || ConfigFromEnvironment())
    return Fail(EX_USAGE, "--config, -o and MXSEC_CONFIG are not allowed in a set-group-ID mxsec");
  if (cl.command != "sendmail" && cl.command != "queue")
    return Fail(EX_USAGE, "only sendmail and queue are allowed in a set-group-ID mxsec");
  return std::nullopt;
}

// Global options may also follow the command (mxsec policy -o x=y d); not
// after `sendmail`: its options are sendmail's (-o, -v, -C). Returns an
// exit code when the program ends here (--help).
std::optional<int> ParseOptionsAfterCommand(const std::vector<std::string>& rest, CommandLine* cl) {
  GlobalOptions& g = cl->global;
  for (size_t i = 0; i < rest.size(); ++i) {
    const std::string& a = rest[i];
    if (cl->command == "sendmail") { cl->args.push_back(a); continue; }
    if (a == "--") { cl->args.insert(cl->args.end(), rest.begin() + static_cast<long>(i), rest.end()); break; }
    if (a == "-v") { ++g.verbose; continue; }
    if (a == "--config" && i + 1 < rest.size()) { g.config_path = rest[++i]; g.config_explicit = true; continue; }
    if (a == "-o" && i + 1 < rest.size()) { g.overrides.push_back(rest[++i]); continue; }
    if (a == "--help") { std::cout << kUsage; return EX_OK; }
    cl->args.push_back(a);
  }
  return std::nullopt;
}

// The configuration file and its local policy table; `cfg` holds what was read.
Status LoadConfiguration(GlobalOptions* g, Config* cfg) {
  if (!g->config_explicit) {
    g->config_path = DefaultConfigPath();
    g->config_explicit = ConfigFromEnvironment();
  }
  Status loaded = LoadConfig(g->config_path, g->config_explicit, g->overrides, cfg);
  if (loaded.ok()) loaded = CheckLocalPolicy(*cfg);
  return loaded;
}

// pipe(8) bounces every exit code but 75 and 71: a local problem must
// never bounce mail that a corrected setup would deliver.
int DeferForConfiguration(const Status& loaded) {
  std::cout << "4.3.5 mxsec configuration error: " << loaded.message() << "\n";
  std::cerr << "mxsec: " << loaded.message() << "\n";
  return EX_TEMPFAIL;
}

int RunQueueCommand(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args,
                    bool privileged) {
  if (privileged && getuid() != 0 && !args.empty() && args[0] != "list" && args[0] != "run" && args[0] != "flush")
    return Fail(EX_NOPERM, "queue " + args[0] + ": only root may do that");
  return RunQueue(g, cfg, args);
}

int RunCommand(const CommandLine& cl, const Config& cfg, bool privileged) {
  const GlobalOptions& g = cl.global;
  const std::string& command = cl.command;
  if (command == "policy") return RunPolicy(g, cfg, cl.args);
  if (command == "sendmail") return RunSendmail(g, cfg, cl.args, "sendmail");
  if (command == "probe") return RunProbe(g, cfg, cl.args);
  if (command == "serve") return RunServe(g, cfg, cl.args);
  if (command == "tlsrpt") return RunTlsrpt(g, cfg, cl.args);
  if (command == "stats") return RunStats(g, cfg, cl.args);
  if (command == "survey") return RunSurveyCommand(g, cfg, cl.args);
  if (command == "db") return RunDb(g, cfg, cl.args);
  if (command == "mta-sts") return RunMtaSts(g, cfg, cl.args);
  if (command == "queue") return RunQueueCommand(g, cfg, cl.args, privileged);
  return Fail(EX_USAGE, "unknown command \"" + command + "\"\n" + kUsage);
}

}  // namespace

int RunMxsec(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string prog = argc > 0 ? argv[0] : "mxsec";
  std::string base = prog.substr(prog.rfind('/') == std::string::npos ? 0 : prog.rfind('/') + 1);
  const bool privileged = RunsPrivileged();
  if (base == "sendmail" || base == "mailq") return RunAsSendmail(base, args, privileged);

  CommandLine cl;
  std::vector<std::string> rest;
  if (auto done = ParseOptionsBeforeCommand(args, &cl, &rest)) return *done;
  if (auto done = ParseOptionsAfterCommand(rest, &cl)) return *done;
  // Only once every global option is known, those after the command too
  // ("mxsec queue --config F run"): checked earlier, a user of the queue's
  // group could choose the configuration of a set-group-ID program.
  if (privileged) {
    if (auto refused = RefusePrivileged(cl)) return *refused;
  }

  Config cfg;
  Status loaded = LoadConfiguration(&cl.global, &cfg);
  if (cl.command == "deliver") {
    if (!loaded.ok()) return DeferForConfiguration(loaded);
    return RunDeliver(cl.global, cfg, cl.args);
  }
  if (!loaded.ok()) return Fail(EX_CONFIG, loaded.message());
  return RunCommand(cl, cfg, privileged);
}

}  // namespace mxsec
