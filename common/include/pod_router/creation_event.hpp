// The message the gateway publishes to RabbitMQ when a user has no pod, and
// the controller consumes. Versioned JSON; docs/creation-event.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "pod_router/expected.hpp"
#include "pod_router/pod_name.hpp"

namespace pod_router {

inline constexpr int kCreationEventVersion = 1;
inline constexpr std::string_view kCreationEventContentType = "application/json";
// Far above the largest valid event (4 KiB identity, escaped), far below what
// would let a hostile message make the decoder allocate much.
inline constexpr std::size_t kMaxCreationEventBytes = 65536;
inline constexpr std::size_t kMaxRequestIdLength = 64;

struct CreationEvent {
    int version = kCreationEventVersion;
    std::string identity;          // exact bytes, valid under the name rule
    std::string pod;               // the name the gateway derived
    std::string request_id;        // nginx's $request_id or similar, for tracing
    std::int64_t timestamp_ms = 0; // when the gateway published, ms since the epoch
};

// 1..64 of [A-Za-z0-9._:-]: goes into logs and labels unescaped.
bool is_valid_request_id(std::string_view request_id) noexcept;

// Validates the fields (identity under the policy, pod equal to the policy's
// name for it, request id, timestamp) and renders compact JSON.
Expected<std::string> encode_creation_event(const CreationEvent &event, const NamingPolicy &policy);

// Parses and validates. Errors: kMalformedEvent (not JSON, wrong types,
// missing or invalid fields, a pod name this policy would not derive),
// kUnsupportedVersion, kInvalidIdentity. Unknown extra fields are ignored, so
// a newer gateway can add optional fields without a version bump.
Expected<CreationEvent> decode_creation_event(std::string_view json, const NamingPolicy &policy);

} // namespace pod_router
