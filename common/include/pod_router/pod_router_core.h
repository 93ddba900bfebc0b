/*
 * The C face of the pod-router core, for the nginx module.
 *
 * Rules of this API: opaque handles created and destroyed in pairs; every
 * fallible call returns a pr_status_t and writes a one-line, NUL-terminated
 * message into a caller-supplied buffer; output goes into caller-supplied
 * buffers (nginx pool memory), never into memory the caller must free; no
 * call throws, allocates in nginx pools, blocks, or keeps a pointer it was
 * given.
 */

#ifndef POD_ROUTER_CORE_H
#define POD_ROUTER_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change; the module checks it at load time. */
#define PR_CORE_API_VERSION 3

/* A pod name (at most 63 bytes) plus the terminating NUL. */
#define PR_POD_NAME_SIZE 64
/* Enough for any error message the core writes. */
#define PR_ERROR_SIZE 256

/* The defaults and limits of the name rule (pod_name.hpp). */
#define PR_DEFAULT_POD_NAME_PREFIX "user"
#define PR_DEFAULT_MAX_IDENTITY_BYTES 256
#define PR_MAX_IDENTITY_BYTES_LIMIT 4096

typedef enum {
    PR_OK = 0,
    PR_INVALID_IDENTITY,
    PR_INVALID_CONFIG,
    PR_MALFORMED_EVENT,
    PR_UNSUPPORTED_VERSION,
    PR_BUFFER_TOO_SMALL,
    PR_INTERNAL_ERROR,
    PR_UNAVAILABLE,
    PR_BAD_REPLY
} pr_status_t;

int pr_core_api_version(void);
const char *pr_status_name(pr_status_t status);

/* Naming: identity -> pod name (docs/pod-names.md). */

typedef struct pr_naming_s pr_naming_t;

pr_status_t pr_naming_create(const char *prefix, size_t prefix_len,
    size_t max_identity_bytes, pr_naming_t **naming, char *err,
    size_t err_size);
void pr_naming_destroy(pr_naming_t *naming);

/* Writes the NUL-terminated name into out (PR_POD_NAME_SIZE is enough). */
pr_status_t pr_pod_name(const pr_naming_t *naming, const char *identity,
    size_t identity_len, char *out, size_t out_size, size_t *out_len,
    char *err, size_t err_size);

/* Redis schema (docs/redis-schema.md). */

typedef enum {
    PR_KEY_SESSION = 0,
    PR_KEY_CREATION_LOCK,
    PR_KEY_ACTIVITY,
    PR_KEY_NOTIFY_CHANNEL,
    PR_KEY_POOL_FREE,
    PR_KEY_POOL_ADDRESS,
    PR_KEY_POOL_CLAIMS,
    PR_KEY_POOL_CLAIMED,
    PR_KEY_POOL_TARGET
} pr_redis_key_t;

pr_status_t pr_redis_key_prefix_check(const char *key_prefix,
    size_t key_prefix_len, char *err, size_t err_size);

/* pod is used only for PR_KEY_SESSION and PR_KEY_CREATION_LOCK. */
pr_status_t pr_redis_key(pr_redis_key_t kind, const char *key_prefix,
    size_t key_prefix_len, const char *pod, size_t pod_len, char *out,
    size_t out_size, size_t *out_len);

typedef enum {
    PR_SCRIPT_ROUTE = 0,
    PR_SCRIPT_MARK_READY,
    PR_SCRIPT_MARK_FAILED,
    PR_SCRIPT_BEGIN_REAP,
    PR_SCRIPT_FINISH_REAP,
    PR_SCRIPT_ABANDON_CREATION,
    PR_SCRIPT_TOUCH,
    PR_SCRIPT_MARK_STALE,
    PR_SCRIPT_SET_STAGE,
    PR_SCRIPT_POOL_READY,
    PR_SCRIPT_POOL_RETIRE,
    PR_SCRIPT_POOL_FORGET
} pr_script_t;

/* Static strings, valid for the life of the process; NULL if out of range
 * or (for the SHA1) if the digest could not be computed. */
const char *pr_redis_script_source(pr_script_t script, size_t *len);
const char *pr_redis_script_sha1(pr_script_t script);

typedef enum {
    PR_OUTCOME_UNKNOWN = 0,
    PR_OUTCOME_READY,
    PR_OUTCOME_CREATE,
    PR_OUTCOME_PENDING,
    PR_OUTCOME_FAILED,
    PR_OUTCOME_TERMINATING,
    PR_OUTCOME_CONFLICT,
    PR_OUTCOME_OK,
    PR_OUTCOME_REAP,
    PR_OUTCOME_ACTIVE,
    PR_OUTCOME_SKIP,
    PR_OUTCOME_GONE,
    PR_OUTCOME_CHANGED,
    PR_OUTCOME_RELEASED,
    PR_OUTCOME_NOT_OWNER,
    PR_OUTCOME_CLAIMED,
    PR_OUTCOME_SUPERSEDED
} pr_outcome_t;

pr_outcome_t pr_script_outcome(const char *word, size_t word_len);

typedef enum {
    PR_NOTIFY_INVALID = 0,
    PR_NOTIFY_READY,
    PR_NOTIFY_FAILED,
    PR_NOTIFY_GONE
} pr_notify_kind_t;

/* On success *pod points into message. */
pr_notify_kind_t pr_parse_notification(const char *message, size_t len,
    const char **pod, size_t *pod_len);

/* Creation event (docs/creation-event.md). */

pr_status_t pr_creation_event_encode(const pr_naming_t *naming,
    const char *identity, size_t identity_len, const char *request_id,
    size_t request_id_len, int64_t timestamp_ms, char *out, size_t out_size,
    size_t *out_len, char *err, size_t err_size);

/* Signed identity tokens (identity_token.hpp, docs/security.md). */

#define PR_TOKEN_MAX_SECRETS 2
#define PR_TOKEN_MIN_SECRET_BYTES 32
/* Longer tokens are malformed without being decoded. */
#define PR_TOKEN_MAX_BYTES 5600

typedef enum {
    PR_TOKEN_VALID = 0,
    PR_TOKEN_MALFORMED,
    PR_TOKEN_FORGED,
    PR_TOKEN_EXPIRED
} pr_token_check_t;

typedef struct pr_token_keys_s pr_token_keys_t;

/* secrets[i] / secret_lens[i]: the file contents (one trailing newline is
 * dropped); count is 1 or 2; the first signs. */
pr_status_t pr_token_keys_create(const char *const *secrets,
    const size_t *secret_lens, size_t count, pr_token_keys_t **keys,
    char *err, size_t err_size);
void pr_token_keys_destroy(pr_token_keys_t *keys);

/* now and skew in seconds. On PR_TOKEN_VALID writes the identity (not
 * NUL-terminated) into identity and its length into *identity_len;
 * identity_size of PR_MAX_IDENTITY_BYTES_LIMIT is enough. A valid token
 * whose identity does not fit is PR_TOKEN_MALFORMED. */
pr_token_check_t pr_token_verify(const pr_token_keys_t *keys,
    const char *token, size_t token_len, int64_t now, int64_t skew,
    char *identity, size_t identity_size, size_t *identity_len);
const char *pr_token_check_name(pr_token_check_t check);

/* A token for identity expiring at expiry (Unix seconds), signed with the
 * first secret; PR_BUFFER_TOO_SMALL unless out_size > PR_TOKEN_MAX_BYTES
 * or the token fits. */
pr_status_t pr_token_sign(const pr_token_keys_t *keys, const char *identity,
    size_t identity_len, int64_t expiry, char *out, size_t out_size,
    size_t *out_len, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* POD_ROUTER_CORE_H */
