#include "api/lambda_shared.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "common/encoding.h"
#include "common/json_text.h"
#include "common/strings.h"

namespace tamaya::api {

using nlohmann::json;

// --- errors, as Lambda's clients parse them ---------------------------------

net::Response aws_error(int status, std::string_view type, const std::string& message,
                        std::string_view reason) {
  json body = {{"Type", "User"}, {"message", message}, {"Message", message}};
  if (!reason.empty()) body["Reason"] = reason;
  net::Response r = net::Response::json(status, json_text(body));
  r.set_header("x-amzn-ErrorType", std::string(type));
  r.set_header("x-amzn-RequestId", new_request_id());
  return r;
}

net::Response aws_error(const Status& s) {
  switch (s.code()) {
    case Code::kInvalidArgument:
      return aws_error(400, "InvalidParameterValueException", s.message());
    case Code::kNotFound:
      return aws_error(404, "ResourceNotFoundException", s.message());
    case Code::kAlreadyExists:
      return aws_error(409, "ResourceConflictException", s.message());
    case Code::kFailedPrecondition:
      return aws_error(412, "PreconditionFailedException", s.message());
    case Code::kTooLarge:
      return aws_error(413, "RequestEntityTooLargeException", s.message());
    case Code::kResourceExhausted: {
      net::Response r = aws_error(429, "TooManyRequestsException", s.message(),
                                  "ConcurrentInvocationLimitExceeded");
      r.set_header("Retry-After", "1");
      return r;
    }
    case Code::kUnauthenticated:
    case Code::kPermissionDenied:
      return aws_error(403, "InvalidSignatureException", s.message());
    case Code::kUnavailable:
      return aws_error(503, "ServiceException", s.message());
    default:
      return aws_error(500, "ServiceException", s.message());
  }
}

Result<FunctionRef> parse_function_name(const std::string& raw) {
  std::vector<std::string_view> parts = split(raw, ':');
  auto bad = [&] {
    return Status::Invalid(fmt::format(
        "FunctionName '{}' is not a function name, name:qualifier, partial ARN "
        "(123456789012:function:name) or ARN (arn:aws:lambda:<region>:<account>:function:name)",
        raw));
  };
  FunctionRef ref;
  if (parts[0] == "arn") {
    if ((parts.size() != 7 && parts.size() != 8) || parts[2] != "lambda" ||
        parts[5] != "function") {
      return bad();
    }
    ref.name = parts[6];
    if (parts.size() == 8) ref.qualifier = parts[7];
  } else if (parts.size() >= 3 && parts[1] == "function") {
    if (parts.size() > 4) return bad();
    ref.name = parts[2];
    if (parts.size() == 4) ref.qualifier = parts[3];
  } else if (parts.size() <= 2) {
    ref.name = parts[0];
    if (parts.size() == 2) ref.qualifier = parts[1];
  } else {
    return bad();
  }
  if (ref.name.empty() || (raw.find(':') != std::string::npos && parts.back().empty())) {
    return bad();
  }
  return ref;
}

}  // namespace tamaya::api
