// survey_summary.cc - the shares of a survey (survey.h) and their three
// forms: a terminal table, JSON, and an SVG bar chart.
//
// Denominators (man/mxsec.8, SURVEY): "domains with MX" are those with at
// least one MX host (or the implicit MX) that has an address. MX hosts are
// counted once per domain that lists them. Probe shares count only hosts
// that answered (connected) and records that were probed.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <sstream>

#include "mxsec/report/survey.h"

namespace mxsec {

namespace {

bool HasMx(const SurveyRecord& r) { return r.mx == "mx" || r.mx == "implicit"; }

bool Answered(const SurveyHost& h) { return h.probe && h.probe->connected; }

bool AnyHost(const SurveyRecord& r, bool (*pred)(const SurveyHost&)) {
  return std::any_of(r.hosts.begin(), r.hosts.end(), pred);
}

bool UsableTlsa(const SurveyHost& h) { return h.tlsa == "usable"; }

// Every DANE host that was probed over TLS matched, and at least one was.
bool DaneMatches(const SurveyRecord& r) {
  bool matched = false;
  for (const SurveyHost& h : r.hosts) {
    if (!UsableTlsa(h) || !h.probe || !h.probe->dane_match) continue;
    if (!*h.probe->dane_match) return false;
    matched = true;
  }
  return matched;
}

bool EveryAnsweringHostOffersStarttls(const SurveyRecord& r) {
  return std::all_of(r.hosts.begin(), r.hosts.end(),
                     [](const SurveyHost& h) { return !Answered(h) || h.probe->starttls; });
}

bool HostAnnouncesRequireTls(const SurveyHost& h) { return Answered(h) && h.probe->requiretls; }

// Counts records (of those `in` admits) for which `yes` holds.
SurveyShare Share(const std::vector<SurveyRecord>& records, std::string key, std::string label, std::string of_what,
                  const std::function<bool(const SurveyRecord&)>& in,
                  const std::function<bool(const SurveyRecord&)>& yes) {
  SurveyShare s{std::move(key), std::move(label), 0, 0, std::move(of_what)};
  for (const SurveyRecord& r : records) {
    if (!in(r)) continue;
    ++s.of;
    if (yes(r)) ++s.count;
  }
  return s;
}

SurveyShare StarttlsHosts(const std::vector<SurveyRecord>& records) {
  SurveyShare s{"starttls_hosts", "MX hosts offering STARTTLS", 0, 0, "MX hosts that answered"};
  for (const SurveyRecord& r : records) {
    if (!r.probed || !HasMx(r)) continue;
    for (const SurveyHost& h : r.hosts) {
      if (!Answered(h)) continue;
      ++s.of;
      if (h.probe->starttls) ++s.count;
    }
  }
  return s;
}

void AddProbeShares(const std::vector<SurveyRecord>& records, std::vector<SurveyShare>* shares) {
  auto reached = [](const SurveyRecord& r) { return r.probed && HasMx(r) && AnyHost(r, Answered); };
  auto dane = [](const SurveyRecord& r) { return r.probed && HasMx(r) && AnyHost(r, UsableTlsa); };
  shares->push_back(StarttlsHosts(records));
  shares->push_back(Share(records, "starttls_all", "Domains whose every MX offers STARTTLS",
                          "domains with an MX that answered", reached, EveryAnsweringHostOffersStarttls));
  shares->push_back(Share(records, "dane_match", "DANE: certificate matches TLSA", "domains with usable TLSA",
                          dane, DaneMatches));
  shares->push_back(Share(records, "requiretls", "Domains with an MX announcing REQUIRETLS",
                          "domains with an MX that answered", reached,
                          [](const SurveyRecord& r) { return AnyHost(r, HostAnnouncesRequireTls); }));
}

std::string Percent(const SurveyShare& s) {
  if (s.of == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * static_cast<double>(s.count) / static_cast<double>(s.of));
  return buf;
}

double Fraction(const SurveyShare& s) {
  return s.of == 0 ? 0.0 : static_cast<double>(s.count) / static_cast<double>(s.of);
}

std::string XmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

SurveySummary Summarize(const std::vector<SurveyRecord>& records, bool probe) {
  SurveySummary s;
  s.domains = records.size();
  s.probed = probe;
  auto all = [](const SurveyRecord&) { return true; };
  auto sts = [](const char* mode) { return [mode](const SurveyRecord& r) { return r.mta_sts == mode; }; };
  const char* with_mx = "domains with MX";
  s.shares.push_back(Share(records, "mx", "Domains with MX", "domains", all, HasMx));
  s.shares.push_back(Share(records, "dnssec_mx", "DNSSEC-signed MX", with_mx, HasMx,
                           [](const SurveyRecord& r) { return r.dnssec == "secure"; }));
  s.shares.push_back(Share(records, "dane_usable", "DANE: usable TLSA", with_mx, HasMx,
                           [](const SurveyRecord& r) { return AnyHost(r, UsableTlsa); }));
  s.shares.push_back(Share(records, "mta_sts_enforce", "MTA-STS enforce", with_mx, HasMx, sts("enforce")));
  s.shares.push_back(Share(records, "mta_sts_testing", "MTA-STS testing", with_mx, HasMx, sts("testing")));
  s.shares.push_back(Share(records, "mta_sts_broken", "MTA-STS broken", with_mx, HasMx, sts("broken")));
  s.shares.push_back(Share(records, "tlsrpt", "TLS-RPT record", with_mx, HasMx,
                           [](const SurveyRecord& r) { return r.tlsrpt == "valid"; }));
  if (probe) AddProbeShares(records, &s.shares);
  return s;
}

std::string SummaryToText(const SurveySummary& summary) {
  std::ostringstream o;
  o << "survey of " << summary.domains << " domains" << (summary.probed ? " (MX hosts probed)" : "") << "\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-42s %8s %8s %7s  %s\n", "share", "count", "of", "%", "denominator");
  o << line;
  for (const SurveyShare& s : summary.shares) {
    std::snprintf(line, sizeof line, "%-42s %8zu %8zu %7s  %s\n", s.label.c_str(), s.count, s.of,
                  Percent(s).c_str(), s.of_what.c_str());
    o << line;
  }
  return o.str();
}

nlohmann::json SummaryToJson(const SurveySummary& summary) {
  nlohmann::json shares = nlohmann::json::object();
  for (const SurveyShare& s : summary.shares)
    shares[s.key] = {{"label", s.label}, {"count", s.count}, {"of", s.of}, {"of_what", s.of_what},
                     {"share", s.of == 0 ? nlohmann::json() : nlohmann::json(Fraction(s))}};
  return {{"domains", summary.domains}, {"probed", summary.probed}, {"shares", shares}};
}

std::string SummaryToSvg(const SurveySummary& summary) {
  constexpr int kLabelWidth = 330, kBarWidth = 400, kRow = 28, kTop = 40, kWidth = kLabelWidth + kBarWidth + 160;
  const int height = kTop + kRow * static_cast<int>(summary.shares.size()) + 20;
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"13\">\n"
    << "<title>mxsec survey of " << summary.domains << " domains</title>\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"10\" y=\"24\" font-size=\"16\">mxsec survey of " << summary.domains << " domains"
    << (summary.probed ? " (MX hosts probed)" : "") << "</text>\n";
  int y = kTop;
  for (const SurveyShare& s : summary.shares) {
    const int width = static_cast<int>(Fraction(s) * kBarWidth + 0.5);
    o << "<g class=\"share\" id=\"" << XmlEscape(s.key) << "\">"
      << "<text x=\"10\" y=\"" << y + 17 << "\">" << XmlEscape(s.label) << "</text>"
      << "<rect class=\"frame\" x=\"" << kLabelWidth << "\" y=\"" << y + 4 << "\" width=\"" << kBarWidth
      << "\" height=\"18\" fill=\"#eeeeee\"/>"
      << "<rect class=\"bar\" x=\"" << kLabelWidth << "\" y=\"" << y + 4 << "\" width=\"" << width
      << "\" height=\"18\" fill=\"#3b7dd8\"><title>" << s.count << " of " << s.of << " " << XmlEscape(s.of_what)
      << "</title></rect>"
      << "<text x=\"" << kLabelWidth + kBarWidth + 8 << "\" y=\"" << y + 17 << "\">" << Percent(s) << " (" << s.count
      << "/" << s.of << ")</text></g>\n";
    y += kRow;
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace mxsec
