#include "pod_router/creation_event.hpp"

#include <memory>

#include <jansson.h>

namespace pod_router {
namespace {

struct JsonDecref {
    void operator()(json_t *json) const noexcept { json_decref(json); }
};
using JsonPtr = std::unique_ptr<json_t, JsonDecref>;

// Year 3000: rejects seconds-instead-of-milliseconds mistakes in one
// direction and garbage in the other.
constexpr std::int64_t kMaxTimestampMs = 32'503'680'000'000;

Error malformed(std::string message) {
    return Error{ErrorCode::kMalformedEvent, std::move(message)};
}

// jansson quotes the offending input in its messages; keep logs one line of
// printable ASCII whatever the message contained.
std::string printable(const char *text) {
    std::string out;
    for (const char *p = text; *p != '\0' && out.size() < 160; ++p) {
        out.push_back(*p >= ' ' && *p <= '~' ? *p : '?');
    }
    return out;
}

Status validate_fields(const CreationEvent &event, const NamingPolicy &policy) {
    if (event.version != kCreationEventVersion) {
        return Error{ErrorCode::kUnsupportedVersion,
                     "creation event version " + std::to_string(event.version) +
                         " is not supported (this build speaks version " +
                         std::to_string(kCreationEventVersion) + ")"};
    }
    Expected<std::string> expected_pod = policy.pod_name(event.identity);
    if (!expected_pod) {
        return expected_pod.error();
    }
    if (event.pod != expected_pod.value()) {
        return malformed("field \"pod\" is not the name this policy derives for the identity "
                         "(do the gateway and the controller use the same pod name prefix?)");
    }
    if (!is_valid_request_id(event.request_id)) {
        return malformed("field \"request_id\" must be 1 to " +
                         std::to_string(kMaxRequestIdLength) + " characters of [A-Za-z0-9._:-]");
    }
    if (event.timestamp_ms < 0 || event.timestamp_ms > kMaxTimestampMs) {
        return malformed("field \"timestamp_ms\" is out of range");
    }
    return Ok{};
}

Expected<std::string_view> string_field(const json_t *object, const char *name) {
    const json_t *value = json_object_get(object, name);
    if (value == nullptr) {
        return malformed(std::string("field \"") + name + "\" is missing");
    }
    if (!json_is_string(value)) {
        return malformed(std::string("field \"") + name + "\" must be a string");
    }
    return std::string_view(json_string_value(value), json_string_length(value));
}

Expected<std::int64_t> integer_field(const json_t *object, const char *name) {
    const json_t *value = json_object_get(object, name);
    if (value == nullptr) {
        return malformed(std::string("field \"") + name + "\" is missing");
    }
    if (!json_is_integer(value)) {
        return malformed(std::string("field \"") + name + "\" must be an integer");
    }
    return static_cast<std::int64_t>(json_integer_value(value));
}

} // namespace

bool is_valid_request_id(std::string_view request_id) noexcept {
    if (request_id.empty() || request_id.size() > kMaxRequestIdLength) {
        return false;
    }
    for (const char c : request_id) {
        const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                             (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
        if (!allowed) {
            return false;
        }
    }
    return true;
}

Expected<std::string> encode_creation_event(const CreationEvent &event,
                                            const NamingPolicy &policy) {
    if (Status valid = validate_fields(event, policy); !valid) {
        return valid.error();
    }
    JsonPtr object(json_object());
    if (!object) {
        return Error{ErrorCode::kInternal, "out of memory building a creation event"};
    }
    // json_stringn checks UTF-8 itself; validate_fields already did, so a
    // null here means allocation failed.
    const bool built =
        json_object_set_new(object.get(), "version", json_integer(event.version)) == 0 &&
        json_object_set_new(object.get(), "identity",
                            json_stringn(event.identity.data(), event.identity.size())) == 0 &&
        json_object_set_new(object.get(), "pod",
                            json_stringn(event.pod.data(), event.pod.size())) == 0 &&
        json_object_set_new(object.get(), "request_id",
                            json_stringn(event.request_id.data(), event.request_id.size())) == 0 &&
        json_object_set_new(object.get(), "timestamp_ms", json_integer(event.timestamp_ms)) == 0;
    if (!built) {
        return Error{ErrorCode::kInternal, "out of memory building a creation event"};
    }
    // json_dumpb with no buffer returns the size needed; then fill a string
    // directly, with no malloc'ed copy to free.
    constexpr std::size_t kFlags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    const std::size_t size = json_dumpb(object.get(), nullptr, 0, kFlags);
    std::string text(size, '\0');
    if (size == 0 || json_dumpb(object.get(), text.data(), text.size(), kFlags) != size) {
        return Error{ErrorCode::kInternal, "cannot serialise a creation event"};
    }
    return text;
}

Expected<CreationEvent> decode_creation_event(std::string_view json, const NamingPolicy &policy) {
    if (json.size() > kMaxCreationEventBytes) {
        return malformed("creation event is " + std::to_string(json.size()) +
                         " bytes, larger than the limit of " +
                         std::to_string(kMaxCreationEventBytes));
    }
    json_error_t parse_error;
    // Without JSON_ALLOW_NUL jansson refuses "\u0000" inside strings, so every
    // string below is also a valid C string.
    JsonPtr root(json_loadb(json.data(), json.size(), JSON_REJECT_DUPLICATES, &parse_error));
    if (!root) {
        return malformed("creation event is not valid JSON: " + printable(parse_error.text) +
                         " at line " + std::to_string(parse_error.line) + ", column " +
                         std::to_string(parse_error.column));
    }
    if (!json_is_object(root.get())) {
        return malformed("creation event must be a JSON object");
    }

    // The version first: a newer format may change every other field.
    Expected<std::int64_t> version = integer_field(root.get(), "version");
    if (!version) {
        return version.error();
    }
    if (version.value() != kCreationEventVersion) {
        return Error{ErrorCode::kUnsupportedVersion,
                     "creation event version " + std::to_string(version.value()) +
                         " is not supported (this build speaks version " +
                         std::to_string(kCreationEventVersion) + ")"};
    }

    Expected<std::string_view> identity = string_field(root.get(), "identity");
    if (!identity) {
        return identity.error();
    }
    Expected<std::string_view> pod = string_field(root.get(), "pod");
    if (!pod) {
        return pod.error();
    }
    Expected<std::string_view> request_id = string_field(root.get(), "request_id");
    if (!request_id) {
        return request_id.error();
    }
    Expected<std::int64_t> timestamp_ms = integer_field(root.get(), "timestamp_ms");
    if (!timestamp_ms) {
        return timestamp_ms.error();
    }

    CreationEvent event;
    event.version = static_cast<int>(version.value());
    event.identity = std::string(identity.value());
    event.pod = std::string(pod.value());
    event.request_id = std::string(request_id.value());
    event.timestamp_ms = timestamp_ms.value();
    if (Status valid = validate_fields(event, policy); !valid) {
        return valid.error();
    }
    return event;
}

} // namespace pod_router
