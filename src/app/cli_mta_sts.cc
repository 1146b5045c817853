// cli_mta_sts.cc - `mxsec mta-sts refresh`: one proactive refresh run over
// the MTA-STS policy cache of state_dir (mta_sts_refresh.h, RFC 8461 §3.3).
//
// Promises: every cached, unexpired policy that is due (a day old, or at
// 3/4 of its max_age if sooner) and not backing off is fetched again, at
// most StsRefreshOptions::max_domains per run; one line per domain on
// stdout says what happened. A failure keeps the cached policy and puts the
// next attempt off (doubling back-off, see mxsec(8)). Exit 0 when every due
// policy was refreshed (or none was due), 75 when something failed and
// will be tried again, 78 on a configuration error, 64 on bad arguments.
#include <sysexits.h>

#include <iostream>

#include "cli_internal.h"
#include "mxsec/policy/mta_sts_refresh.h"
#include "mxsec/report/tlsrpt.h"

namespace mxsec {

int RunMtaSts(const GlobalOptions& g, const Config& cfg, const std::vector<std::string>& args) {
  if (args.size() != 1 || args[0] != "refresh") return Fail(EX_USAGE, "usage: mxsec mta-sts refresh");
  if (!cfg.mta_sts) {
    std::cout << "MTA-STS is switched off (mta_sts = no): nothing to refresh\n";
    return EX_OK;
  }
  Runtime rt;
  Status built = BuildRuntime(cfg, &rt);
  if (!built.ok()) return Fail(EX_CONFIG, "mta-sts: " + built.message());
  CheckResolver(&rt, "mta-sts: ", g.verbose > 0);
  StsRefreshReport report = rt.engine->RefreshStsCache(StsRefreshOptions());
  if (!report.error.empty()) return Fail(EX_TEMPFAIL, "mta-sts: refresh: " + report.error);
  for (const StsRefreshOutcome& d : report.domains) {
    if (d.refreshed) {
      std::cout << d.domain << ": refreshed (id " << d.id << "), expires " << FormatUtcDateTime(d.expires_at) << "\n";
    } else {
      std::cout << d.domain << ": refresh failed: " << d.error << "; the cached policy applies until "
                << FormatUtcDateTime(d.expires_at) << ", next attempt after " << FormatUtcDateTime(d.next_attempt)
                << "\n";
    }
  }
  if (report.domains.empty() && g.verbose) std::cerr << "mxsec: mta-sts: no cached policy is due for a refresh\n";
  std::cout.flush();
  if (!std::cout) return Fail(EX_IOERR, "mta-sts: cannot write the output");
  return report.failed() > 0 ? EX_TEMPFAIL : EX_OK;
}

}  // namespace mxsec
