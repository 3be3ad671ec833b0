#include "dispatch/cpu_hold.h"

#include <fcntl.h>

#include <charconv>
#include <string_view>

namespace tamaya::dispatch {

bool HoldState::update(const HoldSample& sample, const HoldPolicy& policy) {
  if (policy.busy_per_core <= 0 || policy.cores <= 0) {
    held_ = false;
    return held_;
  }
  const double pressure_at = policy.pressure_percent / 100.0;
  const double cores_at = policy.cores * policy.function_cpu_percent / 100.0;
  if (!held_) {
    held_ = sample.pressure >= pressure_at && sample.function_cores >= cores_at;
    low_windows_ = 0;
    return held_;
  }
  const bool low = sample.function_cores < cores_at / 4 ||
                   (sample.held_waits == 0 && sample.pressure < pressure_at / 4);
  low_windows_ = low ? low_windows_ + 1 : 0;
  if (low_windows_ >= kReleaseWindows) held_ = false;
  return held_;
}

namespace {

std::optional<int64_t> number_at(std::string_view text, size_t at) {
  int64_t v = 0;
  const char* first = text.data() + at;
  auto [end, ec] = std::from_chars(first, text.data() + text.size(), v);
  if (ec != std::errc() || end == first) return std::nullopt;
  return v;
}

}  // namespace

std::optional<int64_t> parse_psi_some_total(const std::string& text) {
  // "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345\nfull ..."
  std::string_view t(text);
  if (t.substr(0, 5) != "some ") return std::nullopt;
  size_t eol = t.find('\n');
  size_t at = t.substr(0, eol).find("total=");
  if (at == std::string_view::npos) return std::nullopt;
  return number_at(t.substr(0, eol), at + 6);
}

std::optional<int64_t> parse_schedstat_run_ns(const std::string& text) {
  // "<ns on a CPU> <ns waiting> <timeslices>"
  return number_at(text, 0);
}

HostPressure::HostPressure() : fd_(::open("/proc/pressure/cpu", O_RDONLY | O_CLOEXEC)) {}
std::optional<int64_t> HostPressure::stalled_us() const {
  auto text = read_at_zero(fd_.get());
  return text ? parse_psi_some_total(*text) : std::nullopt;
}

RunTimeReader::RunTimeReader(int pid)
    : fd_(pid > 0 ? ::open(("/proc/" + std::to_string(pid) + "/schedstat").c_str(),
                           O_RDONLY | O_CLOEXEC)
                  : -1) {}
std::optional<int64_t> RunTimeReader::ns() const {
  auto text = read_at_zero(fd_.get());
  return text ? parse_schedstat_run_ns(*text) : std::nullopt;
}

}  // namespace tamaya::dispatch
