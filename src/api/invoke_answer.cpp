#include "api/invoke_answer.h"

#include "common/encoding.h"

namespace tamaya::api {

net::Response invoke_answer(dispatch::InvokeResult&& r, const InvokeAnswerHeaders& names) {
  net::Response res = net::Response::json(200, std::move(r.payload));
  res.set_header(names.request_id, std::move(r.request_id));
  res.set_header(names.executed_version, std::move(r.executed_version));
  if (r.function_error) res.set_header(names.function_error, "Unhandled");
  if (!r.log_tail.empty()) res.set_header(names.log_result, base64_encode(r.log_tail));
  return res;
}

}  // namespace tamaya::api
