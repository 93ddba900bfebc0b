/*
 * The C API exactly as the nginx module sees it: compiled as C, so the
 * header is proven C-clean, and every error path returns a status and a
 * message instead of throwing.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <pod_router/pod_router_core.h>


static void
naming_reports_bad_prefix(void **state)
{
    char          err[PR_ERROR_SIZE];
    pr_naming_t  *naming = (pr_naming_t *) 0x1;

    (void) state;

    assert_int_equal(pr_naming_create("Bad--", 5, 256, &naming, err,
                                      sizeof(err)),
                     PR_INVALID_CONFIG);
    assert_null(naming);
    assert_non_null(strstr(err, "lowercase letter"));

    /* a tiny error buffer truncates, still NUL-terminated */
    assert_int_equal(pr_naming_create("", 0, 256, &naming, err, 8),
                     PR_INVALID_CONFIG);
    assert_int_equal(strlen(err), 7);

    pr_naming_destroy(NULL);
}


static void
pod_name_into_caller_buffer(void **state)
{
    char          out[PR_POD_NAME_SIZE], err[PR_ERROR_SIZE];
    size_t        len = 0;
    pr_naming_t  *naming;

    (void) state;

    assert_int_equal(pr_naming_create("user", 4, 256, &naming, err,
                                      sizeof(err)),
                     PR_OK);

    assert_int_equal(pr_pod_name(naming, "alice", 5, out, sizeof(out), &len,
                                 err, sizeof(err)),
                     PR_OK);
    assert_string_equal(out, "user-alice");
    assert_int_equal(len, 10);

    /* the identity is length-delimited: an embedded NUL is seen, and refused */
    assert_int_equal(pr_pod_name(naming, "al\0ce", 5, out, sizeof(out), &len,
                                 err, sizeof(err)),
                     PR_INVALID_IDENTITY);
    assert_string_equal(err,
                 "identity contains control character U+0000 at byte offset 2");

    assert_int_equal(pr_pod_name(naming, "alice", 5, out, 10, &len, err,
                                 sizeof(err)),
                     PR_BUFFER_TOO_SMALL);

    assert_int_equal(pr_pod_name(NULL, "alice", 5, out, sizeof(out), &len,
                                 err, sizeof(err)),
                     PR_INTERNAL_ERROR);

    pr_naming_destroy(naming);
}


static void
redis_keys_and_scripts(void **state)
{
    char         out[128];
    size_t       len, source_len = 0;
    const char  *source, *sha1;
    char         err[PR_ERROR_SIZE];

    (void) state;

    assert_int_equal(pr_redis_key(PR_KEY_SESSION, "pod-router:", 11,
                                  "user-alice", 10, out, sizeof(out), &len),
                     PR_OK);
    assert_string_equal(out, "pod-router:session:user-alice");

    assert_int_equal(pr_redis_key(PR_KEY_NOTIFY_CHANNEL, "pr:", 3, NULL, 0,
                                  out, sizeof(out), &len),
                     PR_OK);
    assert_string_equal(out, "pr:notify");

    /* a key is never built from something that is not a pod name */
    assert_int_equal(pr_redis_key(PR_KEY_SESSION, "pr:", 3, "a b", 3, out,
                                  sizeof(out), &len),
                     PR_INVALID_IDENTITY);
    assert_int_equal(pr_redis_key(PR_KEY_ACTIVITY, "p r", 3, NULL, 0, out,
                                  sizeof(out), &len),
                     PR_INVALID_CONFIG);
    assert_int_equal(pr_redis_key(PR_KEY_ACTIVITY, "pr:", 3, NULL, 0, out, 5,
                                  &len),
                     PR_BUFFER_TOO_SMALL);

    assert_int_equal(pr_redis_key_prefix_check("pod-router:", 11, err,
                                               sizeof(err)),
                     PR_OK);
    assert_int_equal(pr_redis_key_prefix_check("a b", 3, err, sizeof(err)),
                     PR_INVALID_CONFIG);

    source = pr_redis_script_source(PR_SCRIPT_ROUTE, &source_len);
    assert_non_null(source);
    assert_int_equal(strlen(source), source_len);
    sha1 = pr_redis_script_sha1(PR_SCRIPT_ABANDON_CREATION);
    assert_non_null(sha1);
    assert_int_equal(strlen(sha1), 40);
    assert_null(pr_redis_script_source((pr_script_t) 99, NULL));
    assert_null(pr_redis_script_sha1((pr_script_t) -1));
}


static void
outcomes_and_notifications(void **state)
{
    const char  *pod = NULL;
    size_t       pod_len = 0;

    (void) state;

    assert_int_equal(pr_script_outcome("ready", 5), PR_OUTCOME_READY);
    assert_int_equal(pr_script_outcome("create", 6), PR_OUTCOME_CREATE);
    assert_int_equal(pr_script_outcome("not-owner", 9), PR_OUTCOME_NOT_OWNER);
    assert_int_equal(pr_script_outcome("nope", 4), PR_OUTCOME_UNKNOWN);
    assert_int_equal(pr_script_outcome(NULL, 0), PR_OUTCOME_UNKNOWN);

    assert_int_equal(pr_parse_notification("ready user-a", 12, &pod, &pod_len),
                     PR_NOTIFY_READY);
    assert_int_equal(pod_len, 6);
    assert_memory_equal(pod, "user-a", 6);
    assert_int_equal(pr_parse_notification("gone user-a", 11, &pod, &pod_len),
                     PR_NOTIFY_GONE);
    assert_int_equal(pr_parse_notification("ready", 5, &pod, &pod_len),
                     PR_NOTIFY_INVALID);
}


static void
creation_event_encoding(void **state)
{
    char          out[512], err[PR_ERROR_SIZE];
    size_t        len = 0;
    pr_naming_t  *naming;

    (void) state;

    assert_int_equal(pr_naming_create("user", 4, 256, &naming, err,
                                      sizeof(err)),
                     PR_OK);

    assert_int_equal(pr_creation_event_encode(naming, "alice", 5, "req-1", 5,
                                              1795000000000, out, sizeof(out),
                                              &len, err, sizeof(err)),
                     PR_OK);
    assert_string_equal(out, "{\"version\":1,\"identity\":\"alice\","
                        "\"pod\":\"user-alice\",\"request_id\":\"req-1\","
                        "\"timestamp_ms\":1795000000000}");
    assert_int_equal(len, strlen(out));

    assert_int_equal(pr_creation_event_encode(naming, "alice", 5, "req-1", 5,
                                              1, out, 16, &len, err,
                                              sizeof(err)),
                     PR_BUFFER_TOO_SMALL);

    assert_int_equal(pr_creation_event_encode(naming, "", 0, "req-1", 5, 1,
                                              out, sizeof(out), &len, err,
                                              sizeof(err)),
                     PR_INVALID_IDENTITY);
    assert_string_equal(err, "identity is empty");

    assert_int_equal(pr_creation_event_encode(naming, "alice", 5, "", 0, 1,
                                              out, sizeof(out), &len, err,
                                              sizeof(err)),
                     PR_MALFORMED_EVENT);

    pr_naming_destroy(naming);
}


static void
status_names_and_version(void **state)
{
    (void) state;

    assert_int_equal(pr_core_api_version(), PR_CORE_API_VERSION);
    assert_string_equal(pr_status_name(PR_OK), "ok");
    assert_string_equal(pr_status_name(PR_BUFFER_TOO_SMALL),
                        "buffer too small");
    assert_string_equal(pr_status_name((pr_status_t) 1000), "unknown status");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(naming_reports_bad_prefix),
        cmocka_unit_test(pod_name_into_caller_buffer),
        cmocka_unit_test(redis_keys_and_scripts),
        cmocka_unit_test(outcomes_and_notifications),
        cmocka_unit_test(creation_event_encoding),
        cmocka_unit_test(status_names_and_version),
    };

    return cmocka_run_group_tests_name("c_api", tests, NULL, NULL);
}
