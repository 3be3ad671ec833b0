// Tokens are made here with OpenSSL (HS256, RS256, ES256) and checked by the
// gateway's verifier.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "gateway/jwt.h"

namespace tamaya::gateway {
namespace {

using nlohmann::json;
constexpr int64_t kNow = 1'800'000'000;

std::string hs256(const json& claims, const std::string& secret,
                  json header = {{"alg", "HS256"}, {"typ", "JWT"}}) {
  std::string signing = base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), int(secret.size()),
       reinterpret_cast<const unsigned char*>(signing.data()), signing.size(), mac, &len);
  return signing + "." + base64url_encode(std::string(reinterpret_cast<char*>(mac), len));
}

struct KeyPair {
  std::shared_ptr<EVP_PKEY> key;
  std::string public_pem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, key.get());
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, size_t(n));
    BIO_free(bio);
    return out;
  }
};

KeyPair rsa() {
  return {std::shared_ptr<EVP_PKEY>(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t(2048)),
                                    EVP_PKEY_free)};
}
KeyPair ec() {
  return {
      std::shared_ptr<EVP_PKEY>(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free)};
}

std::string sign(const KeyPair& k, const std::string& alg, const json& claims,
                 const std::string& kid = "") {
  json header = {{"alg", alg}, {"typ", "JWT"}};
  if (!kid.empty()) header["kid"] = kid;
  std::string signing = base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, k.key.get());
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(signing.data()),
                 signing.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(signing.data()), signing.size());
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (alg == "ES256") {  // DER → r||s
    const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* s = d2i_ECDSA_SIG(nullptr, &p, long(sig.size()));
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(s), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(s), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(s);
    sig = raw;
  }
  return signing + "." + base64url_encode(sig);
}

std::string bn_param(const KeyPair& k, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(k.key.get(), name, &bn);
  std::string out(size_t(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

json good_claims() {
  return {{"sub", "user-1"},     {"iss", "https://issuer.example"},
          {"aud", "shop"},       {"exp", kNow + 600},
          {"nbf", kNow - 10},    {"scope", "orders:read orders:write"},
          {"groups", {"a", "b"}}};
}

JwtConfig hs_config() {
  JwtConfig c;
  c.secret = "s3cret";
  c.issuer = "https://issuer.example";
  c.audience = {"shop"};
  return c;
}

TEST(GatewayJwt, Hs256AcceptsAGoodTokenAndPassesClaims) {
  auto v = JwtVerifier::create(hs_config());
  ASSERT_TRUE(v.ok()) << v.status().message();
  auto id = v->verify(hs256(good_claims(), "s3cret"), kNow);
  ASSERT_TRUE(id.ok()) << id.status().message();
  EXPECT_EQ(id->claims.at("sub"), "user-1");
  EXPECT_EQ(id->claims.at("exp"), std::to_string(kNow + 600));
  EXPECT_EQ(id->claims.at("groups"), "[a b]");
  EXPECT_EQ(id->scopes, (std::vector<std::string>{"orders:read", "orders:write"}));
}

TEST(GatewayJwt, FieldsOfAnyJsonTypeAreRefusedNotThrown) {
  // The header is read before the signature is checked: anyone can send
  // these. json::value() threw on a number where a string was expected.
  auto v = JwtVerifier::create(hs_config());
  ASSERT_TRUE(v.ok());
  for (const json& header : {json{{"alg", 5}}, json{{"alg", nullptr}}, json{{"alg", {"HS256"}}},
                             json{{"alg", "RS256"}, {"kid", 7}}}) {
    auto r = v->verify(hs256(good_claims(), "s3cret", header), kNow);
    EXPECT_FALSE(r.ok()) << header.dump();
  }
  // A trusted issuer's odd claims: refused, or passed on as text.
  json c = good_claims();
  for (auto [name, value] : std::vector<std::pair<std::string, json>>{
           {"iss", 5}, {"iss", nullptr}, {"exp", "soon"}, {"nbf", json::array({1})}}) {
    json odd = c;
    odd[name] = value;
    auto r = v->verify(hs256(odd, "s3cret"), kNow);
    EXPECT_FALSE(r.ok()) << odd.dump();
  }
  // Numbers beyond int64_t neither overflow nor wrap.
  json far = c;
  far["exp"] = 1e300;
  far["nbf"] = -1e300;
  EXPECT_TRUE(v->verify(hs256(far, "s3cret"), kNow).ok());
  far["exp"] = std::numeric_limits<uint64_t>::max();
  EXPECT_TRUE(v->verify(hs256(far, "s3cret"), kNow).ok());
  far["exp"] = std::numeric_limits<int64_t>::max();
  EXPECT_TRUE(v->verify(hs256(far, "s3cret"), kNow).ok());
  far["exp"] = -1e300;
  EXPECT_FALSE(v->verify(hs256(far, "s3cret"), kNow).ok());
}

TEST(GatewayJwt, Hs256RefusesBadTokens) {
  auto v = JwtVerifier::create(hs_config());
  ASSERT_TRUE(v.ok());
  auto refused = [&](const std::string& token) {
    auto r = v->verify(token, kNow);
    return !r.ok() && r.status().code() == Code::kUnauthenticated;
  };
  json c = good_claims();
  EXPECT_TRUE(refused(""));
  EXPECT_TRUE(refused("not.a.token.at.all"));
  EXPECT_TRUE(refused("abc"));
  EXPECT_TRUE(refused(hs256(c, "wrong secret")));
  std::string token = hs256(c, "s3cret");
  EXPECT_TRUE(refused(token.substr(0, token.size() - 2) + "AA"));  // tampered signature
  EXPECT_TRUE(refused(hs256(c, "s3cret", {{"alg", "none"}})));
  json expired = c;
  expired["exp"] = kNow - kJwtLeewaySeconds - 1;
  EXPECT_TRUE(refused(hs256(expired, "s3cret")));
  expired["exp"] = kNow - kJwtLeewaySeconds + 1;  // within the leeway
  EXPECT_FALSE(refused(hs256(expired, "s3cret")));
  json early = c;
  early["nbf"] = kNow + kJwtLeewaySeconds + 5;
  EXPECT_TRUE(refused(hs256(early, "s3cret")));
  json iss = c;
  iss["iss"] = "https://evil.example";
  EXPECT_TRUE(refused(hs256(iss, "s3cret")));
  json aud = c;
  aud["aud"] = json::array({"other", "shop"});
  EXPECT_FALSE(refused(hs256(aud, "s3cret")));
  aud["aud"] = "other";
  EXPECT_TRUE(refused(hs256(aud, "s3cret")));
}

TEST(GatewayJwt, MissingScopeIsPermissionDenied) {
  JwtConfig config = hs_config();
  config.scopes = {"admin"};
  auto v = JwtVerifier::create(config);
  ASSERT_TRUE(v.ok());
  auto r = v->verify(hs256(good_claims(), "s3cret"), kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  json c = good_claims();
  c.erase("scope");
  c["scp"] = json::array({"admin"});
  EXPECT_TRUE(v->verify(hs256(c, "s3cret"), kNow).ok());
}

TEST(GatewayJwt, Rs256AndEs256WithPemKeys) {
  for (const auto& [alg, pair] :
       {std::pair{std::string("RS256"), rsa()}, std::pair{std::string("ES256"), ec()}}) {
    SCOPED_TRACE(alg);
    JwtConfig config;
    config.public_key_pem = pair.public_pem();
    auto v = JwtVerifier::create(config);
    ASSERT_TRUE(v.ok()) << v.status().message();
    EXPECT_TRUE(v->verify(sign(pair, alg, good_claims()), kNow).ok());
    KeyPair other = alg == "RS256" ? rsa() : ec();
    EXPECT_FALSE(v->verify(sign(other, alg, good_claims()), kNow).ok());
    // An HS256 token signed with the public key as secret must not pass.
    EXPECT_FALSE(v->verify(hs256(good_claims(), config.public_key_pem), kNow).ok());
  }
}

TEST(GatewayJwt, JwksFileByKid) {
  KeyPair r = rsa(), e = ec();
  json jwks = {{"keys",
                {{{"kty", "RSA"},
                  {"kid", "r1"},
                  {"n", base64url_encode(bn_param(r, OSSL_PKEY_PARAM_RSA_N))},
                  {"e", base64url_encode(bn_param(r, OSSL_PKEY_PARAM_RSA_E))}},
                 {{"kty", "EC"},
                  {"kid", "e1"},
                  {"crv", "P-256"},
                  {"x", base64url_encode(bn_param(e, OSSL_PKEY_PARAM_EC_PUB_X))},
                  {"y", base64url_encode(bn_param(e, OSSL_PKEY_PARAM_EC_PUB_Y))}}}}};
  auto path = std::filesystem::temp_directory_path() /
              ("gateway_jwks_" + std::to_string(getpid()) + ".json");
  std::ofstream(path) << jwks.dump();
  JwtConfig config;
  config.jwks_file = path.string();
  auto v = JwtVerifier::create(config);
  std::filesystem::remove(path);
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_TRUE(v->verify(sign(r, "RS256", good_claims(), "r1"), kNow).ok());
  EXPECT_TRUE(v->verify(sign(e, "ES256", good_claims(), "e1"), kNow).ok());
  EXPECT_FALSE(v->verify(sign(r, "RS256", good_claims(), "e1"), kNow).ok());
  EXPECT_FALSE(v->verify(sign(r, "RS256", good_claims(), "unknown"), kNow).ok());
}

TEST(GatewayJwt, ConfigErrorsSayWhatToFix) {
  EXPECT_FALSE(JwtVerifier::create(JwtConfig{}).ok());
  JwtConfig bad;
  bad.public_key_pem = "not a key";
  auto r = JwtVerifier::create(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("PEM"), std::string::npos);
  JwtConfig missing;
  missing.jwks_file = "/nonexistent/jwks.json";
  EXPECT_FALSE(JwtVerifier::create(missing).ok());
}

}  // namespace
}  // namespace tamaya::gateway
