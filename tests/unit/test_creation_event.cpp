// The creation event: encoding, decoding and every way decoding must fail.
#include "../support/cmocka_cpp.hpp"
#include "pod_router/creation_event.hpp"

using pod_router::CreationEvent;
using pod_router::ErrorCode;
using pod_router::NamingPolicy;

namespace {

NamingPolicy policy() {
    return NamingPolicy::create().value();
}

CreationEvent alice() {
    CreationEvent event;
    event.identity = "Alice";
    event.pod = "user-alice---3bc51062973c458d";
    event.request_id = "4f1c2a9be0d84c7e9a1b2c3d4e5f6a7b";
    event.timestamp_ms = 1795000000123;
    return event;
}

pod_router::Error rejection(std::string_view json, ErrorCode expected_code) {
    auto event = pod_router::decode_creation_event(json, policy());
    assert_false(event.has_value());
    if (event.error().code != expected_code) {
        fail_msg("wrong error code %d: %s", static_cast<int>(event.error().code),
                 event.error().message.c_str());
    }
    for (const char c : event.error().message) {
        assert_true(c >= ' ' && c <= '~');
    }
    return event.error();
}

void encodes_compact_json_in_field_order(void **) {
    auto json = pod_router::encode_creation_event(alice(), policy());
    assert_true(json.has_value());
    assert_string_view_equal(
        json.value(),
        R"({"version":1,"identity":"Alice","pod":"user-alice---3bc51062973c458d",)"
        R"("request_id":"4f1c2a9be0d84c7e9a1b2c3d4e5f6a7b","timestamp_ms":1795000000123})");
}

void round_trips(void **) {
    CreationEvent original = alice();
    original.identity = "Jos\xc3\xa9 \"quoted\" \\ back";
    original.pod = policy().pod_name(original.identity).value();
    auto json = pod_router::encode_creation_event(original, policy());
    assert_true(json.has_value());
    auto decoded = pod_router::decode_creation_event(json.value(), policy());
    assert_true(decoded.has_value());
    assert_int_equal(decoded.value().version, 1);
    assert_string_view_equal(decoded.value().identity, original.identity);
    assert_string_view_equal(decoded.value().pod, original.pod);
    assert_string_view_equal(decoded.value().request_id, original.request_id);
    assert_int_equal(decoded.value().timestamp_ms, original.timestamp_ms);
}

void encode_refuses_invalid_fields(void **) {
    CreationEvent event = alice();
    event.pod = "user-alice";
    assert_int_equal(
        static_cast<int>(pod_router::encode_creation_event(event, policy()).error().code),
        static_cast<int>(ErrorCode::kMalformedEvent));
    event = alice();
    event.identity = "bad\nidentity";
    assert_int_equal(
        static_cast<int>(pod_router::encode_creation_event(event, policy()).error().code),
        static_cast<int>(ErrorCode::kInvalidIdentity));
    event = alice();
    event.request_id = "has space";
    assert_false(pod_router::encode_creation_event(event, policy()).has_value());
    event.request_id = "";
    assert_false(pod_router::encode_creation_event(event, policy()).has_value());
    event.request_id = std::string(65, 'r');
    assert_false(pod_router::encode_creation_event(event, policy()).has_value());
}

void rejects_what_is_not_json(void **) {
    const auto error = rejection("{", ErrorCode::kMalformedEvent);
    assert_true(contains(error.message, "not valid JSON"));
    rejection("", ErrorCode::kMalformedEvent);
    rejection("{\"version\":1} trailing", ErrorCode::kMalformedEvent);
    rejection("\x01\x02\xff", ErrorCode::kMalformedEvent);
    rejection(std::string("{\"version\":1,\0}", 15), ErrorCode::kMalformedEvent);
}

void rejects_json_of_the_wrong_shape(void **) {
    assert_string_view_equal(rejection("[]", ErrorCode::kMalformedEvent).message,
                             "creation event must be a JSON object");
    rejection("null", ErrorCode::kMalformedEvent);
    rejection("\"text\"", ErrorCode::kMalformedEvent);
    assert_string_view_equal(rejection("{}", ErrorCode::kMalformedEvent).message,
                             "field \"version\" is missing");
    assert_string_view_equal(rejection(R"({"version":"1"})", ErrorCode::kMalformedEvent).message,
                             "field \"version\" must be an integer");
    rejection(R"({"version":1.0})", ErrorCode::kMalformedEvent);
    rejection(R"({"version":1,"version":1})", ErrorCode::kMalformedEvent);
}

void rejects_unknown_versions_before_anything_else(void **) {
    const auto error =
        rejection(R"({"version":2,"something":"new"})", ErrorCode::kUnsupportedVersion);
    assert_string_view_equal(
        error.message, "creation event version 2 is not supported (this build speaks version 1)");
    rejection(R"({"version":0})", ErrorCode::kUnsupportedVersion);
    rejection(R"({"version":-1})", ErrorCode::kUnsupportedVersion);
    rejection(R"({"version":99999999999999999999})", ErrorCode::kMalformedEvent);
}

void rejects_missing_and_mistyped_fields(void **) {
    assert_string_view_equal(
        rejection(R"({"version":1,"pod":"user-a","request_id":"r","timestamp_ms":1})",
                  ErrorCode::kMalformedEvent)
            .message,
        "field \"identity\" is missing");
    assert_string_view_equal(
        rejection(R"({"version":1,"identity":7,"pod":"user-a","request_id":"r","timestamp_ms":1})",
                  ErrorCode::kMalformedEvent)
            .message,
        "field \"identity\" must be a string");
    rejection(R"({"version":1,"identity":"a","request_id":"r","timestamp_ms":1})",
              ErrorCode::kMalformedEvent);
    rejection(R"({"version":1,"identity":"a","pod":"user-a","timestamp_ms":1})",
              ErrorCode::kMalformedEvent);
    rejection(R"({"version":1,"identity":"a","pod":"user-a","request_id":"r"})",
              ErrorCode::kMalformedEvent);
    rejection(R"({"version":1,"identity":"a","pod":"user-a","request_id":"r","timestamp_ms":"1"})",
              ErrorCode::kMalformedEvent);
}

void rejects_invalid_values(void **) {
    assert_string_view_equal(
        rejection(
            R"({"version":1,"identity":"a\nb","pod":"user-a","request_id":"r","timestamp_ms":1})",
            ErrorCode::kInvalidIdentity)
            .message,
        "identity contains control character U+000A at byte offset 1");
    // jansson refuses NUL inside strings without JSON_ALLOW_NUL.
    rejection(
        R"({"version":1,"identity":"a\u0000b","pod":"user-a","request_id":"r","timestamp_ms":1})",
        ErrorCode::kMalformedEvent);
    rejection(R"({"version":1,"identity":"","pod":"user-a","request_id":"r","timestamp_ms":1})",
              ErrorCode::kInvalidIdentity);
    rejection(R"({"version":1,"identity":"a","pod":"user-a","request_id":"r r","timestamp_ms":1})",
              ErrorCode::kMalformedEvent);
    assert_string_view_equal(
        rejection(
            R"({"version":1,"identity":"a","pod":"user-a","request_id":"r","timestamp_ms":-5})",
            ErrorCode::kMalformedEvent)
            .message,
        "field \"timestamp_ms\" is out of range");
}

void rejects_a_pod_name_this_policy_would_not_derive(void **) {
    const auto error = rejection(
        R"({"version":1,"identity":"alice","pod":"sess-alice","request_id":"r","timestamp_ms":1})",
        ErrorCode::kMalformedEvent);
    assert_true(contains(error.message, "same pod name prefix"));
}

void ignores_unknown_fields(void **) {
    auto event = pod_router::decode_creation_event(
        R"({"trace":{"id":[1,2]},"version":1,"identity":"alice","pod":"user-alice","request_id":"r-1","timestamp_ms":5})",
        policy());
    assert_true(event.has_value());
    assert_string_view_equal(event.value().pod, "user-alice");
}

void rejects_oversized_events(void **) {
    std::string huge = R"({"version":1,"padding":")" + std::string(70'000, 'x') + "\"}";
    const auto error = rejection(huge, ErrorCode::kMalformedEvent);
    assert_true(contains(error.message, "larger than the limit of 65536"));
}

void rejects_deep_nesting_without_crashing(void **) {
    std::string deep(20'000, '[');
    deep += std::string(20'000, ']');
    rejection(deep, ErrorCode::kMalformedEvent);
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encodes_compact_json_in_field_order),
        cmocka_unit_test(round_trips),
        cmocka_unit_test(encode_refuses_invalid_fields),
        cmocka_unit_test(rejects_what_is_not_json),
        cmocka_unit_test(rejects_json_of_the_wrong_shape),
        cmocka_unit_test(rejects_unknown_versions_before_anything_else),
        cmocka_unit_test(rejects_missing_and_mistyped_fields),
        cmocka_unit_test(rejects_invalid_values),
        cmocka_unit_test(rejects_a_pod_name_this_policy_would_not_derive),
        cmocka_unit_test(ignores_unknown_fields),
        cmocka_unit_test(rejects_oversized_events),
        cmocka_unit_test(rejects_deep_nesting_without_crashing),
    };
    return cmocka_run_group_tests_name("creation_event", tests, nullptr, nullptr);
}
