// When an async event is tried again, and what Lambda's destination record
// says about it. Pure functions, so the policy is unit-tested without time.
#pragma once

#include <cstdint>
#include <string>

#include "common/settings.h"

namespace tamaya::events {

// What the last delivery attempt came to.
enum class Outcome {
  kSuccess,
  kFunctionError,  // the function ran and failed: counted against max_retry_attempts
  kThrottled,      // 429, or the daemon draining: retried until the event is too old
  kSystemError,    // the instance crashed, timed out at start, ...: as throttled
  kPermanent,      // cannot ever run (function gone, payload too large): fail now
};

// Delay before retry number `retry` (1-based) after a function error:
// Lambda waits about 1 minute, then 2: events_retry_base_ms × 2^(retry-1).
int64_t function_error_delay_ms(const Settings& s, int retry);

// Delay after the `throttles`-th refused delivery in a row (1-based):
// events_throttle_base_ms doubling each time, capped at events_throttle_max_ms.
int64_t throttle_delay_ms(const Settings& s, int throttles);

// Lambda's destination invocation record (version 1.0). Payloads are JSON
// documents and go in as JSON; anything else goes in as a string.
struct RecordFields {
  int64_t timestamp_ms = 0;
  std::string request_id;
  std::string function_arn;
  std::string condition;  // Success, RetriesExhausted, EventAgeExceeded
  int approximate_invoke_count = 0;
  std::string request_payload;
  int status_code = 200;
  std::string executed_version;
  std::string function_error;  // "" = none
  std::string response_payload;
};
std::string invocation_record(const RecordFields& f);

}  // namespace tamaya::events
