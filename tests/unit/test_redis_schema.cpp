// Key names, script table, outcome words and notifications (docs/redis-schema.md).
#include <set>

#include "../support/cmocka_cpp.hpp"
#include "pod_router/redis_schema.hpp"

using pod_router::RedisKeys;
using pod_router::ScriptOutcome;

namespace {

void keys_use_the_prefix_and_the_pod_name(void **) {
    auto keys = RedisKeys::create();
    assert_true(keys.has_value());
    assert_string_view_equal(keys.value().session("user-alice"), "pod-router:session:user-alice");
    assert_string_view_equal(keys.value().creation_lock("user-alice"),
                             "pod-router:creating:user-alice");
    assert_string_view_equal(keys.value().activity(), "pod-router:activity");
    assert_string_view_equal(keys.value().notify_channel(), "pod-router:notify");

    auto staging = RedisKeys::create("staging:pr:");
    assert_true(staging.has_value());
    assert_string_view_equal(staging.value().activity(), "staging:pr:activity");
}

void key_prefixes_are_validated(void **) {
    for (const std::string &bad : {std::string(), std::string("has space"), std::string("tab\t"),
                                   std::string("caf\xc3\xa9"), std::string(65, 'k')}) {
        auto keys = RedisKeys::create(bad);
        assert_false(keys.has_value());
        assert_int_equal(static_cast<int>(keys.error().code),
                         static_cast<int>(pod_router::ErrorCode::kInvalidConfig));
    }
    assert_true(RedisKeys::create(std::string(64, 'k')).has_value());
}

void every_script_is_listed_once_with_a_digest(void **) {
    const auto &scripts = pod_router::all_scripts();
    std::set<std::string_view> names;
    std::set<std::string_view> digests;
    for (std::size_t i = 0; i < scripts.size(); ++i) {
        const auto &spec = scripts[i];
        assert_int_equal(static_cast<std::size_t>(spec.id), i);
        assert_true(&pod_router::script_spec(spec.id) == &spec);
        assert_true(contains(spec.source, "local function now_ms()"));
        assert_int_equal(spec.source.data()[spec.source.size()], '\0');
        assert_int_equal(spec.sha1.size(), 40);
        assert_true(spec.sha1.find_first_not_of("0123456789abcdef") == std::string_view::npos);
        names.insert(spec.name);
        digests.insert(spec.sha1);
    }
    assert_int_equal(names.size(), pod_router::kScriptCount);
    assert_int_equal(digests.size(), pod_router::kScriptCount);
    assert_string_view_equal(pod_router::script_spec(pod_router::Script::kRoute).name, "route");
}

void outcome_words_round_trip(void **) {
    for (int i = 0; i <= static_cast<int>(ScriptOutcome::kNotOwner); ++i) {
        const auto outcome = static_cast<ScriptOutcome>(i);
        const std::string_view word = pod_router::script_outcome_word(outcome);
        assert_false(word.empty());
        auto parsed = pod_router::parse_script_outcome(word);
        assert_true(parsed.has_value());
        assert_int_equal(static_cast<int>(*parsed), i);
    }
    assert_false(pod_router::parse_script_outcome("READY").has_value());
    assert_false(pod_router::parse_script_outcome("").has_value());
    assert_false(pod_router::parse_script_outcome("ready ").has_value());
}

void notifications_parse_strictly(void **) {
    auto ready = pod_router::parse_notification("ready user-alice");
    assert_true(ready.has_value());
    assert_int_equal(static_cast<int>(ready->kind),
                     static_cast<int>(pod_router::Notification::Kind::kReady));
    assert_string_view_equal(ready->pod, "user-alice");
    assert_int_equal(static_cast<int>(pod_router::parse_notification("failed user-b")->kind),
                     static_cast<int>(pod_router::Notification::Kind::kFailed));
    assert_int_equal(static_cast<int>(pod_router::parse_notification("gone user-b")->kind),
                     static_cast<int>(pod_router::Notification::Kind::kGone));

    for (const char *bad : {"", "ready", "ready ", "ready User-A", "ready user-a\n", "bogus user-a",
                            "ready  user-a", "readyuser-a"}) {
        assert_false(pod_router::parse_notification(bad).has_value());
    }
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_use_the_prefix_and_the_pod_name),
        cmocka_unit_test(key_prefixes_are_validated),
        cmocka_unit_test(every_script_is_listed_once_with_a_digest),
        cmocka_unit_test(outcome_words_round_trip),
        cmocka_unit_test(notifications_parse_strictly),
    };
    return cmocka_run_group_tests_name("redis_schema", tests, nullptr, nullptr);
}
