// local_policy.cc - parsing and lookup of the local TLS policy table (see
// local_policy.h for the format and the promises).
//
// Strict on purpose, like config.cc: a typo in a rule that was meant to
// demand TLS must stop the program, never leave the domain to a weaker
// default.
#include "mxsec/policy/local_policy.h"

#include <cerrno>
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

// The words of a line up to a comment.
std::vector<std::string> WordsOf(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream ws(line);
  std::string w;
  while (ws >> w) {
    if (w[0] == '#') break;  // the rest of the line is a comment
    words.push_back(w);
  }
  return words;
}

// match=NAME[:NAME...] of a verify rule.
Status ParseMatch(const std::string& attr, const std::string& policy_word, const std::string& where, LocalRule* rule) {
  if (attr.rfind("match=", 0) != 0)
    return Status::Error(where + ": unknown attribute \"" + attr + "\" (only match=NAME[:NAME...] is known)");
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
    if (Status s = ParseMatch(words[i], words[1], where, &rule); !s.ok()) return s;
  }
  return rule;
}

}  // namespace

Result<LocalPolicy> LocalPolicy::Parse(const std::string& text, const std::string& file) {
  if (text.size() > kLocalPolicyMaxFile)
    return Status::Error(file + ": file is larger than " + std::to_string(kLocalPolicyMaxFile) + " bytes");
  LocalPolicy table;
  std::istringstream in(text);
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = file + ":" + std::to_string(lineno);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > kLocalPolicyMaxLine)
      return Status::Error(where + ": line is longer than " + std::to_string(kLocalPolicyMaxLine) + " characters");
    const std::vector<std::string> words = WordsOf(line);
    if (words.empty()) continue;
    Result<LocalRule> rule = ParseRule(words, where);
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

Result<LocalPolicy> LocalPolicy::Load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::Error(path + ": cannot open the local policy file: " + std::strerror(errno));
  std::string text;
  text.resize(kLocalPolicyMaxFile + 1);
  f.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (f.bad()) return Status::Error(path + ": cannot read the local policy file: " + std::strerror(errno));
  text.resize(static_cast<size_t>(f.gcount()));
  if (text.size() > kLocalPolicyMaxFile)
    return Status::Error(path + ": file is larger than " + std::to_string(kLocalPolicyMaxFile) + " bytes");
  return Parse(text, path);
}

const LocalRule* LocalPolicy::Find(const std::string& domain) const {
  auto it = exact_.find(domain);
  if (it != exact_.end()) return &it->second;
  // Parent rules, longest suffix first: drop one label at a time.
  for (size_t dot = domain.find('.'); dot != std::string::npos; dot = domain.find('.', dot + 1)) {
    auto p = parents_.find(domain.substr(dot + 1));
    if (p != parents_.end()) return &p->second;
  }
  return nullptr;
}

}  // namespace mxsec
