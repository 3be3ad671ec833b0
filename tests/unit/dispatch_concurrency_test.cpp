// The concurrency accounting behind reserved concurrency: a reservation is a
// guarantee and a cap, and functions without one share what the global limit
// leaves, so a flood of one of them cannot take a reserved function's share.
#include <gtest/gtest.h>

#include "dispatch/concurrency.h"

namespace tamaya::dispatch {
namespace {

using V = ConcurrencyBook::Verdict;

TEST(ConcurrencyBook, UnreservedFunctionsShareTheLimitLessReservations) {
  ConcurrencyBook book(10);
  book.set_reserved("shop", 4);
  EXPECT_EQ(book.unreserved_capacity(), 6);
  // The flood (max concurrency 100) gets the 6 unreserved slots, no more.
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(book.may_start("flood", 100), V::kOk) << i;
    book.add("flood");
  }
  EXPECT_EQ(book.may_start("flood", 100), V::kUnreservedPool);
  EXPECT_EQ(book.may_start("other", 100), V::kUnreservedPool);
  // The reserved function still gets its whole share, then hits its cap.
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(book.may_start("shop", 100), V::kOk) << i;
    book.add("shop");
  }
  EXPECT_EQ(book.may_start("shop", 100), V::kFunctionCap);
  EXPECT_EQ(book.in_use(), 10);
  EXPECT_EQ(book.unreserved_in_use(), 6);
  // A flood instance going frees a slot for the unreserved functions only.
  book.remove("flood");
  EXPECT_EQ(book.may_start("other", 100), V::kOk);
  EXPECT_EQ(book.may_start("shop", 100), V::kFunctionCap);
}

TEST(ConcurrencyBook, CapIsTheLowerOfMaxConcurrencyAndReservation) {
  ConcurrencyBook book(100);
  EXPECT_EQ(book.cap("f", 3), 3);
  book.set_reserved("f", 2);
  EXPECT_EQ(book.cap("f", 3), 2);
  EXPECT_EQ(book.cap("f", 1), 1);
  book.add("f");
  EXPECT_EQ(book.may_start("f", 1), V::kFunctionCap);
  EXPECT_EQ(book.may_start("f", 5), V::kOk);
  book.add("f");
  EXPECT_EQ(book.may_start("f", 5), V::kFunctionCap);
}

TEST(ConcurrencyBook, ReservationOfZeroAdmitsNothing) {
  ConcurrencyBook book(100);
  book.set_reserved("off", 0);
  EXPECT_EQ(book.reserved("off").value_or(-1), 0);
  EXPECT_EQ(book.may_start("off", 10), V::kFunctionCap);
}

TEST(ConcurrencyBook, ChangingAReservationMovesRunningInstancesBetweenPools) {
  ConcurrencyBook book(10);
  book.add("f");
  book.add("f");
  EXPECT_EQ(book.unreserved_in_use(), 2);
  book.set_reserved("f", 5);
  EXPECT_EQ(book.unreserved_in_use(), 0);
  EXPECT_EQ(book.reserved_total(), 5);
  EXPECT_EQ(book.unreserved_capacity(), 5);
  book.set_reserved("f", std::nullopt);
  EXPECT_EQ(book.unreserved_in_use(), 2);
  EXPECT_EQ(book.reserved_total(), 0);
  EXPECT_EQ(book.in_use("f"), 2);
  book.remove("f");
  book.remove("f");
  book.remove("f");  // one too many is ignored, not negative
  EXPECT_EQ(book.in_use("f"), 0);
  EXPECT_EQ(book.in_use(), 0);
  EXPECT_EQ(book.unreserved_in_use(), 0);
}

TEST(ConcurrencyBook, OverReservedLimitLeavesNothingUnreserved) {
  // Reservations are checked against the limit when set (registry); if the
  // limit is later lowered, the unreserved pool is empty rather than negative.
  ConcurrencyBook book(4);
  book.set_reserved("a", 3);
  book.set_reserved("b", 3);
  EXPECT_EQ(book.unreserved_capacity(), 0);
  EXPECT_EQ(book.may_start("c", 10), V::kUnreservedPool);
  EXPECT_EQ(book.may_start("a", 10), V::kOk);
}

}  // namespace
}  // namespace tamaya::dispatch
