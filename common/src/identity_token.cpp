#include "pod_router/identity_token.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <limits>

#include "pod_router/pod_name.hpp"

namespace pod_router {
namespace {

constexpr std::string_view kVersion = "v1";
constexpr std::size_t kMacBytes = 32; // SHA-256
// INT64_MAX has 19 digits; a longer expiry is malformed, not clamped.
constexpr std::size_t kMaxExpiryDigits = 19;

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url_encode(std::string_view bytes) {
    std::string out;
    out.reserve((bytes.size() * 4 + 2) / 3);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const auto v = static_cast<unsigned>(static_cast<unsigned char>(bytes[i])) << 16 |
                       static_cast<unsigned>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                       static_cast<unsigned>(static_cast<unsigned char>(bytes[i + 2]));
        out.push_back(kAlphabet[(v >> 18) & 63]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
        out.push_back(kAlphabet[(v >> 6) & 63]);
        out.push_back(kAlphabet[v & 63]);
    }
    const std::size_t rest = bytes.size() - i;
    if (rest > 0) {
        unsigned v = static_cast<unsigned>(static_cast<unsigned char>(bytes[i])) << 16;
        if (rest == 2) {
            v |= static_cast<unsigned>(static_cast<unsigned char>(bytes[i + 1])) << 8;
        }
        out.push_back(kAlphabet[(v >> 18) & 63]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
        if (rest == 2) {
            out.push_back(kAlphabet[(v >> 6) & 63]);
        }
    }
    return out;
}

int base64url_value(char c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

// Strict: no padding, no other alphabet, and the unused low bits of the last
// character must be zero, so that each byte string has exactly one encoding
// (two tokens for one identity cannot differ only in their encoding).
bool base64url_decode(std::string_view text, std::string &out) {
    if (text.size() % 4 == 1) {
        return false;
    }
    out.clear();
    out.reserve(text.size() * 3 / 4);
    unsigned buffer = 0;
    int bits = 0;
    for (const char c : text) {
        const int value = base64url_value(c);
        if (value < 0) {
            return false;
        }
        buffer = (buffer << 6) | static_cast<unsigned>(value);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((buffer >> bits) & 0xff));
        }
    }
    return (buffer & ((1u << bits) - 1)) == 0;
}

bool parse_expiry(std::string_view digits, std::int64_t &expiry) {
    if (digits.empty() || digits.size() > kMaxExpiryDigits ||
        (digits.size() > 1 && digits[0] == '0')) {
        return false;
    }
    std::uint64_t value = 0;
    for (const char c : digits) {
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return false;
    }
    expiry = static_cast<std::int64_t>(value);
    return true;
}

bool hmac_sha256(const std::string &secret, std::string_view message,
                 std::array<unsigned char, kMacBytes> &mac) {
    unsigned int length = 0;
    const unsigned char *done = HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                                     reinterpret_cast<const unsigned char *>(message.data()),
                                     message.size(), mac.data(), &length);
    return done != nullptr && length == kMacBytes;
}

// Splits "a.b.c.d" into exactly four parts.
bool split4(std::string_view token, std::array<std::string_view, 4> &parts) {
    for (std::size_t i = 0; i < 3; ++i) {
        const std::size_t dot = token.find('.');
        if (dot == std::string_view::npos) {
            return false;
        }
        parts[i] = token.substr(0, dot);
        token.remove_prefix(dot + 1);
    }
    parts[3] = token;
    return parts[3].find('.') == std::string_view::npos;
}

} // namespace

const char *token_check_name(TokenCheck check) noexcept {
    switch (check) {
    case TokenCheck::kValid:
        return "valid";
    case TokenCheck::kMalformed:
        return "malformed";
    case TokenCheck::kForged:
        return "forged";
    case TokenCheck::kExpired:
        return "expired";
    }
    return "unknown";
}

Expected<TokenKeys> TokenKeys::create(std::vector<std::string> secrets) {
    if (secrets.empty() || secrets.size() > kTokenMaxSecrets) {
        return Error{ErrorCode::kInvalidConfig, "one or two identity secrets are needed"};
    }
    for (auto &secret : secrets) {
        if (!secret.empty() && secret.back() == '\n') {
            secret.pop_back();
        }
        if (secret.size() < kTokenMinSecretBytes) {
            return Error{ErrorCode::kInvalidConfig,
                         "an identity secret must hold at least 32 bytes (for example "
                         "64 hex digits from a random source)"};
        }
    }
    return TokenKeys(std::move(secrets));
}

TokenCheck TokenKeys::verify(std::string_view token, std::int64_t now, std::int64_t skew,
                             std::string &identity) const {
    std::array<std::string_view, 4> parts;
    if (token.size() > kTokenMaxBytes || !split4(token, parts) || parts[0] != kVersion) {
        return TokenCheck::kMalformed;
    }
    std::int64_t expiry = 0;
    std::string decoded_mac;
    std::string decoded_identity;
    if (!parse_expiry(parts[2], expiry) || !base64url_decode(parts[3], decoded_mac) ||
        decoded_mac.size() != kMacBytes || !base64url_decode(parts[1], decoded_identity) ||
        decoded_identity.empty() || decoded_identity.size() > kMaxIdentityBytesLimit) {
        return TokenCheck::kMalformed;
    }
    // The MAC first: nothing about a token's claims is believed, or even
    // reported, before its signature is.
    const std::string_view signed_part = token.substr(0, token.size() - parts[3].size() - 1);
    bool genuine = false;
    for (const auto &secret : secrets_) {
        std::array<unsigned char, kMacBytes> expected{};
        if (!hmac_sha256(secret, signed_part, expected)) {
            return TokenCheck::kForged; // OpenSSL failed: believe nothing
        }
        // Every secret is tried, whatever the first gave, so that timing
        // does not tell which one signed.
        genuine |= CRYPTO_memcmp(expected.data(), decoded_mac.data(), kMacBytes) == 0;
    }
    if (!genuine) {
        return TokenCheck::kForged;
    }
    if (skew < 0) {
        skew = 0;
    }
    if (expiry < now && now - expiry > skew) {
        return TokenCheck::kExpired;
    }
    identity = std::move(decoded_identity);
    return TokenCheck::kValid;
}

Expected<std::string> TokenKeys::sign(std::string_view identity, std::int64_t expiry) const {
    if (identity.empty() || identity.size() > kMaxIdentityBytesLimit) {
        return Error{ErrorCode::kInvalidIdentity, "a token's identity must be 1 to 4096 bytes"};
    }
    if (expiry < 0) {
        return Error{ErrorCode::kInvalidConfig, "a token's expiry must not be negative"};
    }
    std::string token(kVersion);
    token += '.';
    token += base64url_encode(identity);
    token += '.';
    token += std::to_string(expiry);
    std::array<unsigned char, kMacBytes> mac{};
    if (!hmac_sha256(secrets_.front(), token, mac)) {
        return Error{ErrorCode::kInternal, "OpenSSL HMAC-SHA256 failed"};
    }
    token += '.';
    token +=
        base64url_encode(std::string_view(reinterpret_cast<const char *>(mac.data()), mac.size()));
    return token;
}

} // namespace pod_router
