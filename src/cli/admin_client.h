// The CLI's view of the admin API: requests by method and path, answers
// other than 2xx turned into a Status that carries the API's own message.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "net/client.h"

namespace tamaya::cli {

// Management calls answer from the daemon's database at once; a minute
// leaves room for a loaded daemon.
inline constexpr std::chrono::milliseconds kManagementTimeout{60'000};
// Code uploads carry up to the server's 50 MiB zip limit (base64-inflated
// on create).
inline constexpr std::chrono::milliseconds kUploadTimeout{300'000};
// An invocation may run for the largest function timeout (900 s), plus time
// queued and a cold start.
inline constexpr std::chrono::milliseconds kInvokeTimeout{960'000};

inline constexpr const char* kDefaultEndpoint = "http://127.0.0.1:9000";

class AdminClient {
 public:
  explicit AdminClient(net::Url url) : url_(std::move(url)) {}

  // Any 2xx answer is returned whole; other statuses become the API's error.
  Result<net::Response> send(const std::string& method, const std::string& target,
                             std::string body = {}, net::Headers headers = {},
                             std::chrono::milliseconds timeout = kManagementTimeout) const;
  // As send, with the 2xx body parsed as JSON (an empty body is null).
  Result<nlohmann::json> send_json(const std::string& method, const std::string& target,
                                   std::string body = {}, net::Headers headers = {},
                                   std::chrono::milliseconds timeout = kManagementTimeout) const;
  // GET of a streamed answer (server-sent events): on_data gets the body as
  // it arrives until it returns false or the server ends the stream. A
  // non-2xx answer becomes the API's error. `timeout` bounds each wait for
  // more data.
  Status stream(const std::string& target, const std::function<bool(std::string_view)>& on_data,
                std::chrono::milliseconds timeout) const;

 private:
  net::Url url_;
};

// The Status for a non-2xx admin API answer: the kind from the HTTP status,
// the message from {"error":{"message"}} (or the raw body when it is not the
// API's error shape, e.g. a proxy in between).
Status status_from_response(const net::Response& response);

// Case-insensitive lookup; the first value when repeated.
std::optional<std::string> find_header(const net::Headers& headers, std::string_view name);

// Percent-encodes everything but RFC 3986 unreserved characters, so a name
// or qualifier can never change the shape of a path or query.
std::string percent_encode(std::string_view text);

// "/v1/functions/<name>" with the name encoded.
std::string function_path(std::string_view name);

}  // namespace tamaya::cli
