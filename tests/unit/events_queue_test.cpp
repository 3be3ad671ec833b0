#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/settings.h"
#include "events/backoff.h"
#include "events/queue.h"

namespace tamaya::events {
namespace {

class QueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tamaya_events_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "events.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static Event make(const std::string& id, int64_t at) {
    Event e;
    e.id = id;
    e.function = "f";
    e.payload = R"({"n":")" + id + "\"}";
    e.trace_id = "t-" + id;
    e.enqueued_ms = e.due_ms = at;
    return e;
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(QueueTest, EventsSurviveReopen) {
  {
    auto q = QueueStore::open(path_);
    ASSERT_TRUE(q.ok()) << q.status().message();
    ASSERT_TRUE((*q)->insert(make("a", 10)).ok());
    ASSERT_TRUE((*q)->insert(make("b", 20)).ok());
  }
  auto q = QueueStore::open(path_);
  ASSERT_TRUE(q.ok());
  auto all = (*q)->load();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, "a");
  EXPECT_EQ((*all)[0].payload, R"({"n":"a"})");
  EXPECT_EQ((*all)[0].trace_id, "t-a");
  EXPECT_EQ((*all)[1].id, "b");
  EXPECT_EQ((*all)[1].enqueued_ms, 20);
}

TEST_F(QueueTest, DuplicateIdIsRefused) {
  auto q = QueueStore::open(path_);
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE((*q)->insert(make("a", 1)).ok());
  EXPECT_EQ((*q)->insert(make("a", 2)).code(), Code::kAlreadyExists);
}

TEST_F(QueueTest, LeaseIsSeenAfterReopenAndUnleaseClearsIt) {
  {
    auto q = QueueStore::open(path_);
    ASSERT_TRUE(q.ok());
    ASSERT_TRUE((*q)->insert(make("a", 1)).ok());
    ASSERT_TRUE((*q)->insert(make("b", 2)).ok());
    ASSERT_TRUE((*q)->insert(make("c", 3)).ok());
    ASSERT_TRUE((*q)->lease("a", 100).ok());
    ASSERT_TRUE((*q)->lease("b", 101).ok());
    ASSERT_TRUE((*q)->unlease("b").ok());
    ASSERT_TRUE((*q)->remove("c").ok());
  }
  auto q = QueueStore::open(path_);
  ASSERT_TRUE(q.ok());
  auto all = (*q)->load();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);  // "c" finished; the leased "a" is still queued
  EXPECT_EQ((*all)[0].leased_ms, 100);
  EXPECT_EQ((*all)[1].leased_ms, 0);
}

TEST_F(QueueTest, RescheduleKeepsCountsAndClearsLease) {
  auto q = QueueStore::open(path_);
  ASSERT_TRUE(q.ok());
  Event e = make("a", 1);
  ASSERT_TRUE((*q)->insert(e).ok());
  ASSERT_TRUE((*q)->lease("a", 5).ok());
  e.invokes = 2;
  e.throttles = 1;
  e.due_ms = 999;
  ASSERT_TRUE((*q)->reschedule(e).ok());
  auto all = (*q)->load();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].invokes, 2);
  EXPECT_EQ((*all)[0].throttles, 1);
  EXPECT_EQ((*all)[0].due_ms, 999);
  EXPECT_EQ((*all)[0].leased_ms, 0);
}

TEST_F(QueueTest, DeadLetterAndRedrive) {
  auto q = QueueStore::open(path_);
  ASSERT_TRUE(q.ok());
  for (const char* id : {"a", "b"}) {
    Event e = make(id, 1);
    ASSERT_TRUE((*q)->insert(e).ok());
    DeadLetter d;
    d.id = id;
    d.function = std::string(id) == "a" ? "f" : "g";
    d.payload = e.payload;
    d.condition = "RetriesExhausted";
    d.invokes = 3;
    d.failed_ms = 50;
    d.record = "{}";
    ASSERT_TRUE((*q)->dead_letter(d).ok());
  }
  EXPECT_EQ((*q)->load()->size(), 0u);
  EXPECT_EQ(*(*q)->dead_letter_count(), 2);
  auto of_f = (*q)->dead_letters("f", 10);
  ASSERT_TRUE(of_f.ok());
  ASSERT_EQ(of_f->size(), 1u);
  EXPECT_EQ((*of_f)[0].condition, "RetriesExhausted");
  EXPECT_EQ((*of_f)[0].invokes, 3);

  auto back = (*q)->redrive("g", "", 1000);
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->size(), 1u);
  EXPECT_EQ((*back)[0].id, "b");
  EXPECT_EQ((*back)[0].invokes, 0);
  EXPECT_EQ((*back)[0].enqueued_ms, 1000);  // a fresh maximum age
  EXPECT_EQ(*(*q)->dead_letter_count(), 1);
  auto queued = (*q)->load();
  ASSERT_EQ(queued->size(), 1u);
  EXPECT_EQ((*queued)[0].id, "b");

  auto by_id = (*q)->redrive("", "a", 2000);
  ASSERT_TRUE(by_id.ok());
  EXPECT_EQ(by_id->size(), 1u);
  EXPECT_EQ(*(*q)->dead_letter_count(), 0);
}

TEST_F(QueueTest, ConfigsPersist) {
  {
    auto q = QueueStore::open(path_);
    ASSERT_TRUE(q.ok());
    InvokeConfig c;
    c.function = "f";
    c.max_retry_attempts = 0;
    c.max_event_age_s = 120;
    c.on_failure = "g";
    ASSERT_TRUE((*q)->put_config(c).ok());
  }
  auto q = QueueStore::open(path_);
  auto cs = (*q)->configs();
  ASSERT_TRUE(cs.ok());
  ASSERT_EQ(cs->size(), 1u);
  EXPECT_EQ((*cs)[0].max_retry_attempts, 0);
  EXPECT_EQ((*cs)[0].max_event_age_s, 120);
  EXPECT_EQ((*cs)[0].on_failure, "g");
  ASSERT_TRUE((*q)->delete_config("f").ok());
  EXPECT_EQ((*q)->configs()->size(), 0u);
}

TEST_F(QueueTest, WriterGroupsConcurrentSubmitsAndReportsAfterCommit) {
  constexpr int kThreads = 8, kPerThread = 200;
  std::atomic<int> ok{0};
  int64_t commits = 0;
  {
    auto store = QueueStore::open(path_);
    ASSERT_TRUE(store.ok());
    QueueWriter writer(std::move(*store));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          Event e = make(std::to_string(t) + "-" + std::to_string(i), i);
          writer.submit([e](QueueStore& q) { return q.insert(e); },
                        [&](Status s) {
                          if (s.ok()) ++ok;
                        });
        }
      });
    }
    for (auto& th : threads) th.join();
    // A failing operation undoes only itself.
    std::atomic<int> dup_code{-1};
    writer.submit([](QueueStore& q) { return q.insert(make("0-0", 1)); },
                  [&](Status s) { dup_code = int(s.code()); });
    writer.flush();
    EXPECT_EQ(dup_code.load(), int(Code::kAlreadyExists));
    commits = writer.commits();
  }
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_LT(commits, kThreads * kPerThread);  // batched, not one commit per event
  auto q = QueueStore::open(path_);
  EXPECT_EQ((*q)->load()->size(), size_t(kThreads * kPerThread));
}

// An operation or a completion that throws (a bug) fails on its own: the
// writer thread goes on, and what was batched with it commits.
TEST_F(QueueTest, WriterContainsAnOperationOrCompletionThatThrows) {
  std::vector<Status> seen(3, Status::Internal("not called"));
  bool after_throwing_completion = false;
  {
    auto store = QueueStore::open(path_);
    ASSERT_TRUE(store.ok());
    QueueWriter writer(std::move(*store));
    writer.submit([](QueueStore& q) { return q.insert(make("a", 1)); },
                  [&](Status s) { seen[0] = std::move(s); });
    writer.submit(
        [](QueueStore& q) -> Status {
          TAMAYA_RETURN_IF_ERROR(q.insert(make("b", 1)));
          throw std::logic_error("op bug");
        },
        [&](Status s) { seen[1] = std::move(s); });
    writer.submit([](QueueStore& q) { return q.insert(make("c", 1)); },
                  [&](Status s) {
                    seen[2] = std::move(s);
                    throw std::logic_error("completion bug");
                  });
    writer.flush();
    writer.submit([](QueueStore&) { return Status::Ok(); },
                  [&](const Status&) { after_throwing_completion = true; });
    writer.flush();
  }
  EXPECT_TRUE(seen[0].ok()) << seen[0].to_string();
  EXPECT_EQ(seen[1].code(), Code::kInternal);
  EXPECT_NE(seen[1].message().find("op bug"), std::string::npos) << seen[1].message();
  EXPECT_TRUE(seen[2].ok()) << seen[2].to_string();
  EXPECT_TRUE(after_throwing_completion);
  auto q = QueueStore::open(path_);
  auto events = (*q)->load();
  ASSERT_TRUE(events.ok());
  std::vector<std::string> ids;
  for (const Event& e : *events) ids.push_back(e.id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "c"}));
}

TEST(Backoff, FunctionErrorsWaitOneThenTwoMinutesByDefault) {
  Settings s;
  EXPECT_EQ(function_error_delay_ms(s, 1), 60'000);
  EXPECT_EQ(function_error_delay_ms(s, 2), 120'000);
  s.events_retry_base_ms = 200;
  EXPECT_EQ(function_error_delay_ms(s, 1), 200);
  EXPECT_EQ(function_error_delay_ms(s, 2), 400);
}

TEST(Backoff, ThrottlesDoubleUpToTheCap) {
  Settings s;
  s.events_throttle_base_ms = 1000;
  s.events_throttle_max_ms = 5000;
  EXPECT_EQ(throttle_delay_ms(s, 1), 1000);
  EXPECT_EQ(throttle_delay_ms(s, 2), 2000);
  EXPECT_EQ(throttle_delay_ms(s, 3), 4000);
  EXPECT_EQ(throttle_delay_ms(s, 4), 5000);
  EXPECT_EQ(throttle_delay_ms(s, 100), 5000);
}

TEST(Record, HasLambdasDestinationShape) {
  RecordFields f;
  f.timestamp_ms = 1'573'755'365'568;
  f.request_id = "e4b46cbf-b738-xmpl-8880-a18cdf61200e";
  f.function_arn = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST";
  f.condition = "RetriesExhausted";
  f.approximate_invoke_count = 3;
  f.request_payload = R"({"ORDER_IDS":["9e07af03"]})";
  f.status_code = 200;
  f.executed_version = "$LATEST";
  f.function_error = "Unhandled";
  f.response_payload = R"({"errorMessage":"boom","errorType":"Error"})";
  auto doc = nlohmann::json::parse(invocation_record(f));
  EXPECT_EQ(doc["version"], "1.0");
  EXPECT_EQ(doc["timestamp"], "2019-11-14T18:16:05.568Z");
  EXPECT_EQ(doc["requestContext"]["requestId"], f.request_id);
  EXPECT_EQ(doc["requestContext"]["condition"], "RetriesExhausted");
  EXPECT_EQ(doc["requestContext"]["approximateInvokeCount"], 3);
  EXPECT_EQ(doc["requestPayload"]["ORDER_IDS"][0], "9e07af03");
  EXPECT_EQ(doc["responseContext"]["statusCode"], 200);
  EXPECT_EQ(doc["responseContext"]["functionError"], "Unhandled");
  EXPECT_EQ(doc["responsePayload"]["errorMessage"], "boom");
}

TEST(Record, PayloadsThatAreNotJsonOrNotUtf8StillMakeARecord) {
  // A function may answer any bytes (a native runtime's binary response),
  // and a record with them went to json::dump(), which throws on invalid
  // UTF-8, on the event loop.
  RecordFields f;
  f.request_payload = "plain text";
  f.response_payload = std::string("\xff\xfe\x00 binary", 10);
  std::string out;
  ASSERT_NO_THROW(out = invocation_record(f));
  auto doc = nlohmann::json::parse(out);
  EXPECT_EQ(doc["requestPayload"], "plain text");
  ASSERT_TRUE(doc["responsePayload"].is_string());
  EXPECT_NE(doc["responsePayload"].get<std::string>().find(" binary"), std::string::npos);
}

}  // namespace
}  // namespace tamaya::events
