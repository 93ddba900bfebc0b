// The Redis schema shared by the gateway and the controller: key names,
// session fields and states, the notification channel, and the Lua scripts
// that perform every state transition atomically.
//
// docs/redis-schema.md is the table form of this file; keep them together.
// Keys are built from the pod name (already a safe DNS label), never from the
// raw identity, so no client-supplied byte ever becomes part of a key.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "pod_router/expected.hpp"

namespace pod_router {

inline constexpr std::string_view kDefaultRedisKeyPrefix = "pod-router:";
inline constexpr std::size_t kMaxRedisKeyPrefixLength = 64;

// What follows the prefix in each key name.
inline constexpr std::string_view kSessionKeySegment = "session:";
inline constexpr std::string_view kCreationLockKeySegment = "creating:";
inline constexpr std::string_view kActivityKeySegment = "activity";
inline constexpr std::string_view kNotifyChannelSegment = "notify";
inline constexpr std::string_view kPoolFreeKeySegment = "pool:free";
inline constexpr std::string_view kPoolAddressKeySegment = "pool:address";
inline constexpr std::string_view kPoolClaimedKeySegment = "pool:claimed";
inline constexpr std::string_view kPoolClaimsKeySegment = "pool:claims";
inline constexpr std::string_view kPoolTargetKeySegment = "pool:target";

// 1..64 printable ASCII characters without spaces.
bool is_valid_redis_key_prefix(std::string_view prefix) noexcept;

// How long a creation lock lives: while it does, requests for the same pod
// wait instead of publishing another event. Long enough to cover a normal pod
// start; short enough that a lost event is republished by the next request.
inline constexpr std::int64_t kDefaultCreationLockTtlMs = 60'000;
// A pending session whose creation never completes disappears after this.
inline constexpr std::int64_t kDefaultPendingSessionTtlMs = 600'000;
// A failed session answers with its reason for this long, then the next
// request tries again; stops a broken template from being hammered.
inline constexpr std::int64_t kDefaultFailedSessionTtlMs = 30'000;

// Fields of the session hash.
namespace session_field {
inline constexpr std::string_view kIdentity = "identity";    // the original identity bytes
inline constexpr std::string_view kPod = "pod";              // the Kubernetes pod serving it
inline constexpr std::string_view kOrigin = "origin";        // session_origin
inline constexpr std::string_view kStage = "stage";          // spawn_stage, while it spawns
inline constexpr std::string_view kState = "state";          // one of session_state
inline constexpr std::string_view kIp = "ip";                // pod IP, when ready
inline constexpr std::string_view kPort = "port";            // pod port, when ready
inline constexpr std::string_view kRequestId = "request_id"; // request that asked for creation
inline constexpr std::string_view kReason = "reason";        // why, when failed
inline constexpr std::string_view kCreatedMs = "created_ms"; // session first seen
inline constexpr std::string_view kUpdatedMs = "updated_ms"; // last state change
inline constexpr std::string_view kReadyMs = "ready_ms";     // became ready
} // namespace session_field

namespace session_state {
inline constexpr std::string_view kPending = "pending";
inline constexpr std::string_view kReady = "ready";
inline constexpr std::string_view kFailed = "failed";
inline constexpr std::string_view kTerminating = "terminating";
} // namespace session_state

// Where a session's pod came from. A cold session's pod carries the
// session's own name; a warm one's is a pool pod's (pool_pod_name()).
namespace session_origin {
inline constexpr std::string_view kCold = "cold";
inline constexpr std::string_view kPool = "pool";
} // namespace session_origin

// How far a creation has come, shown to the waiting user (in this order).
namespace spawn_stage {
inline constexpr std::string_view kQueued = "queued";     // event published (gateway)
inline constexpr std::string_view kCreating = "creating"; // the controller asks the API
inline constexpr std::string_view kScheduled = "scheduled";
inline constexpr std::string_view kPullingImage = "pulling image";
inline constexpr std::string_view kStarting = "starting"; // containers run, not Ready yet
inline constexpr std::string_view kReady = "ready";
inline constexpr std::string_view kFailed = "failed";
} // namespace spawn_stage

class RedisKeys {
  public:
    static Expected<RedisKeys> create(std::string_view key_prefix = kDefaultRedisKeyPrefix);

    // Hash holding one user's session (session_field).
    std::string session(std::string_view pod) const {
        return prefix_ + std::string(kSessionKeySegment) + std::string(pod);
    }
    // String with a TTL; whoever sets it publishes the creation event.
    std::string creation_lock(std::string_view pod) const {
        return prefix_ + std::string(kCreationLockKeySegment) + std::string(pod);
    }
    // Sorted set: member pod name, score last activity in ms since the epoch.
    std::string activity() const { return prefix_ + std::string(kActivityKeySegment); }
    // Pub/sub channel announcing "ready <pod>", "failed <pod>", "gone <pod>".
    std::string notify_channel() const { return prefix_ + std::string(kNotifyChannelSegment); }
    // Warm pool (docs/redis-schema.md, "Warm pool"). Set: Ready, unassigned
    // pool pods that a new user may claim.
    std::string pool_free() const { return prefix_ + std::string(kPoolFreeKeySegment); }
    // Hash: free pool pod -> "<ip> <port>".
    std::string pool_address() const { return prefix_ + std::string(kPoolAddressKeySegment); }
    // Hash: claimed pool pod -> the session it serves; kept until the pod
    // is deleted, so a late "Ready" can never put it back in the pool.
    std::string pool_claimed() const { return prefix_ + std::string(kPoolClaimedKeySegment); }
    // List: "<pool pod> <session>" claims the controller has not yet
    // labelled with their user.
    std::string pool_claims() const { return prefix_ + std::string(kPoolClaimsKeySegment); }
    // String: the pool size the controller keeps (absent: no pool).
    std::string pool_target() const { return prefix_ + std::string(kPoolTargetKeySegment); }

    const std::string &prefix() const noexcept { return prefix_; }

  private:
    explicit RedisKeys(std::string prefix) : prefix_(std::move(prefix)) {}
    std::string prefix_;
};

// Every script reads the time from Redis itself (TIME), so that gateway and
// controller replicas on different hosts agree on "now".
enum class Script {
    kRoute,           // gateway: look up, touch activity, or take the creation lock
    kMarkReady,       // controller: pod is serving
    kMarkFailed,      // controller: pod cannot be created or started
    kBeginReap,       // controller: claim an idle session for deletion
    kFinishReap,      // controller: pod deleted, forget the session
    kAbandonCreation, // gateway: publishing failed, release our own lock
    kTouch,           // gateway: record activity it served without asking Redis
    kMarkStale,       // gateway: the recorded address refused a connection
    kSetStage,        // controller: a creation moved on (spawn_stage)
    kPoolReady,       // controller: a pool pod is Ready: offer it, unless claimed
    kPoolRetire,      // controller: take a free pool pod out of the pool
    kPoolForget,      // controller: a pool pod was deleted
};

struct ScriptSpec {
    Script id;
    std::string_view name;
    std::string_view keys;      // KEYS, in order, for docs and --help
    std::string_view arguments; // ARGV, in order
    std::string_view replies;   // what it returns
    std::string_view source;    // NUL-terminated
    std::string_view sha1;      // for EVALSHA; empty if OpenSSL could not hash
};

inline constexpr std::size_t kScriptCount = 12;
// Built once, on first use (which may throw std::bad_alloc).
const std::array<ScriptSpec, kScriptCount> &all_scripts();
const ScriptSpec &script_spec(Script script);

// The status word that a script returns first.
enum class ScriptOutcome {
    kReady,       // route: the pod is ready; ip and port follow
    kCreate,      // route: caller holds the lock and must publish the event
    kPending,     // route: someone else is creating it; wait for a notification
    kFailed,      // route: creation failed; the reason follows
    kTerminating, // route, mark_*: the session is being reaped
    kConflict,    // the session belongs to another identity (hash collision)
    kOk,          // mark_ready, mark_failed, finish_reap: done
    kReap,        // begin_reap: claimed, delete the pod now
    kActive,      // begin_reap: used since it was picked, keep it
    kSkip,        // begin_reap: not in a reapable state
    kGone,        // begin_reap: no session any more
    kChanged,     // finish_reap: state moved on, nothing deleted
    kReleased,    // abandon_creation: our lock is released
    kNotOwner,    // abandon_creation: the lock was not ours
    kClaimed,     // route: a warm pool pod is now this session's; pool_*: not free
    kSuperseded,  // mark_ready, mark_failed: the session is served by another pod
};
std::optional<ScriptOutcome> parse_script_outcome(std::string_view word) noexcept;
std::string_view script_outcome_word(ScriptOutcome outcome) noexcept;

struct Notification {
    enum class Kind { kReady, kFailed, kGone };
    Kind kind;
    std::string_view pod; // points into the parsed message
};
// Parses "<kind> <pod>"; nullopt for anything else, including a bad pod name.
std::optional<Notification> parse_notification(std::string_view message) noexcept;

} // namespace pod_router
