// The C API over the core. Every entry point is noexcept and catches
// everything: no C++ exception may unwind into nginx's C frames.
#include "pod_router/pod_router_core.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "pod_router/creation_event.hpp"
#include "pod_router/identity_token.hpp"
#include "pod_router/pod_name.hpp"
#include "pod_router/redis_schema.hpp"

static_assert(pod_router::kDefaultPodNamePrefix == PR_DEFAULT_POD_NAME_PREFIX);
static_assert(pod_router::kDefaultMaxIdentityBytes == PR_DEFAULT_MAX_IDENTITY_BYTES);
static_assert(pod_router::kMaxIdentityBytesLimit == PR_MAX_IDENTITY_BYTES_LIMIT);
static_assert(pod_router::kPodNameMaxLength + 1 == PR_POD_NAME_SIZE);

static_assert(pod_router::kTokenMaxSecrets == PR_TOKEN_MAX_SECRETS);
static_assert(pod_router::kTokenMinSecretBytes == PR_TOKEN_MIN_SECRET_BYTES);
static_assert(pod_router::kTokenMaxBytes == PR_TOKEN_MAX_BYTES);

struct pr_naming_s {
    pod_router::NamingPolicy policy;
};

struct pr_token_keys_s {
    pod_router::TokenKeys keys;
};

namespace {

using pod_router::ErrorCode;

pr_status_t status_for(ErrorCode code) noexcept {
    switch (code) {
    case ErrorCode::kInvalidIdentity:
        return PR_INVALID_IDENTITY;
    case ErrorCode::kInvalidConfig:
        return PR_INVALID_CONFIG;
    case ErrorCode::kMalformedEvent:
        return PR_MALFORMED_EVENT;
    case ErrorCode::kUnsupportedVersion:
        return PR_UNSUPPORTED_VERSION;
    case ErrorCode::kUnavailable:
        return PR_UNAVAILABLE;
    case ErrorCode::kInternal:
        break;
    }
    return PR_INTERNAL_ERROR;
}

void write_message(const char *message, std::size_t length, char *err,
                   std::size_t err_size) noexcept {
    if (err == nullptr || err_size == 0) {
        return;
    }
    const std::size_t n = length < err_size - 1 ? length : err_size - 1;
    std::memcpy(err, message, n);
    err[n] = '\0';
}

pr_status_t report(const pod_router::Error &error, char *err, std::size_t err_size) noexcept {
    write_message(error.message.data(), error.message.size(), err, err_size);
    return status_for(error.code);
}

pr_status_t report_internal(const char *what, char *err, std::size_t err_size) noexcept {
    write_message(what, std::strlen(what), err, err_size);
    return PR_INTERNAL_ERROR;
}

// Copies with a terminating NUL; *out_len excludes it.
pr_status_t copy_out(std::string_view value, char *out, std::size_t out_size,
                     std::size_t *out_len) noexcept {
    if (out == nullptr || value.size() + 1 > out_size) {
        return PR_BUFFER_TOO_SMALL;
    }
    std::memcpy(out, value.data(), value.size());
    out[value.size()] = '\0';
    if (out_len != nullptr) {
        *out_len = value.size();
    }
    return PR_OK;
}

std::string_view view(const char *data, std::size_t length) noexcept {
    return data == nullptr ? std::string_view() : std::string_view(data, length);
}

bool script_in_range(pr_script_t script) noexcept {
    return script >= PR_SCRIPT_ROUTE && script <= PR_SCRIPT_POOL_FORGET;
}

} // namespace

extern "C" {

int pr_core_api_version(void) {
    return PR_CORE_API_VERSION;
}

const char *pr_status_name(pr_status_t status) {
    switch (status) {
    case PR_OK:
        return "ok";
    case PR_INVALID_IDENTITY:
        return "invalid identity";
    case PR_INVALID_CONFIG:
        return "invalid configuration";
    case PR_MALFORMED_EVENT:
        return "malformed event";
    case PR_UNSUPPORTED_VERSION:
        return "unsupported version";
    case PR_BUFFER_TOO_SMALL:
        return "buffer too small";
    case PR_INTERNAL_ERROR:
        return "internal error";
    case PR_UNAVAILABLE:
        return "unavailable";
    case PR_BAD_REPLY:
        return "bad reply";
    }
    return "unknown status";
}

pr_status_t pr_naming_create(const char *prefix, size_t prefix_len, size_t max_identity_bytes,
                             pr_naming_t **naming, char *err, size_t err_size) {
    if (naming == nullptr) {
        return report_internal("pr_naming_create: no output pointer", err, err_size);
    }
    *naming = nullptr;
    try {
        auto policy =
            pod_router::NamingPolicy::create(view(prefix, prefix_len), max_identity_bytes);
        if (!policy) {
            return report(policy.error(), err, err_size);
        }
        auto owned = std::make_unique<pr_naming_s>(pr_naming_s{std::move(policy).value()});
        *naming = owned.release(); // the caller owns it until pr_naming_destroy()
        return PR_OK;
    } catch (const std::bad_alloc &) {
        return report_internal("out of memory", err, err_size);
    } catch (...) {
        return report_internal("unexpected error creating the naming policy", err, err_size);
    }
}

void pr_naming_destroy(pr_naming_t *naming) {
    // Takes back the ownership pr_naming_create() handed out.
    std::unique_ptr<pr_naming_s> owned(naming);
}

pr_status_t pr_pod_name(const pr_naming_t *naming, const char *identity, size_t identity_len,
                        char *out, size_t out_size, size_t *out_len, char *err, size_t err_size) {
    if (naming == nullptr) {
        return report_internal("pr_pod_name: no naming policy", err, err_size);
    }
    if (out == nullptr || out_size < PR_POD_NAME_SIZE) {
        return PR_BUFFER_TOO_SMALL;
    }
    try {
        auto length = naming->policy.pod_name_into(view(identity, identity_len), out);
        if (!length) {
            return report(length.error(), err, err_size);
        }
        if (out_len != nullptr) {
            *out_len = length.value();
        }
        return PR_OK;
    } catch (const std::bad_alloc &) {
        return report_internal("out of memory", err, err_size);
    } catch (...) {
        return report_internal("unexpected error deriving a pod name", err, err_size);
    }
}

pr_status_t pr_redis_key_prefix_check(const char *key_prefix, size_t key_prefix_len, char *err,
                                      size_t err_size) {
    try {
        auto keys = pod_router::RedisKeys::create(view(key_prefix, key_prefix_len));
        return keys ? PR_OK : report(keys.error(), err, err_size);
    } catch (...) {
        return report_internal("out of memory", err, err_size);
    }
}

pr_status_t pr_redis_key(pr_redis_key_t kind, const char *key_prefix, size_t key_prefix_len,
                         const char *pod, size_t pod_len, char *out, size_t out_size,
                         size_t *out_len) {
    // Built in the caller's buffer, without allocating: once per request.
    const std::string_view prefix = view(key_prefix, key_prefix_len);
    const std::string_view pod_name = view(pod, pod_len);
    if (!pod_router::is_valid_redis_key_prefix(prefix)) {
        return PR_INVALID_CONFIG;
    }
    std::string_view segment;
    bool needs_pod = false;
    switch (kind) {
    case PR_KEY_SESSION:
        segment = pod_router::kSessionKeySegment;
        needs_pod = true;
        break;
    case PR_KEY_CREATION_LOCK:
        segment = pod_router::kCreationLockKeySegment;
        needs_pod = true;
        break;
    case PR_KEY_ACTIVITY:
        segment = pod_router::kActivityKeySegment;
        break;
    case PR_KEY_NOTIFY_CHANNEL:
        segment = pod_router::kNotifyChannelSegment;
        break;
    case PR_KEY_POOL_FREE:
        segment = pod_router::kPoolFreeKeySegment;
        break;
    case PR_KEY_POOL_ADDRESS:
        segment = pod_router::kPoolAddressKeySegment;
        break;
    case PR_KEY_POOL_CLAIMS:
        segment = pod_router::kPoolClaimsKeySegment;
        break;
    case PR_KEY_POOL_CLAIMED:
        segment = pod_router::kPoolClaimedKeySegment;
        break;
    case PR_KEY_POOL_TARGET:
        segment = pod_router::kPoolTargetKeySegment;
        break;
    default:
        return PR_INVALID_CONFIG;
    }
    if (needs_pod && !pod_router::is_valid_pod_name(pod_name)) {
        return PR_INVALID_IDENTITY;
    }
    const std::size_t length = prefix.size() + segment.size() + (needs_pod ? pod_name.size() : 0);
    if (out == nullptr || length + 1 > out_size) {
        return PR_BUFFER_TOO_SMALL;
    }
    char *end = std::copy(prefix.begin(), prefix.end(), out);
    end = std::copy(segment.begin(), segment.end(), end);
    if (needs_pod) {
        end = std::copy(pod_name.begin(), pod_name.end(), end);
    }
    *end = '\0';
    if (out_len != nullptr) {
        *out_len = length;
    }
    return PR_OK;
}

const char *pr_redis_script_source(pr_script_t script, size_t *len) {
    if (!script_in_range(script)) {
        return nullptr;
    }
    try {
        const auto &spec = pod_router::script_spec(static_cast<pod_router::Script>(script));
        if (len != nullptr) {
            *len = spec.source.size();
        }
        return spec.source.data();
    } catch (...) {
        return nullptr;
    }
}

const char *pr_redis_script_sha1(pr_script_t script) {
    if (!script_in_range(script)) {
        return nullptr;
    }
    try {
        const auto &spec = pod_router::script_spec(static_cast<pod_router::Script>(script));
        return spec.sha1.empty() ? nullptr : spec.sha1.data();
    } catch (...) {
        return nullptr;
    }
}

pr_outcome_t pr_script_outcome(const char *word, size_t word_len) {
    auto outcome = pod_router::parse_script_outcome(view(word, word_len));
    if (!outcome) {
        return PR_OUTCOME_UNKNOWN;
    }
    // pr_outcome_t lists the same outcomes in the same order, after UNKNOWN.
    return static_cast<pr_outcome_t>(static_cast<int>(*outcome) + 1);
}

pr_notify_kind_t pr_parse_notification(const char *message, size_t len, const char **pod,
                                       size_t *pod_len) {
    auto notification = pod_router::parse_notification(view(message, len));
    if (!notification) {
        return PR_NOTIFY_INVALID;
    }
    if (pod != nullptr) {
        *pod = notification->pod.data();
    }
    if (pod_len != nullptr) {
        *pod_len = notification->pod.size();
    }
    switch (notification->kind) {
    case pod_router::Notification::Kind::kReady:
        return PR_NOTIFY_READY;
    case pod_router::Notification::Kind::kFailed:
        return PR_NOTIFY_FAILED;
    case pod_router::Notification::Kind::kGone:
        return PR_NOTIFY_GONE;
    }
    return PR_NOTIFY_INVALID;
}

pr_status_t pr_creation_event_encode(const pr_naming_t *naming, const char *identity,
                                     size_t identity_len, const char *request_id,
                                     size_t request_id_len, int64_t timestamp_ms, char *out,
                                     size_t out_size, size_t *out_len, char *err, size_t err_size) {
    if (naming == nullptr) {
        return report_internal("pr_creation_event_encode: no naming policy", err, err_size);
    }
    try {
        auto pod = naming->policy.pod_name(view(identity, identity_len));
        if (!pod) {
            return report(pod.error(), err, err_size);
        }
        pod_router::CreationEvent event;
        event.identity = std::string(view(identity, identity_len));
        event.pod = std::move(pod).value();
        event.request_id = std::string(view(request_id, request_id_len));
        event.timestamp_ms = timestamp_ms;
        auto json = pod_router::encode_creation_event(event, naming->policy);
        if (!json) {
            return report(json.error(), err, err_size);
        }
        return copy_out(json.value(), out, out_size, out_len);
    } catch (const std::bad_alloc &) {
        return report_internal("out of memory", err, err_size);
    } catch (...) {
        return report_internal("unexpected error encoding a creation event", err, err_size);
    }
}

pr_status_t pr_token_keys_create(const char *const *secrets, const size_t *secret_lens,
                                 size_t count, pr_token_keys_t **keys, char *err, size_t err_size) {
    if (keys == nullptr || (count > 0 && (secrets == nullptr || secret_lens == nullptr))) {
        return report_internal("pr_token_keys_create: missing argument", err, err_size);
    }
    *keys = nullptr;
    try {
        std::vector<std::string> owned_secrets;
        for (std::size_t i = 0; i < count; ++i) {
            owned_secrets.emplace_back(view(secrets[i], secret_lens[i]));
        }
        auto created = pod_router::TokenKeys::create(std::move(owned_secrets));
        if (!created) {
            return report(created.error(), err, err_size);
        }
        auto owned = std::make_unique<pr_token_keys_s>(pr_token_keys_s{std::move(created).value()});
        *keys = owned.release(); // the caller owns it until pr_token_keys_destroy()
        return PR_OK;
    } catch (const std::bad_alloc &) {
        return report_internal("out of memory", err, err_size);
    } catch (...) {
        return report_internal("unexpected error loading the identity secrets", err, err_size);
    }
}

void pr_token_keys_destroy(pr_token_keys_t *keys) {
    std::unique_ptr<pr_token_keys_s> owned(keys);
}

pr_token_check_t pr_token_verify(const pr_token_keys_t *keys, const char *token, size_t token_len,
                                 int64_t now, int64_t skew, char *identity, size_t identity_size,
                                 size_t *identity_len) {
    if (keys == nullptr || identity == nullptr || identity_len == nullptr) {
        return PR_TOKEN_MALFORMED;
    }
    try {
        std::string verified;
        switch (keys->keys.verify(view(token, token_len), now, skew, verified)) {
        case pod_router::TokenCheck::kValid:
            if (verified.size() > identity_size) {
                return PR_TOKEN_MALFORMED;
            }
            std::memcpy(identity, verified.data(), verified.size());
            *identity_len = verified.size();
            return PR_TOKEN_VALID;
        case pod_router::TokenCheck::kExpired:
            return PR_TOKEN_EXPIRED;
        case pod_router::TokenCheck::kForged:
            return PR_TOKEN_FORGED;
        case pod_router::TokenCheck::kMalformed:
            break;
        }
        return PR_TOKEN_MALFORMED;
    } catch (...) {
        // Out of memory: the request is refused, never let through.
        return PR_TOKEN_MALFORMED;
    }
}

const char *pr_token_check_name(pr_token_check_t check) {
    switch (check) {
    case PR_TOKEN_VALID:
        return pod_router::token_check_name(pod_router::TokenCheck::kValid);
    case PR_TOKEN_MALFORMED:
        return pod_router::token_check_name(pod_router::TokenCheck::kMalformed);
    case PR_TOKEN_FORGED:
        return pod_router::token_check_name(pod_router::TokenCheck::kForged);
    case PR_TOKEN_EXPIRED:
        return pod_router::token_check_name(pod_router::TokenCheck::kExpired);
    }
    return "unknown";
}

pr_status_t pr_token_sign(const pr_token_keys_t *keys, const char *identity, size_t identity_len,
                          int64_t expiry, char *out, size_t out_size, size_t *out_len, char *err,
                          size_t err_size) {
    if (keys == nullptr) {
        return report_internal("pr_token_sign: no keys", err, err_size);
    }
    try {
        auto token = keys->keys.sign(view(identity, identity_len), expiry);
        if (!token) {
            return report(token.error(), err, err_size);
        }
        return copy_out(token.value(), out, out_size, out_len);
    } catch (const std::bad_alloc &) {
        return report_internal("out of memory", err, err_size);
    } catch (...) {
        return report_internal("unexpected error signing a token", err, err_size);
    }
}

} // extern "C"
