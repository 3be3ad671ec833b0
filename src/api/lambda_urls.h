// Lambda's function URL operations (2021-10-31 paths) on the admin port:
// CreateFunctionUrlConfig, GetFunctionUrlConfig, UpdateFunctionUrlConfig,
// DeleteFunctionUrlConfig and ListFunctionUrlConfigs. The configs are stored
// and served by the gateway; api does not link it, so the daemon hands the
// gateway's operations in as FunctionUrlHooks (daemon/serve.cpp).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "api/admin_api.h"
#include "common/status.h"
#include "net/router.h"

namespace tamaya::api {

// `qualifier` is "" for the unqualified function or an alias name. Answers
// are Lambda's shapes without FunctionArn (added here, from the caller's
// account). create: AlreadyExists when the function (and qualifier) has a
// URL; the others NotFound when it has none.
struct FunctionUrlHooks {
  using Config = Result<nlohmann::json>;
  std::function<Config(const std::string& function, const std::string& qualifier,
                       const nlohmann::json& body)>
      create;
  std::function<Config(const std::string& function, const std::string& qualifier,
                       const nlohmann::json& body)>
      update;
  std::function<Config(const std::string& function, const std::string& qualifier)> get;
  std::function<Status(const std::string& function, const std::string& qualifier)> remove;
  // Every URL config of the function as (qualifier, answer), oldest first.
  std::function<std::vector<std::pair<std::string, nlohmann::json>>(const std::string& function)>
      list;
};

void add_lambda_url_routes(net::Router& router, Services services, FunctionUrlHooks hooks);

}  // namespace tamaya::api
