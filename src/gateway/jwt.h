// Bearer JWT verification for gateway routes: HS256 with a shared secret,
// RS256 and ES256 with a PEM public key or the keys of a JWKS file (chosen by
// "kid"); OpenSSL's EVP does the cryptography. Checks exp and nbf (with
// kJwtLeeway), iss, aud and the route's scopes.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "gateway/routes.h"

namespace tamaya::gateway {

// Clock skew tolerated on exp and nbf.
inline constexpr int64_t kJwtLeewaySeconds = 30;
// Tokens longer than this are refused before any decoding.
inline constexpr size_t kMaxJwtBytes = 8 << 10;

struct JwtIdentity {
  // Claims as strings, the way API Gateway passes them (numbers as their
  // decimal text, arrays as "[a b]", objects as JSON).
  std::map<std::string, std::string> claims;
  std::vector<std::string> scopes;  // from "scope" (space-separated) or "scp"
};

class JwtVerifier {
 public:
  // Loads the key material named by the config; an error names what is
  // wrong with it (no key, unreadable PEM, bad JWKS).
  static Result<JwtVerifier> create(const JwtConfig& config);

  // Unauthenticated (→ 401) for a malformed, badly signed, expired, not yet
  // valid token or a wrong iss/aud; PermissionDenied (→ 403) when the token
  // holds none of the route's scopes.
  Result<JwtIdentity> verify(std::string_view token, int64_t now_s) const;

 private:
  struct Keys;
  JwtConfig config_;
  std::shared_ptr<const Keys> keys_;
};

// base64url without padding, as JWTs use it.
std::string base64url_encode(std::string_view bytes);

}  // namespace tamaya::gateway
