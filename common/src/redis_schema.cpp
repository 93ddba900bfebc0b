#include "pod_router/redis_schema.hpp"

#include <algorithm>
#include <memory>

#include "digest.hpp"
#include "pod_router/pod_name.hpp"

namespace pod_router {
namespace {

// Shared by every script: milliseconds since the epoch by the Redis clock,
// and the guard of the controller's transitions (KEYS[1] is the session):
// a session being reaped is not resurrected, a session of another identity
// is not touched, a session a warm pool pod serves is not taken over by a
// late cold pod (its event was still queued when the user claimed), and a
// session that expired meanwhile is opened again so that a pod which exists
// is always recorded.
constexpr std::string_view kLuaPrelude = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function open_session_for(pod, identity, now)
  local state, owner, serving = unpack(redis.call('HMGET', KEYS[1], 'state', 'identity', 'pod'))
  if state == 'terminating' then
    return 'terminating'
  end
  if state and owner ~= identity then
    return 'conflict'
  end
  if state == 'ready' and serving and serving ~= pod then
    return 'superseded'
  end
  if not state then
    redis.call('HSET', KEYS[1], 'identity', identity, 'pod', pod, 'origin', 'cold',
      'created_ms', now)
  end
  return nil
end
)lua";

// A ready session is touched (unless ARGV[6] is '0': the gateway touched it
// recently): the activity score is what the reaper reads, so idleness
// counts from the last request.
//
// A user with no session at all takes a warm pool pod if one is free
// (KEYS[4..7]): SPOP and the session's write are one step, so a pool pod
// goes to exactly one user, and the user is ready at once. The claim is
// queued (KEYS[6]) for the controller to label the pod with its user, and
// recorded (KEYS[7]) for as long as the pod lives, so that nothing puts it
// back in the pool. Only a user with no session claims: one whose creation
// is pending waits for that pod, so a user never gets two.
//
// Otherwise the lock is taken with SET NX: exactly one request across all
// gateway replicas gets 'create' and publishes; the rest wait. A pending
// session whose lock has expired (its creator died, or the event was lost)
// is taken over the same way, which is the retry. 'create' says 'empty'
// when a new user found a pool configured (KEYS[8]) but no free pod, for
// the gateway's metrics; 'off' otherwise (no pool, or a retry).
constexpr std::string_view kRouteBody = R"lua(
local state, identity, ip, port, reason, stage = unpack(redis.call('HMGET', KEYS[1],
  'state', 'identity', 'ip', 'port', 'reason', 'stage'))
if state and identity ~= ARGV[1] then
  return {'conflict'}
end
if state == 'ready' then
  if ARGV[6] ~= '0' then
    redis.call('ZADD', KEYS[3], now_ms(), ARGV[2])
  end
  return {'ready', ip, port}
end
if state == 'failed' then
  return {'failed', reason or ''}
end
if state == 'terminating' then
  return {'terminating'}
end
if not state then
  local pod = redis.call('SPOP', KEYS[4])
  while pod do
    local address = redis.call('HGET', KEYS[5], pod)
    redis.call('HDEL', KEYS[5], pod)
    local pod_ip, pod_port = string.match(address or '', '^(%S+) (%d+)$')
    local port_number = tonumber(pod_port or '')
    if pod_ip and port_number >= 1 and port_number <= 65535 then
      local now = now_ms()
      redis.call('HSET', KEYS[7], pod, ARGV[2])
      redis.call('RPUSH', KEYS[6], pod .. ' ' .. ARGV[2])
      redis.call('HSET', KEYS[1], 'identity', ARGV[1], 'pod', pod, 'origin', 'pool',
        'state', 'ready', 'stage', 'ready', 'ip', pod_ip, 'port', pod_port,
        'request_id', ARGV[3], 'created_ms', now, 'updated_ms', now, 'ready_ms', now)
      redis.call('ZADD', KEYS[3], now, ARGV[2])
      return {'claimed', pod_ip, pod_port, pod}
    end
    -- No usable address: claimed by nobody, so it is never offered again
    -- and the controller's sweep deletes the pod.
    redis.call('HSET', KEYS[7], pod, '')
    pod = redis.call('SPOP', KEYS[4])
  end
end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {'pending', stage or 'queued'}
end
local now = now_ms()
if not state then
  redis.call('HSET', KEYS[1], 'identity', ARGV[1], 'pod', ARGV[2], 'origin', 'cold',
    'created_ms', now, 'stage', 'queued')
end
-- A pending session whose lock expired keeps its stage: the pod it waits
-- for may be far along already, and stages only move forward.
redis.call('HSET', KEYS[1], 'state', 'pending', 'request_id', ARGV[3], 'updated_ms', now)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if not state and (tonumber(redis.call('GET', KEYS[8]) or '') or 0) > 0 then
  return {'create', 'empty'}
end
return {'create', 'off'}
)lua";

// A pod that became ready after its pending session expired is recorded all
// the same, so that it is in the activity set and will be reaped, never
// orphaned. A session being reaped is not resurrected.
constexpr std::string_view kMarkReadyBody = R"lua(
local now = now_ms()
local refused = open_session_for(ARGV[1], ARGV[2], now)
if refused then
  return refused
end
redis.call('HSET', KEYS[1], 'state', 'ready', 'stage', 'ready', 'ip', ARGV[3],
  'port', ARGV[4], 'ready_ms', now, 'updated_ms', now)
redis.call('HDEL', KEYS[1], 'reason')
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[5], 'ready ' .. ARGV[1])
return 'ok'
)lua";

// The failed session expires by itself, so the next request after the TTL
// retries creation. It leaves the activity set: deleting a failed pod is the
// controller's job at the moment it fails, not the reaper's.
constexpr std::string_view kMarkFailedBody = R"lua(
local now = now_ms()
local refused = open_session_for(ARGV[1], ARGV[2], now)
if refused then
  return refused
end
redis.call('HSET', KEYS[1], 'state', 'failed', 'stage', 'failed', 'reason', ARGV[3],
  'updated_ms', now)
redis.call('HDEL', KEYS[1], 'ip', 'port')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[5], 'failed ' .. ARGV[1])
return 'ok'
)lua";

// The reaper picks candidates with ZRANGEBYSCORE and then claims each one
// here: a request that touched the session in between wins, and the pod
// stays. Once 'terminating', route() makes new requests wait for 'gone'.
constexpr std::string_view kBeginReapBody = R"lua(
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 'gone'
end
if state ~= 'ready' then
  return 'skip'
end
local now = now_ms()
local last = redis.call('ZSCORE', KEYS[2], ARGV[1])
if last and tonumber(last) > now - tonumber(ARGV[2]) then
  return 'active'
end
redis.call('HSET', KEYS[1], 'state', 'terminating', 'updated_ms', now)
redis.call('ZREM', KEYS[2], ARGV[1])
return 'reap'
)lua";

// Waiting requests hear 'gone' and route again, which creates a new pod.
constexpr std::string_view kFinishReapBody = R"lua(
if redis.call('HGET', KEYS[1], 'state') ~= 'terminating' then
  return 'changed'
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], 'gone ' .. ARGV[1])
return 'ok'
)lua";

// The gateway's activity report for a user it served without asking Redis
// (cached address, long-lived connection). XX semantics: a session that was
// reaped meanwhile is not brought back into the activity set.
constexpr std::string_view kTouchBody = R"lua(
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 'gone'
end
redis.call('ZADD', KEYS[1], now_ms(), ARGV[1])
return 'ok'
)lua";

// The gateway could not connect to the address Redis gave it: the pod is
// dead or gone. Forget the session, but only if it still points there (a
// newer pod may have replaced it already), so the next route creates a pod;
// 'gone' wakes requests waiting on it and clears other workers' caches.
constexpr std::string_view kMarkStaleBody = R"lua(
local state, ip, port = unpack(redis.call('HMGET', KEYS[1], 'state', 'ip', 'port'))
if state ~= 'ready' or ip ~= ARGV[2] or port ~= ARGV[3] then
  return 'changed'
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[4], 'gone ' .. ARGV[1])
return 'ok'
)lua";

// Compare-and-delete: a gateway that could not publish gives the lock back
// so the next request retries at once, without touching a newer owner's lock.
constexpr std::string_view kAbandonCreationBody = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 'released'
end
return 'not-owner'
)lua";

// A creation's progress for the waiting user. Only a pending session of the
// same identity is written: a stage never revives or relabels anything. A
// stage only moves forward (stage_rank, built from kSpawnStages): a
// redelivered event says "creating" again for a pod that is already pulling
// its image. A new creation starts again from "queued", which route writes
// with the lock.
constexpr std::string_view kSetStageBody = R"lua(
local state, identity, stage = unpack(redis.call('HMGET', KEYS[1], 'state', 'identity', 'stage'))
if state ~= 'pending' or identity ~= ARGV[1] then
  return 'changed'
end
if (stage_rank[stage or ''] or 0) < (stage_rank[ARGV[2]] or 0) then
  redis.call('HSET', KEYS[1], 'stage', ARGV[2])
end
return 'ok'
)lua";

// A pool pod became Ready (or is seen Ready again after a restart of the
// controller): offer it to new users, unless a user has claimed it. The
// claim record outlives the claim, so a controller whose watch lags cannot
// give one pod to two users.
constexpr std::string_view kPoolReadyBody = R"lua(
local session = redis.call('HGET', KEYS[3], ARGV[1])
if session then
  return {'claimed', session}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
redis.call('SADD', KEYS[1], ARGV[1])
return {'ok'}
)lua";

// Take a pool pod out of the pool (surplus, failed, restarted) before it is
// deleted: 'ok' means it was free and no user can claim it any more;
// 'claimed' means a user has it (delete it as that user's pod); 'gone'
// means it was never offered (still starting).
constexpr std::string_view kPoolRetireBody = R"lua(
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {'ok'}
end
redis.call('HDEL', KEYS[2], ARGV[1])
local session = redis.call('HGET', KEYS[3], ARGV[1])
if session then
  return {'claimed', session}
end
return {'gone'}
)lua";

// A pool pod no longer exists: nothing about it is kept.
constexpr std::string_view kPoolForgetBody = R"lua(
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 'ok'
)lua";

// The spawn stages in their order; set_stage's Lua table is built from it.
constexpr std::array<std::string_view, 7> kSpawnStages = {
    spawn_stage::kQueued,       spawn_stage::kCreating, spawn_stage::kScheduled,
    spawn_stage::kPullingImage, spawn_stage::kStarting, spawn_stage::kReady,
    spawn_stage::kFailed};

// "local stage_rank = {['queued'] = 1, ...}": stage words are plain
// lower-case text, safe between quotes.
std::string lua_stage_ranks() {
    std::string table = "local stage_rank = {";
    for (std::size_t i = 0; i < kSpawnStages.size(); ++i) {
        table.append(i == 0 ? "" : ", ")
            .append("['")
            .append(kSpawnStages[i])
            .append("'] = ")
            .append(std::to_string(i + 1));
    }
    return table.append("}\n");
}

struct ScriptText {
    Script id;
    std::string_view name;
    std::string_view keys;
    std::string_view arguments;
    std::string_view replies;
    std::string_view body;
};

constexpr std::array<ScriptText, kScriptCount> kScriptTexts = {{
    {Script::kRoute, "route",
     "session, creation_lock, activity, pool_free, pool_address, pool_claims, pool_claimed, "
     "pool_target",
     "identity, pod, request_id, lock_ttl_ms, pending_ttl_ms, touch (1 or 0)",
     "{ready, ip, port} | {claimed, ip, port, pool pod} | {create, empty|off} | {pending, stage} | "
     "{failed, reason} | {terminating} | {conflict}",
     kRouteBody},
    {Script::kMarkReady, "mark_ready", "session, creation_lock, activity",
     "pod, identity, ip, port, notify_channel", "ok | terminating | conflict | superseded",
     kMarkReadyBody},
    {Script::kMarkFailed, "mark_failed", "session, creation_lock, activity",
     "pod, identity, reason, failed_ttl_ms, notify_channel",
     "ok | terminating | conflict | superseded", kMarkFailedBody},
    {Script::kBeginReap, "begin_reap", "session, activity", "pod, idle_timeout_ms",
     "reap | active | skip | gone", kBeginReapBody},
    {Script::kFinishReap, "finish_reap", "session, activity, creation_lock", "pod, notify_channel",
     "ok | changed", kFinishReapBody},
    {Script::kAbandonCreation, "abandon_creation", "creation_lock", "request_id",
     "released | not-owner", kAbandonCreationBody},
    {Script::kTouch, "touch", "activity", "pod", "ok | gone", kTouchBody},
    {Script::kMarkStale, "mark_stale", "session, activity", "pod, ip, port, notify_channel",
     "ok | changed", kMarkStaleBody},
    {Script::kSetStage, "set_stage", "session", "identity, stage", "ok | changed", kSetStageBody},
    {Script::kPoolReady, "pool_ready", "pool_free, pool_address, pool_claimed", "pod, ip, port",
     "{ok} | {claimed, session}", kPoolReadyBody},
    {Script::kPoolRetire, "pool_retire", "pool_free, pool_address, pool_claimed", "pod",
     "{ok} | {claimed, session} | {gone}", kPoolRetireBody},
    {Script::kPoolForget, "pool_forget", "pool_free, pool_address, pool_claimed", "pod", "ok",
     kPoolForgetBody},
}};

struct BuiltScripts {
    std::array<std::string, kScriptCount> sources;
    std::array<std::string, kScriptCount> sha1s;
    std::array<ScriptSpec, kScriptCount> specs;
};

// Filled in place on the heap: the specs point into the sources and
// digests, so the object must never move.
std::unique_ptr<const BuiltScripts> build_scripts() {
    auto built = std::make_unique<BuiltScripts>();
    for (std::size_t i = 0; i < kScriptCount; ++i) {
        const ScriptText &text = kScriptTexts[i];
        built->sources[i].append(kLuaPrelude);
        if (text.id == Script::kSetStage) {
            built->sources[i].append(lua_stage_ranks()); // only it compares stages
        }
        built->sources[i].append(text.body);
        Expected<std::string> sha1 = detail::sha1_hex(built->sources[i]);
        if (sha1) {
            built->sha1s[i] = std::move(sha1).value();
        }
        built->specs[i] =
            ScriptSpec{text.id,      text.name,         text.keys,      text.arguments,
                       text.replies, built->sources[i], built->sha1s[i]};
    }
    return built;
}

// Built on first use rather than at static-initialisation time: this code
// runs inside nginx, where the order of static constructors across shared
// objects is nobody's promise.
const BuiltScripts &built_scripts() {
    static const std::unique_ptr<const BuiltScripts> scripts = build_scripts();
    return *scripts;
}

constexpr std::array<std::pair<ScriptOutcome, std::string_view>, 16> kOutcomeWords = {{
    {ScriptOutcome::kReady, "ready"},
    {ScriptOutcome::kCreate, "create"},
    {ScriptOutcome::kPending, "pending"},
    {ScriptOutcome::kFailed, "failed"},
    {ScriptOutcome::kTerminating, "terminating"},
    {ScriptOutcome::kConflict, "conflict"},
    {ScriptOutcome::kOk, "ok"},
    {ScriptOutcome::kReap, "reap"},
    {ScriptOutcome::kActive, "active"},
    {ScriptOutcome::kSkip, "skip"},
    {ScriptOutcome::kGone, "gone"},
    {ScriptOutcome::kChanged, "changed"},
    {ScriptOutcome::kReleased, "released"},
    {ScriptOutcome::kNotOwner, "not-owner"},
    {ScriptOutcome::kClaimed, "claimed"},
    {ScriptOutcome::kSuperseded, "superseded"},
}};

} // namespace

bool is_valid_redis_key_prefix(std::string_view prefix) noexcept {
    if (prefix.empty() || prefix.size() > kMaxRedisKeyPrefixLength) {
        return false;
    }
    // Printable ASCII without spaces: readable in redis-cli, safe in logs.
    return std::all_of(prefix.begin(), prefix.end(), [](char c) { return c > ' ' && c <= '~'; });
}

Expected<RedisKeys> RedisKeys::create(std::string_view key_prefix) {
    if (!is_valid_redis_key_prefix(key_prefix)) {
        return Error{ErrorCode::kInvalidConfig, "Redis key prefix must be 1 to " +
                                                    std::to_string(kMaxRedisKeyPrefixLength) +
                                                    " printable ASCII characters without spaces"};
    }
    return RedisKeys(std::string(key_prefix));
}

const std::array<ScriptSpec, kScriptCount> &all_scripts() {
    return built_scripts().specs;
}

const ScriptSpec &script_spec(Script script) {
    return built_scripts().specs[static_cast<std::size_t>(script)];
}

std::optional<ScriptOutcome> parse_script_outcome(std::string_view word) noexcept {
    for (const auto &[outcome, text] : kOutcomeWords) {
        if (text == word) {
            return outcome;
        }
    }
    return std::nullopt;
}

std::string_view script_outcome_word(ScriptOutcome outcome) noexcept {
    for (const auto &[candidate, text] : kOutcomeWords) {
        if (candidate == outcome) {
            return text;
        }
    }
    return {};
}

std::optional<Notification> parse_notification(std::string_view message) noexcept {
    static constexpr std::array<std::pair<Notification::Kind, std::string_view>, 3> kKinds = {{
        {Notification::Kind::kReady, "ready "},
        {Notification::Kind::kFailed, "failed "},
        {Notification::Kind::kGone, "gone "},
    }};
    for (const auto &[kind, head] : kKinds) {
        if (message.substr(0, head.size()) == head) {
            std::string_view pod = message.substr(head.size());
            if (!is_valid_pod_name(pod)) {
                return std::nullopt;
            }
            return Notification{kind, pod};
        }
    }
    return std::nullopt;
}

} // namespace pod_router
