// The Lambda Runtime API (2018-06-01), served to one instance on its own
// loopback port. One endpoint per instance keeps the protocol exactly as
// Lambda's (AWS_LAMBDA_RUNTIME_API is host:port, no path prefix) and tells
// the dispatcher without any lookup which instance is speaking.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "net/http.h"

namespace tamaya::runtime {

// What the runtime client receives from invocation/next.
struct Invocation {
  std::string request_id;
  std::string payload;
  int64_t deadline_ms = 0;  // wall clock, ms since the epoch
  std::string function_arn;
  std::string trace_id;
  std::string client_context;
  std::string cognito_identity;
};

struct EndpointCallbacks {
  // The runtime asked for work: init is done (first time) or it finished
  // the previous invocation.
  std::function<void()> on_next;
  std::function<void(const std::string& request_id, std::string body)> on_response;
  // body is the runtime's error document; error_type from the
  // Lambda-Runtime-Function-Error-Type header (may be empty).
  std::function<void(const std::string& request_id, std::string error_type, std::string body)>
      on_error;
  std::function<void(std::string error_type, std::string body)> on_init_error;
};

struct EndpointLimits {
  int64_t max_response_bytes = (6 << 20) + 100;
  int64_t max_header_bytes = 16 << 10;
};

class Endpoint {
 public:
  Endpoint(boost::asio::io_context& io, EndpointLimits limits, EndpointCallbacks callbacks);
  ~Endpoint();

  Status listen(const std::string& host = "127.0.0.1");
  uint16_t port() const;

  // Hands the invocation to the runtime: answers its pending invocation/next
  // now, or the next one it makes.
  void deliver(Invocation invocation);
  // The invocation the runtime currently works on, if any.
  const std::optional<std::string>& current_request_id() const { return current_; }
  void close();

 private:
  void handle(net::Request request, net::Responder respond);
  void send_invocation(net::Responder& respond);

  EndpointLimits limits_;
  EndpointCallbacks callbacks_;
  std::unique_ptr<net::HttpServer> server_;
  std::optional<net::Responder> pending_next_;
  std::optional<Invocation> queued_;
  std::optional<std::string> current_;
  bool initialized_ = false;
};

}  // namespace tamaya::runtime
