// Boost's assertion handler. CMakeLists.txt sets BOOST_ENABLE_ASSERT_DEBUG_HANDLER
// for the whole tree, so builds without NDEBUG (debug, asan, the fuzz
// targets) call this where Boost would call assert(); release builds compile
// Boost's assertions out as before. It aborts as assert() does, except for
// one assertion known to be false: Boost 1.74's HTTP parser asserts that a
// chunked body's last chunk is read with 5 bytes or more once its size line
// is in, but a client may send "0\r\n", then "\r", then "\n". The code
// after the assertion asks for more bytes correctly; upstream corrected the
// assertion in 2024 (boostorg/beast#2861). Without this, a debug daemon
// aborted on such a client (tests/fuzz/http_fuzz.cpp found it).
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace boost {

namespace {

bool known_false(const char* expr, const char* file) {
  return std::strcmp(expr, "n >= 5") == 0 &&
         std::strstr(file, "boost/beast/http/impl/basic_parser.ipp") != nullptr;
}

}  // namespace

void assertion_failed(char const* expr, char const* function, char const* file, long line) {
  if (known_false(expr, file)) return;
  std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed.\n", file, line, function, expr);
  std::abort();
}

void assertion_failed_msg(char const* expr, char const* msg, char const* function, char const* file,
                          long line) {
  std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed: %s\n", file, line, function, expr, msg);
  std::abort();
}

}  // namespace boost
