// smtp_trouble.cc - the error policy of the SMTP client (see
// smtp_trouble.h for the promises). Every code and reason text a session
// or a delivery reports for trouble is spelled here.
#include "mxsec/smtp/smtp_trouble.h"

namespace mxsec {

namespace {

const char* PolicyWord(HostTls t) {
  switch (t) {
    case HostTls::kDane: return "DANE";
    case HostTls::kEncrypt: return "DANE (unusable TLSA: encryption only)";
    case HostTls::kPkix: return "MTA-STS";
    default: return "policy";
  }
}

std::string ServerCode(const SmtpReply& reply, const char* fallback) {
  return reply.enhanced.empty() ? fallback : reply.enhanced;
}

// The text a refused reply is reported with, by the stage it refused.
std::string RefusalText(TransactionStage stage, const SmtpReply& reply) {
  switch (stage) {
    case TransactionStage::kReadMail: return "MAIL FROM rejected: " + reply.Summary();
    case TransactionStage::kReadData: return "DATA rejected: " + reply.Summary();
    default: return reply.Summary();
  }
}

// The text a connection failure before the end of data is reported with.
std::string LostConnectionText(TransactionStage stage, const std::string& error) {
  switch (stage) {
    case TransactionStage::kSendPipelined: return "lost connection sending MAIL/RCPT: " + error;
    case TransactionStage::kSendMail: return "lost connection sending MAIL FROM: " + error;
    case TransactionStage::kReadMail: return "MAIL FROM: " + error;
    case TransactionStage::kReadRcpt: return "RCPT TO: " + error;
    case TransactionStage::kReadData: return "DATA: " + error;
    case TransactionStage::kSendMessage: return "lost connection sending the message: " + error;
    case TransactionStage::kSendRcpt:
    case TransactionStage::kSendData:
    case TransactionStage::kReadEndOfData: return error;
  }
  return error;
}

}  // namespace

bool TlsDemand::Required() const {
  return tls == HostTls::kDane || tls == HostTls::kEncrypt || tls == HostTls::kPkix;
}

std::string TlsDemand::Who() const { return required_by.empty() ? PolicyWord(tls) : required_by; }

HostFailure ConnectFailed(const Status& error) { return {"4.4.1", error.message(), "", false}; }

HostFailure GreetingLost(const Status& error) { return {"4.4.2", "greeting: " + error.message(), "", false}; }

HostFailure GreetingRefused(const SmtpReply& reply) {
  return {ServerCode(reply, reply.permanent() ? "5.0.0" : "4.0.0"), "server greeting: " + reply.Summary(), "",
          false};
}

HostFailure HelloFailed(const Status& error, bool after_starttls) {
  return {"4.5.0", (after_starttls ? "after STARTTLS: " : "") + error.message(), "", false};
}

bool MayFallBackToHelo(const TlsDemand& demand, bool tls_in_use) { return !demand.Required() && !tls_in_use; }

std::optional<HostFailure> StarttlsNotOffered(const TlsDemand& demand) {
  if (!demand.Required()) return std::nullopt;
  return HostFailure{"4.7.4", "STARTTLS not offered: possible downgrade, TLS required by " + demand.Who(),
                     "starttls-not-supported", false};
}

HostFailure StarttlsLost(const Status& error) { return {"4.4.2", "STARTTLS: " + error.message(), "", false}; }

std::optional<HostFailure> StarttlsRefused(const SmtpReply& reply, const TlsDemand& demand) {
  if (!demand.Required()) return std::nullopt;
  return HostFailure{"4.7.4", "STARTTLS refused (" + reply.Summary() + "), TLS required by " + demand.Who(),
                     "starttls-not-supported", false};
}

HostFailure DataBeforeHandshake() {
  return {"4.7.0",
          "protocol violation: the server sent data after the 220 reply to STARTTLS "
          "(command injection attempt?); connection dropped",
          "", false};
}

HostFailure HandshakeFailed(const Status& error, const TlsDemand& demand) {
  return {"4.7.5", error.message(), "validation-failure", !demand.Required()};
}

HostFailure VerificationFailed(const VerifyResult& result, const TlsDemand& demand) {
  return {"4.7.5", "certificate verification failed (" + demand.Who() + "): " + result.detail,
          result.failure_type.empty() ? "validation-failure" : result.failure_type, false};
}

std::optional<HostFailure> RequireTlsNotMet(const TlsInfo& tls, const EhloCapabilities& caps) {
  if (!tls.used) return HostFailure{"4.7.30", "REQUIRETLS support required: the session is not TLS", "", false};
  if (!tls.verified)
    return HostFailure{"4.7.30", "REQUIRETLS support required: the server is not authenticated (DANE or PKIX)", "",
                       false};
  if (!caps.requiretls)
    return HostFailure{"4.7.30", "REQUIRETLS support required: the server does not announce REQUIRETLS", "", false};
  return std::nullopt;
}

RcptResult RequireTlsUnavailable(const std::string& why) {
  return {RcptStatus::kDeferred, "4.7.30", "REQUIRETLS support required: " + why, false};
}

RcptResult ServerLacks(MissingExtension extension) {
  switch (extension) {
    case MissingExtension::kEightBitMime:
      return {RcptStatus::kBounced, "5.6.3", "message has 8-bit data and the server does not announce 8BITMIME",
              false};
    case MissingExtension::kSmtpUtf8Sender:
      return {RcptStatus::kBounced, "5.6.7", "sender address needs SMTPUTF8, which the server does not announce",
              false};
    case MissingExtension::kSmtpUtf8Recipient:
      return {RcptStatus::kBounced, "5.6.7", "address needs SMTPUTF8, which the server does not announce", false};
  }
  return {RcptStatus::kBounced, "5.6.0", "server lacks a needed extension", false};
}

RcptResult MessageTooBig(uint64_t size, uint64_t limit) {
  return {RcptStatus::kBounced, "5.3.4",
          "message is " + std::to_string(size) + " octets, server limit " + std::to_string(limit), false};
}

RcptResult StreamFailed(TransactionStage stage, const Status& error) {
  // RFC 1047: the server may have the message (it may have accepted it
  // and lost the connection before its reply reached us). Bouncing could
  // lose it; another host in this attempt would duplicate it every time
  // the first had accepted. Defer, without moving on: the retry later
  // risks one duplicate, not one per MX.
  if (stage == TransactionStage::kReadEndOfData)
    return {RcptStatus::kDeferred, "4.4.2",
            "no reply after end of data (" + error.message() +
                "): outcome unknown, not retried at another host now (RFC 1047)",
            false};
  // Before the end of data the server cannot have taken the message (the
  // terminator was not, or not completely, sent), so another host may be
  // tried.
  return {RcptStatus::kDeferred, "4.4.2", LostConnectionText(stage, error.message()), true};
}

RcptResult ReplyOutcome(TransactionStage stage, const SmtpReply& reply) {
  if (stage == TransactionStage::kReadEndOfData && reply.code == 250)
    return {RcptStatus::kDelivered, ServerCode(reply, "2.0.0"), reply.Summary(), false};
  const bool permanent = reply.permanent();
  return {permanent ? RcptStatus::kBounced : RcptStatus::kDeferred, ServerCode(reply, permanent ? "5.0.0" : "4.0.0"),
          RefusalText(stage, reply), !permanent};
}

std::optional<RcptResult> VerdictOutcome(Verdict verdict, const std::string& status_code,
                                         const std::string& domain, const std::string& reason) {
  if (verdict != Verdict::kFail && verdict != Verdict::kDefer) return std::nullopt;
  const bool fail = verdict == Verdict::kFail;
  return RcptResult{fail ? RcptStatus::kBounced : RcptStatus::kDeferred,
                    status_code.empty() ? (fail ? "5.4.4" : "4.4.3") : status_code, domain + ": " + reason, false};
}

bool MayRetryWithoutTls(const SessionResult& session, HostTls host_tls) {
  return session.host_failed && session.retry_plaintext && host_tls == HostTls::kMay;
}

RcptResult HostFailedOutcome(const SessionResult& session, const std::string& relay) {
  return {RcptStatus::kDeferred, session.code.empty() ? "4.4.1" : session.code, relay + ": " + session.error, true};
}

RcptResult MissingOutcome() { return {RcptStatus::kDeferred, "4.4.2", "no result", true}; }

RcptResult NoHostReached(const std::string& domain) {
  return {RcptStatus::kDeferred, "4.4.1", domain + ": no MX host could be reached", true};
}

RcptResult FinalDeferral(const RcptResult& last_trouble) {
  const std::string& c = last_trouble.code;
  return {RcptStatus::kDeferred, c.empty() || c[0] != '4' ? "4.4.1" : c, last_trouble.reply, true};
}

std::string WalkLimitNote(WalkLimit limit, size_t value, size_t addresses_left) {
  const bool by_address = limit == WalkLimit::kAddresses;
  return std::string(by_address ? "smtp_mx_address_limit" : "smtp_mx_session_limit") + " (" + std::to_string(value) +
         ") reached, " + std::to_string(addresses_left) + " more addresses not tried in this attempt";
}

}  // namespace mxsec
