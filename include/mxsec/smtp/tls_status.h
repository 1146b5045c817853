// tls_status.h - the TLS feature status of a delivery in Postfix 3.11's
// vocabulary (its smtp_log_tls_feature_status logging, "tls=dane"), so
// that log parsers written for Postfix read mxsec's lines too; and the
// security class of a delivered message for `mxsec stats`.
//
// The status is LEVEL, the Postfix security level the host's policy
// demanded, followed by at most one of:
//   ":none"  the level allowed plaintext and the message went in clear
//            ("may:none");
//   "!"      the level was violated: TLS was required and could not be
//            had or verified, so the host was given up ("dane!");
//   "?"      undecided: the session ended before TLS was decided (no
//            connection, no greeting, no EHLO), or no host was tried.
// Levels: "dane" (usable TLSA: TLS authenticated by DANE, RFC 7672),
// "encrypt" (only unusable TLSA: TLS required, not authenticated),
// "secure" (MTA-STS enforce: TLS with a PKIX-valid certificate for the MX
// name, RFC 8461), "may" (opportunistic), "none" (the host is not used).
// Postfix's "halfdane" (TLSA at an MX host whose MX RRset is insecure)
// never occurs: TLSA is looked up only under a secure MX RRset.
//
// The functions are pure: no I/O, no state.
#pragma once

#include <string>

#include "mxsec/policy/verdict.h"
#include "mxsec/smtp/smtp_client.h"

namespace mxsec {

// How far a session got with the host's TLS demand.
enum class TlsProgress {
  kUndecided,  // ended before TLS was decided, or no session
  kViolated,   // the demand was not met; nothing was sent to the host
  kDecided,    // TLS was decided under the policy and the session went on
};

struct TlsFacts {
  HostTls demand = HostTls::kMay;
  TlsProgress progress = TlsProgress::kUndecided;
  bool tls_used = false;  // a TLS session was established
};

// "dane", "encrypt", "secure", "may", "none".
const char* PostfixTlsLevel(HostTls demand);

// The feature status without the "tls=" key: "dane", "may:none",
// "secure!", "dane?".
std::string TlsFeatureStatus(const TlsFacts& facts);

// The facts of one session with a host that demands `demand`.
TlsFacts FactsOfSession(HostTls demand, const SessionResult& session);

// The security class of a message delivered over `tls`: "dane" (TLS
// authenticated by DANE), "mta-sts" (authenticated by a PKIX certificate
// as MTA-STS demands), "encrypted" (TLS, not authenticated), "clear".
const char* TlsSecurityClass(const TlsInfo& tls);

}  // namespace mxsec
