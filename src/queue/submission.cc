// submission.cc - sendmail(1) arguments, address lists and header edits
// (see submission.h for what each function promises).
#include "mxsec/queue/submission.h"

#include <cctype>

#include "mxsec/queue/dsn.h"  // Rfc5322Date

namespace mxsec {
namespace {

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

// One option that takes an argument (`c`, with its argument `val`) into `o`.
Status ApplyOptionWithArgument(char c, const std::string& val, SendmailOptions& o) {
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
    case 'O': {
      const std::string l = Lower(val);
      if (l.rfind("requiretls=", 0) == 0) {
        const std::string v = l.substr(11);
        if (v != "yes" && v != "no") return Status::Error("-O " + val + ": expected requiretls=yes or requiretls=no");
        o.requiretls = v == "yes";
      } else {
        o.ignored.push_back("-O" + val);
      }
      break;
    }
    default:  // -L label, -X file, -h hops, -e x, -p proto: ignored
      o.ignored.push_back(std::string("-") + c + val);
      break;
  }
  return Status::Ok();
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
        if (Status applied = ApplyOptionWithArgument(c, val, o); !applied.ok()) return applied;
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

namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// The 1-based number of the line of `s` that holds s[pos] (lines end at LF).
size_t LineNumber(std::string_view s, size_t pos) {
  size_t n = 1;
  for (size_t i = 0; i < pos && i < s.size(); ++i) n += s[i] == '\n';
  return n;
}

// Where `s` has a CR that is not the first half of a CRLF, or npos.
size_t FindBareCr(std::string_view s) {
  for (size_t i = s.find('\r'); i != std::string_view::npos; i = s.find('\r', i + 1))
    if (i + 1 >= s.size() || s[i + 1] != '\n') return i;
  return std::string_view::npos;
}

std::string BareCrError(std::string_view s, size_t pos) {
  return "bare CR (a carriage return not followed by a line feed) on line " + std::to_string(LineNumber(s, pos)) +
         "; RFC 5322 allows CR only as part of CRLF (convert the line ends, e.g. with tr -d '\\r')";
}

// `field` (a header field, its lines with their line ends) with every top-level comma of its
// address list (after index `from`) followed by a space. CFWS may follow the comma (RFC 5322 §3.4), so this changes nothing
// a reader sees, and it gives a list written "a,b,c" places to fold.
std::string SpaceAfterCommas(std::string_view field, size_t from) {
  std::string out(field.substr(0, from));
  int comment = 0;
  bool quoted = false, angle = false, literal = false;
  for (size_t i = from; i < field.size(); ++i) {
    char c = field[i];
    out += c;
    if ((quoted || comment > 0 || literal) && c == '\\' && i + 1 < field.size()) {
      out += field[++i];
      continue;
    }
    if (quoted) {
      quoted = c != '"';
    } else if (comment > 0) {
      if (c == '(') ++comment;
      else if (c == ')') --comment;
    } else if (literal) {
      literal = c != ']';
    } else if (c == '"') {
      quoted = true;
    } else if (c == '(') {
      comment = 1;
    } else if (c == '[') {
      literal = true;
    } else if (c == '<') {
      angle = true;
    } else if (c == '>') {
      angle = false;
    } else if (c == ',' && !angle && i + 1 < field.size() && !IsWsp(field[i + 1]) && field[i + 1] != '\r' &&
               field[i + 1] != '\n') {
      out += ' ';
    }
  }
  return out;
}

// For each octet of `field` (from index `from`): 1 when it is inside a quoted string, a
// comment or a domain literal of an address list, else 0.
std::string NestingMap(std::string_view field, size_t from) {
  std::string map(field.size(), '\0');
  int comment = 0;
  bool quoted = false, literal = false;
  for (size_t i = from; i < field.size(); ++i) {
    char c = field[i];
    bool inside = quoted || comment > 0 || literal;
    map[i] = inside ? '\1' : '\0';
    if (inside && c == '\\' && i + 1 < field.size()) {
      map[++i] = '\1';
      continue;
    }
    if (quoted) quoted = c != '"';
    else if (comment > 0) comment += c == '(' ? 1 : c == ')' ? -1 : 0;
    else if (literal) literal = c != ']';
    else if (c == '"') quoted = true;
    else if (c == '(') comment = 1;
    else if (c == '[') literal = true;
  }
  return map;
}

// One physical line of a header field folded (RFC 5322 §2.2.3: a line end inserted before a
// WSP) so that its parts are at most kFoldWidth octets where there is a place to fold.
// `first` is the index below which the line is never cut (the field name and the first
// character of its value); `nested` marks (non-zero) the octets inside a quoted string or a
// comment. A fold there is invisible too (RFC 5322 §3.2.4) but some readers mishandle it, so
// a fold between tokens is preferred. A fold never goes inside a quoted-pair ("\ ") and never
// leaves a line of white space only (RFC 5322 §3.2.2); where the line has no such place it
// stays longer (the caller checks kMaxLine).
std::string FoldLine(std::string_view line, size_t first, std::string_view nested, const std::string& eol) {
  std::vector<size_t> cuts;  // where a new line may start
  size_t last_text = line.find_last_not_of(" \t");
  for (size_t p = std::max<size_t>(first, 1); last_text != std::string_view::npos && p < last_text; ++p) {
    if (!IsWsp(line[p]) || IsWsp(line[p - 1])) continue;
    size_t slashes = 0;
    while (slashes < p && line[p - 1 - slashes] == '\\') ++slashes;
    if (slashes % 2 == 1) continue;
    cuts.push_back(p);
  }
  constexpr size_t npos = std::string_view::npos;
  std::string out;
  size_t start = 0;
  size_t k = 0;
  while (line.size() - start > kFoldWidth) {
    while (k < cuts.size() && cuts[k] <= start) ++k;
    // The last cut between tokens within the width, else the last one inside a quoted string
    // or comment within it, else the first one beyond it.
    size_t outer = npos, inner = npos, j = k;
    for (; j < cuts.size() && cuts[j] - start <= kFoldWidth; ++j) (nested[cuts[j]] ? inner : outer) = cuts[j];
    size_t best = outer != npos ? outer : inner != npos ? inner : j < cuts.size() ? cuts[j] : npos;
    if (best == npos) break;
    out.append(line.substr(start, best - start));
    out += eol;
    start = best;
  }
  out.append(line.substr(start));
  return out;
}

// A whole header field (all its lines with their line ends) with its lines longer than
// kFoldWidth folded; an address list also gets a space after each comma first.
std::string FoldField(std::string_view field, bool address_list, const std::string& eol) {
  bool long_line = false;
  for (size_t pos = 0; pos < field.size() && !long_line;) {
    size_t nl = field.find('\n', pos);
    size_t end = nl == std::string_view::npos ? field.size() : nl;
    size_t len = end - pos - (end > pos && field[end - 1] == '\r' ? 1 : 0);
    long_line = len > kFoldWidth;
    pos = end + 1;
  }
  if (!long_line) return std::string(field);
  const size_t colon = field.find(':');
  std::string spaced = address_list ? SpaceAfterCommas(field, colon + 1) : std::string(field);
  const std::string nested = address_list ? NestingMap(spaced, colon + 1) : std::string(spaced.size(), '\0');
  std::string out;
  size_t pos = 0;
  while (pos < spaced.size()) {
    size_t nl = spaced.find('\n', pos);
    size_t end = nl == std::string::npos ? spaced.size() : nl;
    size_t text_end = end > pos && spaced[end - 1] == '\r' ? end - 1 : end;
    std::string_view text = std::string_view(spaced).substr(pos, text_end - pos);
    // On the first line, never before the first character of the value.
    out += text.size() > kFoldWidth
               ? FoldLine(text, pos == 0 ? colon + 2 : 1, std::string_view(nested).substr(pos, text.size()), eol)
               : std::string(text);
    out.append(spaced, text_end, end - text_end + (nl == std::string::npos ? 0 : 1));
    pos = end + 1;
  }
  return out;
}

// The first line of `head` over kMaxLine octets (line ends not counted), as an error naming
// its field; or "".
std::string OverlongHeaderLine(std::string_view head) {
  size_t pos = 0;
  std::string_view field_name;
  while (pos < head.size()) {
    size_t nl = head.find('\n', pos);
    size_t end = nl == std::string_view::npos ? head.size() : nl;
    std::string_view line = head.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && !IsWsp(line[0])) field_name = line.substr(0, line.find(':'));
    if (line.size() > kMaxLine)
      return "header field " + std::string(field_name.substr(0, 80)) + ": a line of " + std::to_string(line.size()) +
             " octets after editing, with no place to fold it; SMTP allows " + std::to_string(kMaxLine);
    pos = end + 1;
  }
  return "";
}

}  // namespace

Result<EditedMessage> EditHeaders(std::string_view raw, const HeaderEdit& edit) {
  EditedMessage out;
  // The one line-ending rule (see PrepareSubmission): a bare CR would be data here and a line
  // end to the SMTP encoding, so a header field could hide another (a Bcc) from this editor.
  if (size_t cr = FindBareCr(raw); cr != std::string_view::npos) return Status::Error(BareCrError(raw, cr));
  // What we add is one line of text each; a line end in it would add fields nobody checked.
  for (const std::string* v : {&edit.from, &edit.date, &edit.message_id, &edit.qualify_domain})
    if (v->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
      return Status::Error("a value to add to the header contains a line end or a NUL: \"" + v->substr(0, 80) + "\"");
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
    if (!bare.empty() && bare.back() == '\n') bare.remove_suffix(1);
    if (!bare.empty() && bare.back() == '\r') bare.remove_suffix(1);
    if (bare.empty()) {  // the empty line: the body follows
      blank_found = true;
      break;
    }
    if ((bare[0] == ' ' || bare[0] == '\t') && !fields.empty()) {
      fields.back().text.append(line);
      if (nl == std::string_view::npos) fields.back().text += eol;
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
    // Never shown to the recipients; Resent-Bcc is the same for a resent message (RFC 5322 §3.6.6).
    if (f.name == "bcc" || f.name == "resent-bcc") {
      out.bcc_removed = true;
      continue;
    }
    if (!edit.qualify_domain.empty() &&
        (f.name == "from" || f.name == "sender" || f.name == "reply-to" || f.name == "to" || f.name == "cc")) {
      size_t colon = f.text.find(':');
      std::string value = QualifyAddressField(std::string_view(f.text).substr(colon + 1), edit.qualify_domain);
      if (value != std::string_view(f.text).substr(colon + 1)) {
        out.qualified = true;
        // Longer now: folded where it grew past the width (the field as given is kept otherwise).
        head += FoldField(f.text.substr(0, colon + 1) + value, true, eol);
        continue;
      }
    }
    head += f.text;
  }
  if (!has_from && !edit.from.empty()) {
    head += FoldField("From: " + edit.from + eol, true, eol);
    out.added.push_back("From");
  }
  if (!has_date && !edit.date.empty()) {
    head += FoldField("Date: " + edit.date + eol, false, eol);
    out.added.push_back("Date");
  }
  if (!has_mid && !edit.message_id.empty()) {
    head += FoldField("Message-ID: " + edit.message_id + eol, false, eol);
    out.added.push_back("Message-ID");
  }
  // Checked after editing, so that what is accepted can be sent (RFC 5322 §2.1.1).
  if (std::string e = OverlongHeaderLine(head); !e.empty()) return Status::Error(e);
  out.message = head;
  if (!blank_found) out.message += eol;  // the body (if any) started without the empty line
  out.message.append(body);
  return out;
}

Result<EditedMessage> PrepareSubmission(std::string_view raw, const HeaderEdit& edit) {
  // The line-ending rule, applied here once so that every later step (header editing, -t,
  // Bcc removal, the checks, the SMTP encoding) sees the same lines: CRLF and LF end a line,
  // and the message is kept with LF. A bare CR is refused, as a NUL is: RFC 5322 §2.3 allows
  // CR only in CRLF and RFC 5321 §4.1.1.4 forbids sending it alone, and every reading of it is
  // wrong for someone (a line end to the SMTP encoding and some readers, data to Postfix's
  // cleanup and others; "Subject: x<CR>Bcc: y" is one field or two). Replacing it (with a
  // space, or a line end) would change the message silently; the caller gets exit 65 and
  // keeps the message instead.
  std::string text;
  text.reserve(raw.size());
  size_t line = 1, len = 0;
  for (size_t i = 0; i <= raw.size(); ++i) {
    const bool end = i == raw.size();
    const char c = end ? '\n' : raw[i];
    if (c == '\r') {
      if (i + 1 < raw.size() && raw[i + 1] == '\n') continue;  // the CR of a CRLF
      return Status::Error(BareCrError(raw, i));
    }
    if (c == '\n') {
      if (len > kMaxLine)
        return Status::Error("line " + std::to_string(line) + " is " + std::to_string(len) + " octets long; SMTP allows " +
                             std::to_string(kMaxLine));
      if (end) break;
      text += '\n';
      ++line;
      len = 0;
      continue;
    }
    if (c == '\0') return Status::Error("NUL byte on line " + std::to_string(line));
    text += c;
    ++len;
  }
  auto edited = EditHeaders(text, edit);
  if (!edited.ok()) return edited;
  // What is returned has LF line ends only, no NUL and no line over kMaxLine: checked here
  // rather than assumed, since a message accepted now must be sendable later.
  const std::string& m = edited->message;
  len = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') {
      len = 0;
      continue;
    }
    if (m[i] == '\r' || m[i] == '\0' || ++len > kMaxLine)
      return Status::Error("internal: the edited message has " +
                           std::string(m[i] == '\r' ? "a CR" : m[i] == '\0' ? "a NUL" : "a line over 998 octets") +
                           " on line " + std::to_string(LineNumber(m, i)));
  }
  return edited;
}

}  // namespace mxsec
