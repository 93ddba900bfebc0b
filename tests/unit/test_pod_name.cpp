// The name rule: identity -> pod name (docs/pod-names.md).
#include <random>
#include <unordered_set>

#include "../support/cmocka_cpp.hpp"
#include "pod_router/pod_name.hpp"

using pod_router::ErrorCode;
using pod_router::NamingPolicy;

namespace {

NamingPolicy default_policy() {
    auto policy = NamingPolicy::create();
    assert_true(policy.has_value());
    return policy.value();
}

std::string name_of(std::string_view identity) {
    auto name = default_policy().pod_name(identity);
    if (!name) {
        fail_msg("unexpected error for identity: %s", name.error().message.c_str());
    }
    assert_true(pod_router::is_valid_pod_name(name.value()));
    return name.value();
}

std::string rejection_of(std::string_view identity, const NamingPolicy &policy = default_policy()) {
    auto name = policy.pod_name(identity);
    assert_false(name.has_value());
    assert_int_equal(static_cast<int>(name.error().code),
                     static_cast<int>(ErrorCode::kInvalidIdentity));
    return name.error().message;
}

void safe_identities_keep_their_name(void **) {
    assert_string_view_equal(name_of("alice"), "user-alice");
    assert_string_view_equal(name_of("demo-user-1"), "user-demo-user-1");
    assert_string_view_equal(name_of("a"), "user-a");
    assert_string_view_equal(name_of("0"), "user-0");
}

void leading_digits_are_safe_after_the_prefix(void **) {
    assert_string_view_equal(name_of("123abc"), "user-123abc");
    assert_string_view_equal(name_of("42"), "user-42");
}

// Golden vectors pin the exact algorithm: a gateway and a controller built
// from different commits must still agree on every name.
void uppercase_is_hashed_not_folded(void **) {
    assert_string_view_equal(name_of("Alice"), "user-alice---3bc51062973c458d");
    assert_string_view_equal(name_of("alice"), "user-alice");
    assert_string_not_equal(name_of("ALICE").c_str(), name_of("Alice").c_str());
}

void non_ascii_is_hashed(void **) {
    assert_string_view_equal(name_of("Jos\xc3\xa9"), "user-jos---24c2ab65b7adab7e");
    // Nothing survives cleaning: the prefix and the hash only.
    assert_string_view_equal(name_of("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"),
                             "user---77710aedc74ecfa3");
}

void double_hyphen_is_hashed(void **) {
    assert_string_view_equal(name_of("a--b"), "user-a-b---90827a2e56361a8f");
    assert_string_not_equal(name_of("a--b").c_str(), name_of("a-b").c_str());
}

void leading_and_trailing_hyphens_are_hashed(void **) {
    assert_string_view_equal(name_of("-abc"), "user-abc---649d85fcc5d7e13d");
    const std::string trailing = name_of("abc-");
    assert_true(contains(trailing, "---"));
    assert_string_not_equal(trailing.c_str(), name_of("-abc").c_str());
}

void punctuation_is_cleaned_and_hashed(void **) {
    const std::string email = name_of("bob@example.com");
    assert_true(email.rfind("user-bob-example-com---", 0) == 0);
    assert_int_equal(email.size(), std::string("user-bob-example-com---").size() + 16);
    assert_string_not_equal(name_of("a.b").c_str(), name_of("a_b").c_str());
    assert_string_not_equal(name_of("a.b").c_str(), name_of("a-b").c_str());
}

void lengths_around_the_63_character_limit(void **) {
    // "user-" leaves 58 characters for a safe identity.
    assert_string_view_equal(name_of(std::string(58, 'a')), "user-" + std::string(58, 'a'));
    assert_int_equal(name_of(std::string(58, 'a')).size(), 63);

    std::unordered_set<std::string> names;
    for (const std::size_t length : {59, 62, 63, 64, 255, 256}) {
        const std::string name = name_of(std::string(length, 'a'));
        assert_int_equal(name.size(), 63);
        assert_true(contains(name, "---"));
        names.insert(name);
    }
    assert_int_equal(names.size(), 6);
    assert_string_view_equal(name_of(std::string(62, 'a')),
                             "user-" + std::string(39, 'a') + "---f506898cc7c2e092");
}

void too_long_identities_are_rejected_not_truncated(void **) {
    const std::string message = rejection_of(std::string(300, 'a'));
    assert_string_view_equal(message, "identity is 300 bytes, longer than the limit of 256");
    assert_string_view_equal(name_of(std::string(256, 'a')).substr(0, 5), "user-");

    auto strict = NamingPolicy::create("user", 8);
    assert_true(strict.has_value());
    assert_true(strict.value().pod_name("12345678").has_value());
    rejection_of("123456789", strict.value());
}

void empty_is_rejected(void **) {
    assert_string_view_equal(rejection_of(""), "identity is empty");
}

void control_characters_are_rejected(void **) {
    assert_string_view_equal(rejection_of(std::string("ab\0c", 4)),
                             "identity contains control character U+0000 at byte offset 2");
    assert_string_view_equal(rejection_of("ab\rc"),
                             "identity contains control character U+000D at byte offset 2");
    assert_string_view_equal(rejection_of("\nabc"),
                             "identity contains control character U+000A at byte offset 0");
    assert_string_view_equal(rejection_of("tab\there"),
                             "identity contains control character U+0009 at byte offset 3");
    assert_string_view_equal(rejection_of("del\x7f"),
                             "identity contains control character U+007F at byte offset 3");
    // C1 controls, such as NEL (U+0085), are controls too.
    assert_string_view_equal(rejection_of("x\xc2\x85"),
                             "identity contains control character U+0085 at byte offset 1");
}

void invalid_utf8_is_rejected(void **) {
    assert_string_view_equal(rejection_of("\xff"), "identity is not valid UTF-8 at byte offset 0");
    // Overlong "/", a UTF-16 surrogate, a truncated sequence, above U+10FFFF.
    rejection_of("\xc0\xaf");
    rejection_of("ok\xed\xa0\x80");
    assert_string_view_equal(rejection_of("ab\xe2\x82"),
                             "identity is not valid UTF-8 at byte offset 2");
    rejection_of("\xf4\x90\x80\x80");
    // The largest valid code points still pass.
    name_of("\xf4\x8f\xbf\xbf");
    name_of("\xef\xbf\xbd");
}

void prefixes_are_validated(void **) {
    for (const char *bad : {"", "User", "1user", "user-", "-user", "us--er", "us_er",
                            "abcdefghijabcdefghijabcdefghijk"}) {
        auto policy = NamingPolicy::create(bad);
        assert_false(policy.has_value());
        assert_int_equal(static_cast<int>(policy.error().code),
                         static_cast<int>(ErrorCode::kInvalidConfig));
    }
    auto longest = NamingPolicy::create("abcdefghijabcdefghijabcdefghij");
    assert_true(longest.has_value());
    // Even the longest prefix leaves a valid hashed name.
    auto name = longest.value().pod_name(std::string(200, 'Z'));
    assert_true(name.has_value());
    assert_int_equal(name.value().size(), 63);
    assert_true(pod_router::is_valid_pod_name(name.value()));

    auto custom = NamingPolicy::create("sess");
    assert_true(custom.has_value());
    assert_string_view_equal(custom.value().pod_name("alice").value(), "sess-alice");
}

void identity_limits_are_validated(void **) {
    assert_false(NamingPolicy::create("user", 0).has_value());
    assert_false(NamingPolicy::create("user", 4097).has_value());
    assert_true(NamingPolicy::create("user", 4096).has_value());
}

void pod_name_validity(void **) {
    assert_true(pod_router::is_valid_pod_name("a"));
    assert_true(pod_router::is_valid_pod_name("user-1"));
    assert_true(pod_router::is_valid_pod_name(std::string(63, 'a')));
    assert_false(pod_router::is_valid_pod_name(std::string(64, 'a')));
    assert_false(pod_router::is_valid_pod_name(""));
    assert_false(pod_router::is_valid_pod_name("1user"));
    assert_false(pod_router::is_valid_pod_name("user-"));
    assert_false(pod_router::is_valid_pod_name("User"));
    assert_false(pod_router::is_valid_pod_name("us.er"));
}

// Identities come from three alphabets. The confusable one collides often
// after cleaning (".", "_", "@" and "-" all clean to "-", "A" to "a"), so it
// checks the hash and the separation of the two forms; the safe one yields
// mostly names kept as they are; the wide one brings multi-byte characters
// and lengths past the 63-character limit.
std::string random_identity(std::mt19937_64 &random) {
    static const std::vector<std::string> kConfusable = {"a", "b", "A", "-", ".", "_", "@", "1"};
    static const std::vector<std::string> kSafe = {"a", "b", "c", "x", "y", "z", "0", "7", "-"};
    static const std::vector<std::string> kWide = {"a",
                                                   "z",
                                                   "0",
                                                   "9",
                                                   "-",
                                                   "A",
                                                   "Z",
                                                   ".",
                                                   "@",
                                                   " ",
                                                   "\xc3\xa9",
                                                   "\xe6\x97\xa5",
                                                   "\xf0\x9f\x99\x82"};
    static const std::vector<std::string> *const kAlphabets[] = {&kConfusable, &kSafe, &kWide};
    static const std::size_t kMaxLengths[] = {24, 40, 120};
    const std::size_t which = random() % 3;
    const auto &alphabet = *kAlphabets[which];
    const std::size_t length = 1 + random() % kMaxLengths[which];
    std::string identity;
    while (identity.size() < length) {
        identity += alphabet[random() % alphabet.size()];
    }
    return identity;
}

void distinct_identities_give_distinct_valid_names(void **) {
    const NamingPolicy policy = default_policy();
    std::mt19937_64 random(20261126);
    std::unordered_set<std::string> identities;
    std::unordered_set<std::string> names;
    std::size_t safe = 0;
    while (identities.size() < 200'000) {
        std::string identity = random_identity(random);
        if (!identities.insert(identity).second) {
            continue;
        }
        auto name = policy.pod_name(identity);
        assert_true(name.has_value());
        assert_true(pod_router::is_valid_pod_name(name.value()));
        // the allocation-free form the gateway uses gives the same name
        char written[pod_router::kPodNameMaxLength + 1];
        auto length = policy.pod_name_into(identity, written);
        assert_true(length.has_value());
        assert_string_view_equal(std::string_view(written, length.value()), name.value());
        assert_int_equal(written[length.value()], '\0');
        const bool hashed = contains(name.value(), "---");
        assert_true(hashed || !contains(name.value(), "--"));
        safe += hashed ? 0 : 1;
        names.insert(std::move(name).value());
    }
    assert_int_equal(names.size(), 200'000);
    // Both forms were exercised in quantity.
    assert_true(safe > 10'000);
    assert_true(200'000 - safe > 10'000);
}

void names_are_deterministic(void **) {
    const NamingPolicy first = default_policy();
    const NamingPolicy second = default_policy();
    for (const char *identity : {"alice", "Alice", "bob@example.com", "\xe6\x97\xa5"}) {
        assert_string_equal(first.pod_name(identity).value().c_str(),
                            second.pod_name(identity).value().c_str());
    }
}

void pool_pod_names_are_never_derived_from_an_identity(void **) {
    const NamingPolicy policy = default_policy();
    const std::string pool = policy.pool_pod_name("0a1b2c3d4e5f");
    assert_string_equal(pool.c_str(), "user--pool-0a1b2c3d4e5f");
    assert_true(pod_router::is_valid_pod_name(pool));
    assert_true(policy.is_pool_pod_name(pool));
    // Suffixes other than 1-16 lowercase hex digits give no name.
    for (const char *bad : {"", "0A1B", "xyz", "0123456789abcdef0", "ab-cd"}) {
        assert_true(policy.pool_pod_name(bad).empty());
    }
    // Whatever an identity is, its name is not a pool pod's.
    for (const char *identity : {"-pool-0a1b2c3d4e5f", "pool-0a1b2c3d4e5f", "--pool-0a1b",
                                 "Pool 0a1b2c3d4e5f", "user--pool-0a1b2c3d4e5f"}) {
        auto name = policy.pod_name(identity);
        if (name) {
            assert_false(policy.is_pool_pod_name(name.value()));
        }
    }
    assert_false(policy.is_pool_pod_name("user-alice"));
    assert_false(policy.is_pool_pod_name("other--pool-0a1b"));
    assert_false(policy.is_pool_pod_name("user--pool-"));
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(safe_identities_keep_their_name),
        cmocka_unit_test(leading_digits_are_safe_after_the_prefix),
        cmocka_unit_test(uppercase_is_hashed_not_folded),
        cmocka_unit_test(non_ascii_is_hashed),
        cmocka_unit_test(double_hyphen_is_hashed),
        cmocka_unit_test(leading_and_trailing_hyphens_are_hashed),
        cmocka_unit_test(punctuation_is_cleaned_and_hashed),
        cmocka_unit_test(lengths_around_the_63_character_limit),
        cmocka_unit_test(too_long_identities_are_rejected_not_truncated),
        cmocka_unit_test(empty_is_rejected),
        cmocka_unit_test(control_characters_are_rejected),
        cmocka_unit_test(invalid_utf8_is_rejected),
        cmocka_unit_test(prefixes_are_validated),
        cmocka_unit_test(identity_limits_are_validated),
        cmocka_unit_test(pod_name_validity),
        cmocka_unit_test(distinct_identities_give_distinct_valid_names),
        cmocka_unit_test(names_are_deterministic),
        cmocka_unit_test(pool_pod_names_are_never_derived_from_an_identity),
    };
    return cmocka_run_group_tests_name("pod_name", tests, nullptr, nullptr);
}
