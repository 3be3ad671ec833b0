#include "gateway/jwt.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/encoding.h"

namespace tamaya::gateway {

namespace {

using nlohmann::json;
using PKey = std::shared_ptr<EVP_PKEY>;

PKey wrap(EVP_PKEY* k) { return PKey(k, EVP_PKEY_free); }

std::optional<std::string> base64url_decode(std::string_view in) {
  std::string s(in);
  for (char& c : s) {
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    } else if (c == '+' || c == '/' || c == '=') {
      return std::nullopt;  // not the url alphabet
    }
  }
  while (s.size() % 4) s += '=';
  return base64_decode(s);
}

// A string member of an object, or "" when it is missing or not a string.
// Tokens and JWKS files come from outside, and json::value() would throw on
// another type (a header's "alg" is read before any signature is checked).
std::string string_member(const json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Status unauthenticated(std::string m) { return Status(Code::kUnauthenticated, std::move(m)); }

PKey pem_public_key(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), int(pem.size()));
  if (!bio) return nullptr;
  EVP_PKEY* k = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return k ? wrap(k) : nullptr;
}

PKey from_params(const char* type, OSSL_PARAM_BLD* bld) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* key = nullptr;
  if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1) {
    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
  }
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return key ? wrap(key) : nullptr;
}

// One JWKS entry as a public key; nullptr when it is not an RSA or P-256 key.
PKey jwk_public_key(const json& jwk) {
  auto field = [&](const char* k) -> std::optional<std::string> {
    if (!jwk.contains(k) || !jwk[k].is_string()) return std::nullopt;
    return base64url_decode(jwk[k].get<std::string>());
  };
  std::string kty = string_member(jwk, "kty");
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  if (!bld) return nullptr;
  PKey key;
  if (kty == "RSA") {
    auto n = field("n"), e = field("e");
    if (n && e) {
      BIGNUM* bn =
          BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()), int(n->size()), nullptr);
      BIGNUM* be =
          BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()), int(e->size()), nullptr);
      if (bn && be && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
          OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1) {
        key = from_params("RSA", bld);
      }
      BN_free(bn);
      BN_free(be);
    }
  } else if (kty == "EC" && string_member(jwk, "crv") == "P-256") {
    auto x = field("x"), y = field("y");
    if (x && y && x->size() == 32 && y->size() == 32) {
      std::string point = "\x04" + *x + *y;
      if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
          OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                           point.size()) == 1) {
        key = from_params("EC", bld);
      }
    }
  }
  OSSL_PARAM_BLD_free(bld);
  return key;
}

bool verify_digest(EVP_PKEY* key, std::string_view data, std::string_view sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// JWS carries ES256 signatures as r||s (32 bytes each); OpenSSL wants DER.
std::optional<std::string> es256_der(std::string_view raw) {
  if (raw.size() != 64) return std::nullopt;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), size_t(len));
  OPENSSL_free(der);
  return out;
}

std::string claim_string(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ' ';
      out += v[i].is_string() ? v[i].get<std::string>() : v[i].dump();
    }
    return out + "]";
  }
  return v.dump();
}

// As a double: a claim may hold any JSON number (1e300, 2^64 - 1), which an
// int64_t cannot, and the leeway is added to it.
std::optional<double> numeric_claim(const json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

}  // namespace

struct JwtVerifier::Keys {
  PKey pem;                            // public_key_pem
  std::map<std::string, PKey> by_kid;  // jwks_file
  std::vector<PKey> jwks;              // in file order, for tokens without kid
};

std::string base64url_encode(std::string_view bytes) {
  std::string s = base64_encode(bytes);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) {
    if (c == '+') {
      c = '-';
    } else if (c == '/') {
      c = '_';
    }
  }
  return s;
}

Result<JwtVerifier> JwtVerifier::create(const JwtConfig& config) {
  auto keys = std::make_shared<Keys>();
  int sources = !config.secret.empty() + !config.public_key_pem.empty() + !config.jwks_file.empty();
  if (sources != 1) {
    return Status::Invalid(
        "a JWT route needs exactly one of 'secret' (HS256), 'public_key_pem' (RS256/ES256) or "
        "'jwks_file' (a JWKS file's path)");
  }
  if (!config.public_key_pem.empty()) {
    keys->pem = pem_public_key(config.public_key_pem);
    if (!keys->pem) {
      return Status::Invalid(
          "'public_key_pem' is not a PEM public key (-----BEGIN PUBLIC KEY-----)");
    }
  }
  if (!config.jwks_file.empty()) {
    std::ifstream in(config.jwks_file);
    if (!in) return Status::Invalid("cannot read the JWKS file '" + config.jwks_file + "'");
    std::stringstream buf;
    buf << in.rdbuf();
    json doc = json::parse(buf.str(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("keys") ||
        !doc["keys"].is_array()) {
      return Status::Invalid("the JWKS file '" + config.jwks_file + "' is not {\"keys\": [...]}");
    }
    for (const auto& jwk : doc["keys"]) {
      PKey k = jwk.is_object() ? jwk_public_key(jwk) : nullptr;
      if (!k) continue;  // other key types (e.g. encryption keys) are not ours
      keys->jwks.push_back(k);
      if (jwk.contains("kid") && jwk["kid"].is_string())
        keys->by_kid[jwk["kid"].get<std::string>()] = k;
    }
    if (keys->jwks.empty()) {
      return Status::Invalid("the JWKS file '" + config.jwks_file +
                             "' has no RSA or P-256 EC public key");
    }
  }
  JwtVerifier v;
  v.config_ = config;
  v.keys_ = std::move(keys);
  return v;
}

Result<JwtIdentity> JwtVerifier::verify(std::string_view token, int64_t now_s) const {
  if (token.empty()) return unauthenticated("no bearer token");
  if (token.size() > kMaxJwtBytes) return unauthenticated("token too long");
  size_t d1 = token.find('.');
  size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
    return unauthenticated("not a JWS compact token");
  }
  auto header_bytes = base64url_decode(token.substr(0, d1));
  auto payload_bytes = base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  auto sig = base64url_decode(token.substr(d2 + 1));
  if (!header_bytes || !payload_bytes || !sig) return unauthenticated("bad base64url");
  json header = json::parse(*header_bytes, nullptr, false);
  json claims = json::parse(*payload_bytes, nullptr, false);
  if (!header.is_object() || !claims.is_object()) return unauthenticated("bad JSON");
  std::string alg = string_member(header, "alg");
  std::string_view signed_part = token.substr(0, d2);

  bool verified = false;
  if (alg == "HS256") {
    if (config_.secret.empty()) return unauthenticated("HS256 token on a route with a public key");
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), config_.secret.data(), int(config_.secret.size()),
         reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac,
         &mac_len);
    verified = sig->size() == mac_len && CRYPTO_memcmp(mac, sig->data(), mac_len) == 0;
  } else if (alg == "RS256" || alg == "ES256") {
    std::vector<PKey> candidates;
    if (keys_->pem) {
      candidates.push_back(keys_->pem);
    } else if (header.contains("kid") && header["kid"].is_string()) {
      auto it = keys_->by_kid.find(header["kid"].get<std::string>());
      if (it != keys_->by_kid.end()) candidates.push_back(it->second);
    } else {
      candidates = keys_->jwks;
    }
    int want = alg == "RS256" ? EVP_PKEY_RSA : EVP_PKEY_EC;
    std::optional<std::string> der = alg == "ES256" ? es256_der(*sig) : std::optional(*sig);
    for (const auto& k : candidates) {
      if (!der || EVP_PKEY_get_base_id(k.get()) != want) continue;
      if (verify_digest(k.get(), signed_part, *der)) {
        verified = true;
        break;
      }
    }
  } else {
    return unauthenticated("unsupported alg '" + alg + "'");
  }
  if (!verified) return unauthenticated("bad signature");

  auto exp = numeric_claim(claims, "exp");
  if (claims.contains("exp") && (!exp || double(now_s) > *exp + kJwtLeewaySeconds)) {
    return unauthenticated("token expired");
  }
  auto nbf = numeric_claim(claims, "nbf");
  if (claims.contains("nbf") && (!nbf || double(now_s + kJwtLeewaySeconds) < *nbf)) {
    return unauthenticated("token not yet valid");
  }
  if (!config_.issuer.empty() && string_member(claims, "iss") != config_.issuer) {
    return unauthenticated("wrong issuer");
  }
  if (!config_.audience.empty()) {
    std::vector<std::string> aud;
    if (claims.contains("aud") && claims["aud"].is_string()) aud.push_back(claims["aud"]);
    if (claims.contains("aud") && claims["aud"].is_array()) {
      for (const auto& a : claims["aud"]) {
        if (a.is_string()) aud.push_back(a);
      }
    }
    bool any = false;
    for (const auto& a : aud) {
      any = any || std::find(config_.audience.begin(), config_.audience.end(), a) !=
                       config_.audience.end();
    }
    if (!any) return unauthenticated("wrong audience");
  }

  JwtIdentity id;
  for (const auto& [k, v] : claims.items()) id.claims[k] = claim_string(v);
  auto add_scopes = [&](const json& v) {
    if (v.is_string()) {
      std::istringstream words(v.get<std::string>());
      for (std::string w; words >> w;) id.scopes.push_back(w);
    } else if (v.is_array()) {
      for (const auto& s : v) {
        if (s.is_string()) id.scopes.push_back(s);
      }
    }
  };
  if (claims.contains("scope")) add_scopes(claims["scope"]);
  if (claims.contains("scp")) add_scopes(claims["scp"]);
  if (!config_.scopes.empty()) {
    bool any = false;
    for (const auto& s : id.scopes) {
      any =
          any || std::find(config_.scopes.begin(), config_.scopes.end(), s) != config_.scopes.end();
    }
    if (!any) return Status(Code::kPermissionDenied, "the token has none of the route's scopes");
  }
  return id;
}

}  // namespace tamaya::gateway
