// survey_input.cc - libFuzzer target: what `mxsec survey` reads from files
// a user gives it: the domain list (ParseSurveyInput) and a previous
// run's output for a resume (ReadSurveyOutput), both of survey.h.
//
// Oracle: no crash or sanitizer report; an accepted list has no more
// domains than lines, each once and in normal form (NormalizeHostName
// gives it back unchanged); a refused one says which line (or the size
// limit). Of an output file, the complete lines end within the input at a
// newline, there are no more records than lines, and each record's JSON
// line reads back to the same line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "mxsec/base/domain_name.h"
#include "mxsec/report/survey.h"

namespace {

void CheckList(std::string_view text) {
  auto r = mxsec::ParseSurveyInput(text);
  if (!r.ok()) {
    if (r.error().rfind("line ", 0) != 0 && !r.status().IsLimit()) abort();
    return;
  }
  size_t lines = 1;
  for (char c : text) lines += c == '\n';
  if (r->size() > lines) abort();
  std::set<std::string> seen;
  for (const std::string& d : *r) {
    auto again = mxsec::NormalizeHostName(d);
    if (!again.ok() || again.value() != d) abort();
    if (!seen.insert(d).second) abort();
  }
}

void CheckOutput(std::string_view text) {
  auto r = mxsec::ReadSurveyOutput(text);
  if (!r.ok()) return;
  if (r->complete_size > text.size()) abort();
  if (r->complete_size > 0 && text[r->complete_size - 1] != '\n') abort();
  size_t lines = 0;
  for (char c : text) lines += c == '\n';
  if (r->records.size() > lines) abort();
  for (const mxsec::SurveyRecord& rec : r->records) {
    std::string line = mxsec::SurveyRecordToJsonLine(rec);
    auto back = mxsec::SurveyRecordFromJson(line);
    if (!back.ok() || mxsec::SurveyRecordToJsonLine(back.value()) != line) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckList(text);
  CheckOutput(text);
  return 0;
}
