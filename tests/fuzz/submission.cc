// submission.cc - libFuzzer target: the sendmail(1) message path without
// I/O, as cli_sendmail.cc runs it: LoneDotEnd (without -i), the PrepareMessage
// check of the input, EditHeaders (with or without -t and qualification,
// chosen by the first byte), the Received field, and PrepareMessage for
// the SMTP DATA phase (smtp_proto.h, submission.h).
//
// Oracle, for every input the submission path accepts (exit 0: it is
// queued): the message as it will go on the wire (1) can be prepared for
// SMTP, so it is delivered or bounced, never stuck: no line over 998
// octets (RFC 5321 §4.5.3.1.6), (2) has no Bcc field left in its header
// section however its lines end (RFC 5322 §3.6.3; a bare CR becomes a line
// end on the wire), and (3) no -t recipient is empty.
// No crash or sanitizer report for any input.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mxsec/smtp/smtp_proto.h"
#include "mxsec/queue/submission.h"

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The header section of DATA-phase text (CRLF lines, dot-stuffed): no Bcc
// field, and no line over 998 octets anywhere.
void CheckWire(std::string_view data) {
  bool in_header = true;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t eol = data.find("\r\n", pos);
    if (eol == std::string_view::npos) abort();  // PrepareMessage ends every line with CRLF
    std::string_view line = data.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.size() > 998 + 1) abort();  // +1: a stuffed dot is not part of the line
    if (!line.empty() && line[0] == '.') line.remove_prefix(1);
    if (line.empty()) in_header = false;
    if (!in_header) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (Lower(name) == "bcc") abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::string raw(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (!(flags & 2)) raw.resize(mxsec::LoneDotEnd(raw));  // no -i
  if (!mxsec::PrepareMessage(raw, mxsec::MessageOptions{}).ok()) return 0;  // refused: EX_DATAERR

  mxsec::HeaderEdit edit;
  edit.extract_recipients = flags & 1;
  if (flags & 4) edit.qualify_domain = "example.org";
  edit.from = "Fuzz User <fuzz@example.org>";
  edit.date = "Thu, 3 Dec 2026 07:55:00 +0000";
  edit.message_id = "<1764748500.0123456789abcdef@example.org>";
  auto edited = mxsec::EditHeaders(raw, edit);
  if (!edited.ok()) return 0;  // refused: EX_DATAERR

  if (edit.extract_recipients) {
    for (const auto& r : edited->recipients)
      if (r.empty()) abort();
  }
  std::string queued = mxsec::SubmissionReceivedHeader("host.example.org", 1000, "0123456789ABCDEF0", 1764748500,
                                                       edited->message) +
                       edited->message;
  auto wire = mxsec::PrepareMessage(queued, mxsec::MessageOptions{});
  if (!wire.ok()) abort();  // accepted, yet it can never be sent
  CheckWire(wire->data);
  return 0;
}
