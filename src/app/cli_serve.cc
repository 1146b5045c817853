// cli_serve.cc - `mxsec serve --listen SPEC... [--metrics SPEC]`: the
// socketmap policy server for Postfix's smtp_tls_policy_maps (the daemon is
// SocketmapServer, serve/server.h), with its Prometheus metrics. This file parses the arguments, builds the policy
// runtime from the configuration (again on SIGHUP) and logs to stderr,
// including when the shared state store (state_backend) goes down and
// comes back.
#include <sys/resource.h>
#include <sysexits.h>

#include <iostream>
#include <memory>
#include <mutex>
#include <optional>

#include "cli_internal.h"
#include "mxsec/serve/server.h"

namespace mxsec {
namespace {

void Log(const std::string& s) { std::cerr << "mxsec: serve: " << s << std::endl; }

// The server's view of a Runtime.
class RuntimePolicySource : public PolicySource {
 public:
  explicit RuntimePolicySource(std::unique_ptr<Runtime> rt) : rt_(std::move(rt)) {}
  DomainPolicy Resolve(const std::string& domain) override { return rt_->engine->Resolve(domain); }
  StsRefreshReport RefreshStsCache() override { return rt_->engine->RefreshStsCache(StsRefreshOptions()); }
  std::optional<ResolverCheck> LastResolverCheck() override {
    return rt_->resolver_mode ? rt_->resolver_mode->resolver_check() : std::nullopt;
  }
  std::optional<ResolverCheck> CheckResolver(std::time_t now) override {
    return rt_->resolver_mode ? rt_->resolver_mode->RunSelfCheck(now) : std::nullopt;
  }
  std::optional<bool> StateStoreUp() override {
    if (rt_->layered_cache == nullptr) return std::nullopt;
    return rt_->layered_cache->StateStoreUp();
  }

 private:
  std::unique_ptr<Runtime> rt_;
};

// The source and settings of a configuration, its resolver checked: at
// start and on every reload.
Result<ServeGeneration> Generation(const GlobalOptions& g, const Config& cfg) {
  auto rt = std::make_unique<Runtime>();
  // Logged once when the store goes down and once when it is back; the
  // lookups meanwhile use the local copy (mta_sts_cache_pg.h).
  rt->state_store_listener = [](bool up, const std::string& why) {
    if (up) Log("shared state store answers again: MTA-STS policies from it");
    else Log("warning: shared state store unavailable (" + why + "): MTA-STS policies from the local copy");
  };
  Status built = BuildRuntime(cfg, rt.get());
  if (!built.ok()) return built;
  CheckResolver(rt.get(), "serve: ", g.verbose > 0);
  return ServeGeneration{std::make_shared<RuntimePolicySource>(std::move(rt)), ServeSettingsFrom(cfg, Log)};
}

}  // namespace

int RunServe(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args) {
  std::vector<std::string> specs;
  std::optional<std::string> metrics_spec;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--listen" && i + 1 < args.size()) {
      specs.push_back(args[++i]);
    } else if (args[i].rfind("--listen=", 0) == 0) {
      specs.push_back(args[i].substr(9));
    } else if ((args[i] == "--metrics" && i + 1 < args.size()) || args[i].rfind("--metrics=", 0) == 0) {
      if (metrics_spec) return Fail(EX_USAGE, "serve: --metrics given twice");
      metrics_spec = args[i] == "--metrics" ? args[++i] : args[i].substr(10);
    } else {
      return Fail(EX_USAGE, "serve: unknown argument \"" + args[i] +
                                "\" (use --listen inet:ADDR:PORT|unix:PATH, --metrics inet:ADDR:PORT|unix:PATH)");
    }
  }
  if (specs.empty()) return Fail(EX_USAGE, "serve: no --listen given");

  // Thousands of Postfix processes may hold a connection each: use every
  // descriptor the hard limit allows (ServeSettingsFrom() keeps within it).
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  auto access = ResolveSocketAccess(cfg);
  if (!access.ok()) return Fail(EX_CONFIG, "serve: " + access.error());
  Result<ServeGeneration> initial = Generation(g, cfg);
  if (!initial.ok()) return Fail(EX_CONFIG, initial.error());

  std::vector<Listener> listeners;
  for (const std::string& s : specs) {
    auto l = OpenListener(s, access.value());
    if (!l.ok()) return Fail(EX_UNAVAILABLE, "serve: cannot listen on " + l.error());
    listeners.push_back(std::move(l).value());
  }
  std::optional<Listener> metrics;
  if (metrics_spec) {
    auto l = OpenListener(*metrics_spec, access.value());
    if (!l.ok()) return Fail(EX_UNAVAILABLE, "serve: cannot listen for metrics on " + l.error());
    metrics = std::move(l).value();
  }
  auto reload = [&g]() -> Result<ServeGeneration> {
    Config fresh;
    Status s = LoadConfig(g.config_path, g.config_explicit, g.overrides, &fresh);
    if (!s.ok()) return s;
    return Generation(g, fresh);
  };
  SocketmapServer server(std::move(initial).value(), reload, Log, g.verbose > 0);
  Status run = server.Run(std::move(listeners), std::move(metrics));
  if (!run.ok()) return Fail(EX_OSERR, "serve: " + run.message());
  return EX_OK;
}

}  // namespace mxsec
