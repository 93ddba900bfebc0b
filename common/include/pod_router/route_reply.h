/*
 * Interpreting the route script's reply (docs/redis-schema.md) for the nginx
 * module: what Redis says about a session becomes a decision, with every
 * field that will reach a socket address, a response body or a log line
 * validated first. A poisoned Redis must not be able to make the gateway
 * connect anywhere, or print anything, it should not.
 */

#ifndef POD_ROUTER_ROUTE_REPLY_H
#define POD_ROUTER_ROUTE_REPLY_H

#include <pod_router/pod_router_core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* INET6_ADDRSTRLEN */
#define PR_IP_SIZE 46
#define PR_REASON_SIZE 256

typedef struct {
    pr_outcome_t  outcome;
    /* PR_OUTCOME_READY, PR_OUTCOME_CLAIMED (a warm pool pod, just claimed):
     * a literal IPv4 or IPv6 address and a port 1..65535 */
    char          ip[PR_IP_SIZE];
    unsigned      port;
    /* PR_OUTCOME_CLAIMED: the warm pool pod's name (a valid pod name), for
     * logs: the session keeps its own name, another pod serves it */
    char          pool_pod[PR_POD_NAME_SIZE];
    /* PR_OUTCOME_FAILED: one line of printable ASCII, at most 255 bytes */
    char          reason[PR_REASON_SIZE];
    /* PR_OUTCOME_PENDING: how far the creation has come, one of the
     * spawn stages ("queued", "creating", "scheduled", "pulling image",
     * "starting"); a static string, never text from Redis. "queued" when
     * Redis holds no stage or one this build does not know. */
    const char   *stage;
    /* PR_OUTCOME_CREATE: 1 when a warm pool is configured and was empty */
    unsigned      pool_empty;
} pr_route_result_t;

/*
 * elements/lengths: the reply array's strings in order. Returns PR_OK with
 * result filled in, or PR_BAD_REPLY and a message when the reply is not one
 * the route script can give.
 */
pr_status_t pr_route_reply_parse(const char *const *elements,
    const size_t *lengths, size_t count, pr_route_result_t *result,
    char *err, size_t err_size);

/*
 * The hot path's read, a plain "HMGET <session> state identity ip port"
 * (docs/redis-schema.md): elements/lengths are its four values in that
 * order, NULL for a missing field. A session that is ready and belongs to
 * `identity` (exact bytes) gives PR_OUTCOME_READY, its address checked as
 * pr_route_reply_parse() checks it; that is the route script's answer for
 * such a session when no activity is to be recorded. Anything else gives
 * PR_OUTCOME_UNKNOWN: the caller runs the route script, which decides
 * (create, wait, failed, conflict) atomically. PR_BAD_REPLY when the reply
 * is not four values, or a ready session's address is not a literal IP and
 * a port 1..65535.
 */
pr_status_t pr_session_read_parse(const char *const *elements,
    const size_t *lengths, size_t count, const char *identity,
    size_t identity_len, pr_route_result_t *result, char *err,
    size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* POD_ROUTER_ROUTE_REPLY_H */
