#include "runtime/endpoint.h"

#include <nlohmann/json.hpp>

#include "common/json_text.h"

namespace tamaya::runtime {

namespace {

constexpr std::string_view kPrefix = "/2018-06-01/runtime/";

net::Response runtime_error(int status, std::string_view type, std::string_view message) {
  nlohmann::json body = {{"errorMessage", message}, {"errorType", type}};
  return net::Response::json(status, json_text(body));
}

net::Response accepted() { return net::Response::json(202, R"({"status":"OK"})"); }

}  // namespace

Endpoint::Endpoint(boost::asio::io_context& io, EndpointLimits limits, EndpointCallbacks callbacks)
    : limits_(limits), callbacks_(std::move(callbacks)) {
  net::ServerLimits server_limits;
  // Accept a little more than the response limit so an oversized response is
  // answered by handle() with Lambda's error, attributed to its invocation.
  server_limits.max_body_bytes = limits.max_response_bytes + (1 << 20);
  server_limits.max_header_bytes = limits.max_header_bytes;
  // A runtime may sit in invocation/next for as long as the instance lives.
  server_limits.idle_timeout = std::chrono::hours(24);
  server_limits.header_timeout = std::chrono::hours(24);
  // Our runtime clients pipeline an invocation's result with their next
  // long poll: the 202 then goes out with the next event.
  server_limits.hold_answers_to_pipelining_clients = true;
  server_ = std::make_unique<net::HttpServer>(
      io, server_limits,
      [this](net::Request r, net::Responder respond) { handle(std::move(r), std::move(respond)); });
}

Endpoint::~Endpoint() { close(); }

Status Endpoint::listen(const std::string& host) { return server_->listen(host, 0); }

uint16_t Endpoint::port() const { return server_->port(); }

void Endpoint::close() {
  if (!server_) return;
  server_->stop_accepting();
  server_->close_all();
  // After close_all: a waiting long poll dropped before its connection is
  // closed would be answered 500 (Responder's unanswered-request guard), a
  // write to a runtime that is going away.
  pending_next_.reset();
}

void Endpoint::deliver(Invocation invocation) {
  queued_ = std::move(invocation);
  if (pending_next_) {
    auto respond = std::move(*pending_next_);
    pending_next_.reset();
    send_invocation(respond);
  }
}

void Endpoint::send_invocation(net::Responder& respond) {
  Invocation inv = std::move(*queued_);
  queued_.reset();
  net::Response r = net::Response::json(200, std::move(inv.payload));
  r.headers.reserve(6);  // no reallocation for the headers below
  r.set_header("Lambda-Runtime-Aws-Request-Id", inv.request_id);
  current_ = std::move(inv.request_id);
  r.set_header("Lambda-Runtime-Deadline-Ms", std::to_string(inv.deadline_ms));
  r.set_header("Lambda-Runtime-Invoked-Function-Arn", std::move(inv.function_arn));
  if (!inv.trace_id.empty()) r.set_header("Lambda-Runtime-Trace-Id", std::move(inv.trace_id));
  if (!inv.client_context.empty()) {
    r.set_header("Lambda-Runtime-Client-Context", inv.client_context);
  }
  if (!inv.cognito_identity.empty()) {
    r.set_header("Lambda-Runtime-Cognito-Identity", inv.cognito_identity);
  }
  respond(std::move(r));
}

void Endpoint::handle(net::Request request, net::Responder respond) {
  std::string_view path = request.path;
  if (path.substr(0, kPrefix.size()) != kPrefix) {
    respond(runtime_error(404, "InvalidRequest", "unknown Runtime API path; this is 2018-06-01"));
    return;
  }
  path.remove_prefix(kPrefix.size());

  if (path == "invocation/next") {
    if (request.method != "GET") {
      respond(runtime_error(405, "InvalidRequest", "invocation/next takes GET"));
      return;
    }
    // Asking for the next event ends the previous one, if the runtime had
    // not reported it (Lambda treats this the same way).
    current_.reset();
    if (pending_next_) {
      (*pending_next_)(
          runtime_error(400, "InvalidRequest", "superseded by a newer invocation/next"));
    }
    initialized_ = true;
    if (queued_) {
      send_invocation(respond);
    } else {
      pending_next_ = std::move(respond);
    }
    if (callbacks_.on_next) callbacks_.on_next();
    return;
  }

  if (path == "init/error") {
    if (request.method != "POST") {
      respond(runtime_error(405, "InvalidRequest", "init/error takes POST"));
      return;
    }
    if (initialized_) {
      respond(runtime_error(403, "InvalidStateTransition",
                            "init/error is only allowed before the first invocation/next"));
      return;
    }
    std::string type(request.header("Lambda-Runtime-Function-Error-Type").value_or(""));
    // The dispatcher learns the outcome before the runtime hears back, so a
    // runtime that exits right after cannot race its own report.
    if (callbacks_.on_init_error)
      callbacks_.on_init_error(std::move(type), std::move(request.body));
    respond(accepted());
    return;
  }

  constexpr std::string_view kInvocation = "invocation/";
  if (path.substr(0, kInvocation.size()) == kInvocation && request.method == "POST") {
    path.remove_prefix(kInvocation.size());
    size_t slash = path.find('/');
    if (slash != std::string_view::npos) {
      std::string id(path.substr(0, slash));
      std::string_view verb = path.substr(slash + 1);
      if (verb == "response" || verb == "error") {
        if (!current_ || *current_ != id) {
          respond(runtime_error(400, "InvalidRequestID", "Invalid request ID"));
          return;
        }
        current_.reset();
        if (verb == "response") {
          if (int64_t(request.body.size()) > limits_.max_response_bytes) {
            nlohmann::json err = {
                {"errorMessage", "Response payload size (" + std::to_string(request.body.size()) +
                                     " bytes) exceeded maximum allowed payload size (" +
                                     std::to_string(limits_.max_response_bytes) + " bytes)."},
                {"errorType", "Function.ResponseSizeTooLarge"}};
            if (callbacks_.on_error) {
              callbacks_.on_error(id, "Function.ResponseSizeTooLarge", json_text(err));
            }
            respond(runtime_error(413, "RequestEntityTooLarge",
                                  "Exceeded maximum allowed payload size (" +
                                      std::to_string(limits_.max_response_bytes) + " bytes)."));
            return;
          }
          // The 202 first: a runtime that waits for it before its next long
          // poll (every AWS runtime but ours) is then back sooner, while the
          // caller's answer is written. Both happen in this one turn of the
          // loop, so the runtime cannot exit between them.
          respond(accepted());
          if (callbacks_.on_response) callbacks_.on_response(id, std::move(request.body));
        } else {
          std::string type(request.header("Lambda-Runtime-Function-Error-Type").value_or(""));
          if (callbacks_.on_error)
            callbacks_.on_error(id, std::move(type), std::move(request.body));
          respond(accepted());
        }
        return;
      }
    }
  }
  respond(runtime_error(404, "InvalidRequest",
                        "unknown Runtime API call " + request.method + " " + request.path));
}

}  // namespace tamaya::runtime
