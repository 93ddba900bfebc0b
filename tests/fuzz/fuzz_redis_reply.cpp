// Fuzz target: what the gateway makes of Redis's replies. The input is RESP
// bytes from a Redis that may be poisoned; hiredis's own reply reader turns
// them into redisReply trees, and each tree goes to the core the way the
// module's callbacks (ngx_http_pod_router_redis.c) hand it over:
//   - the session read (HMGET) and the route script's reply: an array of 1..4
//     elements, strings and statuses as they are, anything else NULL, into
//     pr_session_read_parse() and pr_route_reply_parse();
//   - a pub/sub message: ["message", channel, payload] into
//     pr_parse_notification().
// The raw input also goes to pr_parse_notification() and pr_script_outcome()
// directly. Properties: nothing but a literal IP and a port 1..65535 is ever
// READY; a FAILED reason is one line of printable ASCII; errors are
// NUL-terminated; a notification names a valid pod inside the message.
#include <arpa/inet.h>
#include <hiredis/hiredis.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_require.hpp"
#include "pod_router/pod_name.hpp"
#include "pod_router/pod_router_core.h"
#include "pod_router/redis_schema.hpp"
#include "pod_router/route_reply.h"

// hiredis 0.14's reader callocs 8 bytes per element an array header
// announces, before any element arrives: "*999999999\r\n" asks for 8 GB. In
// the gateway that is lazily mapped memory, or a failed calloc that hiredis
// reports as an error; under ASan it would touch 1 GB of shadow and stop the
// run at libFuzzer's malloc limit. The library's behaviour, not the core's:
// here any allocation over 256 MB fails (NULL), taking hiredis's error path.
extern "C" const char *__asan_default_options() {
    return "allocator_may_return_null=1:max_allocation_size_mb=256";
}

namespace {

void require_c_string(const char *text, std::size_t size) {
    require(std::memchr(text, '\0', size) != nullptr);
}

void require_printable(const char *text) {
    for (; *text != '\0'; ++text) {
        require(*text >= ' ' && *text <= '~');
    }
}

void check_outcome(std::string_view word) {
    const pr_outcome_t outcome = pr_script_outcome(word.data(), word.size());
    require(outcome >= PR_OUTCOME_UNKNOWN && outcome <= PR_OUTCOME_NOT_OWNER);
    if (outcome != PR_OUTCOME_UNKNOWN) {
        // only the exact word, and it names this outcome
        const auto parsed = pod_router::parse_script_outcome(word);
        require(parsed.has_value());
        require(pod_router::script_outcome_word(*parsed) == word);
        require(static_cast<int>(*parsed) + 1 == static_cast<int>(outcome));
    }
}

void check_notification(std::string_view message) {
    const char *pod = nullptr;
    std::size_t pod_len = 0;
    const pr_notify_kind_t kind =
        pr_parse_notification(message.data(), message.size(), &pod, &pod_len);
    if (kind == PR_NOTIFY_INVALID) {
        return;
    }
    require(kind == PR_NOTIFY_READY || kind == PR_NOTIFY_FAILED || kind == PR_NOTIFY_GONE);
    const std::string_view head = kind == PR_NOTIFY_READY    ? "ready "
                                  : kind == PR_NOTIFY_FAILED ? "failed "
                                                             : "gone ";
    // "<kind> <pod>" exactly, the pod pointing into the message
    require(message.size() == head.size() + pod_len);
    require(message.substr(0, head.size()) == head);
    require(pod == message.data() + head.size());
    require(pod_router::is_valid_pod_name(std::string_view(pod, pod_len)));
    // the C API may also be asked for the kind alone
    require(pr_parse_notification(message.data(), message.size(), nullptr, nullptr) == kind);
}

void check_ready_address(const pr_route_result_t &result) {
    require_c_string(result.ip, sizeof result.ip);
    unsigned char probe[sizeof(struct in6_addr)];
    require(inet_pton(AF_INET, result.ip, probe) == 1 ||
            inet_pton(AF_INET6, result.ip, probe) == 1);
    require(result.port >= 1 && result.port <= 65535);
}

bool is_string(const redisReply *reply) {
    return reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS;
}

// ngx_http_pod_router_reply_strings() and what its callers do next.
void as_command_reply(const redisReply *reply) {
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0 || reply->elements > 4) {
        return;
    }
    const char *elements[4];
    std::size_t lens[4];
    for (std::size_t i = 0; i < reply->elements; ++i) {
        const redisReply *element = reply->element[i];
        elements[i] = is_string(element) ? element->str : nullptr;
        lens[i] = is_string(element) ? element->len : 0;
    }
    const std::size_t n = reply->elements;

    pr_route_result_t result;
    char err[PR_ERROR_SIZE];
    std::memset(err, 'x', sizeof err);
    pr_status_t rc = pr_route_reply_parse(elements, lens, n, &result, err, sizeof err);
    require(rc == PR_OK || rc == PR_BAD_REPLY);
    if (rc == PR_BAD_REPLY) {
        require_c_string(err, sizeof err);
        require_printable(err);
    } else {
        require(elements[0] != nullptr);
        const pr_outcome_t word = pr_script_outcome(elements[0], lens[0]);
        require(word == result.outcome);
        switch (result.outcome) {
        case PR_OUTCOME_READY:
            require(n == 3);
            check_ready_address(result);
            // The address is exactly the reply's: one with a NUL inside
            // ("10.0.0.1\0junk") is refused, not cut short.
            require(elements[1] != nullptr);
            require(std::string_view(result.ip) == std::string_view(elements[1], lens[1]));
            break;
        case PR_OUTCOME_FAILED:
            require_c_string(result.reason, sizeof result.reason);
            require(result.reason[0] != '\0');
            require_printable(result.reason);
            break;
        case PR_OUTCOME_CREATE:
        case PR_OUTCOME_PENDING:
        case PR_OUTCOME_TERMINATING:
        case PR_OUTCOME_CONFLICT:
            break;
        default:
            require(false); // another script's word is a bad reply
        }
    }

    // The session read, for an identity that matches the reply's and for
    // one that does not.
    const std::string other = "alice";
    const std::string same =
        n > 1 && elements[1] != nullptr ? std::string(elements[1], lens[1]) : other;
    for (const std::string *identity : {&same, &other}) {
        std::memset(err, 'x', sizeof err);
        rc = pr_session_read_parse(elements, lens, n, identity->data(), identity->size(), &result,
                                   err, sizeof err);
        require(rc == PR_OK || rc == PR_BAD_REPLY);
        if (rc == PR_BAD_REPLY) {
            require_c_string(err, sizeof err);
            require_printable(err);
            continue;
        }
        require(n == 4);
        if (result.outcome == PR_OUTCOME_UNKNOWN) {
            continue;
        }
        // READY only for a ready session of exactly this identity
        require(result.outcome == PR_OUTCOME_READY);
        require(elements[0] != nullptr && std::string_view(elements[0], lens[0]) == "ready");
        require(elements[1] != nullptr && std::string_view(elements[1], lens[1]) == *identity);
        check_ready_address(result);
    }
}

// ngx_http_pod_router_on_message().
void as_message(const redisReply *reply) {
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        return;
    }
    const redisReply *type = reply->element[0];
    if (type->type != REDIS_REPLY_STRING || type->len != 7 ||
        std::strncmp(type->str, "message", 7) != 0) {
        return;
    }
    const redisReply *payload = reply->element[2];
    if (payload->type != REDIS_REPLY_STRING) {
        return;
    }
    check_notification(std::string_view(payload->str, payload->len));
}

void walk(const redisReply *reply, int depth) {
    require(depth < 64);
    as_command_reply(reply);
    as_message(reply);
    if (is_string(reply) || reply->type == REDIS_REPLY_ERROR) {
        const std::string_view text(reply->str, reply->len);
        check_outcome(text);
        check_notification(text);
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (std::size_t i = 0; i < reply->elements; ++i) {
            walk(reply->element[i], depth + 1);
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char *>(data), size);
    check_outcome(input);
    check_notification(input);

    redisReader *reader = redisReaderCreate();
    require(reader != nullptr);
    // In two pieces, as a socket may deliver them: hiredis keeps the state.
    const std::size_t first = size / 2;
    require(redisReaderFeed(reader, input.data(), first) == REDIS_OK);
    for (int piece = 0; piece < 2; ++piece) {
        for (int replies = 0; replies < 256; ++replies) {
            void *reply = nullptr;
            if (redisReaderGetReply(reader, &reply) != REDIS_OK || reply == nullptr) {
                break;
            }
            walk(static_cast<redisReply *>(reply), 0);
            freeReplyObject(reply);
        }
        if (piece == 0 && reader->err == 0) {
            require(redisReaderFeed(reader, input.data() + first, size - first) == REDIS_OK);
        }
    }
    redisReaderFree(reader);
    return 0;
}
