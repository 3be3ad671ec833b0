#include <gtest/gtest.h>

#include <chrono>

#include "common/time_format.h"
#include "events/scheduler.h"

namespace tamaya::events {
namespace {

using nlohmann::json;

int64_t at(int y, int m, int d, int hh = 0, int mm = 0, int ss = 0) {
  using namespace std::chrono;
  auto n = sys_days(year(y) / month(unsigned(m)) / day(unsigned(d))).time_since_epoch().count();
  return int64_t(n) * 86'400'000 + hh * 3'600'000LL + mm * 60'000LL + ss * 1000LL;
}

constexpr int64_t kMinute = 60'000;

// One "daemon run": a scheduler over the shared database, with a test clock.
class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = store::Database::open(":memory:", schedule_migrations());
    ASSERT_TRUE(db.ok()) << db.status().message();
    db_ = std::move(db).value();
  }

  std::unique_ptr<Scheduler> run(int64_t start_ms) {
    clock_ = std::make_unique<ManualWallClock>(start_ms);
    auto s = Scheduler::open(
        io_, *db_, *clock_, clock_.get(), SchedulerOptions{},
        [this](Fire f) { fired_.push_back(f); },
        [](const std::string& fn, const std::string&) {
          return fn == "missing" ? Status::NotFound("no function 'missing'") : Status::Ok();
        });
    EXPECT_TRUE(s.ok()) << s.status().message();
    (*s)->start();
    return std::move(s).value();
  }

  std::vector<int64_t> fire_times() const {
    std::vector<int64_t> out;
    for (const auto& f : fired_) out.push_back(f.scheduled_ms);
    return out;
  }

  boost::asio::io_context io_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<ManualWallClock> clock_;
  std::vector<Fire> fired_;
};

TEST_F(SchedulerTest, RateFiresEveryPeriodWithTheScheduledEvent) {
  auto s = run(at(2026, 1, 1, 10, 0));
  auto made =
      s->create(json{{"name", "tick"}, {"expression", "rate(5 minutes)"}, {"function", "fn"}});
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(made->next_fire_ms, at(2026, 1, 1, 10, 5));
  auto n = s->advance(4 * kMinute);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
  n = s->advance(12 * kMinute);  // to 10:16: 10:05, 10:10, 10:15
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3);
  EXPECT_EQ(fire_times(), (std::vector<int64_t>{at(2026, 1, 1, 10, 5), at(2026, 1, 1, 10, 10),
                                                at(2026, 1, 1, 10, 15)}));
  json ev = json::parse(fired_[0].payload);
  EXPECT_EQ(ev["version"], "0");
  EXPECT_EQ(ev["detail-type"], "Scheduled Event");
  EXPECT_EQ(ev["source"], "aws.events");
  EXPECT_EQ(ev["time"], "2026-01-01T10:05:00Z");
  EXPECT_EQ(ev["id"], fired_[0].event_id);
  EXPECT_EQ(ev["resources"], json::array({"arn:aws:events:us-east-1:000000000000:rule/tick"}));
  EXPECT_EQ(ev["detail"], json::object());
  EXPECT_EQ(fired_[0].function, "fn");
  EXPECT_NE(fired_[0].event_id, fired_[1].event_id);
  auto fires = s->fires("tick", 10);
  ASSERT_TRUE(fires.ok());
  ASSERT_EQ(fires->size(), 3u);
  EXPECT_EQ((*fires)[0].scheduled_ms, at(2026, 1, 1, 10, 15));  // newest first
}

TEST_F(SchedulerTest, CronWithCustomInputAndQualifier) {
  auto s = run(at(2026, 2, 27, 23, 0));
  auto made = s->create(json{{"name", "eom"},
                             {"expression", "cron(30 23 L * ? *)"},
                             {"function", "fn:live"},
                             {"input", {{"k", 1}}}});
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(made->qualifier, "live");
  ASSERT_TRUE(s->advance(40LL * 24 * 60 * kMinute).ok());
  EXPECT_EQ(fire_times(), (std::vector<int64_t>{at(2026, 2, 28, 23, 30), at(2026, 3, 31, 23, 30)}));
  EXPECT_EQ(fired_[0].payload, R"({"k":1})");
  EXPECT_EQ(fired_[0].qualifier, "live");
}

TEST_F(SchedulerTest, DisabledSchedulesDoNotFire) {
  auto s = run(at(2026, 1, 1));
  ASSERT_TRUE(
      s->create(json{{"name", "a"}, {"expression", "rate(1 minute)"}, {"function", "fn"}}).ok());
  ASSERT_TRUE(s->advance(2 * kMinute).ok());
  EXPECT_EQ(fired_.size(), 2u);
  auto off = s->set_enabled("a", false);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->next_fire_ms, 0);
  ASSERT_TRUE(s->advance(10 * kMinute).ok());
  EXPECT_EQ(fired_.size(), 2u);
  // Enabled again: a rate starts over from now, nothing missed is fired.
  auto on = s->set_enabled("a", true);
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(on->next_fire_ms, at(2026, 1, 1, 0, 13));
  ASSERT_TRUE(s->advance(kMinute).ok());
  EXPECT_EQ(fired_.size(), 3u);
}

TEST_F(SchedulerTest, RestartNeverFiresTheSameTimeTwice) {
  {
    auto s = run(at(2026, 1, 1, 12, 0));
    ASSERT_TRUE(
        s->create(json{{"name", "c"}, {"expression", "cron(0/10 * * * ? *)"}, {"function", "fn"}})
            .ok());
    ASSERT_TRUE(s->advance(20 * kMinute).ok());  // 12:10, 12:20
  }
  EXPECT_EQ(fired_.size(), 2u);
  // Same instant after the restart: nothing is due again.
  auto s = run(at(2026, 1, 1, 12, 20));
  EXPECT_EQ(fired_.size(), 2u);
  ASSERT_TRUE(s->advance(10 * kMinute).ok());
  EXPECT_EQ(fire_times().back(), at(2026, 1, 1, 12, 30));
  EXPECT_EQ(fired_.size(), 3u);
}

TEST_F(SchedulerTest, MissedFiresOnceOrSkipsByPolicy) {
  {
    auto s = run(at(2026, 1, 1, 12, 0));
    ASSERT_TRUE(
        s->create(json{{"name", "once"}, {"expression", "rate(1 minute)"}, {"function", "fn"}})
            .ok());
    ASSERT_TRUE(s->create(json{{"name", "skip"},
                               {"expression", "rate(1 minute)"},
                               {"function", "fn"},
                               {"missed", "skip"}})
                    .ok());
  }
  // Down from 12:00 to 12:30: 30 times missed.
  auto s = run(at(2026, 1, 1, 12, 30, 30));
  ASSERT_EQ(fired_.size(), 1u);
  EXPECT_EQ(fired_[0].schedule, "once");
  EXPECT_EQ(fired_[0].scheduled_ms, at(2026, 1, 1, 12, 1));  // the first missed time
  auto fires = s->fires("once", 10);
  ASSERT_TRUE(fires.ok());
  ASSERT_EQ(fires->size(), 1u);
  EXPECT_TRUE((*fires)[0].missed);
  EXPECT_EQ((*fires)[0].fired_ms, at(2026, 1, 1, 12, 30, 30));
  // Both resume at the next whole period after now.
  EXPECT_EQ(s->get("once")->next_fire_ms, at(2026, 1, 1, 12, 31));
  EXPECT_EQ(s->get("skip")->next_fire_ms, at(2026, 1, 1, 12, 31));
  ASSERT_TRUE(s->advance(kMinute).ok());
  EXPECT_EQ(fired_.size(), 3u);
}

TEST_F(SchedulerTest, BadRequestsSayWhatIsWrong) {
  auto s = run(at(2026, 1, 1));
  struct Case {
    json body;
    Code code;
    const char* says;
  } cases[] = {
      {{{"name", "x"}, {"expression", "rate(1 minutes)"}, {"function", "fn"}},
       Code::kInvalidArgument,
       "rate(1 minute)"},
      {{{"name", "x"}, {"expression", "cron(0 12 * * * *)"}, {"function", "fn"}},
       Code::kInvalidArgument,
       "must be '?'"},
      {{{"name", "x"}, {"function", "fn"}}, Code::kInvalidArgument, "'expression' is required"},
      {{{"name", "x y"}, {"expression", "rate(1 minute)"}, {"function", "fn"}},
       Code::kInvalidArgument,
       "may hold only"},
      {{{"name", "x"}, {"expression", "rate(1 minute)"}, {"function", "missing"}},
       Code::kNotFound,
       "no function 'missing'"},
      {{{"name", "x"}, {"expression", "rate(1 minute)"}, {"function", "fn"}, {"missed", "all"}},
       Code::kInvalidArgument,
       "fire_once"},
      {{{"name", "x"}, {"expression", "rate(1 minute)"}, {"function", "fn"}, {"input", "{nope"}},
       Code::kInvalidArgument,
       "not JSON text"},
      {{{"name", "x"},
        {"expression", "rate(1 minute)"},
        {"function", "fn"},
        {"timezone", "Europe/Paris"}},
       Code::kInvalidArgument,
       "UTC only"},
      {{{"name", "x"}, {"expression", "rate(1 minute)"}, {"function", "fn"}, {"cron", "x"}},
       Code::kInvalidArgument,
       "unknown field 'cron'"},
  };
  for (const auto& c : cases) {
    auto r = s->create(c.body);
    ASSERT_FALSE(r.ok()) << c.body.dump();
    EXPECT_EQ(r.status().code(), c.code) << c.body.dump() << ": " << r.status().message();
    EXPECT_NE(r.status().message().find(c.says), std::string::npos)
        << c.body.dump() << ": " << r.status().message();
  }
  ASSERT_TRUE(
      s->create(json{{"name", "x"}, {"expression", "rate(1 minute)"}, {"function", "fn"}}).ok());
  auto dup = s->create(json{{"name", "x"}, {"expression", "rate(1 minute)"}, {"function", "fn"}});
  EXPECT_EQ(dup.status().code(), Code::kAlreadyExists);
  EXPECT_TRUE(s->list().size() == 1);
  EXPECT_TRUE(s->remove("x").ok());
  EXPECT_EQ(s->remove("x").code(), Code::kNotFound);
}

// The system clock's path: the timer wakes for a stored next time that is
// 200 ms away and fires it (the only test here that waits on a real clock).
TEST(SchedulerClock, SystemClockTimerFiresWhenDue) {
  boost::asio::io_context io;
  auto db = store::Database::open(":memory:", schedule_migrations());
  ASSERT_TRUE(db.ok());
  SystemClock clock;
  int64_t now = clock.wall_ms();
  Schedule row;
  row.name = "soon";
  row.expression = "rate(1 hour)";
  row.function = "fn";
  row.anchor_ms = now + 200 - 3'600'000;
  row.next_fire_ms = now + 200;
  row.created_ms = row.updated_ms = now;
  ASSERT_TRUE(ScheduleStore(**db).insert(row).ok());
  std::vector<Fire> fired;
  auto s = Scheduler::open(
      io, **db, clock, nullptr, SchedulerOptions{},
      [&](Fire f) {
        fired.push_back(std::move(f));
        io.stop();
      },
      nullptr);
  ASSERT_TRUE(s.ok());
  (*s)->start();
  EXPECT_TRUE(fired.empty());  // not due yet at start
  io.run_for(std::chrono::seconds(30));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].scheduled_ms, now + 200);
  EXPECT_EQ((*s)->get("soon")->next_fire_ms, now + 200 + 3'600'000);
  (*s)->stop();
}

TEST(SchedulerClock, AdvanceNeedsTheTestClock) {
  boost::asio::io_context io;
  auto db = store::Database::open(":memory:", schedule_migrations());
  ASSERT_TRUE(db.ok());
  SystemClock clock;
  auto s = Scheduler::open(io, **db, clock, nullptr, SchedulerOptions{}, nullptr, nullptr);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->advance(1000).status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace tamaya::events
