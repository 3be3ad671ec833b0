// The AWS Lambda control-plane REST API (2015-03-31 paths) on the admin
// port, so the AWS CLI, boto3 and the SDKs work against tamaya with
// --endpoint-url and no other change (docs/api.md, "Lambda API"). It works
// on the same registry as the native API: a function is the same object
// whichever API made it. Errors are shaped as Lambda's: the exception name
// in x-amzn-ErrorType and {"Type":"User","message":...} as the body.
#pragma once

#include "api/admin_api.h"
#include "net/router.h"

namespace tamaya::api {

void add_lambda_routes(net::Router& router, Services services);

}  // namespace tamaya::api
