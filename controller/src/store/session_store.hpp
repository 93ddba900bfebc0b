// The controller's side of the Redis schema (docs/redis-schema.md): every
// state change goes through the shared core's Lua scripts, sent with EVALSHA
// and again with EVAL after NOSCRIPT (a restarted or flushed Redis).
//
// Synchronous hiredis on the calling thread (the controller's threads may
// block; nginx's may not, which is why the module uses the async API). Each
// thread that talks to Redis owns its own SessionStore. The connection is
// opened on first use and after any failure; every call is bounded by the
// connect and command timeouts, and a failure is returned, never thrown.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <hiredis/hiredis.h>

#include "pod_router/expected.hpp"
#include "pod_router/redis_schema.hpp"

namespace pod_router::controller {

struct RedisSettings {
    std::string host = "127.0.0.1";
    int port = 6379;
    std::string unix_socket; // used instead of host and port when set
    int db = 0;
    std::string password; // from a file; empty for none
    std::string username; // ACL user; empty for the default user
    std::chrono::milliseconds connect_timeout{2'000};
    std::chrono::milliseconds command_timeout{2'000};
    std::string key_prefix = std::string(kDefaultRedisKeyPrefix);
    std::int64_t failed_ttl_ms = kDefaultFailedSessionTtlMs;
};

struct SessionRecord {
    std::string state;
    std::string identity;
    std::string ip;
    std::string port;
    std::int64_t updated_ms = 0;
    std::string pod; // the Kubernetes pod serving it: its own name, or a pool pod's
};

// A pool script's answer: kOk, kClaimed (with the session that has the
// pod) or kGone.
struct PoolReply {
    ScriptOutcome outcome = ScriptOutcome::kOk;
    std::string session;
};

// A claim the controller must still label: the pool pod and its session
// (empty: route took the pod out for an unusable address; delete it).
struct PoolClaim {
    std::string pod;
    std::string session;
};

// Every pool pod Redis knows of, for the leader's sweep against the pods
// that exist.
struct PoolMembers {
    std::set<std::string> named;                // in pool:free, pool:address or pool:claimed
    std::map<std::string, std::string> claimed; // pool:claimed: pod -> session
};

// What the creation flow needs from Redis: a seam, so that unit tests can
// drive the flow with a fake.
class SessionWriter {
  public:
    virtual ~SessionWriter() = default;
    virtual Expected<std::optional<SessionRecord>> session(const std::string &pod) = 0;
    virtual Expected<ScriptOutcome> mark_ready(const std::string &pod, const std::string &identity,
                                               const std::string &ip, int port) = 0;
    virtual Expected<ScriptOutcome> mark_failed(const std::string &pod, const std::string &identity,
                                                const std::string &reason) = 0;
    virtual Expected<ScriptOutcome> mark_stale(const std::string &pod, const std::string &ip,
                                               const std::string &port) = 0;
    // How far a pending creation has come (spawn_stage), for waiting users.
    virtual Expected<ScriptOutcome> set_stage(const std::string &pod, const std::string &identity,
                                              std::string_view stage) = 0;
};

// What the warm pool needs from Redis (docs/redis-schema.md, "Warm pool").
class PoolStore {
  public:
    virtual ~PoolStore() = default;
    virtual Expected<PoolReply> pool_ready(const std::string &pod, const std::string &ip,
                                           int port) = 0;
    virtual Expected<PoolReply> pool_retire(const std::string &pod) = 0;
    virtual Status pool_forget(const std::string &pod) = 0;
    virtual Expected<std::size_t> pool_free_count() = 0;
    // Published for the gateways' metrics; 0 removes it.
    virtual Status set_pool_target(std::size_t size) = 0;
    // Up to limit claims, oldest first, removed from the queue.
    virtual Expected<std::vector<PoolClaim>> take_claims(std::size_t limit) = 0;
    virtual Expected<PoolMembers> pool_members() = 0;
    virtual Expected<std::optional<SessionRecord>> session(const std::string &pod) = 0;
};

struct RedisContextFree {
    void operator()(redisContext *context) const noexcept { redisFree(context); }
};

class SessionStore final : public SessionWriter, public PoolStore {
  public:
    // Fails only on an invalid key prefix.
    static Expected<std::unique_ptr<SessionStore>> create(RedisSettings settings);

    Expected<ScriptOutcome> mark_ready(const std::string &pod, const std::string &identity,
                                       const std::string &ip, int port) override;
    Expected<ScriptOutcome> mark_failed(const std::string &pod, const std::string &identity,
                                        const std::string &reason) override;
    Expected<ScriptOutcome> begin_reap(const std::string &pod, std::int64_t idle_timeout_ms);
    Expected<ScriptOutcome> finish_reap(const std::string &pod);
    Expected<ScriptOutcome> mark_stale(const std::string &pod, const std::string &ip,
                                       const std::string &port) override;

    Expected<ScriptOutcome> set_stage(const std::string &pod, const std::string &identity,
                                      std::string_view stage) override;

    Expected<PoolReply> pool_ready(const std::string &pod, const std::string &ip,
                                   int port) override;
    Expected<PoolReply> pool_retire(const std::string &pod) override;
    Status pool_forget(const std::string &pod) override;
    Expected<std::size_t> pool_free_count() override;
    Status set_pool_target(std::size_t size) override;
    Expected<std::vector<PoolClaim>> take_claims(std::size_t limit) override;
    Expected<PoolMembers> pool_members() override;

    // The session of a pod, or nullopt when there is none.
    Expected<std::optional<SessionRecord>> session(const std::string &pod) override;
    // Redis's own clock, which every script uses too.
    Expected<std::int64_t> now_ms();
    // Pods whose last activity is at or before cutoff_ms, oldest first, at
    // most limit of them: O(log N + limit) on the sorted set.
    Expected<std::vector<std::string>> idle_pods(std::int64_t cutoff_ms, std::size_t limit);
    // The pod names of all sessions (SCAN, never KEYS: no long block).
    Expected<std::vector<std::string>> session_pods();
    Status ping();

  private:
    SessionStore(RedisSettings settings, RedisKeys keys)
        : settings_(std::move(settings)), keys_(std::move(keys)) {}

    struct ReplyFree {
        void operator()(redisReply *reply) const noexcept { freeReplyObject(reply); }
    };
    using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

    Status connect();
    // One command; on a transport error the connection is dropped so the
    // next call reconnects. A Redis error reply is returned as a value.
    Expected<ReplyPtr> command(const std::vector<std::string> &arguments);
    Expected<ReplyPtr> eval(Script script, const std::vector<std::string> &keys,
                            const std::vector<std::string> &arguments);
    Expected<ScriptOutcome> run_script(Script script, const std::vector<std::string> &keys,
                                       const std::vector<std::string> &arguments);
    Expected<PoolReply> run_pool_script(Script script, const std::vector<std::string> &arguments);
    std::string endpoint() const;

    RedisSettings settings_;
    RedisKeys keys_;
    std::unique_ptr<redisContext, RedisContextFree> context_;
};

} // namespace pod_router::controller
