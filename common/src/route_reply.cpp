#include "pod_router/route_reply.h"

#include <arpa/inet.h>

#include <cstring>
#include <string_view>

#include "pod_router/pod_name.hpp"
#include "pod_router/redis_schema.hpp"

namespace {

pr_status_t bad_reply(const char *message, char *err, std::size_t err_size) noexcept {
    if (err != nullptr && err_size > 0) {
        std::strncpy(err, message, err_size - 1);
        err[err_size - 1] = '\0';
    }
    return PR_BAD_REPLY;
}

bool parse_ip(std::string_view text, char (&out)[PR_IP_SIZE]) noexcept {
    // A NUL inside would end the C string early: "10.0.0.1\0:99" must not
    // pass as 10.0.0.1 (found by fuzz_redis_reply).
    if (text.empty() || text.size() >= PR_IP_SIZE || text.find('\0') != std::string_view::npos) {
        return false;
    }
    std::memcpy(out, text.data(), text.size());
    out[text.size()] = '\0';
    unsigned char probe[sizeof(struct in6_addr)];
    // inet_pton accepts only literal addresses: no names, no ports, no spaces.
    return inet_pton(AF_INET, out, probe) == 1 || inet_pton(AF_INET6, out, probe) == 1;
}

bool parse_port(std::string_view text, unsigned &port) noexcept {
    if (text.empty() || text.size() > 5) {
        return false;
    }
    unsigned value = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) {
        return false;
    }
    port = value;
    return true;
}

void copy_reason(std::string_view text, char (&out)[PR_REASON_SIZE]) noexcept {
    std::size_t n = 0;
    for (const char c : text) {
        if (n == PR_REASON_SIZE - 1) {
            break;
        }
        out[n++] = (c >= ' ' && c <= '~') ? c : '?';
    }
    out[n] = '\0';
}

// A ready session's address, from either reply: where the gateway will
// connect, so nothing but a literal address and a real port passes.
struct AddressErrors {
    const char *bad_ip;
    const char *bad_port;
};

constexpr AddressErrors kRouteReplyErrors{
    "route reply 'ready' holds an address that is not a literal IP",
    "route reply 'ready' holds a port outside 1-65535"};
constexpr AddressErrors kSessionReadErrors{"session read holds an address that is not a literal IP",
                                           "session read holds a port outside 1-65535"};

pr_status_t ready_at(std::string_view ip, std::string_view port, const AddressErrors &errors,
                     pr_route_result_t *result, char *err, std::size_t err_size) noexcept {
    if (!parse_ip(ip, result->ip)) {
        return bad_reply(errors.bad_ip, err, err_size);
    }
    if (!parse_port(port, result->port)) {
        return bad_reply(errors.bad_port, err, err_size);
    }
    result->outcome = PR_OUTCOME_READY;
    return PR_OK;
}

// The page and the header show only words this build knows: nothing Redis
// holds reaches a response as it is.
const char *known_stage(std::string_view word) noexcept {
    using namespace pod_router::spawn_stage;
    static constexpr std::string_view kShown[] = {kQueued, kCreating, kScheduled, kPullingImage,
                                                  kStarting};
    for (const std::string_view stage : kShown) {
        if (stage == word) {
            return stage.data(); // string literals: NUL-terminated
        }
    }
    return kQueued.data();
}

} // namespace

extern "C" pr_status_t pr_route_reply_parse(const char *const *elements, const size_t *lengths,
                                            size_t count, pr_route_result_t *result, char *err,
                                            size_t err_size) {
    if (result == nullptr || (count > 0 && (elements == nullptr || lengths == nullptr))) {
        return bad_reply("no reply to parse", err, err_size);
    }
    std::memset(result, 0, sizeof *result);
    if (count == 0 || elements[0] == nullptr) {
        return bad_reply("route reply is empty", err, err_size);
    }
    const std::string_view word(elements[0], lengths[0]);
    const auto outcome = pod_router::parse_script_outcome(word);
    using pod_router::ScriptOutcome;
    if (!outcome) {
        return bad_reply("route reply has an unknown status word", err, err_size);
    }
    switch (*outcome) {
    case ScriptOutcome::kReady:
    case ScriptOutcome::kClaimed: {
        const bool claimed = *outcome == ScriptOutcome::kClaimed;
        if (count != (claimed ? 4U : 3U) || elements[1] == nullptr || elements[2] == nullptr) {
            return bad_reply(claimed ? "route reply 'claimed' lacks the pod address or name"
                                     : "route reply 'ready' lacks the pod address",
                             err, err_size);
        }
        if (claimed) {
            // Only for logs, but a log line is written from it: a name as
            // Kubernetes would accept it, or the reply is refused.
            const std::string_view pool_pod = elements[3] == nullptr
                                                  ? std::string_view()
                                                  : std::string_view(elements[3], lengths[3]);
            if (!pod_router::is_valid_pod_name(pool_pod)) {
                return bad_reply("route reply 'claimed' has an invalid pool pod name", err,
                                 err_size);
            }
            std::memcpy(result->pool_pod, pool_pod.data(), pool_pod.size());
            result->pool_pod[pool_pod.size()] = '\0';
        }
        const pr_status_t rc = ready_at(std::string_view(elements[1], lengths[1]),
                                        std::string_view(elements[2], lengths[2]),
                                        kRouteReplyErrors, result, err, err_size);
        if (rc == PR_OK && claimed) {
            result->outcome = PR_OUTCOME_CLAIMED;
        }
        return rc;
    }
    case ScriptOutcome::kFailed:
        copy_reason(count > 1 && elements[1] != nullptr ? std::string_view(elements[1], lengths[1])
                                                        : std::string_view(),
                    result->reason);
        if (result->reason[0] == '\0') {
            copy_reason("pod creation failed", result->reason);
        }
        result->outcome = PR_OUTCOME_FAILED;
        return PR_OK;
    case ScriptOutcome::kCreate:
        result->outcome = PR_OUTCOME_CREATE;
        result->pool_empty = count > 1 && elements[1] != nullptr &&
                             std::string_view(elements[1], lengths[1]) == "empty";
        return PR_OK;
    case ScriptOutcome::kPending:
        result->outcome = PR_OUTCOME_PENDING;
        result->stage = known_stage(count > 1 && elements[1] != nullptr
                                        ? std::string_view(elements[1], lengths[1])
                                        : std::string_view());
        return PR_OK;
    case ScriptOutcome::kTerminating:
        result->outcome = PR_OUTCOME_TERMINATING;
        return PR_OK;
    case ScriptOutcome::kConflict:
        result->outcome = PR_OUTCOME_CONFLICT;
        return PR_OK;
    default:
        return bad_reply("route reply has a status word of another script", err, err_size);
    }
}

extern "C" pr_status_t pr_session_read_parse(const char *const *elements, const size_t *lengths,
                                             size_t count, const char *identity,
                                             size_t identity_len, pr_route_result_t *result,
                                             char *err, size_t err_size) {
    if (result == nullptr || elements == nullptr || lengths == nullptr || identity == nullptr) {
        return bad_reply("no session read to parse", err, err_size);
    }
    std::memset(result, 0, sizeof *result);
    if (count != 4) {
        return bad_reply("session read is not four values", err, err_size);
    }
    const auto field = [&](std::size_t i) {
        return elements[i] != nullptr ? std::string_view(elements[i], lengths[i])
                                      : std::string_view();
    };
    // The route script's first test: a session of another identity is a
    // conflict, which only the script reports (it is rare and must be exact).
    if (elements[0] == nullptr || field(0) != "ready" || elements[1] == nullptr ||
        field(1) != std::string_view(identity, identity_len) || elements[2] == nullptr ||
        elements[3] == nullptr) {
        result->outcome = PR_OUTCOME_UNKNOWN;
        return PR_OK;
    }
    return ready_at(field(2), field(3), kSessionReadErrors, result, err, err_size);
}
