/*
 * What the module makes of the route script's reply: every field that will
 * become a socket address, a response body or a log line is checked first.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <pod_router/route_reply.h>


static pr_status_t
parse(const char **elements, size_t count, pr_route_result_t *result,
    char *err)
{
    size_t  i, lengths[8];

    for (i = 0; i < count; i++) {
        lengths[i] = elements[i] ? strlen(elements[i]) : 0;
    }

    return pr_route_reply_parse(elements, lengths, count, result, err,
                                PR_ERROR_SIZE);
}


static void
ready_gives_a_checked_address(void **state)
{
    char               err[PR_ERROR_SIZE];
    pr_route_result_t  result;
    const char        *v4[] = { "ready", "10.244.1.7", "8080" };
    const char        *v6[] = { "ready", "fd00::17", "80" };

    (void) state;

    assert_int_equal(parse(v4, 3, &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_READY);
    assert_string_equal(result.ip, "10.244.1.7");
    assert_int_equal(result.port, 8080);

    assert_int_equal(parse(v6, 3, &result, err), PR_OK);
    assert_string_equal(result.ip, "fd00::17");
}


static void
claimed_gives_a_checked_address_of_its_own_outcome(void **state)
{
    char               err[PR_ERROR_SIZE];
    pr_route_result_t  result;
    const char        *claimed[] = { "claimed", "10.244.3.9", "8888",
                                     "user--pool-0123456789ab" };
    const char        *outside[] = { "claimed", "pool.example.com", "80",
                                     "user--pool-0123456789ab" };
    const char        *no_name[] = { "claimed", "10.244.3.9", "8888" };
    const char        *bad_name[] = { "claimed", "10.244.3.9", "8888",
                                      "Pool Pod\n" };
    const char        *no_port[] = { "claimed", "10.244.3.9" };

    (void) state;

    assert_int_equal(parse(claimed, 4, &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_CLAIMED);
    assert_string_equal(result.ip, "10.244.3.9");
    assert_int_equal(result.port, 8888);
    assert_string_equal(result.pool_pod, "user--pool-0123456789ab");

    assert_int_equal(parse(outside, 4, &result, err), PR_BAD_REPLY);
    assert_non_null(strstr(err, "literal IP"));
    assert_int_equal(parse(no_name, 3, &result, err), PR_BAD_REPLY);
    assert_non_null(strstr(err, "name"));
    assert_int_equal(parse(bad_name, 4, &result, err), PR_BAD_REPLY);
    assert_non_null(strstr(err, "invalid pool pod name"));
    assert_int_equal(parse(no_port, 2, &result, err), PR_BAD_REPLY);
}


static void
ready_with_a_bad_address_is_refused(void **state)
{
    size_t             i;
    char               err[PR_ERROR_SIZE];
    pr_route_result_t  result;
    const char        *bad_ips[] = { "pod.example.com", "10.0.0.1:80",
                                     " 10.0.0.1", "10.0.0.256", "",
                                     "10.0.0.1\n" };
    const char        *bad_ports[] = { "0", "65536", "80a", "-1", "",
                                       "123456" };
    const char        *reply[3];

    (void) state;

    reply[0] = "ready";
    reply[2] = "80";

    for (i = 0; i < sizeof(bad_ips) / sizeof(bad_ips[0]); i++) {
        reply[1] = bad_ips[i];
        assert_int_equal(parse(reply, 3, &result, err), PR_BAD_REPLY);
        assert_non_null(strstr(err, "literal IP"));
    }

    /* a NUL inside: not 10.0.0.1 (fuzz_redis_reply found it passing) */
    {
        const char  *nul_reply[3] = { "ready", "10.0.0.1\0:99", "80" };
        size_t       nul_lengths[3] = { 5, 12, 2 };

        assert_int_equal(pr_route_reply_parse(nul_reply, nul_lengths, 3,
                                              &result, err, PR_ERROR_SIZE),
                         PR_BAD_REPLY);
    }

    reply[1] = "10.0.0.1";

    for (i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
        reply[2] = bad_ports[i];
        assert_int_equal(parse(reply, 3, &result, err), PR_BAD_REPLY);
        assert_non_null(strstr(err, "port"));
    }

    assert_int_equal(parse(reply, 2, &result, err), PR_BAD_REPLY);
}


static void
failed_reasons_are_made_printable_and_bounded(void **state)
{
    char               err[PR_ERROR_SIZE], long_reason[600];
    pr_route_result_t  result;
    const char        *reply[2];

    (void) state;

    reply[0] = "failed";
    reply[1] = "ErrImagePull:\r\n\x1b[31mbad";
    assert_int_equal(parse(reply, 2, &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_FAILED);
    assert_string_equal(result.reason, "ErrImagePull:???[31mbad");

    memset(long_reason, 'x', sizeof(long_reason) - 1);
    long_reason[sizeof(long_reason) - 1] = '\0';
    reply[1] = long_reason;
    assert_int_equal(parse(reply, 2, &result, err), PR_OK);
    assert_int_equal(strlen(result.reason), PR_REASON_SIZE - 1);

    reply[1] = "";
    assert_int_equal(parse(reply, 2, &result, err), PR_OK);
    assert_string_equal(result.reason, "pod creation failed");
}


static void
waiting_outcomes_and_unknown_words(void **state)
{
    char               err[PR_ERROR_SIZE];
    pr_route_result_t  result;
    const char        *create[] = { "create" };
    const char        *pending[] = { "pending" };
    const char        *terminating[] = { "terminating" };
    const char        *conflict[] = { "conflict" };
    const char        *other_script[] = { "reap" };
    const char        *unknown[] = { "READY" };

    (void) state;

    assert_int_equal(parse(create, 1, &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_CREATE);
    assert_int_equal(parse(pending, 1, &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_PENDING);
    assert_int_equal(parse(terminating, 1, &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_TERMINATING);
    assert_int_equal(parse(conflict, 1, &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_CONFLICT);

    assert_int_equal(parse(other_script, 1, &result, err), PR_BAD_REPLY);
    assert_int_equal(parse(unknown, 1, &result, err), PR_BAD_REPLY);
    assert_int_equal(parse(NULL, 0, &result, err), PR_BAD_REPLY);
    assert_int_equal(pr_route_reply_parse(NULL, NULL, 0, NULL, err,
                                          sizeof(err)),
                     PR_BAD_REPLY);
}


static void
create_says_whether_the_pool_was_empty(void **state)
{
    char               err[PR_ERROR_SIZE];
    pr_route_result_t  result;
    const char        *empty[] = { "create", "empty" };
    const char        *off[] = { "create", "off" };
    const char        *bare[] = { "create" };
    const char        *other[] = { "create", "EMPTY" };

    (void) state;

    assert_int_equal(parse(empty, 2, &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_CREATE);
    assert_int_equal(result.pool_empty, 1);

    assert_int_equal(parse(off, 2, &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_CREATE);
    assert_int_equal(result.pool_empty, 0);

    /* a result reused from an empty pool's reply is cleared */
    assert_int_equal(parse(bare, 1, &result, err), PR_OK);
    assert_int_equal(result.pool_empty, 0);
    assert_int_equal(parse(other, 2, &result, err), PR_OK);
    assert_int_equal(result.pool_empty, 0);
}


static void
pending_names_a_known_stage_only(void **state)
{
    size_t             i;
    char               err[PR_ERROR_SIZE], word[32];
    pr_route_result_t  result;
    const char        *reply[2];
    const char        *shown[] = { "queued", "creating", "scheduled",
                                   "pulling image", "starting" };
    const char        *hidden[] = { "", "ready", "failed", "Pulling image",
                                    "pulling image ", "<b>pulling</b>",
                                    "starting\r\nX-Evil: 1" };

    (void) state;

    reply[0] = "pending";

    for (i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
        /* a copy, as a reply buffer would be: the linker may merge equal
         * string literals of the test and the core */
        strcpy(word, shown[i]);
        reply[1] = word;
        assert_int_equal(parse(reply, 2, &result, err), PR_OK);
        assert_int_equal(result.outcome, PR_OUTCOME_PENDING);
        assert_string_equal(result.stage, shown[i]);
        /* the core's own string, not a pointer into the reply */
        assert_true(result.stage != word);
    }

    for (i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
        reply[1] = hidden[i];
        assert_int_equal(parse(reply, 2, &result, err), PR_OK);
        assert_string_equal(result.stage, "queued");
    }

    /* an older script's bare reply, and a nil */
    assert_int_equal(parse(reply, 1, &result, err), PR_OK);
    assert_string_equal(result.stage, "queued");
    reply[1] = NULL;
    assert_int_equal(parse(reply, 2, &result, err), PR_OK);
    assert_string_equal(result.stage, "queued");

    /* only a pending reply has a stage */
    reply[0] = "terminating";
    assert_int_equal(parse(reply, 1, &result, err), PR_OK);
    assert_null(result.stage);
}


static pr_status_t
read_session(const char **fields, size_t count, const char *identity,
    pr_route_result_t *result, char *err)
{
    size_t  i, lengths[8];

    for (i = 0; i < count; i++) {
        lengths[i] = fields[i] ? strlen(fields[i]) : 0;
    }

    return pr_session_read_parse(fields, lengths, count, identity,
                                 strlen(identity), result, err,
                                 PR_ERROR_SIZE);
}


static void
session_read_ready_for_this_identity(void **state)
{
    char               err[PR_ERROR_SIZE];
    pr_route_result_t  result;
    const char        *ready[] = { "ready", "alice", "10.244.1.7", "8080" };

    (void) state;

    assert_int_equal(read_session(ready, 4, "alice", &result, err), PR_OK);
    assert_int_equal(result.outcome, PR_OUTCOME_READY);
    assert_string_equal(result.ip, "10.244.1.7");
    assert_int_equal(result.port, 8080);
}


static void
session_read_leaves_everything_else_to_the_script(void **state)
{
    size_t             i;
    char               err[PR_ERROR_SIZE];
    pr_route_result_t  result;
    const char        *cases[][4] = {
        { NULL, NULL, NULL, NULL },                     /* no session */
        { "pending", "alice", NULL, NULL },
        { "failed", "alice", NULL, NULL },
        { "terminating", "alice", "10.244.1.7", "8080" },
        { "ready", "bob", "10.244.1.7", "8080" },       /* a conflict */
        { "ready", "alice\n", "10.244.1.7", "8080" },   /* exact bytes */
        { "ready", "alic", "10.244.1.7", "8080" },
        { "ready", NULL, "10.244.1.7", "8080" },
        { "ready", "alice", NULL, "8080" },
        { "READY", "alice", "10.244.1.7", "8080" },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        result.outcome = PR_OUTCOME_READY;
        assert_int_equal(read_session(cases[i], 4, "alice", &result, err),
                         PR_OK);
        assert_int_equal(result.outcome, PR_OUTCOME_UNKNOWN);
    }
}


static void
session_read_refuses_bad_addresses_and_shapes(void **state)
{
    char               err[PR_ERROR_SIZE];
    pr_route_result_t  result;
    const char        *name[] = { "ready", "alice", "pod.example.com", "80" };
    const char        *port[] = { "ready", "alice", "10.0.0.1", "65536" };
    const char        *three[] = { "ready", "alice", "10.0.0.1" };

    (void) state;

    assert_int_equal(read_session(name, 4, "alice", &result, err),
                     PR_BAD_REPLY);
    assert_non_null(strstr(err, "not a literal IP"));
    assert_int_equal(read_session(port, 4, "alice", &result, err),
                     PR_BAD_REPLY);
    assert_non_null(strstr(err, "port"));
    assert_int_equal(read_session(three, 3, "alice", &result, err),
                     PR_BAD_REPLY);
    assert_int_equal(pr_session_read_parse(NULL, NULL, 0, "alice", 5, &result,
                                           err, sizeof(err)),
                     PR_BAD_REPLY);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ready_gives_a_checked_address),
        cmocka_unit_test(claimed_gives_a_checked_address_of_its_own_outcome),
        cmocka_unit_test(ready_with_a_bad_address_is_refused),
        cmocka_unit_test(failed_reasons_are_made_printable_and_bounded),
        cmocka_unit_test(waiting_outcomes_and_unknown_words),
        cmocka_unit_test(create_says_whether_the_pool_was_empty),
        cmocka_unit_test(pending_names_a_known_stage_only),
        cmocka_unit_test(session_read_ready_for_this_identity),
        cmocka_unit_test(session_read_leaves_everything_else_to_the_script),
        cmocka_unit_test(session_read_refuses_bad_addresses_and_shapes),
    };

    return cmocka_run_group_tests_name("route_reply", tests, NULL, NULL);
}
