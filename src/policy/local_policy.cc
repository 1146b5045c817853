// local_policy.cc - parsing and lookup of the local TLS policy table (see
// local_policy.h for the format and the promises).
//
// Strict on purpose, like config.cc: a typo in a rule that was meant to
// demand TLS must stop the program, never leave the domain to a weaker
// default.
#include "mxsec/policy/local_policy.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "mxsec/base/domain_name.h"

namespace mxsec {

const char* LocalTlsName(LocalTls t) {
  switch (t) {
    case LocalTls::kDaneOnly: return "dane-only";
    case LocalTls::kVerify: return "verify";
    case LocalTls::kEncrypt: return "encrypt";
    case LocalTls::kMay: return "may";
  }
  return "?";
}

namespace {

bool ParsePolicyWord(const std::string& w, LocalTls* out) {
  for (LocalTls t : {LocalTls::kDaneOnly, LocalTls::kVerify, LocalTls::kEncrypt, LocalTls::kMay}) {
    if (w == LocalTlsName(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; }

// The words of a line up to a comment, with double quotes removed: inside
// them blanks and '#' are part of the word, and \" and \\ stand for a
// quote and a backslash.
Result<std::vector<std::string>> WordsOf(const std::string& line, const std::string& where) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < line.size()) {
    if (IsBlank(line[i])) { ++i; continue; }
    if (line[i] == '#') break;  // the rest of the line is a comment
    std::string word;
    bool quoted = false;
    for (; i < line.size() && (quoted || !IsBlank(line[i])); ++i) {
      const char c = line[i];
      if (c == '"') {
        quoted = !quoted;
      } else if (quoted && c == '\\' && i + 1 < line.size() && (line[i + 1] == '"' || line[i + 1] == '\\')) {
        word += line[++i];
      } else {
        word += c;
      }
    }
    if (quoted) return Status::Invalid(where + ": unterminated quote");
    words.push_back(std::move(word));
  }
  return words;
}

// Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// until=YYYY-MM-DD: a real date from 1970 on; the rule expires at the end
// of that day, UTC.
Status ParseUntil(const std::string& value, const std::string& where, LocalRule* rule) {
  auto bad = [&]() { return Status::Invalid(where + ": bad date \"" + value + "\" in until= (YYYY-MM-DD)"); };
  if (value.size() != 10 || value[4] != '-' || value[7] != '-') return bad();
  for (size_t k : {0, 1, 2, 3, 5, 6, 8, 9})
    if (value[k] < '0' || value[k] > '9') return bad();
  const int y = std::stoi(value.substr(0, 4));
  const unsigned m = static_cast<unsigned>(std::stoi(value.substr(5, 2)));
  const unsigned d = static_cast<unsigned>(std::stoi(value.substr(8, 2)));
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1970 || m < 1 || m > 12 || d < 1 || d > kDays[m - 1] + (m == 2 && leap ? 1 : 0)) return bad();
  rule->until = value;
  rule->expires_at = (DaysFromCivil(y, m, d) + 1) * 86400;
  return Status::Ok();
}

// reason="TEXT": shown in logs and reports, so no control characters.
Status ParseReason(const std::string& value, const std::string& where, LocalRule* rule) {
  for (unsigned char c : value)
    if (c < 0x20 || c == 0x7f) return Status::Invalid(where + ": reason= holds a control character");
  rule->reason = value;
  return Status::Ok();
}

// match=NAME[:NAME...] of a verify rule.
Status ParseMatch(const std::string& attr, const std::string& policy_word, const std::string& where, LocalRule* rule) {
  if (rule->policy != LocalTls::kVerify)
    return Status::Error(where + ": match= is only valid with the policy verify, not " + policy_word);
  if (!rule->match.empty()) return Status::Error(where + ": match= given twice");
  std::string list = attr.substr(6);
  if (list.empty()) return Status::Error(where + ": match= without a name");
  size_t start = 0;
  for (;;) {
    size_t colon = list.find(':', start);
    std::string name = list.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    auto n = NormalizeHostName(name);
    if (name.empty() || !n.ok())
      return Status::Error(where + ": bad name \"" + name + "\" in match=" +
                           (n.ok() ? std::string(" (empty)") : ": " + n.error()));
    rule->match.push_back(n.value());
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return Status::Ok();
}

// One NAME=VALUE attribute after the policy word.
Status ParseAttribute(const std::string& attr, const std::string& policy_word, const std::string& where,
                      LocalRule* rule) {
  const size_t equals = attr.find('=');
  const std::string name = attr.substr(0, equals);
  const std::string value = equals == std::string::npos ? "" : attr.substr(equals + 1);
  if (equals != std::string::npos) {
    if (name == "match") return ParseMatch(attr, policy_word, where, rule);
    if ((name == "until" && !rule->until.empty()) || (name == "reason" && !rule->reason.empty()))
      return Status::Invalid(where + ": " + name + "= given twice");
    if (name == "until") return ParseUntil(value, where, rule);
    if (name == "reason") return ParseReason(value, where, rule);
  }
  return Status::Error(where + ": unknown attribute \"" + attr +
                       "\" (match=NAME[:NAME...], until=YYYY-MM-DD and reason=\"TEXT\" are known)");
}

// One rule from its words (at least one), `where` being FILE:LINE.
Result<LocalRule> ParseRule(const std::vector<std::string>& words, const std::string& where) {
  if (words.size() < 2) return Status::Error(where + ": \"" + words[0] + "\" has no policy (DOMAIN POLICY [match=NAME[:NAME...]])");
  LocalRule rule;
  rule.source = where;
  std::string domain = words[0];
  if (domain[0] == '.') {
    rule.subdomains = true;
    domain.erase(0, 1);
  }
  auto norm = NormalizeHostName(domain);
  if (!norm.ok()) return Status::Error(where + ": bad domain \"" + words[0] + "\"" + ": " + norm.error());
  rule.domain = norm.value();
  if (!ParsePolicyWord(words[1], &rule.policy))
    return Status::Error(where + ": unknown policy \"" + words[1] + "\" (dane-only, verify, encrypt or may)");
  for (size_t i = 2; i < words.size(); ++i) {
    if (Status s = ParseAttribute(words[i], words[1], where, &rule); !s.ok()) return s;
  }
  return rule;
}

}  // namespace

Result<LocalPolicy> LocalPolicy::Parse(const std::string& text, const std::string& file, const Clock* clock) {
  if (text.size() > kLocalPolicyMaxFile)
    return Status::Error(file + ": file is larger than " + std::to_string(kLocalPolicyMaxFile) + " bytes");
  LocalPolicy table;
  table.clock_ = clock;
  std::istringstream in(text);
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = file + ":" + std::to_string(lineno);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > kLocalPolicyMaxLine)
      return Status::Error(where + ": line is longer than " + std::to_string(kLocalPolicyMaxLine) + " characters");
    Result<std::vector<std::string>> words = WordsOf(line, where);
    if (!words.ok()) return words.status();
    if (words->empty()) continue;
    Result<LocalRule> rule = ParseRule(words.value(), where);
    if (!rule.ok()) return rule.status();
    auto& into = rule->subdomains ? table.parents_ : table.exact_;
    auto it = into.find(rule->domain);
    if (it != into.end())
      return Status::Error(where + ": duplicate domain \"" + rule->Key() + "\" (first at " + it->second.source + ")");
    const std::string key = rule->domain;
    into.emplace(key, std::move(rule.value()));
  }
  return table;
}

Result<LocalPolicy> LocalPolicy::Load(const std::string& path, const Clock* clock) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::Error(path + ": cannot open the local policy file: " + std::strerror(errno));
  std::string text;
  text.resize(kLocalPolicyMaxFile + 1);
  f.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (f.bad()) return Status::Error(path + ": cannot read the local policy file: " + std::strerror(errno));
  text.resize(static_cast<size_t>(f.gcount()));
  if (text.size() > kLocalPolicyMaxFile)
    return Status::Error(path + ": file is larger than " + std::to_string(kLocalPolicyMaxFile) + " bytes");
  return Parse(text, path, clock);
}

const LocalRule* LocalPolicy::Find(const std::string& domain) const {
  const int64_t now = clock_->Now();
  auto it = exact_.find(domain);
  if (it != exact_.end() && !it->second.ExpiredAt(now)) return &it->second;
  // Parent rules, longest suffix first: drop one label at a time.
  for (size_t dot = domain.find('.'); dot != std::string::npos; dot = domain.find('.', dot + 1)) {
    auto p = parents_.find(domain.substr(dot + 1));
    if (p != parents_.end() && !p->second.ExpiredAt(now)) return &p->second;
  }
  return nullptr;
}

std::vector<std::string> LocalPolicy::ExpiryWarnings() const {
  const int64_t now = clock_->Now();
  std::vector<std::pair<size_t, std::string>> by_line;
  for (const auto* rules : {&exact_, &parents_}) {
    for (const auto& [domain, rule] : *rules) {
      if (!rule.ExpiredAt(now)) continue;
      const size_t colon = rule.source.rfind(':');
      const size_t line = std::strtoul(rule.source.c_str() + colon + 1, nullptr, 10);
      by_line.emplace_back(line, rule.source + ": the local policy rule for " + rule.Key() +
                                     " expired at the end of " + rule.until +
                                     " (UTC) and no longer applies" +
                                     (rule.reason.empty() ? "" : " (reason: " + rule.reason + ")"));
    }
  }
  std::sort(by_line.begin(), by_line.end());
  std::vector<std::string> out;
  for (auto& [line, text] : by_line) out.push_back(std::move(text));
  return out;
}

}  // namespace mxsec
