// JSON bodies of the management APIs (admin, gateway, schedules): one parser
// and one serialiser, so every endpoint says the same thing about a bad body.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "common/status.h"
#include "net/http.h"

namespace tamaya::net {

// The request body as a JSON object, or kInvalid saying what to send instead.
Result<nlohmann::json> parse_json_object(std::string_view body);

// An answer with `body` serialised as application/json.
Response json_response(int status, const nlohmann::json& body);

}  // namespace tamaya::net
