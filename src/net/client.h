// A small blocking HTTP/1.1 client for the CLI, tests and benchmarks.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "net/http.h"

namespace tamaya::net {

struct Url {
  std::string host;
  uint16_t port = 80;
  std::string base_path;  // without trailing '/'
};
// Parses "http://host:port[/base]"; https is not supported (the admin API is
// served on loopback).
Result<Url> parse_url(const std::string& url);

struct ClientRequest {
  std::string method = "GET";
  std::string target = "/";
  Headers headers;
  std::string body;
  std::chrono::milliseconds timeout{60'000};
};

// One request on a fresh connection. Transport failures (refused, timeout)
// are Unavailable/Deadline statuses; any HTTP status is a Response.
Result<Response> http_request(const Url& url, const ClientRequest& request);

// Streams a response body chunk by chunk (server-sent events, log follow);
// on_chunk returning false stops early.
Status http_stream(const Url& url, const ClientRequest& request,
                   const std::function<bool(int status, std::string_view chunk)>& on_chunk);

}  // namespace tamaya::net
