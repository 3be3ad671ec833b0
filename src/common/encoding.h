// Small byte encodings used at several edges: base64 (Lambda log tails, zip
// uploads), hex sha256 (content addresses), random ids (request ids).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tamaya {

std::string base64_encode(std::string_view bytes);
// nullopt when the input is not valid base64 (padding optional).
std::optional<std::string> base64_decode(std::string_view text);

std::string sha256_hex(std::string_view bytes);

// A random RFC 4122 version-4 UUID, the shape Lambda uses for request ids.
std::string new_request_id();

}  // namespace tamaya
