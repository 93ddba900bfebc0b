// Signed identity tokens (docs/security.md): an identity, an expiry and an
// HMAC-SHA256 over both, so that a client cannot claim another user's
// identity without the secret.
//
//   v1.<identity, base64url without padding>.<expiry, Unix seconds>.<MAC, base64url>
//
// The MAC is HMAC-SHA256(secret, "v1.<identity b64>.<expiry>"), compared in
// constant time. Two secrets may be active at once (rotation): a token
// signed with either verifies; new tokens are signed with the first.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pod_router/expected.hpp"

namespace pod_router {

inline constexpr std::size_t kTokenMinSecretBytes = 32;
inline constexpr std::size_t kTokenMaxSecrets = 2;
// The longest token verify() looks at: a 4,096-byte identity, encoded, plus
// the rest. Anything longer is malformed without being decoded.
inline constexpr std::size_t kTokenMaxBytes = 5600;

enum class TokenCheck {
    kValid,
    kMalformed, // not v1.<b64>.<digits>.<b64>, or an empty/oversized identity
    kForged,    // well formed, but no active secret made its MAC
    kExpired,   // genuine, but past its expiry plus the allowed clock skew
};

const char *token_check_name(TokenCheck check) noexcept;

class TokenKeys {
  public:
    // Secrets as read from their files (one trailing newline is dropped);
    // 1 or 2 of them, each at least kTokenMinSecretBytes.
    static Expected<TokenKeys> create(std::vector<std::string> secrets);

    // now and expiry in Unix seconds; skew >= 0.
    TokenCheck verify(std::string_view token, std::int64_t now, std::int64_t skew,
                      std::string &identity) const;
    Expected<std::string> sign(std::string_view identity, std::int64_t expiry) const;

  private:
    explicit TokenKeys(std::vector<std::string> secrets) : secrets_(std::move(secrets)) {}
    std::vector<std::string> secrets_;
};

} // namespace pod_router
