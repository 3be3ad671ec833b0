// libFuzzer target for bearer JWT verification (gateway/jwt.h), the parsing
// a client reaches before any signature is checked and the claim checks
// behind it. Input: one byte of mode, then a header and a payload separated
// by a NUL byte.
// - Every input is verified as the token it spells (malformed tokens, any
//   "alg", broken base64url and JSON).
// - The header and payload are also signed with the route's HS256 secret,
//   so the claim checks (exp, nbf, iss, aud, scopes) and the claims' conversion
//   to strings run on arbitrary JSON as a trusted issuer could send it.
// It traps when a token passes that holds no accepted scope or the wrong
// issuer, and when a token signed with another secret passes.
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/jwt.h"

using namespace tamaya;

namespace {

constexpr int64_t kNow = 1'700'000'000;

const gateway::JwtVerifier& verifier() {
  static const gateway::JwtVerifier v = [] {
    gateway::JwtConfig c;
    c.secret = "fuzz-secret";
    c.issuer = "https://issuer.example";
    c.audience = {"shop"};
    c.scopes = {"orders:read", "admin"};
    auto made = gateway::JwtVerifier::create(c);
    if (!made.ok()) __builtin_trap();
    return std::move(made).value();
  }();
  return v;
}

std::string sign(std::string_view header, std::string_view payload, std::string_view secret) {
  std::string token = gateway::base64url_encode(header) + "." + gateway::base64url_encode(payload);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), int(secret.size()),
       reinterpret_cast<const unsigned char*>(token.data()), token.size(), mac, &len);
  return token + "." +
         gateway::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)verifier().verify(in, kNow);
  const size_t nul = in.find('\0');
  const std::string_view header = in.substr(0, nul);
  const std::string_view payload = nul == std::string_view::npos ? "" : in.substr(nul + 1);

  auto id = verifier().verify(sign(header, payload, "fuzz-secret"), kNow);
  if (id.ok()) {
    const auto iss = id.value().claims.find("iss");
    check(iss != id.value().claims.end() && iss->second == "https://issuer.example");
    bool scoped = false;
    for (const auto& s : id.value().scopes) scoped = scoped || s == "orders:read" || s == "admin";
    check(scoped);
  }
  check(!verifier().verify(sign(header, payload, "another-secret"), kNow).ok());
  return 0;
}
