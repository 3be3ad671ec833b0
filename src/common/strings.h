// Small text helpers that several parsers and writers share (cron
// expressions, ARNs, SigV4 headers, gateway events, metrics, log rows).
// ASCII only and locale-independent, because every caller parses protocol
// text, never prose.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tamaya {

// The pieces between each `sep`, empty ones included: split("a::b", ':') is
// {"a", "", "b"}, split("", ':') is {""}. The views point into `text`.
std::vector<std::string_view> split(std::string_view text, char sep);

// `text` without leading and trailing ASCII whitespace (space, \t, \r, \n, \v, \f).
std::string_view trim(std::string_view text);

// `text` with ASCII letters lower-cased.
std::string lower(std::string_view text);

// Equal but for the case of ASCII letters (HTTP header names, media types).
bool iequals(std::string_view a, std::string_view b);
// `text` starts with `prefix`, but for the case of ASCII letters.
bool iequals_prefix(std::string_view text, std::string_view prefix);

// Appends `text` to `out` with '\\' as "\\\\" and a newline as "\\n", so it
// fits on one line (Prometheus HELP text, rows of log lines).
void append_escaped_line(std::string& out, std::string_view text);
// The inverse: "\\n" as a newline, '\\' before any other character as that
// character.
std::string unescape_line(std::string_view text);

}  // namespace tamaya
