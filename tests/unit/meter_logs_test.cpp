#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "meter/logs.h"
#include "store/database.h"

namespace tamaya::meter {
namespace {

namespace fs = std::filesystem;

LogEvent event(const std::string& fn, const std::string& request, const std::string& message,
               int64_t time_ms = 1'700'000'000'000) {
  LogEvent e;
  e.time_ms = time_ms;
  e.function = fn;
  e.request_id = request;
  e.message = message;
  return e;
}

std::vector<std::string> messages(const std::vector<LogEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.message);
  return out;
}

class LogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tamaya_logs_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "tamaya.db").string();
    auto db = store::Database::open(path_, migrations());
    ASSERT_TRUE(db.ok()) << db.status().to_string();
    db_ = std::move(*db);
  }
  void TearDown() override {
    db_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<LogStore> open_store(int64_t max_per_function = 1000) {
    auto logs = LogStore::open(path_, max_per_function);
    EXPECT_TRUE(logs.ok()) << logs.status().to_string();
    return logs.ok() ? std::move(*logs) : nullptr;
  }

  fs::path dir_;
  std::string path_;
  std::unique_ptr<store::Database> db_;  // the daemon's main connection
};

TEST_F(LogStoreTest, AppendFlushQueryInOrder) {
  auto logs = open_store();
  ASSERT_TRUE(logs);
  logs->append({event("fn", "r1", "START"), event("other", "r9", "elsewhere"),
                event("fn", "r1", "hello", 1'700'000'000'123)});
  logs->append({event("fn", "r1", "END")});
  logs->flush();

  auto got = logs->query("fn", 0, 100, "");
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(messages(*got), (std::vector<std::string>{"START", "hello", "END"}));
  ASSERT_EQ(got->size(), 3u);
  EXPECT_LT((*got)[0].id, (*got)[1].id);
  EXPECT_LT((*got)[1].id, (*got)[2].id);
  EXPECT_EQ((*got)[1].time_ms, 1'700'000'000'123);
  EXPECT_EQ((*got)[1].function, "fn");
  EXPECT_EQ((*got)[1].request_id, "r1");

  auto none = logs->query("unknown", 0, 100, "");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(logs->dropped(), 0);
}

TEST_F(LogStoreTest, SinceIdPages) {
  auto logs = open_store();
  ASSERT_TRUE(logs);
  std::vector<LogEvent> batch;
  for (int i = 0; i < 25; ++i) batch.push_back(event("fn", "r", "line " + std::to_string(i)));
  logs->append(std::move(batch));
  logs->flush();

  std::vector<std::string> seen;
  int64_t since = 0;
  int pages = 0;
  while (true) {
    auto page = logs->query("fn", since, 10, "");
    ASSERT_TRUE(page.ok());
    if (page->empty()) break;
    ++pages;
    EXPECT_LE(page->size(), 10u);
    for (const auto& e : *page) {
      EXPECT_GT(e.id, since);
      seen.push_back(e.message);
    }
    since = page->back().id;
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "line 0");
  EXPECT_EQ(seen.back(), "line 24");
}

TEST_F(LogStoreTest, FiltersByRequestId) {
  auto logs = open_store();
  ASSERT_TRUE(logs);
  logs->append({event("fn", "a", "a1"), event("fn", "b", "b1"), event("fn", "a", "a2"),
                event("other", "a", "same id, other function")});
  logs->flush();
  auto got = logs->query("fn", 0, 100, "a");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(messages(*got), (std::vector<std::string>{"a1", "a2"}));
  got = logs->query("fn", (*got)[0].id, 100, "a");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(messages(*got), (std::vector<std::string>{"a2"}));
}

TEST_F(LogStoreTest, RetentionKeepsNewestPerFunction) {
  auto logs = open_store(/*max_per_function=*/5);
  ASSERT_TRUE(logs);
  // A request each, so each line is a row of its own.
  std::vector<LogEvent> batch;
  for (int i = 0; i < 12; ++i)
    batch.push_back(event("busy", "r" + std::to_string(i), std::to_string(i)));
  batch.push_back(event("quiet", "r", "only one"));
  logs->append(std::move(batch));
  logs->flush();

  auto busy = logs->query("busy", 0, 100, "");
  ASSERT_TRUE(busy.ok());
  EXPECT_EQ(messages(*busy), (std::vector<std::string>{"7", "8", "9", "10", "11"}));
  auto quiet = logs->query("quiet", 0, 100, "");
  ASSERT_TRUE(quiet.ok());
  EXPECT_EQ(quiet->size(), 1u);

  // A second round trims again, across batches.
  logs->append({event("busy", "r12", "12"), event("busy", "r13", "13")});
  logs->flush();
  busy = logs->query("busy", 0, 100, "");
  ASSERT_TRUE(busy.ok());
  EXPECT_EQ(messages(*busy), (std::vector<std::string>{"9", "10", "11", "12", "13"}));
}

TEST_F(LogStoreTest, AnInvocationsLinesShareARowAndComeBackOneByOne) {
  auto logs = open_store();
  ASSERT_TRUE(logs);
  // Lines with the characters the row's encoding escapes, and their times.
  logs->append({event("fn", "r1", "START", 1'000), event("fn", "r1", "two\nlines", 1'004),
                event("fn", "r1", "back\\slash \\n not a newline", 1'009),
                event("fn", "r1", "", 1'010), event("fn", "r2", "next request", 1'020)});
  logs->flush();

  auto got = logs->query("fn", 0, 100, "");
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(messages(*got),
            (std::vector<std::string>{"START", "two\nlines", "back\\slash \\n not a newline", "",
                                      "next request"}));
  ASSERT_EQ(got->size(), 5u);
  EXPECT_EQ((*got)[1].time_ms, 1'004);
  EXPECT_EQ((*got)[2].time_ms, 1'009);
  EXPECT_EQ((*got)[3].request_id, "r1");
  EXPECT_EQ((*got)[4].request_id, "r2");
  for (size_t i = 1; i < got->size(); ++i) EXPECT_LT((*got)[i - 1].id, (*got)[i].id);

  // Two rows: r1's four lines and r2's one.
  auto rows = db_->prepare("SELECT lines FROM log_events ORDER BY id");
  ASSERT_TRUE(rows.ok());
  ASSERT_TRUE(*rows->step());
  EXPECT_EQ(rows->column_int(0), 4);
  ASSERT_TRUE(*rows->step());
  EXPECT_EQ(rows->column_int(0), 1);
  EXPECT_FALSE(*rows->step());

  // A page may start and end inside a row.
  auto middle = logs->query("fn", (*got)[0].id, 2, "");
  ASSERT_TRUE(middle.ok());
  EXPECT_EQ(messages(*middle),
            (std::vector<std::string>{"two\nlines", "back\\slash \\n not a newline"}));
  auto rest = logs->query("fn", middle->back().id, 100, "r1");
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(messages(*rest), (std::vector<std::string>{""}));
}

TEST_F(LogStoreTest, RetentionKeepsARowWholeAndBoundsItsLines) {
  auto logs = open_store(/*max_per_function=*/5);
  ASSERT_TRUE(logs);
  // One request's 2,000 lines: rows of kLogLinesPerRow lines at most.
  std::vector<LogEvent> batch;
  for (int i = 0; i < 2'000; ++i) batch.push_back(event("fn", "r", std::to_string(i)));
  logs->append(std::move(batch));
  logs->flush();
  auto count = db_->prepare("SELECT COUNT(*), MAX(lines) FROM log_events");
  ASSERT_TRUE(count.ok());
  ASSERT_TRUE(*count->step());
  // The newest 5 lines are in the second row (lines 1,024..1,999), kept whole.
  EXPECT_EQ(count->column_int(0), 1);
  EXPECT_EQ(count->column_int(1), 2'000 - kLogLinesPerRow);
  auto got = logs->query("fn", 0, kMaxLogQueryLimit, "");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), size_t(2'000 - kLogLinesPerRow));
  EXPECT_EQ(got->front().message, std::to_string(kLogLinesPerRow));
  EXPECT_EQ(got->back().message, "1999");

  // A newer row of its own pushes the big one out once it holds 5 lines.
  logs->append({event("fn", "s", "a"), event("fn", "s", "b"), event("fn", "s", "c"),
                event("fn", "s", "d"), event("fn", "s", "e")});
  logs->flush();
  got = logs->query("fn", 0, kMaxLogQueryLimit, "");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(messages(*got), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
}

TEST_F(LogStoreTest, RemoveFunctionDeletesStoredAndQueued) {
  auto logs = open_store();
  ASSERT_TRUE(logs);
  logs->append({event("gone", "r", "stored"), event("kept", "r", "stays")});
  logs->flush();
  logs->append({event("gone", "r", "still queued")});
  ASSERT_TRUE(logs->remove_function("gone").ok());
  logs->flush();

  auto gone = logs->query("gone", 0, 100, "");
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->empty()) << gone->front().message;
  auto kept = logs->query("kept", 0, 100, "");
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(messages(*kept), (std::vector<std::string>{"stays"}));
}

TEST_F(LogStoreTest, DestructorWritesWhatIsQueued) {
  {
    auto logs = open_store();
    ASSERT_TRUE(logs);
    logs->append({event("fn", "r", "written on shutdown")});
  }
  auto logs = open_store();
  ASSERT_TRUE(logs);
  auto got = logs->query("fn", 0, 10, "");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(messages(*got), (std::vector<std::string>{"written on shutdown"}));
}

TEST_F(LogStoreTest, WritesWithoutFlushWithinTheBatchInterval) {
  auto logs = open_store();
  ASSERT_TRUE(logs);
  logs->append({event("fn", "r", "eventually")});
  // No flush: the writer commits on its own after kLogBatchInterval. Poll
  // with a generous bound so a loaded machine does not fail the test.
  bool found = false;
  for (int i = 0; i < 200 && !found; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    auto got = logs->query("fn", 0, 10, "");
    ASSERT_TRUE(got.ok());
    found = !got->empty();
  }
  EXPECT_TRUE(found);
}

TEST_F(LogStoreTest, ConcurrentAppendersLoseNothing) {
  auto logs = open_store(/*max_per_function=*/100'000);
  ASSERT_TRUE(logs);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2'500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        logs->append({event("fn", "t" + std::to_string(t), std::to_string(i))});
      }
    });
  }
  for (auto& th : threads) th.join();
  logs->flush();
  int64_t total = 0;
  int64_t since = 0;
  while (true) {
    auto page = logs->query("fn", since, kMaxLogQueryLimit, "");
    ASSERT_TRUE(page.ok());
    if (page->empty()) break;
    total += static_cast<int64_t>(page->size());
    since = page->back().id;
  }
  EXPECT_EQ(total, kThreads * kPerThread);
  // Each thread's lines keep their order.
  auto t0 = logs->query("fn", 0, kMaxLogQueryLimit, "t0");
  ASSERT_TRUE(t0.ok());
  ASSERT_EQ(t0->size(), static_cast<size_t>(kPerThread));
  for (int i = 0; i < kPerThread; ++i) EXPECT_EQ((*t0)[i].message, std::to_string(i));
}

TEST_F(LogStoreTest, DropsAndCountsBeyondTheQueueBound) {
  auto logs = open_store(/*max_per_function=*/1'000'000);
  ASSERT_TRUE(logs);
  // One append holds the queue lock throughout, so the writer cannot drain
  // in between: exactly the overflow is dropped.
  std::vector<LogEvent> flood(kMaxQueuedLogEvents + 10, event("fn", "r", "x"));
  logs->append(std::move(flood));
  EXPECT_EQ(logs->dropped(), 10);
  logs->flush();
  auto count = db_->prepare("SELECT SUM(lines) FROM log_events");
  ASSERT_TRUE(count.ok());
  ASSERT_TRUE(*count->step());
  EXPECT_EQ(count->column_int(0), static_cast<int64_t>(kMaxQueuedLogEvents));
}

TEST_F(LogStoreTest, RejectsBadArguments) {
  auto logs = open_store();
  ASSERT_TRUE(logs);
  auto r = logs->query("fn", 0, 0, "");
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("use 1 to 10000"), std::string::npos);
  EXPECT_EQ(logs->query("fn", 0, kMaxLogQueryLimit + 1, "").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(logs->query("fn", -1, 10, "").status().code(), Code::kInvalidArgument);

  auto zero = LogStore::open(path_, 0);
  EXPECT_EQ(zero.status().code(), Code::kInvalidArgument);
}

TEST_F(LogStoreTest, OpenNeedsMigrations) {
  auto bare = LogStore::open((dir_ / "bare.db").string(), 10);
  ASSERT_FALSE(bare.ok());
  EXPECT_EQ(bare.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(bare.status().message().find("meter::migrations()"), std::string::npos);
}

TEST_F(LogStoreTest, LinesStoredBeforeRowsOfSeveralLinesReadAndTrimAsBefore) {
  // A database of the migrations before 204, with two lines in it.
  const std::string old_path = (dir_ / "old.db").string();
  {
    std::vector<store::Migration> before;
    for (auto& m : migrations()) {
      if (m.version < 204) before.push_back(m);
    }
    auto db = store::Database::open(old_path, before);
    ASSERT_TRUE(db.ok()) << db.status().to_string();
    ASSERT_TRUE((*db)
                    ->exec("INSERT INTO log_events(time_ms, function, request_id, message) "
                           "VALUES (5, 'fn', 'old', 'first'), (6, 'fn', 'old', 'second')")
                    .ok());
  }
  auto db = store::Database::open(old_path, migrations());
  ASSERT_TRUE(db.ok()) << db.status().to_string();
  auto logs = LogStore::open(old_path, 3);
  ASSERT_TRUE(logs.ok());
  auto got = (*logs)->query("fn", 0, 100, "");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(messages(*got), (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ((*got)[1].time_ms, 6);

  // Newer lines come after them, and retention counts them as lines.
  (*logs)->append({event("fn", "new", "third"), event("fn", "new", "fourth")});
  (*logs)->flush();
  got = (*logs)->query("fn", 0, 100, "");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(messages(*got), (std::vector<std::string>{"first", "second", "third", "fourth"}));
  (*logs)->append({event("fn", "newer", "fifth"), event("fn", "newer", "sixth"),
                   event("fn", "newer", "seventh")});
  (*logs)->flush();
  got = (*logs)->query("fn", 0, 100, "");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(messages(*got), (std::vector<std::string>{"fifth", "sixth", "seventh"}));
}

InvocationRecord record(const std::string& fn, int64_t start_ms, const std::string& status,
                        const std::string& trigger = "api") {
  InvocationRecord r;
  r.request_id = "req-" + std::to_string(start_ms);
  r.function = fn;
  r.version = "$LATEST";
  r.trigger = trigger;
  r.start_ms = start_ms;
  r.duration_ms = 12.345;
  r.billed_ms = 13;
  r.init_ms = 80.5;
  r.memory_mb = 128;
  r.max_memory_used_mb = 40;
  r.status = status;
  r.error_type = status == "error" ? "Runtime.Unhandled" : "";
  r.cold = true;
  return r;
}

TEST_F(LogStoreTest, RecordsRoundTripWithTheirLogsAndFilter) {
  StoreLimits limits;
  limits.record_max_age_ms = 1'000ll * 3600 * 24 * 365 * 100;  // keeps these 1970 times
  auto opened = LogStore::open(path_, limits);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  auto& logs = *opened;
  logs->record(record("fn", 1'000, "success"), {event("fn", "req-1000", "REPORT ...")});
  logs->record(record("fn", 2'000, "error", "gateway"), {});
  logs->record(record("other", 3'000, "success", "async"), {});
  logs->flush();

  auto all = logs->invocations(RecordQuery{});
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].function, "other");  // newest first
  const InvocationRecord& r = (*all)[2];
  EXPECT_EQ(r.request_id, "req-1000");
  EXPECT_EQ(r.version, "$LATEST");
  EXPECT_EQ(r.trigger, "api");
  EXPECT_DOUBLE_EQ(r.duration_ms, 12.345);
  EXPECT_EQ(r.billed_ms, 13);
  EXPECT_DOUBLE_EQ(r.init_ms, 80.5);
  EXPECT_EQ(r.memory_mb, 128);
  EXPECT_EQ(r.max_memory_used_mb, 40);
  EXPECT_TRUE(r.cold);
  EXPECT_EQ(messages(*logs->query("fn", 0, 10, "req-1000")),
            (std::vector<std::string>{"REPORT ..."}));

  RecordQuery q;
  q.function = "fn";
  q.status = "error";
  auto errors = logs->invocations(q);
  ASSERT_TRUE(errors.ok());
  ASSERT_EQ(errors->size(), 1u);
  EXPECT_EQ((*errors)[0].error_type, "Runtime.Unhandled");
  EXPECT_EQ((*errors)[0].trigger, "gateway");

  RecordQuery t;
  t.trigger = "async";
  EXPECT_EQ(logs->invocations(t)->size(), 1u);
  RecordQuery window;
  window.since_ms = 1'500;
  window.until_ms = 3'000;
  auto in_window = logs->invocations(window);
  ASSERT_EQ(in_window->size(), 1u);
  EXPECT_EQ((*in_window)[0].start_ms, 2'000);
  RecordQuery one;
  one.limit = 1;
  EXPECT_EQ(logs->invocations(one)->size(), 1u);
  one.limit = 0;
  EXPECT_FALSE(logs->invocations(one).ok());

  auto between = logs->records_between(1'000, 3'000);
  ASSERT_TRUE(between.ok());
  ASSERT_EQ(between->size(), 2u);
  EXPECT_EQ((*between)[0].start_ms, 1'000);  // oldest first
}

TEST_F(LogStoreTest, WriterAppliesRecordAgeAgainstTheWallClock) {
  StoreLimits limits;
  limits.record_max_age_ms = 3'600'000;
  auto opened = LogStore::open(path_, limits);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  auto& logs = *opened;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  logs->record(record("fn", now - 2 * 3'600'000, "success"), {});  // older than an hour
  logs->record(record("fn", now - 1'000, "success"), {});
  logs->flush();
  auto left = logs->invocations(RecordQuery{});
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].start_ms, now - 1'000);
}

TEST_F(LogStoreTest, RecordRetentionKeepsNewestRows) {
  StoreLimits limits;
  limits.record_max_age_ms = 1'000ll * 3600 * 24 * 365 * 100;  // a century: age never trims
  limits.record_max_rows = 3;
  auto opened = LogStore::open(path_, limits);
  ASSERT_TRUE(opened.ok());
  auto& logs = *opened;
  const int64_t now = 1'800'000'000'000;
  for (int i = 0; i < 6; ++i) logs->record(record("fn", now - 60'000 + i * 1'000, "success"), {});
  logs->flush();
  auto left = logs->invocations(RecordQuery{});
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 3u);
  EXPECT_EQ((*left)[2].start_ms, now - 60'000 + 3'000);  // oldest kept is the 4th

  // Age: relative to the now given.
  StoreLimits by_age;
  by_age.record_max_age_ms = 2'500;
  by_age.record_max_rows = 100;
  logs.reset();
  auto aged = LogStore::open(path_, by_age);
  ASSERT_TRUE(aged.ok());
  ASSERT_TRUE((*aged)->apply_record_retention(now - 60'000 + 7'000).ok());
  auto kept = (*aged)->invocations(RecordQuery{});
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 1u);  // only start >= now-60000+4500: the 6th
  EXPECT_EQ((*kept)[0].start_ms, now - 60'000 + 5'000);
}

TEST_F(LogStoreTest, FollowersGetAppendsUntilUnfollowed) {
  auto logs = open_store();
  ASSERT_TRUE(logs);
  std::vector<std::string> got;
  int64_t id = logs->follow("fn", [&](const std::vector<LogEvent>& events) {
    for (const auto& e : events) got.push_back(e.message);
  });
  EXPECT_EQ(logs->followers(), 1u);
  logs->append({event("fn", "r1", "one")});
  logs->append({event("other", "r2", "not mine")});
  logs->record(record("fn", 1, "success"), {event("fn", "r3", "two")});
  logs->unfollow(id);
  EXPECT_EQ(logs->followers(), 0u);
  logs->append({event("fn", "r4", "after")});
  EXPECT_EQ(got, (std::vector<std::string>{"one", "two"}));
}
}  // namespace
}  // namespace tamaya::meter
