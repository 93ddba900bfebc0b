// Every Lua transition of the Redis schema, run by a real redis-server (the
// CTest fixture starts one on a private Unix socket). The scripts are taken
// from the core exactly as the module and the controller will send them.
#include <chrono>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include <hiredis/hiredis.h>

#include "../support/cmocka_cpp.hpp"
#include "pod_router/redis_schema.hpp"

using pod_router::Script;

namespace {

struct ContextFree {
    void operator()(redisContext *context) const noexcept { redisFree(context); }
};
struct ReplyFree {
    void operator()(redisReply *reply) const noexcept { freeReplyObject(reply); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextFree>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

constexpr std::string_view kPod = "user-alice";
constexpr std::string_view kIdentity = "alice";
constexpr std::string_view kLockTtlMs = "60000";
constexpr std::string_view kPendingTtlMs = "600000";

ContextPtr connect() {
    const char *socket = std::getenv("POD_ROUTER_TEST_REDIS_SOCKET");
    if (socket == nullptr) {
        fail_msg("POD_ROUTER_TEST_REDIS_SOCKET is not set; run through ctest");
    }
    const struct timeval timeout = {5, 0};
    ContextPtr context(redisConnectUnixWithTimeout(socket, timeout));
    if (!context || context->err != 0) {
        fail_msg("cannot connect to redis at %s: %s", socket,
                 context ? context->errstr : "out of memory");
    }
    redisSetTimeout(context.get(), timeout);
    return context;
}

// Sends one command, binary-safe; a transport failure fails the test, a
// Redis error reply is returned for the caller to judge.
ReplyPtr send(redisContext *context, const std::vector<std::string> &words) {
    std::vector<const char *> argv;
    std::vector<std::size_t> lengths;
    for (const std::string &word : words) {
        argv.push_back(word.data());
        lengths.push_back(word.size());
    }
    ReplyPtr reply(static_cast<redisReply *>(
        redisCommandArgv(context, static_cast<int>(argv.size()), argv.data(), lengths.data())));
    if (!reply) {
        fail_msg("redis command %s failed: %s", words[0].c_str(), context->errstr);
    }
    return reply;
}

ReplyPtr command(redisContext *context, const std::vector<std::string> &words) {
    ReplyPtr reply = send(context, words);
    if (reply->type == REDIS_REPLY_ERROR) {
        fail_msg("redis %s returned an error: %s", words[0].c_str(), reply->str);
    }
    return reply;
}

struct Fixture {
    ContextPtr redis = connect();
    pod_router::RedisKeys keys = pod_router::RedisKeys::create("test:").value();

    std::string session() const { return keys.session(kPod); }
    std::string lock() const { return keys.creation_lock(kPod); }

    // EVALSHA first, as the module and the controller will: a script cache
    // flushed under us (SCRIPT FLUSH, a restart) costs one EVAL, no error.
    ReplyPtr run(Script script, const std::vector<std::string> &script_keys,
                 const std::vector<std::string> &arguments) {
        const auto &spec = pod_router::script_spec(script);
        std::vector<std::string> words = {"EVALSHA", std::string(spec.sha1),
                                          std::to_string(script_keys.size())};
        words.insert(words.end(), script_keys.begin(), script_keys.end());
        words.insert(words.end(), arguments.begin(), arguments.end());
        ReplyPtr reply = send(redis.get(), words);
        if (reply->type == REDIS_REPLY_ERROR &&
            std::string_view(reply->str).rfind("NOSCRIPT", 0) == 0) {
            words[0] = "EVAL";
            words[1] = std::string(spec.source);
            return command(redis.get(), words);
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            fail_msg("script %s failed: %s", std::string(spec.name).c_str(), reply->str);
        }
        return reply;
    }

    ReplyPtr route(std::string_view identity, std::string_view request_id,
                   std::string_view lock_ttl_ms = kLockTtlMs, std::string_view touch = "1") {
        return run(Script::kRoute,
                   {session(), lock(), keys.activity(), keys.pool_free(), keys.pool_address(),
                    keys.pool_claims(), keys.pool_claimed(), keys.pool_target()},
                   {std::string(identity), std::string(kPod), std::string(request_id),
                    std::string(lock_ttl_ms), std::string(kPendingTtlMs), std::string(touch)});
    }
    ReplyPtr mark_ready(std::string_view identity = kIdentity) {
        return run(
            Script::kMarkReady, {session(), lock(), keys.activity()},
            {std::string(kPod), std::string(identity), "127.0.0.7", "8080", keys.notify_channel()});
    }
    ReplyPtr mark_failed(std::string_view reason, std::string_view ttl_ms = "30000") {
        return run(Script::kMarkFailed, {session(), lock(), keys.activity()},
                   {std::string(kPod), std::string(kIdentity), std::string(reason),
                    std::string(ttl_ms), keys.notify_channel()});
    }
    ReplyPtr begin_reap(std::string_view idle_timeout_ms) {
        return run(Script::kBeginReap, {session(), keys.activity()},
                   {std::string(kPod), std::string(idle_timeout_ms)});
    }
    ReplyPtr finish_reap() {
        return run(Script::kFinishReap, {session(), keys.activity(), lock()},
                   {std::string(kPod), keys.notify_channel()});
    }

    ReplyPtr pool(Script script, const std::vector<std::string> &arguments) {
        return run(script, {keys.pool_free(), keys.pool_address(), keys.pool_claimed()}, arguments);
    }
    ReplyPtr set_stage(std::string_view identity, std::string_view stage) {
        return run(Script::kSetStage, {session()}, {std::string(identity), std::string(stage)});
    }

    std::string field(std::string_view name) {
        ReplyPtr reply = command(redis.get(), {"HGET", session(), std::string(name)});
        return reply->type == REDIS_REPLY_STRING ? std::string(reply->str, reply->len) : "(nil)";
    }
    long long integer(const std::vector<std::string> &words) {
        ReplyPtr reply = command(redis.get(), words);
        assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
        return reply->integer;
    }
    std::string activity_score() {
        ReplyPtr reply = command(redis.get(), {"ZSCORE", keys.activity(), std::string(kPod)});
        return reply->type == REDIS_REPLY_STRING ? std::string(reply->str, reply->len) : "(nil)";
    }
};

std::string word(const ReplyPtr &reply, std::size_t index = 0) {
    if (reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_STRING) {
        assert_int_equal(index, 0);
        return std::string(reply->str, reply->len);
    }
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_true(index < reply->elements);
    const redisReply *element = reply->element[index];
    assert_int_equal(element->type, REDIS_REPLY_STRING);
    return std::string(element->str, element->len);
}

int setup(void **state) {
    auto fixture = std::make_unique<Fixture>();
    command(fixture->redis.get(), {"FLUSHDB"});
    *state = fixture.release();
    return 0;
}

int teardown(void **state) {
    delete static_cast<Fixture *>(*state);
    return 0;
}

Fixture &fixture_of(void **state) {
    return *static_cast<Fixture *>(*state);
}

void digests_match_what_redis_computes(void **state) {
    Fixture &f = fixture_of(state);
    command(f.redis.get(), {"SCRIPT", "FLUSH"});
    for (const auto &spec : pod_router::all_scripts()) {
        ReplyPtr reply = command(f.redis.get(), {"SCRIPT", "LOAD", std::string(spec.source)});
        assert_string_view_equal(std::string(reply->str, reply->len), spec.sha1);
    }
}

void first_request_takes_the_lock_and_the_rest_wait(void **state) {
    Fixture &f = fixture_of(state);
    command(f.redis.get(), {"SCRIPT", "FLUSH"}); // also covers the NOSCRIPT fallback
    assert_string_view_equal(word(f.route(kIdentity, "req-1")), "create");
    assert_string_view_equal(f.field("state"), "pending");
    assert_string_view_equal(f.field("identity"), kIdentity);
    assert_string_view_equal(f.field("pod"), kPod);
    assert_string_view_equal(f.field("request_id"), "req-1");
    assert_string_view_equal(word(command(f.redis.get(), {"GET", f.lock()})), "req-1");
    const long long lock_ttl = f.integer({"PTTL", f.lock()});
    assert_true(lock_ttl > 50'000 && lock_ttl <= 60'000);
    const long long session_ttl = f.integer({"PTTL", f.session()});
    assert_true(session_ttl > 500'000 && session_ttl <= 600'000);

    for (const char *other : {"req-2", "req-3"}) {
        assert_string_view_equal(word(f.route(kIdentity, other)), "pending");
    }
    assert_string_view_equal(f.field("request_id"), "req-1");
    // Nothing is active until the pod is ready.
    assert_string_view_equal(f.activity_score(), "(nil)");
}

void an_expired_lock_is_taken_over(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(word(f.route(kIdentity, "req-1", "30")), "create");
    assert_string_view_equal(word(f.route(kIdentity, "req-2", "30")), "pending");
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    assert_string_view_equal(word(f.route(kIdentity, "req-3")), "create");
    assert_string_view_equal(f.field("request_id"), "req-3");
    assert_string_view_equal(f.field("state"), "pending");
}

void ready_is_announced_and_routes_with_touch(void **state) {
    Fixture &f = fixture_of(state);
    ContextPtr subscriber = connect();
    command(subscriber.get(), {"SUBSCRIBE", f.keys.notify_channel()});

    assert_string_view_equal(word(f.route(kIdentity, "req-1")), "create");
    assert_string_view_equal(word(f.mark_ready()), "ok");

    void *raw = nullptr;
    assert_int_equal(redisGetReply(subscriber.get(), &raw), REDIS_OK);
    ReplyPtr message(static_cast<redisReply *>(raw));
    assert_int_equal(message->type, REDIS_REPLY_ARRAY);
    assert_int_equal(message->elements, 3);
    assert_string_view_equal(std::string(message->element[2]->str, message->element[2]->len),
                             "ready user-alice");

    assert_string_view_equal(f.field("state"), "ready");
    assert_int_equal(f.integer({"EXISTS", f.lock()}), 0);
    assert_int_equal(f.integer({"PTTL", f.session()}), -1);
    const std::string first_touch = f.activity_score();
    assert_string_not_equal(first_touch.c_str(), "(nil)");

    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ReplyPtr routed = f.route(kIdentity, "req-2");
    assert_string_view_equal(word(routed, 0), "ready");
    assert_string_view_equal(word(routed, 1), "127.0.0.7");
    assert_string_view_equal(word(routed, 2), "8080");
    assert_true(std::stoll(f.activity_score()) > std::stoll(first_touch));
}

void another_identity_with_the_same_pod_name_conflicts(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(word(f.route(kIdentity, "req-1")), "create");
    assert_string_view_equal(word(f.route("ALICE", "req-2")), "conflict");
    assert_string_view_equal(word(f.mark_ready("ALICE")), "conflict");
    assert_string_view_equal(word(f.mark_ready()), "ok");
    assert_string_view_equal(word(f.route("ALICE", "req-3")), "conflict");
}

void failure_is_remembered_briefly_with_its_reason(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(word(f.route(kIdentity, "req-1")), "create");
    assert_string_view_equal(word(f.mark_failed("ErrImagePull: no such image", "200")), "ok");
    ReplyPtr routed = f.route(kIdentity, "req-2");
    assert_string_view_equal(word(routed, 0), "failed");
    assert_string_view_equal(word(routed, 1), "ErrImagePull: no such image");
    assert_int_equal(f.integer({"EXISTS", f.lock()}), 0);
    assert_string_view_equal(f.activity_score(), "(nil)");
    // After the failed TTL the next request tries again.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    assert_string_view_equal(word(f.route(kIdentity, "req-3")), "create");
}

void a_ready_pod_without_a_session_is_recorded(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(word(f.mark_ready()), "ok");
    assert_string_view_equal(f.field("state"), "ready");
    assert_string_view_equal(f.field("identity"), kIdentity);
    assert_string_not_equal(f.activity_score().c_str(), "(nil)");
}

void reaping_yields_to_recent_activity(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(word(f.route(kIdentity, "req-1")), "create");
    assert_string_view_equal(word(f.begin_reap("0")), "skip"); // pending
    assert_string_view_equal(word(f.mark_ready()), "ok");
    assert_string_view_equal(word(f.begin_reap("600000")), "active");
    assert_string_view_equal(f.field("state"), "ready");
}

void reap_cycle_makes_waiters_start_over(void **state) {
    Fixture &f = fixture_of(state);
    ContextPtr subscriber = connect();
    command(subscriber.get(), {"SUBSCRIBE", f.keys.notify_channel()});

    assert_string_view_equal(word(f.mark_ready()), "ok");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    assert_string_view_equal(word(f.begin_reap("1")), "reap");
    assert_string_view_equal(f.field("state"), "terminating");
    assert_string_view_equal(f.activity_score(), "(nil)");
    assert_string_view_equal(word(f.route(kIdentity, "req-1")), "terminating");
    assert_string_view_equal(word(f.mark_ready()), "terminating");
    assert_string_view_equal(word(f.mark_failed("late")), "terminating");
    assert_string_view_equal(word(f.begin_reap("1")), "skip");

    assert_string_view_equal(word(f.finish_reap()), "ok");
    assert_int_equal(f.integer({"EXISTS", f.session()}), 0);
    assert_string_view_equal(word(f.finish_reap()), "changed");
    assert_string_view_equal(word(f.begin_reap("1")), "gone");

    const char *expected[] = {"ready user-alice", "gone user-alice"};
    for (const char *text : expected) {
        void *raw = nullptr;
        assert_int_equal(redisGetReply(subscriber.get(), &raw), REDIS_OK);
        ReplyPtr message(static_cast<redisReply *>(raw));
        assert_string_view_equal(std::string(message->element[2]->str, message->element[2]->len),
                                 text);
    }
    assert_string_view_equal(word(f.route(kIdentity, "req-2")), "create");
}

void only_the_owner_abandons_a_lock(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(word(f.route(kIdentity, "req-1")), "create");
    assert_string_view_equal(
        word(f.run(Script::kAbandonCreation, {f.lock()}, {"req-someone-else"})), "not-owner");
    assert_int_equal(f.integer({"EXISTS", f.lock()}), 1);
    assert_string_view_equal(word(f.run(Script::kAbandonCreation, {f.lock()}, {"req-1"})),
                             "released");
    assert_string_view_equal(word(f.route(kIdentity, "req-2")), "create");
}

void touching_is_the_gateways_choice_and_never_resurrects(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(word(f.run(Script::kTouch, {f.keys.activity()}, {std::string(kPod)})),
                             "gone");
    assert_string_view_equal(f.activity_score(), "(nil)");
    assert_string_view_equal(word(f.mark_ready()), "ok");
    const std::string ready_at = f.activity_score();

    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    assert_string_view_equal(word(f.route(kIdentity, "req-1", kLockTtlMs, "0"), 0), "ready");
    assert_string_view_equal(f.activity_score(), ready_at);

    assert_string_view_equal(word(f.run(Script::kTouch, {f.keys.activity()}, {std::string(kPod)})),
                             "ok");
    assert_true(std::stoll(f.activity_score()) > std::stoll(ready_at));
}

void a_new_user_claims_a_free_pool_pod_once(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(
        word(f.pool(Script::kPoolReady, {"user--pool-aa", "127.0.0.9", "8080"}), 0), "ok");
    ReplyPtr claimed = f.route(kIdentity, "req-1");
    assert_string_view_equal(word(claimed, 0), "claimed");
    assert_string_view_equal(word(claimed, 1), "127.0.0.9");
    assert_string_view_equal(word(claimed, 2), "8080");
    assert_string_view_equal(word(claimed, 3), "user--pool-aa");
    assert_string_view_equal(f.field("state"), "ready");
    assert_string_view_equal(f.field("origin"), "pool");
    assert_string_view_equal(f.field("pod"), "user--pool-aa");
    assert_string_view_equal(f.field("stage"), "ready");
    assert_true(f.activity_score() != "(nil)");
    assert_int_equal(f.integer({"SCARD", f.keys.pool_free()}), 0);
    assert_int_equal(f.integer({"HLEN", f.keys.pool_address()}), 0);
    ReplyPtr claims = command(f.redis.get(), {"LRANGE", f.keys.pool_claims(), "0", "-1"});
    assert_int_equal(claims->elements, 1);
    assert_string_view_equal(word(claims, 0), "user--pool-aa " + std::string(kPod));
    // No lock, no event: the user is ready.
    assert_int_equal(f.integer({"EXISTS", f.lock()}), 0);
    // The same user again is simply ready at that address.
    assert_string_view_equal(word(f.route(kIdentity, "req-2"), 0), "ready");
    // A claimed pod is never offered again, whatever a lagging watch says.
    ReplyPtr again = f.pool(Script::kPoolReady, {"user--pool-aa", "127.0.0.9", "8080"});
    assert_string_view_equal(word(again, 0), "claimed");
    assert_string_view_equal(word(again, 1), kPod);
    assert_int_equal(f.integer({"SCARD", f.keys.pool_free()}), 0);
    // Its user's late cold pod supersedes nothing.
    assert_string_view_equal(word(f.mark_ready()), "superseded");
    assert_string_view_equal(word(f.mark_failed("late")), "superseded");
    assert_string_view_equal(f.field("ip"), "127.0.0.9");
    // Deleted: forgotten everywhere.
    assert_string_view_equal(word(f.pool(Script::kPoolForget, {"user--pool-aa"})), "ok");
    assert_int_equal(f.integer({"HLEN", f.keys.pool_claimed()}), 0);
}

void an_empty_pool_falls_back_to_a_cold_start_and_says_so(void **state) {
    Fixture &f = fixture_of(state);
    ReplyPtr off = f.route(kIdentity, "req-1");
    assert_string_view_equal(word(off, 0), "create");
    assert_string_view_equal(word(off, 1), "off");
    assert_string_view_equal(f.field("stage"), "queued");
    assert_string_view_equal(f.field("origin"), "cold");
    command(f.redis.get(), {"DEL", f.session(), f.lock()});
    command(f.redis.get(), {"SET", f.keys.pool_target(), "5"});
    ReplyPtr empty = f.route(kIdentity, "req-2");
    assert_string_view_equal(word(empty, 0), "create");
    assert_string_view_equal(word(empty, 1), "empty");
    // A pod offered while this user waits is not taken: one user, one pod.
    f.pool(Script::kPoolReady, {"user--pool-bb", "127.0.0.9", "8080"});
    ReplyPtr pending = f.route(kIdentity, "req-3");
    assert_string_view_equal(word(pending, 0), "pending");
    assert_string_view_equal(word(pending, 1), "queued");
    assert_int_equal(f.integer({"SCARD", f.keys.pool_free()}), 1);
}

void stages_are_written_only_to_a_pending_session_of_the_same_identity(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(word(f.set_stage(kIdentity, "creating")), "changed");
    assert_int_equal(f.integer({"EXISTS", f.session()}), 0);
    f.route(kIdentity, "req-1");
    assert_string_view_equal(word(f.set_stage("ALICE", "creating")), "changed");
    assert_string_view_equal(word(f.set_stage(kIdentity, "pulling image")), "ok");
    assert_string_view_equal(word(f.route(kIdentity, "req-2"), 1), "pulling image");
    f.mark_ready();
    assert_string_view_equal(f.field("stage"), "ready");
    assert_string_view_equal(word(f.set_stage(kIdentity, "starting")), "changed");
    assert_string_view_equal(f.field("stage"), "ready");
}

void stages_only_move_forward_until_a_new_creation(void **state) {
    Fixture &f = fixture_of(state);
    f.route(kIdentity, "req-1");
    assert_string_view_equal(word(f.set_stage(kIdentity, "pulling image")), "ok");
    // A redelivered event says "creating" again: ignored.
    assert_string_view_equal(word(f.set_stage(kIdentity, "creating")), "ok");
    assert_string_view_equal(f.field("stage"), "pulling image");
    // The lock expires and a gateway takes it over: the pod it waits for is
    // as far along as before.
    command(f.redis.get(), {"DEL", f.lock()});
    assert_string_view_equal(word(f.route(kIdentity, "req-2"), 0), "create");
    assert_string_view_equal(f.field("stage"), "pulling image");
    assert_string_view_equal(word(f.set_stage(kIdentity, "starting")), "ok");
    assert_string_view_equal(f.field("stage"), "starting");
    // A failure, then a new creation: from "queued" again.
    f.mark_failed("ErrImagePull", "1");
    command(f.redis.get(), {"DEL", f.session(), f.lock()});
    f.route(kIdentity, "req-3");
    assert_string_view_equal(f.field("stage"), "queued");
    assert_string_view_equal(word(f.set_stage(kIdentity, "creating")), "ok");
    assert_string_view_equal(f.field("stage"), "creating");
}

void a_free_pod_without_a_usable_address_is_set_aside(void **state) {
    Fixture &f = fixture_of(state);
    // Written by hand, or half lost: no address, a port out of range.
    command(f.redis.get(), {"SADD", f.keys.pool_free(), "user--pool-ee"});
    command(f.redis.get(), {"SADD", f.keys.pool_free(), "user--pool-ff"});
    command(f.redis.get(), {"HSET", f.keys.pool_address(), "user--pool-ff", "127.0.0.9 70000"});
    command(f.redis.get(), {"SET", f.keys.pool_target(), "not a number"});
    ReplyPtr cold = f.route(kIdentity, "req-1");
    assert_string_view_equal(word(cold, 0), "create");
    assert_string_view_equal(word(cold, 1), "off");
    // Both are out of the free set, claimed by nobody: never offered again,
    // and the controller's sweep deletes them.
    assert_int_equal(f.integer({"SCARD", f.keys.pool_free()}), 0);
    assert_int_equal(f.integer({"HLEN", f.keys.pool_claimed()}), 2);
    ReplyPtr again = f.pool(Script::kPoolReady, {"user--pool-ee", "127.0.0.9", "8080"});
    assert_string_view_equal(word(again, 0), "claimed");
    assert_string_view_equal(word(again, 1), "");
    assert_int_equal(f.integer({"LLEN", f.keys.pool_claims()}), 0);
    assert_string_view_equal(f.field("origin"), "cold");
}

void retiring_takes_only_a_free_pod(void **state) {
    Fixture &f = fixture_of(state);
    assert_string_view_equal(word(f.pool(Script::kPoolRetire, {"user--pool-cc"}), 0), "gone");
    f.pool(Script::kPoolReady, {"user--pool-cc", "127.0.0.9", "8080"});
    assert_string_view_equal(word(f.pool(Script::kPoolRetire, {"user--pool-cc"}), 0), "ok");
    assert_string_view_equal(word(f.route(kIdentity, "req-1"), 0), "create");
    command(f.redis.get(), {"DEL", f.session(), f.lock()});
    f.pool(Script::kPoolReady, {"user--pool-dd", "127.0.0.9", "8080"});
    assert_string_view_equal(word(f.route(kIdentity, "req-2"), 0), "claimed");
    ReplyPtr retired = f.pool(Script::kPoolRetire, {"user--pool-dd"});
    assert_string_view_equal(word(retired, 0), "claimed");
    assert_string_view_equal(word(retired, 1), kPod);
}

void every_reply_word_is_one_the_core_knows(void **state) {
    Fixture &f = fixture_of(state);
    std::vector<ReplyPtr> replies;
    replies.push_back(f.route(kIdentity, "req-1"));
    replies.push_back(f.route(kIdentity, "req-2"));
    replies.push_back(f.mark_ready());
    replies.push_back(f.route(kIdentity, "req-3"));
    replies.push_back(f.begin_reap("600000"));
    for (const ReplyPtr &reply : replies) {
        assert_true(pod_router::parse_script_outcome(word(reply)).has_value());
    }
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(digests_match_what_redis_computes, setup, teardown),
        cmocka_unit_test_setup_teardown(first_request_takes_the_lock_and_the_rest_wait, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(an_expired_lock_is_taken_over, setup, teardown),
        cmocka_unit_test_setup_teardown(ready_is_announced_and_routes_with_touch, setup, teardown),
        cmocka_unit_test_setup_teardown(another_identity_with_the_same_pod_name_conflicts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(failure_is_remembered_briefly_with_its_reason, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_ready_pod_without_a_session_is_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(reaping_yields_to_recent_activity, setup, teardown),
        cmocka_unit_test_setup_teardown(reap_cycle_makes_waiters_start_over, setup, teardown),
        cmocka_unit_test_setup_teardown(only_the_owner_abandons_a_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(touching_is_the_gateways_choice_and_never_resurrects, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_new_user_claims_a_free_pool_pod_once, setup, teardown),
        cmocka_unit_test_setup_teardown(an_empty_pool_falls_back_to_a_cold_start_and_says_so, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            stages_are_written_only_to_a_pending_session_of_the_same_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(stages_only_move_forward_until_a_new_creation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_free_pod_without_a_usable_address_is_set_aside, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(retiring_takes_only_a_free_pod, setup, teardown),
        cmocka_unit_test_setup_teardown(every_reply_word_is_one_the_core_knows, setup, teardown),
    };
    return cmocka_run_group_tests_name("redis_scripts", tests, nullptr, nullptr);
}
