#include "cli/admin_client.h"

#include <strings.h>

#include <cctype>

namespace tamaya::cli {
namespace {

Code code_for_http_status(int status) {
  switch (status) {
    case 400:
      return Code::kInvalidArgument;
    case 401:
      return Code::kUnauthenticated;
    case 403:
      return Code::kPermissionDenied;
    case 404:
      return Code::kNotFound;
    case 405:
      return Code::kInvalidArgument;
    case 409:
      return Code::kAlreadyExists;
    case 412:
      return Code::kFailedPrecondition;
    case 413:
      return Code::kTooLarge;
    case 429:
      return Code::kResourceExhausted;
    case 503:
      return Code::kUnavailable;
    case 504:
      return Code::kDeadlineExceeded;
    default:
      return Code::kInternal;
  }
}

// Bodies quoted in error messages are cut here: an HTML error page from a
// proxy should not flood the terminal.
constexpr size_t kQuotedBodyChars = 200;

}  // namespace

Result<net::Response> AdminClient::send(const std::string& method, const std::string& target,
                                        std::string body, net::Headers headers,
                                        std::chrono::milliseconds timeout) const {
  net::ClientRequest request;
  request.method = method;
  request.target = target;
  request.headers = std::move(headers);
  request.body = std::move(body);
  request.timeout = timeout;
  TAMAYA_ASSIGN_OR_RETURN(net::Response response, net::http_request(url_, request));
  if (response.status < 200 || response.status > 299) return status_from_response(response);
  return response;
}

Result<nlohmann::json> AdminClient::send_json(const std::string& method, const std::string& target,
                                              std::string body, net::Headers headers,
                                              std::chrono::milliseconds timeout) const {
  TAMAYA_ASSIGN_OR_RETURN(net::Response response,
                          send(method, target, std::move(body), std::move(headers), timeout));
  if (response.body.empty()) return nlohmann::json();
  nlohmann::json parsed = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return Status::Internal(method + " " + target + " answered with a body that is not JSON: " +
                            response.body.substr(0, kQuotedBodyChars) +
                            "; is --endpoint pointing at the tamaya admin port?");
  }
  return parsed;
}

Status AdminClient::stream(const std::string& target,
                           const std::function<bool(std::string_view)>& on_data,
                           std::chrono::milliseconds timeout) const {
  net::ClientRequest request;
  request.method = "GET";
  request.target = target;
  request.headers = {{"Accept", "text/event-stream"}};
  request.timeout = timeout;
  std::string error_body;
  int error_status = 0;
  Status s = net::http_stream(url_, request, [&](int status, std::string_view chunk) {
    if (status < 200 || status > 299) {
      // Error answers are small JSON documents; keep them for the message.
      error_status = status;
      if (error_body.size() < size_t{64} * 1024) error_body.append(chunk);
      return true;
    }
    return on_data(chunk);
  });
  if (!s.ok()) return s;
  if (error_status != 0) {
    return status_from_response(net::Response{error_status, {}, std::move(error_body)});
  }
  return Status::Ok();
}

Status status_from_response(const net::Response& response) {
  const Code code = code_for_http_status(response.status);
  nlohmann::json parsed = nlohmann::json::parse(response.body, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_object()) {
    auto error = parsed.find("error");
    if (error != parsed.end() && error->is_object()) {
      auto message = error->find("message");
      if (message != error->end() && message->is_string()) {
        std::string text = message->get<std::string>();
        if (auto retry = find_header(response.headers, "Retry-After")) {
          text += " (retry after " + *retry + " s)";
        }
        return Status(code, std::move(text));
      }
    }
  }
  std::string text = "tamaya answered HTTP " + std::to_string(response.status);
  if (!response.body.empty()) text += ": " + response.body.substr(0, kQuotedBodyChars);
  return Status(code, text + "; is --endpoint pointing at the tamaya admin port?");
}

std::optional<std::string> find_header(const net::Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && ::strncasecmp(key.data(), name.data(), name.size()) == 0) {
      return value;
    }
  }
  return std::nullopt;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

std::string function_path(std::string_view name) { return "/v1/functions/" + percent_encode(name); }

}  // namespace tamaya::cli
