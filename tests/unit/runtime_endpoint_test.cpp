// The Runtime API endpoint, driven the way a runtime client drives it.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <functional>
#include <future>
#include <thread>

#include "net/client.h"
#include "runtime/endpoint.h"
#include "runtime/launch.h"

namespace tamaya::runtime {
namespace {

namespace asio = boost::asio;

std::string header(const net::Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  }
  return "";
}

class EndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EndpointCallbacks cb;
    cb.on_next = [this] { nexts++; };
    cb.on_response = [this](const std::string& id, std::string body) {
      responses.emplace_back(id, body);
    };
    cb.on_error = [this](const std::string& id, std::string type, std::string body) {
      errors.push_back({id, type, body});
    };
    cb.on_init_error = [this](std::string type, std::string body) {
      init_errors.emplace_back(type, body);
    };
    EndpointLimits limits;
    limits.max_response_bytes = 1000;
    endpoint_ = std::make_unique<Endpoint>(io_, limits, cb);
    ASSERT_TRUE(endpoint_->listen().ok());
    url_ = net::Url{"127.0.0.1", endpoint_->port(), ""};
    work_.emplace(io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    asio::post(io_, [this] { endpoint_->close(); });
    work_.reset();
    io_.stop();
    thread_.join();
  }

  net::Response call(const std::string& method, const std::string& path, std::string body = "",
                     net::Headers headers = {}) {
    net::ClientRequest req;
    req.method = method;
    req.target = "/2018-06-01/runtime/" + path;
    req.body = std::move(body);
    req.headers = std::move(headers);
    req.timeout = std::chrono::seconds(5);
    auto r = net::http_request(url_, req);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    // The endpoint may answer before its callback runs (a response's 202 goes
    // out first), in the same turn of the loop: once a later turn has run,
    // the callback's records are complete and safe to read here.
    on_io([] {});
    return r.ok() ? *r : net::Response{0, {}, {}};
  }

  // Runs `fn` on the endpoint's thread and waits for it.
  void on_io(const std::function<void()>& fn) {
    std::promise<void> done;
    asio::post(io_, [&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }

  void deliver(const std::string& id, const std::string& payload) {
    on_io([&] {
      Invocation inv;
      inv.request_id = id;
      inv.payload = payload;
      inv.deadline_ms = 1234;
      inv.function_arn = "arn:aws:lambda:us-east-1:000000000000:function:f";
      inv.trace_id = "Root=1-abc";
      endpoint_->deliver(inv);
    });
  }

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::unique_ptr<Endpoint> endpoint_;
  net::Url url_;
  std::thread thread_;
  std::atomic<int> nexts{0};
  std::vector<std::pair<std::string, std::string>> responses;
  struct Err {
    std::string id, type, body;
  };
  std::vector<Err> errors;
  std::vector<std::pair<std::string, std::string>> init_errors;
};

TEST_F(EndpointTest, NextWaitsForAnInvocationAndCarriesLambdaHeaders) {
  auto next = std::async(std::launch::async, [this] { return call("GET", "invocation/next"); });
  while (nexts == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(next.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  deliver("req-1", R"({"a":1})");
  net::Response r = next.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"a":1})");
  EXPECT_EQ(header(r, "Lambda-Runtime-Aws-Request-Id"), "req-1");
  EXPECT_EQ(header(r, "Lambda-Runtime-Deadline-Ms"), "1234");
  EXPECT_EQ(header(r, "Lambda-Runtime-Invoked-Function-Arn"),
            "arn:aws:lambda:us-east-1:000000000000:function:f");
  EXPECT_EQ(header(r, "Lambda-Runtime-Trace-Id"), "Root=1-abc");

  net::Response ack = call("POST", "invocation/req-1/response", R"({"ok":true})");
  EXPECT_EQ(ack.status, 202);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].second, R"({"ok":true})");
}

// An instance's endpoint is closed as the instance ends: its runtime's
// waiting long poll gets no answer (it would be a made-up 500) but the end
// of its connection.
TEST_F(EndpointTest, ClosingWhileANextWaitsAnswersNothing) {
  auto next = std::async(std::launch::async, [this] {
    net::ClientRequest req;
    req.method = "GET";
    req.target = "/2018-06-01/runtime/invocation/next";
    req.timeout = std::chrono::seconds(5);
    return net::http_request(url_, req);
  });
  while (nexts == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  on_io([this] { endpoint_->close(); });
  auto r = next.get();
  EXPECT_FALSE(r.ok()) << "answered " << (r.ok() ? r->status : 0) << ": "
                       << (r.ok() ? r->body : "");
}

TEST_F(EndpointTest, DeliveredBeforeNextIsHandedOverImmediately) {
  deliver("req-2", "{}");
  net::Response r = call("GET", "invocation/next");
  EXPECT_EQ(header(r, "Lambda-Runtime-Aws-Request-Id"), "req-2");
}

TEST_F(EndpointTest, UnknownRequestIdIs400) {
  deliver("req-3", "{}");
  call("GET", "invocation/next");
  net::Response r = call("POST", "invocation/other/response", "{}");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("InvalidRequestID"), std::string::npos);
  EXPECT_TRUE(responses.empty());
}

TEST_F(EndpointTest, ErrorCarriesTheErrorTypeHeader) {
  deliver("req-4", "{}");
  call("GET", "invocation/next");
  net::Response r =
      call("POST", "invocation/req-4/error", R"({"errorMessage":"x","errorType":"E"})",
           {{"Lambda-Runtime-Function-Error-Type", "Custom.Error"}});
  EXPECT_EQ(r.status, 202);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].type, "Custom.Error");
}

TEST_F(EndpointTest, OversizedResponseIs413AndFailsTheInvocation) {
  deliver("req-5", "{}");
  call("GET", "invocation/next");
  net::Response r = call("POST", "invocation/req-5/response", std::string(1001, 'x'));
  EXPECT_EQ(r.status, 413);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].type, "Function.ResponseSizeTooLarge");
  EXPECT_TRUE(responses.empty());
}

TEST_F(EndpointTest, InitErrorOnlyBeforeFirstNext) {
  net::Response r = call("POST", "init/error",
                         R"({"errorMessage":"bad","errorType":"Runtime.ImportModuleError"})",
                         {{"Lambda-Runtime-Function-Error-Type", "Runtime.ImportModuleError"}});
  EXPECT_EQ(r.status, 202);
  ASSERT_EQ(init_errors.size(), 1u);
  EXPECT_EQ(init_errors[0].first, "Runtime.ImportModuleError");
  deliver("req-6", "{}");
  call("GET", "invocation/next");
  EXPECT_EQ(call("POST", "init/error", "{}").status, 403);
}

TEST_F(EndpointTest, UnknownPathIs404) { EXPECT_EQ(call("GET", "nothing").status, 404); }

TEST(LaunchSpec, SetsLambdaEnvironmentAndKeepsFunctionVariables) {
  InstanceSpec spec;
  spec.function_name = "f";
  spec.version = "$LATEST";
  spec.runtime = "python3";
  spec.handler = "app.handler";
  spec.code_dir = "/tmp";
  spec.region = "eu-west-1";
  spec.memory_mb = 256;
  spec.environment = {{"MINE", "1"}, {"AWS_REGION", "spoofed"}};
  spec.runtime_api_port = 4242;
  RuntimePaths paths{"/usr/bin/python3", "/usr/bin/node", "/rt"};
  auto ls = make_launch_spec(spec, paths);
  ASSERT_TRUE(ls.ok());
  auto has = [&](const std::string& kv) {
    return std::find(ls->env.begin(), ls->env.end(), kv) != ls->env.end();
  };
  EXPECT_TRUE(has("MINE=1"));
  EXPECT_TRUE(has("AWS_REGION=eu-west-1"));
  EXPECT_TRUE(has("AWS_LAMBDA_RUNTIME_API=127.0.0.1:4242"));
  EXPECT_TRUE(has("_HANDLER=app.handler"));
  EXPECT_TRUE(has("LAMBDA_TASK_ROOT=/tmp"));
  EXPECT_TRUE(has("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256"));
  EXPECT_TRUE(has("AWS_LAMBDA_FUNCTION_VERSION=$LATEST"));
  EXPECT_EQ(ls->argv,
            (std::vector<std::string>{"/usr/bin/python3", "-I", "/rt/python/bootstrap.py"}));
  // The zygote is told the handler, to compile its module ahead.
  EXPECT_EQ(ls->zygote_argv,
            (std::vector<std::string>{"/usr/bin/python3", "-I", "/rt/python/zygote.py",
                                      "--handler=app.handler", "--task-root=/tmp"}));
}

TEST(LaunchSpec, ProvidedNeedsAnExecutableBootstrap) {
  InstanceSpec spec;
  spec.runtime = "provided";
  spec.code_dir = "/nonexistent-dir";
  auto ls = make_launch_spec(spec, RuntimePaths{});
  ASSERT_FALSE(ls.ok());
  EXPECT_NE(ls.status().message().find("Runtime.InvalidEntrypoint"), std::string::npos);
}

}  // namespace
}  // namespace tamaya::runtime
