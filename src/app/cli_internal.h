// cli_internal.h - what the command implementations of the mxsec program
// share: global options, the policy runtime, error helpers.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mxsec/base/config.h"
#include "mxsec/smtp/delivery.h"
#include "mxsec/dns/dns.h"
#include "mxsec/policy/mta_sts.h"
#include "mxsec/policy/mta_sts_cache_pg.h"
#include "mxsec/policy/policy.h"

namespace mxsec {

extern const char* kUsage;

struct GlobalOptions {
  std::string config_path;
  bool config_explicit = false;
  std::vector<std::string> overrides;
  int verbose = 0;
};

// Everything a command needs to decide policies: resolver, cache, engine.
struct Runtime {
  std::unique_ptr<DnsTransport> transport;
  std::unique_ptr<Resolver> resolver;
  ResolverModeResolver* resolver_mode = nullptr;  // `resolver` in resolver mode, else null
  std::unique_ptr<StsCache> cache;
  // `cache` when state_backend is PostgreSQL (shared store over the local
  // copy), else null: whether the shared store answers.
  LayeredStsCache* layered_cache = nullptr;
  // Set by the caller before BuildRuntime to be told when the shared state
  // store goes down and comes back (once each); unset: a warning on stderr.
  StateStoreListener state_store_listener;
  std::unique_ptr<PolicyEngine> engine;
};

// Builds the runtime; an error says what in the configuration is wrong.
Status BuildRuntime(const Config& cfg, Runtime* rt);
// Resolver mode: runs the resolver's self-check (dnssec_probe,
// dnssec_probe_secure) before any decision and logs on stderr, prefixed by
// `who` ("policy: "), a resolver that does not validate or cannot be
// checked (with `verbose`, a passing check too). Returns the result.
std::optional<ResolverCheck> CheckResolver(Runtime* rt, const std::string& who, bool verbose);
// The arguments of `policy` and `probe`: [--json] DOMAIN... (each in normal form).
struct DomainArguments {
  bool json = false;
  std::vector<std::string> domains;
};
// Parses `args` of `command` into `out`; returns EX_OK, or the exit code
// of a usage error (printed, naming `command`). With
// `accept_end_of_options`, "--" ends the options.
int ParseDomainArguments(const std::string& command, const std::vector<std::string>& args, bool accept_end_of_options,
                         DomainArguments* out);
// Prints "mxsec: <msg>" on stderr and returns `code`.
int Fail(int code, const std::string& msg);
// mkdir -p; false with errno set on failure.
bool MakeDirs(const std::string& path);

// Shared by deliver and the sendmail queue (cli_deliver.cc).
std::string DefaultHeloName();
SmtpTimeouts TimeoutsFrom(const Config& c);
DeliveryOptions DeliveryOptionsFrom(const Config& cfg);
// The attempt log in state_dir, or null (with a warning) when it cannot be opened.
std::unique_ptr<AttemptLog> OpenAttemptLog(const Config& cfg, AttemptLogWrites writes = AttemptLogWrites::kEach);

int RunSendmail(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args,
                const std::string& invoked_as);
int RunQueue(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args);
int RunDeliver(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args);
int RunProbe(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args);
int RunServe(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args);
int RunTlsrpt(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args);
int RunMtaSts(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args);
int RunStats(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args);
int RunDb(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args);
int RunSurveyCommand(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args);

}  // namespace mxsec
