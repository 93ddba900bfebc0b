// Signed identity tokens (identity_token.hpp, docs/security.md): the format
// against vectors computed independently (Python's hmac), and every way a
// token can be refused.
#include "../support/cmocka_cpp.hpp"
#include "pod_router/identity_token.hpp"
#include "pod_router/pod_router_core.h"

using pod_router::TokenCheck;
using pod_router::TokenKeys;

namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef";
const std::string kOtherSecret = "fedcba9876543210fedcba9876543210";
// python3: m = "v1." + b64url(identity) + "." + expiry;
//          m + "." + b64url(hmac.new(kSecret, m, sha256).digest())
const std::string kAliceToken = "v1.YWxpY2U.1700000000.Ivhs2aCBjIJi3h8uZ9YpY-dkqrV_KUwQa1ubU6wE8Uw";
const std::string kZoeToken =
    "v1.Wm_Dq0BleGFtcGxlLmNvbQ.4102444800.MfO2-Uyj6sNAva4coS61tqhajpTwomqhe7yOhpOP1sU";
constexpr std::int64_t kAliceExpiry = 1700000000;

TokenKeys keys(std::vector<std::string> secrets = {kSecret}) {
    auto created = TokenKeys::create(std::move(secrets));
    if (!created) {
        fail_msg("keys: %s", created.error().message.c_str());
    }
    return created.value();
}

TokenCheck check(const TokenKeys &with, const std::string &token, std::int64_t now = kAliceExpiry,
                 std::int64_t skew = 0) {
    std::string identity = "untouched";
    const TokenCheck result = with.verify(token, now, skew, identity);
    if (result != TokenCheck::kValid) {
        assert_string_view_equal(identity, "untouched"); // nothing leaks from a refused token
    }
    return result;
}

void signs_what_an_independent_implementation_signs(void **) {
    assert_string_view_equal(keys().sign("alice", kAliceExpiry).value(), kAliceToken);
    assert_string_view_equal(keys().sign("Zo\xc3\xab@example.com", 4102444800).value(), kZoeToken);
}

void verifies_a_genuine_token_until_expiry_plus_skew(void **) {
    std::string identity;
    assert_int_equal(static_cast<int>(keys().verify(kZoeToken, kAliceExpiry, 0, identity)),
                     static_cast<int>(TokenCheck::kValid));
    assert_string_view_equal(identity, "Zo\xc3\xab@example.com");
    assert_true(check(keys(), kAliceToken, kAliceExpiry) == TokenCheck::kValid);
    assert_true(check(keys(), kAliceToken, kAliceExpiry + 1) == TokenCheck::kExpired);
    assert_true(check(keys(), kAliceToken, kAliceExpiry + 30, 30) == TokenCheck::kValid);
    assert_true(check(keys(), kAliceToken, kAliceExpiry + 31, 30) == TokenCheck::kExpired);
    // a replay long after expiry
    assert_true(check(keys(), kAliceToken, kAliceExpiry + 86400, 30) == TokenCheck::kExpired);
}

void refuses_forged_and_tampered_tokens(void **) {
    assert_true(check(keys({kOtherSecret}), kAliceToken) == TokenCheck::kForged);
    // bob's identity with alice's signature
    std::string tampered = kAliceToken;
    tampered.replace(3, 7, "Ym9i");
    assert_true(check(keys(), tampered) == TokenCheck::kForged);
    // a later expiry with the old signature
    std::string extended = kAliceToken;
    extended.replace(11, 10, "1900000000");
    assert_true(check(keys(), extended) == TokenCheck::kForged);
    // one bit of the MAC
    std::string flipped = kAliceToken;
    flipped.back() = flipped.back() == 'w' ? 'x' : 'w';
    assert_true(check(keys(), flipped) != TokenCheck::kValid);
    // an expired forgery is forged, not expired: claims are not believed
    assert_true(check(keys({kOtherSecret}), kAliceToken, kAliceExpiry + 1000) ==
                TokenCheck::kForged);
}

void refuses_malformed_tokens(void **) {
    const std::string mac = kAliceToken.substr(kAliceToken.rfind('.') + 1);
    for (const std::string &token :
         {std::string(""), std::string("garbage"), std::string("v1..1700000000." + mac),
          "v2.YWxpY2U.1700000000." + mac, "V1.YWxpY2U.1700000000." + mac,
          "v1.YWxpY2U=.1700000000." + mac, "v1.YWx*Y2U.1700000000." + mac,
          "v1.YWxpY2U.-1700000000." + mac, "v1.YWxpY2U.01700000000." + mac,
          "v1.YWxpY2U.17e8." + mac, "v1.YWxpY2U.99999999999999999999." + mac,
          "v1.YWxpY2U.1700000000." + mac + ".extra", std::string("v1.YWxpY2U.1700000000"),
          "v1.YWxpY2U.1700000000." + mac.substr(1), "v1.YWxpY2V.1700000000." + mac,
          std::string(6000, 'a')}) {
        if (check(keys(), token) != TokenCheck::kMalformed) {
            fail_msg("not malformed: %s", token.substr(0, 60).c_str());
        }
    }
    // the longest identity allowed signs and verifies; one more byte does not sign
    const std::string longest(4096, 'x');
    std::string identity;
    assert_true(keys().verify(keys().sign(longest, 1).value(), 0, 0, identity) ==
                TokenCheck::kValid);
    assert_false(keys().sign(longest + "x", 1).has_value());
    assert_false(keys().sign("", 1).has_value());
}

void accepts_either_of_two_secrets_and_signs_with_the_first(void **) {
    const TokenKeys rotating = keys({kOtherSecret, kSecret + "\n"});
    assert_true(check(rotating, kAliceToken) == TokenCheck::kValid);
    const std::string fresh = rotating.sign("alice", kAliceExpiry).value();
    assert_true(check(keys({kOtherSecret}), fresh) == TokenCheck::kValid);
    assert_true(check(keys({kSecret}), fresh) == TokenCheck::kForged);
}

void refuses_weak_or_too_many_secrets(void **) {
    assert_false(TokenKeys::create({}).has_value());
    assert_false(TokenKeys::create({std::string(31, 'k')}).has_value());
    assert_false(TokenKeys::create({std::string(31, 'k') + "\n"}).has_value());
    assert_false(TokenKeys::create({kSecret, kSecret, kSecret}).has_value());
}

void the_c_api_agrees(void **) {
    const char *secrets[] = {kSecret.c_str()};
    const size_t lens[] = {kSecret.size()};
    pr_token_keys_t *c_keys = nullptr;
    char err[PR_ERROR_SIZE];
    assert_int_equal(pr_token_keys_create(secrets, lens, 1, &c_keys, err, sizeof(err)), PR_OK);
    char identity[PR_MAX_IDENTITY_BYTES_LIMIT];
    size_t identity_len = 0;
    assert_int_equal(pr_token_verify(c_keys, kAliceToken.data(), kAliceToken.size(), kAliceExpiry,
                                     0, identity, sizeof(identity), &identity_len),
                     PR_TOKEN_VALID);
    assert_string_view_equal(std::string_view(identity, identity_len), "alice");
    assert_int_equal(pr_token_verify(c_keys, kAliceToken.data(), kAliceToken.size(),
                                     kAliceExpiry + 5, 0, identity, sizeof(identity),
                                     &identity_len),
                     PR_TOKEN_EXPIRED);
    // an identity buffer too small for a genuine token refuses it
    assert_int_equal(pr_token_verify(c_keys, kAliceToken.data(), kAliceToken.size(), kAliceExpiry,
                                     0, identity, 4, &identity_len),
                     PR_TOKEN_MALFORMED);
    char token[PR_TOKEN_MAX_BYTES + 1];
    size_t token_len = 0;
    assert_int_equal(pr_token_sign(c_keys, "alice", 5, kAliceExpiry, token, sizeof(token),
                                   &token_len, err, sizeof(err)),
                     PR_OK);
    assert_string_view_equal(std::string_view(token, token_len), kAliceToken);
    assert_string_equal(pr_token_check_name(PR_TOKEN_FORGED), "forged");
    pr_token_keys_destroy(c_keys);
    const size_t short_len[] = {10};
    assert_int_equal(pr_token_keys_create(secrets, short_len, 1, &c_keys, err, sizeof(err)),
                     PR_INVALID_CONFIG);
    assert_null(c_keys);
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signs_what_an_independent_implementation_signs),
        cmocka_unit_test(verifies_a_genuine_token_until_expiry_plus_skew),
        cmocka_unit_test(refuses_forged_and_tampered_tokens),
        cmocka_unit_test(refuses_malformed_tokens),
        cmocka_unit_test(accepts_either_of_two_secrets_and_signs_with_the_first),
        cmocka_unit_test(refuses_weak_or_too_many_secrets),
        cmocka_unit_test(the_c_api_agrees),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
