#include "net/json_body.h"

#include "common/json_text.h"

namespace tamaya::net {

Result<nlohmann::json> parse_json_object(std::string_view body) {
  if (body.empty()) return Status::Invalid("the request body is empty; send a JSON object");
  auto doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_discarded()) {
    return Status::Invalid("the request body is not valid JSON; send a JSON object");
  }
  if (!doc.is_object()) return Status::Invalid("the request body must be a JSON object");
  return doc;
}

Response json_response(int status, const nlohmann::json& body) {
  return Response::json(status, json_text(body));
}

}  // namespace tamaya::net
