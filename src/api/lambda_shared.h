// Pieces of the Lambda API shared by its handler files (lambda_api.cpp,
// lambda_urls.cpp): errors shaped as Lambda's clients parse them and
// FunctionName parsing.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "net/http.h"

namespace tamaya::api {

// The exception name in x-amzn-ErrorType and {"Type":"User","message":...}.
net::Response aws_error(int status, std::string_view type, const std::string& message,
                        std::string_view reason = {});
// The Lambda exception that fits a Status code.
net::Response aws_error(const Status& s);

struct FunctionRef {
  std::string name;
  std::string qualifier;  // "" when none
};

// FunctionName as Lambda accepts it: name, name:qualifier, a partial ARN
// (account:function:name[:qualifier]) or a full ARN.
Result<FunctionRef> parse_function_name(const std::string& raw);

}  // namespace tamaya::api
