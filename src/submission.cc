// submission.cc - sendmail(1) arguments, address lists and header edits
// (see submission.h for what each function promises).
#include "mxsec/submission.h"

#include <cctype>

#include "mxsec/dsn.h"  // Rfc5322Date

namespace mxsec {
namespace {

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

}  // namespace

Result<SendmailOptions> ParseSendmailArgs(const std::vector<std::string>& args) {
  SendmailOptions o;
  // Option letters that take an argument (getopt "B:C:F:L:N:O:R:V:X:b:e:f:h:o:p:r:"); -q takes an optional one.
  const std::string with_arg = "BCFLNORVXbefhopr";
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") { ++i; break; }
    if (a.size() < 2 || a[0] != '-') break;
    for (size_t k = 1; k < a.size(); ++k) {
      char c = a[k];
      if (c == 'q') {
        // -q, -q30m, -qIid, -qRsite, -qSsite: run the queue now (intervals: there is no daemon to start).
        o.mode = SendmailOptions::Mode::kRunQueue;
        if (k + 1 < a.size()) o.ignored.push_back(a);
        break;
      }
      if (with_arg.find(c) != std::string::npos) {
        std::string val;
        if (k + 1 < a.size()) {
          val = a.substr(k + 1);
        } else if (i + 1 < args.size()) {
          val = args[++i];
        } else {
          return Status::Error(std::string("option -") + c + " needs an argument");
        }
        switch (c) {
          case 'f':
          case 'r': o.sender = val; break;
          case 'F': o.full_name = val; break;
          case 'N': {
            std::string l = Lower(val);
            size_t p = 0;
            while (p <= l.size()) {
              size_t comma = l.find(',', p);
              std::string w = l.substr(p, comma == std::string::npos ? std::string::npos : comma - p);
              if (w != "never" && w != "success" && w != "delay" && w != "failure")
                return Status::Error("-N " + val + ": expected never, or a list of success, delay, failure");
              if (comma == std::string::npos) break;
              p = comma + 1;
            }
            // RFC 3461 §4.1: NEVER stands alone.
            if (l.find("never") != std::string::npos && l != "never")
              return Status::Error("-N " + val + ": never cannot be combined with success, delay or failure");
            o.notify = l;
            break;
          }
          case 'R': {
            std::string l = Lower(val);
            if (l != "hdrs" && l != "full") return Status::Error("-R " + val + ": expected hdrs or full");
            o.ret = l;
            break;
          }
          case 'V': {
            // RFC 3461 §4.4: printable US-ASCII, at most 100 characters.
            bool printable = !val.empty() && val.size() <= 100;
            for (char ch : val) printable = printable && ch >= 0x21 && ch <= 0x7e;
            if (!printable)
              return Status::Error("-V " + val + ": the envelope ID must be 1 to 100 printable US-ASCII characters");
            o.envid = val;
            break;
          }
          case 'C': o.config_file = val; break;
          case 'B': {
            std::string l = Lower(val);
            if (l != "7bit" && l != "8bitmime") return Status::Error("-B " + val + ": expected 7BIT or 8BITMIME");
            o.ignored.push_back("-B" + val);  // the body type is detected from the message itself
            break;
          }
          case 'b':
            if (val == "m") o.mode = SendmailOptions::Mode::kSend;
            else if (val == "p") o.mode = SendmailOptions::Mode::kListQueue;
            else return Status::Error("unknown option -b" + val + " (supported: -bm, -bp)");
            break;
          case 'o':
            if (val == "i") o.ignore_dots = true;
            else if (val == "di") o.delivery = SendmailOptions::Delivery::kInteractive;
            else if (val == "db" || val == "db,") o.delivery = SendmailOptions::Delivery::kBackground;
            else if (val == "dq") o.delivery = SendmailOptions::Delivery::kQueueOnly;
            else o.ignored.push_back("-o" + val);  // legacy sendmail options, ignored as Postfix does
            break;
          default:  // -O option=value, -L label, -X file, -h hops, -e x, -p proto: ignored
            o.ignored.push_back(std::string("-") + c + val);
            break;
        }
        break;  // the argument used the rest of this word
      }
      switch (c) {
        case 't': o.extract_recipients = true; break;
        case 'i': o.ignore_dots = true; break;
        case 'v': ++o.verbose; break;
        case 'm':  // "me too": always the case
        case 'G': case 'I': case 'U': case 'c': case 'n': case 'x':
          o.ignored.push_back(std::string("-") + c);
          break;
        default:
          return Status::Error(std::string("unknown option -") + c + (a.size() > 2 ? " (in \"" + a + "\")" : ""));
      }
    }
  }
  for (; i < args.size(); ++i) o.recipients.push_back(args[i]);
  return o;
}

namespace {

// RFC 5322 §3.2.4 quoted-string or §3.2.2 (nested) comment starting at
// v[i] ('"' or '('), backslash escapes honoured: the index just past its
// end, or npos when it is not terminated.
size_t SkipQuotedOrComment(std::string_view v, size_t i) {
  if (v[i] == '"') {
    for (++i; i < v.size(); ++i) {
      if (v[i] == '\\') ++i;
      else if (v[i] == '"') return i + 1;
    }
    return std::string_view::npos;
  }
  int depth = 0;
  for (; i < v.size(); ++i) {
    if (v[i] == '\\') ++i;
    else if (v[i] == '(') ++depth;
    else if (v[i] == ')' && --depth == 0) return i + 1;
  }
  return std::string_view::npos;
}

}  // namespace

Result<std::vector<std::string>> ParseAddressList(std::string_view v) {
  // A small RFC 5322 §3.4 tokenizer: quoted strings, comments, <angle-addr>,
  // group "name: a, b;" and plain addr-specs separated by commas.
  std::vector<std::string> out;
  std::string cur;       // the text of the current address outside <>
  std::string angle;     // the last <...> of the current address
  bool have_angle = false;
  auto flush = [&]() {
    std::string a = have_angle ? angle : cur;
    // trim
    size_t b = a.find_first_not_of(" \t\r\n");
    size_t e = a.find_last_not_of(" \t\r\n");
    a = b == std::string::npos ? "" : a.substr(b, e - b + 1);
    if (!a.empty()) out.push_back(a);
    cur.clear();
    angle.clear();
    have_angle = false;
  };
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == '"' || c == '(') {
      size_t end = SkipQuotedOrComment(v, i);
      if (end == std::string_view::npos)
        return Status::Error(std::string(c == '"' ? "unterminated quoted string" : "unterminated comment") + " in \"" +
                             std::string(v.substr(0, 200)) + "\"");
      if (c == '"') cur += v.substr(i, end - i);
      else cur += ' ';
      i = end - 1;
    } else if (c == '<') {
      size_t close = v.find('>', i);
      if (close == std::string_view::npos)
        return Status::Error("missing '>' in \"" + std::string(v.substr(0, 200)) + "\"");
      angle = std::string(v.substr(i + 1, close - i - 1));
      // Drop an obsolete source route "<@a,@b:user@dom>".
      if (!angle.empty() && angle[0] == '@' && angle.find(':') != std::string::npos) angle = angle.substr(angle.find(':') + 1);
      have_angle = true;
      i = close;
    } else if (c == ':' && !have_angle) {
      cur.clear();  // a group name: what follows are its members
    } else if (c == ';' || c == ',') {
      flush();
    } else {
      cur += c;
    }
  }
  flush();
  // A display name without an address ("undisclosed-recipients:;" leaves nothing).
  for (const std::string& a : out) {
    if (a.find_first_of(" \t") != std::string::npos && a.front() != '"')
      return Status::Error("\"" + a + "\" is not an address (a display name needs <address>)");
  }
  return out;
}

std::string QualifyAddressField(std::string_view v, const std::string& domain) {
  // Split at top-level commas, remembering for each element where an unqualified
  // address ends (where "@domain" goes), if it has one.
  std::vector<size_t> inserts;
  size_t elem_start = 0;
  auto finish = [&](size_t end) {
    std::string_view e = v.substr(elem_start, end - elem_start);
    // Scan the element outside quotes and comments.
    bool has_at = false, has_colon = false, has_quote = false;
    size_t lt = std::string_view::npos, gt = std::string_view::npos;
    size_t atom_e = std::string_view::npos;
    int atoms = 0;
    bool in_atom = false;
    for (size_t i = 0; i < e.size(); ++i) {
      char c = e[i];
      bool atext = std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-/=?^_`{|}~.").find(c) != std::string_view::npos;
      if (atext && lt == std::string_view::npos) {
        if (!in_atom) {
          ++atoms;
          in_atom = true;
        }
        atom_e = i + 1;
        continue;
      }
      in_atom = false;
      if (c == '"' || c == '(') {
        if (c == '"') has_quote = true;
        size_t end = SkipQuotedOrComment(e, i);
        if (end == std::string_view::npos) break;  // unterminated: the rest is inside it
        i = end - 1;
      }
      else if (c == '@') has_at = true;
      else if (c == ':' || c == ';') has_colon = true;
      else if (c == '<' && lt == std::string_view::npos) lt = i;
      else if (c == '>' && lt != std::string_view::npos && gt == std::string_view::npos) gt = i;
    }
    if (has_colon) return;
    if (lt != std::string_view::npos) {
      if (gt == std::string_view::npos) return;
      std::string_view inner = e.substr(lt + 1, gt - lt - 1);
      bool ok = !inner.empty() && inner.find_first_of("@\"() \t\r\n") == std::string_view::npos;
      if (ok) inserts.push_back(elem_start + gt);
      return;
    }
    if (has_at || has_quote || atoms != 1) return;
    inserts.push_back(elem_start + atom_e);
  };
  bool angle = false;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == '"' || c == '(') {
      size_t end = SkipQuotedOrComment(v, i);
      if (end == std::string_view::npos) break;  // unterminated: the rest is inside it
      i = end - 1;
    }
    else if (c == '<') angle = true;
    else if (c == '>') angle = false;
    else if (c == ',' && !angle) {
      finish(i);
      elem_start = i + 1;
    }
  }
  finish(v.size());
  std::string out;
  size_t prev = 0;
  for (size_t pos : inserts) {
    out.append(v.substr(prev, pos - prev));
    out += "@" + domain;
    prev = pos;
  }
  out.append(v.substr(prev));
  return out;
}

std::string SubmissionReceivedHeader(const std::string& host, unsigned uid, const std::string& queue_id, int64_t now,
                                     std::string_view message) {
  size_t nl = message.find('\n');
  const char* eol = nl != std::string_view::npos && nl > 0 && message[nl - 1] == '\r' ? "\r\n" : "\n";
  return "Received: by " + host + " (mxsec, from userid " + std::to_string(uid) + ")" + eol + "\tid " + queue_id +
         "; " + Rfc5322Date(now) + eol;
}

size_t LoneDotEnd(std::string_view raw) {
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t nl = raw.find('\n', pos);
    std::string_view line = raw.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (line == "." || line == ".\r") return pos;
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return raw.size();
}

Result<EditedMessage> EditHeaders(std::string_view raw, const HeaderEdit& edit) {
  EditedMessage out;
  // The line ending used by the message, for the lines we add.
  size_t first_nl = raw.find('\n');
  const std::string eol = (first_nl != std::string_view::npos && first_nl > 0 && raw[first_nl - 1] == '\r') ? "\r\n" : "\n";

  struct Field {
    std::string name;   // lowercase
    std::string text;   // the whole field, all its lines, with their line ends
  };
  std::vector<Field> fields;
  size_t pos = 0;
  bool blank_found = false;
  while (pos < raw.size()) {
    size_t nl = raw.find('\n', pos);
    size_t end = nl == std::string_view::npos ? raw.size() : nl + 1;
    std::string_view line = raw.substr(pos, end - pos);
    std::string_view bare = line;
    while (!bare.empty() && (bare.back() == '\n' || bare.back() == '\r')) bare.remove_suffix(1);
    if (bare.empty()) {  // the empty line: the body follows
      blank_found = true;
      break;
    }
    if ((bare[0] == ' ' || bare[0] == '\t') && !fields.empty()) {
      fields.back().text.append(line);
      pos = end;
      continue;
    }
    // field-name = 1*(%d33-57 / %d59-126) ":"
    size_t colon = bare.find(':');
    bool is_field = colon != std::string_view::npos && colon > 0;
    for (size_t k = 0; is_field && k < colon; ++k) {
      unsigned char u = static_cast<unsigned char>(bare[k]);
      if (u < 33 || u > 126) is_field = false;
    }
    if (!is_field) break;  // not a header: the body starts here
    fields.push_back(Field{Lower(bare.substr(0, colon)), std::string(line)});
    if (nl == std::string_view::npos) fields.back().text += eol;  // a message of headers only, no final newline
    pos = end;
  }
  std::string_view body = raw.substr(pos);

  bool has_from = false, has_date = false, has_mid = false;
  std::string head;
  for (const Field& f : fields) {
    if (f.name == "from") has_from = true;
    if (f.name == "date") has_date = true;
    if (f.name == "message-id") has_mid = true;
    if (edit.extract_recipients && (f.name == "to" || f.name == "cc" || f.name == "bcc")) {
      std::string value = f.text.substr(f.text.find(':') + 1);
      for (char& c : value)
        if (c == '\r' || c == '\n') c = ' ';  // unfold
      auto list = ParseAddressList(value);
      if (!list.ok()) return Status::Error("header " + f.text.substr(0, f.text.find(':')) + ": " + list.error());
      out.recipients.insert(out.recipients.end(), list->begin(), list->end());
    }
    if (f.name == "bcc") {  // never shown to the recipients
      out.bcc_removed = true;
      continue;
    }
    if (!edit.qualify_domain.empty() &&
        (f.name == "from" || f.name == "sender" || f.name == "reply-to" || f.name == "to" || f.name == "cc")) {
      size_t colon = f.text.find(':');
      std::string value = QualifyAddressField(std::string_view(f.text).substr(colon + 1), edit.qualify_domain);
      if (value != std::string_view(f.text).substr(colon + 1)) out.qualified = true;
      head += f.text.substr(0, colon + 1) + value;
      continue;
    }
    head += f.text;
  }
  if (!has_from && !edit.from.empty()) {
    head += "From: " + edit.from + eol;
    out.added.push_back("From");
  }
  if (!has_date && !edit.date.empty()) {
    head += "Date: " + edit.date + eol;
    out.added.push_back("Date");
  }
  if (!has_mid && !edit.message_id.empty()) {
    head += "Message-ID: " + edit.message_id + eol;
    out.added.push_back("Message-ID");
  }
  out.message = head;
  if (!blank_found) out.message += eol;  // the body (if any) started without the empty line
  out.message.append(body);
  return out;
}

}  // namespace mxsec
