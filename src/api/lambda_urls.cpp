#include "api/lambda_urls.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

#include "api/lambda_shared.h"
#include "api/lambda_sigv4.h"
#include "common/encoding.h"
#include "common/json_text.h"

namespace tamaya::api {

namespace {

using nlohmann::json;

// ListFunctionUrlConfigs' page size without MaxItems, and its largest (Lambda's).
constexpr int kDefaultMaxItems = 50;
constexpr int kLargestMaxItems = 50;

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class UrlHandlers {
 public:
  UrlHandlers(Services s, FunctionUrlHooks hooks)
      : s_(s),
        hooks_(std::move(hooks)),
        door_(s_.settings.lambda_api_verify_sigv4 != 0, s_.settings.lambda_api_keys) {}

  // As the other Lambda operations: the caller's account from the SigV4
  // credential, and the signature checked when lambda_api_verify_sigv4 is on.
  void run(void (UrlHandlers::*op)(const net::Request&, const net::Params&, const std::string&,
                                   const net::Responder&),
           const net::Request& req, const net::Params& params, const net::Responder& respond) {
    auto account = door_.account_of(req);
    if (!account.ok()) {
      return respond(aws_error(403, "InvalidSignatureException", account.status().message()));
    }
    (this->*op)(req, params, *account, respond);
  }

  void create(const net::Request& req, const net::Params& p, const std::string& account,
              const net::Responder& respond) {
    auto target = resolve(req, p);
    if (!target.ok()) return respond(aws_error(target.status()));
    auto body = parse_body(req);
    if (!body.ok()) return respond(aws_error(body.status()));
    auto config = hooks_.create(target->name, target->qualifier, *body);
    if (!config.ok()) return respond(aws_error(config.status()));
    json answer = std::move(*config);
    answer.erase("LastModifiedTime");  // CreateFunctionUrlConfig's answer has none
    reply(respond, 201, with_arn(std::move(answer), account, *target));
  }

  void get(const net::Request& req, const net::Params& p, const std::string& account,
           const net::Responder& respond) {
    auto target = resolve(req, p);
    if (!target.ok()) return respond(aws_error(target.status()));
    auto config = hooks_.get(target->name, target->qualifier);
    if (!config.ok()) return respond(aws_error(config.status()));
    reply(respond, 200, with_arn(std::move(*config), account, *target));
  }

  void update(const net::Request& req, const net::Params& p, const std::string& account,
              const net::Responder& respond) {
    auto target = resolve(req, p);
    if (!target.ok()) return respond(aws_error(target.status()));
    auto body = parse_body(req);
    if (!body.ok()) return respond(aws_error(body.status()));
    auto config = hooks_.update(target->name, target->qualifier, *body);
    if (!config.ok()) return respond(aws_error(config.status()));
    reply(respond, 200, with_arn(std::move(*config), account, *target));
  }

  void remove(const net::Request& req, const net::Params& p, const std::string&,
              const net::Responder& respond) {
    auto target = resolve(req, p);
    if (!target.ok()) return respond(aws_error(target.status()));
    if (Status st = hooks_.remove(target->name, target->qualifier); !st.ok()) {
      return respond(aws_error(st));
    }
    net::Response r = net::Response::no_content();
    r.set_header("x-amzn-RequestId", new_request_id());
    respond(std::move(r));
  }

  void list(const net::Request& req, const net::Params& p, const std::string& account,
            const net::Responder& respond) {
    auto ref = parse_function_name(p.at("name"));
    if (!ref.ok()) return respond(aws_error(ref.status()));
    if (!ref->qualifier.empty()) {
      return respond(aws_error(Status::Invalid(
          "ListFunctionUrlConfigs takes an unqualified FunctionName; it lists every qualifier")));
    }
    if (auto fn = s_.registry.get(ref->name); !fn.ok()) return respond(aws_error(fn.status()));
    int max_items = kDefaultMaxItems;
    if (auto m = req.query_param("MaxItems")) {
      if (!all_digits(*m) || m->size() > 3 || std::stoi(*m) < 1 ||
          std::stoi(*m) > kLargestMaxItems) {
        return respond(aws_error(
            Status::Invalid(fmt::format("MaxItems must be an integer 1..{}", kLargestMaxItems))));
      }
      max_items = std::stoi(*m);
    }
    size_t start = 0;
    if (auto marker = req.query_param("Marker")) {
      if (!all_digits(*marker) || marker->size() > 9) {
        return respond(aws_error(Status::Invalid(
            "Marker is not one this API gave out; pass NextMarker from the previous answer")));
      }
      start = std::stoul(*marker);
    }
    auto all = hooks_.list(ref->name);
    json configs = json::array();
    for (size_t i = start; i < all.size() && configs.size() < size_t(max_items); ++i) {
      configs.push_back(
          with_arn(std::move(all[i].second), account, FunctionRef{ref->name, all[i].first}));
    }
    json answer = {{"FunctionUrlConfigs", std::move(configs)}};
    if (start + max_items < all.size()) answer["NextMarker"] = std::to_string(start + max_items);
    reply(respond, 200, answer);
  }

 private:
  // The function and qualifier of the request: FunctionName may carry the
  // qualifier (name:alias, ARN) or the Qualifier query parameter does.
  // Lambda allows $LATEST or an alias, not a version number.
  Result<FunctionRef> resolve(const net::Request& req, const net::Params& p) const {
    TAMAYA_ASSIGN_OR_RETURN(FunctionRef ref, parse_function_name(p.at("name")));
    if (auto q = req.query_param("Qualifier")) {
      if (!ref.qualifier.empty() && ref.qualifier != *q) {
        return Status::Invalid("the Qualifier parameter and the qualifier in FunctionName differ");
      }
      ref.qualifier = *q;
    }
    if (ref.qualifier == "$LATEST") ref.qualifier.clear();
    if (all_digits(ref.qualifier)) {
      return Status::Invalid(
          "a function URL's Qualifier is an alias name or $LATEST, not a version number");
    }
    TAMAYA_RETURN_IF_ERROR(s_.registry.get(ref.name, ref.qualifier).status());
    return ref;
  }

  static Result<json> parse_body(const net::Request& req) {
    if (req.body.empty()) return json::object();
    json doc = json::parse(req.body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      return Status::Invalid("Could not parse request body into json: send a JSON object");
    }
    return doc;
  }

  json with_arn(json config, const std::string& account, const FunctionRef& ref) const {
    std::string arn =
        fmt::format("arn:aws:lambda:{}:{}:function:{}", s_.settings.region, account, ref.name);
    if (!ref.qualifier.empty()) arn += ":" + ref.qualifier;
    config["FunctionArn"] = arn;
    return config;
  }

  static void reply(const net::Responder& respond, int status, const json& body) {
    net::Response r = net::Response::json(status, json_text(body));
    r.set_header("x-amzn-RequestId", new_request_id());
    respond(std::move(r));
  }

  Services s_;
  FunctionUrlHooks hooks_;
  SigV4Door door_;
};

}  // namespace

void add_lambda_url_routes(net::Router& router, Services services, FunctionUrlHooks hooks) {
  auto h = std::make_shared<UrlHandlers>(services, std::move(hooks));
  auto bind = [h](auto op) {
    return [h, op](const net::Request& req, const net::Params& params,
                   const net::Responder& respond) { h->run(op, req, params, respond); };
  };
  const std::string fn = "/2021-10-31/functions/{name}";
  router.add("POST", fn + "/url", bind(&UrlHandlers::create));
  router.add("GET", fn + "/url", bind(&UrlHandlers::get));
  router.add("PUT", fn + "/url", bind(&UrlHandlers::update));
  router.add("DELETE", fn + "/url", bind(&UrlHandlers::remove));
  router.add("GET", fn + "/urls", bind(&UrlHandlers::list));
}

}  // namespace tamaya::api
