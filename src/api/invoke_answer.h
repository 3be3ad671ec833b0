// The answer to a synchronous invoke, the same for tamaya's admin API and the
// Lambda API but for the header names each API's clients read.
#pragma once

#include "dispatch/dispatcher.h"
#include "net/http.h"

namespace tamaya::api {

struct InvokeAnswerHeaders {
  const char* request_id;
  const char* executed_version;
  const char* function_error;  // "Unhandled" when the function failed
  const char* log_result;      // base64 of the log tail, when asked for
};

inline constexpr InvokeAnswerHeaders kTamayaInvokeHeaders{
    "X-Tamaya-Request-Id", "X-Tamaya-Executed-Version", "X-Tamaya-Function-Error",
    "X-Tamaya-Log-Result"};
inline constexpr InvokeAnswerHeaders kLambdaInvokeHeaders{
    "x-amzn-RequestId", "X-Amz-Executed-Version", "X-Amz-Function-Error", "X-Amz-Log-Result"};

// 200 with the function's payload (its answer, or its error document when it
// failed) and the invocation's headers. For a request that ran: `r.status` ok.
net::Response invoke_answer(dispatch::InvokeResult&& r, const InvokeAnswerHeaders& names);

}  // namespace tamaya::api
