// JSON text for documents that carry bytes from outside: a request's path or
// a function's name in an error message, a function's output. json::dump()
// throws on invalid UTF-8 in a string (type_error.316), and an exception on
// the event loop is a bug that costs a request or, off a handler, the daemon;
// here invalid bytes become U+FFFD instead.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace tamaya {

inline std::string json_text(const nlohmann::json& doc) {
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace tamaya
