#include "api/lambda_sigv4.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <vector>

#include "common/encoding.h"
#include "common/strings.h"

namespace tamaya::api {

namespace {

std::string hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// Clients sign the path as they sent it (already percent-encoded), encoded
// once more with '/' and '~' kept: that is botocore's and the SDKs' rule for
// every service but S3.
std::string canonical_uri(std::string_view raw_path) {
  std::string out;
  for (unsigned char c : raw_path) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out.empty() ? "/" : out;
}

std::string canonical_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t i = 0;
  while (i <= query.size() && !query.empty()) {
    size_t j = query.find('&', i);
    if (j == std::string_view::npos) j = query.size();
    std::string_view pair = query.substr(i, j - i);
    size_t eq = pair.find('=');
    pairs.emplace_back(std::string(pair.substr(0, eq)),
                       eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1)));
    i = j + 1;
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [k, v] : pairs) {
    if (!out.empty()) out += '&';
    out.append(k).append("=").append(v);
  }
  return out;
}

std::string header_values(const net::Request& r, const std::string& name) {
  std::string out;
  for (const auto& [k, v] : r.headers) {
    if (lower(k) != name) continue;
    // Runs of spaces inside a value collapse to one, as clients sign them.
    std::string collapsed;
    bool space = false;
    for (char c : trim(v)) {
      if (c == ' ' || c == '\t') {
        space = true;
        continue;
      }
      if (space && !collapsed.empty()) collapsed += ' ';
      space = false;
      collapsed += c;
    }
    if (!out.empty()) out += ',';
    out += collapsed;
  }
  return out;
}

}  // namespace

std::optional<SigV4Credential> parse_authorization(std::string_view header) {
  constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
  header = trim(header);
  if (header.substr(0, kAlgorithm.size()) != kAlgorithm) return std::nullopt;
  header.remove_prefix(kAlgorithm.size());
  SigV4Credential c;
  std::string credential;
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view part = trim(header.substr(0, comma));
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = trim(part.substr(0, eq));
    std::string value(trim(part.substr(eq + 1)));
    if (key == "Credential") credential = value;
    if (key == "SignedHeaders") c.signed_headers = lower(value);
    if (key == "Signature") c.signature = lower(value);
  }
  // AKID/date/region/service/aws4_request
  std::vector<std::string_view> scope = split(credential, '/');
  if (scope.size() != 5 || scope[0].empty() || scope[4] != "aws4_request") return std::nullopt;
  c.access_key = scope[0];
  c.date = scope[1];
  c.region = scope[2];
  c.service = scope[3];
  return c;
}

std::string account_for(const std::string& access_key) {
  if (access_key.empty()) return kDefaultAccount;
  std::string digest = sha256_hex(access_key);
  // 12 decimal digits from the first 48 bits: deterministic, spread evenly.
  uint64_t n = std::stoull(digest.substr(0, 12), nullptr, 16) % 1'000'000'000'000ULL;
  return fmt::format("{:012}", n);
}

std::string sigv4_signature(const net::Request& r, const SigV4Credential& c,
                            const std::string& secret) {
  std::string_view target = r.target;
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);

  std::string canonical_headers;
  size_t start = 0;
  while (start <= c.signed_headers.size()) {
    size_t semi = c.signed_headers.find(';', start);
    if (semi == std::string::npos) semi = c.signed_headers.size();
    std::string name = c.signed_headers.substr(start, semi - start);
    if (!name.empty()) canonical_headers += name + ":" + header_values(r, name) + "\n";
    start = semi + 1;
  }
  std::string payload_hash(r.header("X-Amz-Content-Sha256").value_or(""));
  if (payload_hash.empty()) payload_hash = sha256_hex(r.body);

  std::string canonical_request = r.method + "\n" + canonical_uri(raw_path) + "\n" +
                                  canonical_query(query) + "\n" + canonical_headers + "\n" +
                                  c.signed_headers + "\n" + payload_hash;
  std::string scope = c.date + "/" + c.region + "/" + c.service + "/aws4_request";
  std::string amz_date(r.header("X-Amz-Date").value_or(""));
  std::string to_sign =
      "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + sha256_hex(canonical_request);

  std::string key = hmac("AWS4" + secret, c.date);
  key = hmac(key, c.region);
  key = hmac(key, c.service);
  key = hmac(key, "aws4_request");
  return hex(hmac(key, to_sign));
}

Result<std::map<std::string, std::string>> parse_keys(const std::string& setting) {
  std::map<std::string, std::string> keys;
  size_t start = 0;
  while (start < setting.size()) {
    size_t comma = setting.find(',', start);
    if (comma == std::string::npos) comma = setting.size();
    std::string_view entry = trim(std::string_view(setting).substr(start, comma - start));
    start = comma + 1;
    if (entry.empty()) continue;
    size_t colon = entry.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == entry.size()) {
      return Status::Invalid(
          "lambda_api_keys must be 'ACCESS_KEY_ID:secret' pairs separated by commas; an entry "
          "has no ':' or an empty side");
    }
    keys[std::string(entry.substr(0, colon))] = std::string(entry.substr(colon + 1));
  }
  return keys;
}

Status verify_sigv4(const net::Request& request, const std::map<std::string, std::string>& keys) {
  auto auth = request.header("Authorization");
  if (!auth) {
    return Status(Code::kPermissionDenied,
                  "the request is not signed; sign it with AWS Signature V4 using one of the "
                  "keys in lambda_api_keys");
  }
  auto c = parse_authorization(*auth);
  if (!c) {
    return Status(Code::kPermissionDenied,
                  "the Authorization header is not an AWS4-HMAC-SHA256 signature; sign the "
                  "request with AWS Signature V4");
  }
  auto key = keys.find(c->access_key);
  if (key == keys.end()) {
    return Status(Code::kPermissionDenied,
                  "the access key " + c->access_key +
                      " is not known here; use one of the keys in lambda_api_keys");
  }
  std::string expected = sigv4_signature(request, *c, key->second);
  if (expected.size() != c->signature.size() ||
      CRYPTO_memcmp(expected.data(), c->signature.data(), expected.size()) != 0) {
    return Status(Code::kPermissionDenied,
                  "The request signature we calculated does not match the signature you "
                  "provided. Check your AWS Secret Access Key and signing method.");
  }
  return Status::Ok();
}

SigV4Door::SigV4Door(bool verify, const std::string& keys_setting) : verify_(verify) {
  if (!verify_) return;
  auto keys = parse_keys(keys_setting);
  if (keys.ok()) {
    keys_ = std::move(*keys);
  } else {
    keys_status_ = keys.status();
  }
}

Result<std::string> SigV4Door::account_of(const net::Request& request) const {
  std::string account = kDefaultAccount;
  if (auto auth = request.header("Authorization")) {
    if (auto cred = parse_authorization(*auth)) account = account_for(cred->access_key);
  }
  if (verify_) {
    Status st = keys_status_.ok() ? verify_sigv4(request, keys_) : keys_status_;
    if (!st.ok()) return st;
  }
  return account;
}

}  // namespace tamaya::api
