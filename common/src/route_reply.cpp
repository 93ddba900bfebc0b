#include "pod_router/route_reply.h"

#include <arpa/inet.h>

#include <cstring>
#include <string>
#include <string_view>

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
    if (text.empty() || text.size() >= PR_IP_SIZE) {
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
        if (count != 3 || elements[1] == nullptr || elements[2] == nullptr) {
            return bad_reply("route reply 'ready' lacks the pod address", err, err_size);
        }
        if (!parse_ip(std::string_view(elements[1], lengths[1]), result->ip)) {
            return bad_reply("route reply 'ready' holds an address that is not a literal IP", err,
                             err_size);
        }
        if (!parse_port(std::string_view(elements[2], lengths[2]), result->port)) {
            return bad_reply("route reply 'ready' holds a port outside 1-65535", err, err_size);
        }
        result->outcome = PR_OUTCOME_READY;
        return PR_OK;
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
        return PR_OK;
    case ScriptOutcome::kPending:
        result->outcome = PR_OUTCOME_PENDING;
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
