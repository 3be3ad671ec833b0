#include "events/backoff.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/json_text.h"
#include "common/time_format.h"

namespace tamaya::events {

int64_t function_error_delay_ms(const Settings& s, int retry) {
  int shift = std::clamp(retry - 1, 0, 20);
  return int64_t(s.events_retry_base_ms) << shift;
}

int64_t throttle_delay_ms(const Settings& s, int throttles) {
  int shift = std::clamp(throttles - 1, 0, 30);
  int64_t cap = std::max<int64_t>(s.events_throttle_max_ms, 1);
  int64_t base = std::max<int64_t>(s.events_throttle_base_ms, 1);
  // Doubling overflows long before 30 shifts matter; the cap keeps it sane.
  if (shift >= 30 || (base << shift) > cap) return cap;
  return base << shift;
}

namespace {

nlohmann::json as_json(const std::string& bytes) {
  if (bytes.empty()) return nullptr;
  auto doc = nlohmann::json::parse(bytes, nullptr, false);
  if (doc.is_discarded()) return bytes;
  return doc;
}

}  // namespace

std::string invocation_record(const RecordFields& f) {
  nlohmann::json response = {{"statusCode", f.status_code},
                             {"executedVersion", f.executed_version}};
  if (!f.function_error.empty()) response["functionError"] = f.function_error;
  nlohmann::json record = {
      {"version", "1.0"},
      {"timestamp", format_iso8601(f.timestamp_ms)},
      {"requestContext",
       {{"requestId", f.request_id},
        {"functionArn", f.function_arn},
        {"condition", f.condition},
        {"approximateInvokeCount", f.approximate_invoke_count}}},
      {"requestPayload", as_json(f.request_payload)},
      {"responseContext", response},
      {"responsePayload", as_json(f.response_payload)},
  };
  // A payload that is not JSON goes in as a string, and a function may answer
  // any bytes.
  return json_text(record);
}

}  // namespace tamaya::events
