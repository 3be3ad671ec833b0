// AWS Signature Version 4 as the Lambda API sees it: who signed a request
// (the access key, from which tamaya derives the account in ARNs) and,
// when verification is on, whether the signature is right.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "common/status.h"
#include "net/http.h"

namespace tamaya::api {

// The account for unsigned requests, as LocalStack and SAM use.
inline constexpr const char* kDefaultAccount = "000000000000";

struct SigV4Credential {
  std::string access_key;
  std::string date;  // yyyymmdd of the credential scope
  std::string region;
  std::string service;
  std::string signed_headers;  // ';'-separated, lower case
  std::string signature;       // hex
};

// Parses "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/lambda/aws4_request,
// SignedHeaders=host;x-amz-date, Signature=abcd". nullopt when absent or not SigV4.
std::optional<SigV4Credential> parse_authorization(std::string_view header);

// A 12-digit account number derived from the access key (the same key always
// gives the same account), or kDefaultAccount when there is no key.
std::string account_for(const std::string& access_key);

// The hex signature of `request` under `secret`, as a client computes it.
std::string sigv4_signature(const net::Request& request, const SigV4Credential& credential,
                            const std::string& secret);

// Parses lambda_api_keys: "AKID:secret,AKID2:secret2".
Result<std::map<std::string, std::string>> parse_keys(const std::string& setting);

// Ok when the request carries a valid signature by one of `keys`;
// PermissionDenied naming what is wrong otherwise.
Status verify_sigv4(const net::Request& request, const std::map<std::string, std::string>& keys);

// The Lambda API's door, shared by its operations and function URL configs:
// who is calling and, when verification is on, whether the signature holds.
// The keys are parsed once, at start.
class SigV4Door {
 public:
  SigV4Door(bool verify, const std::string& keys_setting);

  // The caller's account (kDefaultAccount when unsigned), or the reason the
  // request must be refused when verification is on.
  Result<std::string> account_of(const net::Request& request) const;

  // Not ok when verification is on and lambda_api_keys does not parse: every
  // signed call is then refused with this message.
  const Status& keys_status() const { return keys_status_; }

 private:
  bool verify_;
  std::map<std::string, std::string> keys_;
  Status keys_status_;
};

}  // namespace tamaya::api
