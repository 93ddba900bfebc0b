// Fuzz target: the identity token verifier (identity_token.hpp) and its C
// face (pr_token_verify). The input is verified as a token, as the gateway
// would, at several clocks; and it is signed as an identity, then verified,
// truncated and corrupted. Properties:
//   - a verdict is one of four, and only the expiry depends on the clock:
//     malformed and forged stay so at any now and skew;
//   - a valid token is exactly what sign() gives for its identity and expiry
//     (one encoding per claim), with a 1..4096-byte identity;
//   - sign() then verify() gives back the same identity; a token signed with
//     another secret is forged; one byte changed or a truncation never
//     verifies (so never as another identity);
//   - the C API agrees with the C++ one and writes no byte past identity_size.
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_require.hpp"
#include "pod_router/identity_token.hpp"
#include "pod_router/pod_name.hpp"
#include "pod_router/pod_router_core.h"

namespace {

using pod_router::TokenCheck;
using pod_router::TokenKeys;

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();

// 32 and 64 bytes; the second is given with the trailing newline a secret
// file has, which create() drops.
const std::string kSecretA = "0123456789abcdef0123456789abcdef";
const std::string kSecretB = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Keys {
    TokenKeys a;        // signs with A
    TokenKeys b;        // signs with B only
    TokenKeys rotating; // signs with B, still accepts A
    pr_token_keys_t *c_rotating = nullptr;
};

const Keys &keys() {
    static const Keys instance = [] {
        Keys built{TokenKeys::create({kSecretA}).value(),
                   TokenKeys::create({kSecretB + "\n"}).value(),
                   TokenKeys::create({kSecretB, kSecretA}).value()};
        const char *secrets[] = {kSecretB.data(), kSecretA.data()};
        const std::size_t lens[] = {kSecretB.size(), kSecretA.size()};
        char err[PR_ERROR_SIZE];
        require(pr_token_keys_create(secrets, lens, 2, &built.c_rotating, err, sizeof err) ==
                PR_OK);
        return built;
    }();
    return instance;
}

struct Clock {
    std::int64_t now;
    std::int64_t skew;
};
constexpr Clock kClocks[] = {
    {0, 0},       {1'800'000'000, 0}, {1'800'000'000, 300}, {kMax, 0},  {kMin, 0},
    {kMin, kMax}, {kMax, kMax},       {-1, -300},           {100, 999}, {1'000'000'000'000, 60},
};

bool is_valid_or_expired(TokenCheck check) {
    return check == TokenCheck::kValid || check == TokenCheck::kExpired;
}

// The third dot-separated field, as verify() reads it for a genuine token.
bool expiry_of(std::string_view token, std::int64_t &expiry) {
    for (int i = 0; i < 2; ++i) {
        const std::size_t dot = token.find('.');
        if (dot == std::string_view::npos) {
            return false;
        }
        token.remove_prefix(dot + 1);
    }
    const std::string_view digits = token.substr(0, token.find('.'));
    if (digits.empty() || digits.size() > 19) {
        return false;
    }
    std::uint64_t value = 0;
    for (const char c : digits) {
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (value > static_cast<std::uint64_t>(kMax)) {
        return false;
    }
    expiry = static_cast<std::int64_t>(value);
    return true;
}

bool expired_at(std::int64_t expiry, const Clock &clock) {
    const std::int64_t skew = clock.skew < 0 ? 0 : clock.skew;
    // expiry >= 0, so now - expiry cannot overflow when now > expiry
    return expiry < clock.now && clock.now - expiry > skew;
}

// The C API on the same token: same verdict, and the identity copied only
// when it fits, into a buffer exactly identity_size bytes long (ASan).
void check_c_api(std::string_view token, const Clock &clock, TokenCheck expected,
                 const std::string &identity, std::size_t identity_size) {
    std::unique_ptr<char[]> buffer(new char[identity_size == 0 ? 1 : identity_size]);
    std::size_t length = 0;
    const pr_token_check_t check = pr_token_verify(
        keys().c_rotating, token.data(), token.size(), clock.now, clock.skew,
        identity_size == 0 ? buffer.get() + 1 : buffer.get(), identity_size, &length);
    require(pr_token_check_name(check) != nullptr);
    switch (expected) {
    case TokenCheck::kValid:
        if (identity.size() > identity_size) {
            require(check == PR_TOKEN_MALFORMED);
        } else {
            require(check == PR_TOKEN_VALID);
            require(length == identity.size());
            require(std::memcmp(buffer.get(), identity.data(), length) == 0);
        }
        break;
    case TokenCheck::kExpired:
        require(check == PR_TOKEN_EXPIRED);
        break;
    case TokenCheck::kForged:
        require(check == PR_TOKEN_FORGED);
        break;
    case TokenCheck::kMalformed:
        require(check == PR_TOKEN_MALFORMED);
        break;
    }
}

// The input as a token someone presented.
void verify_as_presented(std::string_view token) {
    for (const TokenKeys *k : {&keys().a, &keys().b, &keys().rotating}) {
        TokenCheck first = TokenCheck::kMalformed;
        bool have_first = false;
        for (const Clock &clock : kClocks) {
            std::string identity = "unchanged";
            const TokenCheck check = k->verify(token, clock.now, clock.skew, identity);
            require(std::string_view(pod_router::token_check_name(check)) != "unknown");
            if (token.size() > pod_router::kTokenMaxBytes) {
                require(check == TokenCheck::kMalformed);
            }
            if (!have_first) {
                first = check;
                have_first = true;
            } else if (is_valid_or_expired(first) || is_valid_or_expired(check)) {
                // genuine or not does not depend on the clock
                require(is_valid_or_expired(first) && is_valid_or_expired(check));
            } else {
                require(check == first);
            }
            if (check != TokenCheck::kValid) {
                require(identity == "unchanged");
            }
            if (is_valid_or_expired(check)) {
                std::int64_t expiry = 0;
                require(expiry_of(token, expiry));
                require((check == TokenCheck::kExpired) == expired_at(expiry, clock));
            }
            if (check == TokenCheck::kValid) {
                require(!identity.empty());
                require(identity.size() <= pod_router::kMaxIdentityBytesLimit);
                std::int64_t expiry = 0;
                require(expiry_of(token, expiry));
                // One encoding per claim: the token is what sign() makes of
                // it with one of the secrets that verified it.
                const bool resigned = keys().a.sign(identity, expiry).value() == token ||
                                      keys().b.sign(identity, expiry).value() == token;
                require(resigned);
            }
            if (k == &keys().rotating) {
                check_c_api(token, clock, check, identity,
                            check == TokenCheck::kValid ? identity.size() : 16);
                if (check == TokenCheck::kValid && !identity.empty()) {
                    // one byte short: refused, not truncated
                    check_c_api(token, clock, check, identity, identity.size() - 1);
                }
            }
        }
    }
}

std::uint64_t fnv1a(std::string_view bytes) {
    std::uint64_t hash = 1469598103934665603ull;
    for (const char c : bytes) {
        hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    }
    return hash;
}

void require_not_valid(std::string_view token, std::int64_t now) {
    for (const TokenKeys *k : {&keys().a, &keys().rotating}) {
        std::string identity;
        require(k->verify(token, now, 0, identity) != TokenCheck::kValid);
        require(identity.empty());
    }
}

// The input as an identity that the operator's tooling signs.
void sign_and_verify(std::string_view identity) {
    const std::uint64_t hash = fnv1a(identity);
    constexpr std::int64_t kExpiries[] = {0, 1, 1'800'000'000, kMax, -1};
    const std::int64_t expiry = kExpiries[hash % 5];

    auto token = keys().a.sign(identity, expiry);
    if (identity.empty() || identity.size() > pod_router::kMaxIdentityBytesLimit || expiry < 0) {
        require(!token.has_value());
        require(!token.error().message.empty());
        return;
    }
    require(token.has_value());
    const std::string &signed_token = token.value();
    require(signed_token.size() <= pod_router::kTokenMaxBytes);
    for (const char c : signed_token) {
        // fits a header or a cookie as it is
        require((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.');
    }
    require(keys().a.sign(identity, expiry).value() == signed_token);

    for (const TokenKeys *k : {&keys().a, &keys().rotating}) {
        std::string verified;
        require(k->verify(signed_token, expiry, 0, verified) == TokenCheck::kValid);
        require(verified == identity);
        if (expiry < kMax) {
            verified.clear();
            require(k->verify(signed_token, expiry + 1, 0, verified) == TokenCheck::kExpired);
            require(k->verify(signed_token, expiry + 1, 1, verified) == TokenCheck::kValid);
            require(verified == identity);
        }
    }
    std::string ignored;
    require(keys().b.verify(signed_token, expiry, 0, ignored) == TokenCheck::kForged);
    check_c_api(signed_token, {expiry, 0}, TokenCheck::kValid, std::string(identity),
                identity.size());

    // Every byte changed, for a short token; a few chosen by the input for a
    // long one. Then truncations.
    std::string changed = signed_token;
    const std::size_t size = signed_token.size();
    const bool every = size <= 96;
    for (std::size_t n = 0; n < (every ? size : 8); ++n) {
        const std::size_t at = every ? n : (hash >> (n * 7)) % size;
        const auto mask = static_cast<unsigned char>(1 + (hash >> (n % 8 * 8)) % 255);
        changed[at] = static_cast<char>(static_cast<unsigned char>(changed[at]) ^ mask);
        require_not_valid(changed, expiry);
        changed[at] = signed_token[at];
    }
    for (const std::size_t keep : {std::size_t{0}, size - 1, (hash >> 16) % size}) {
        require_not_valid(std::string_view(signed_token).substr(0, keep), expiry);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char *>(data), size);
    verify_as_presented(input);
    sign_and_verify(input);
    return 0;
}
