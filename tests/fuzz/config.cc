// config.cc - libFuzzer target: the configuration file parser
// (ParseConfigText, config.h) and resolv.conf reading (ParseResolvConf).
//
// Oracle: no crash or sanitizer report; an accepted configuration keeps
// every value within the range src/base/config.cc documents for its key (port
// 1..65535, DNS timeout 1..60 s and 1..10 tries, other timeouts 1..86400 s,
// queue durations within their bounds, a non-negative size limit), and
// every resolver address has a port other than 0.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mxsec/base/config.h"

namespace {
void InRange(int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  for (const auto& r : mxsec::ParseResolvConf(text))
    if (r.address.empty() || r.port == 0) abort();
  mxsec::Config c;
  if (!mxsec::ParseConfigText(text, "fuzz.conf", &c).ok()) return 0;
  InRange(c.smtp_port, 1, 65535);
  InRange(c.dns_timeout, 1, 60);
  InRange(c.dns_tries, 1, 10);
  for (int t : {c.mta_sts_connect_timeout, c.mta_sts_fetch_timeout, c.smtp_connect_timeout, c.smtp_greeting_timeout,
                c.smtp_helo_timeout, c.smtp_starttls_timeout, c.smtp_mail_timeout, c.smtp_rcpt_timeout,
                c.smtp_data_init_timeout, c.smtp_data_xfer_timeout, c.smtp_data_done_timeout, c.smtp_quit_timeout})
    InRange(t, 1, 86400);
  InRange(c.queue_lifetime, 0, 100 * 86400);
  InRange(c.queue_retry_min, 1, 86400);
  InRange(c.queue_retry_max, 1, 7 * 86400);
  InRange(c.queue_delay_warning, 0, 100 * 86400);
  if (c.message_size_limit < 0) abort();
  for (const auto& r : c.dns_resolver)
    if (r.address.empty() || r.port == 0) abort();
  return 0;
}
