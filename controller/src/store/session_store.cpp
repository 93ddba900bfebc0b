#include "store/session_store.hpp"

#include <sys/time.h>

#include <algorithm>
#include <cstring>

namespace pod_router::controller {

namespace {

Error unavailable(std::string message) {
    return Error{ErrorCode::kUnavailable, std::move(message)};
}

timeval to_timeval(std::chrono::milliseconds duration) noexcept {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(duration.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((duration.count() % 1000) * 1000);
    return tv;
}

std::string reply_text(const redisReply *reply) {
    return reply->str != nullptr ? std::string(reply->str, reply->len) : std::string();
}

// The status word a script returns: alone, or first of an array.
std::optional<ScriptOutcome> outcome_of(const redisReply *reply) {
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
        reply = reply->element[0];
    }
    if (reply->type != REDIS_REPLY_STATUS && reply->type != REDIS_REPLY_STRING) {
        return std::nullopt;
    }
    return parse_script_outcome(std::string_view(reply->str, reply->len));
}

} // namespace

Expected<std::unique_ptr<SessionStore>> SessionStore::create(RedisSettings settings) {
    auto keys = RedisKeys::create(settings.key_prefix);
    if (!keys) {
        return keys.error();
    }
    return std::unique_ptr<SessionStore>(
        new SessionStore(std::move(settings), std::move(keys).value()));
}

std::string SessionStore::endpoint() const {
    if (!settings_.unix_socket.empty()) {
        return "redis unix:" + settings_.unix_socket;
    }
    return "redis " + settings_.host + ":" + std::to_string(settings_.port);
}

Status SessionStore::connect() {
    const timeval connect_timeout = to_timeval(settings_.connect_timeout);
    context_.reset(
        settings_.unix_socket.empty()
            ? redisConnectWithTimeout(settings_.host.c_str(), settings_.port, connect_timeout)
            : redisConnectUnixWithTimeout(settings_.unix_socket.c_str(), connect_timeout));
    if (!context_) {
        return unavailable(endpoint() + ": cannot allocate a connection");
    }
    if (context_->err != 0) {
        std::string message = endpoint() + ": " + context_->errstr;
        context_.reset();
        return unavailable(std::move(message));
    }
    const timeval command_timeout = to_timeval(settings_.command_timeout);
    if (redisSetTimeout(context_.get(), command_timeout) != REDIS_OK) {
        context_.reset();
        return unavailable(endpoint() + ": cannot set the command timeout");
    }
    std::vector<std::string> setup;
    if (!settings_.password.empty()) {
        // AUTH [user] password; the password never reaches a message.
        std::vector<std::string> auth = {"AUTH"};
        if (!settings_.username.empty()) {
            auth.push_back(settings_.username);
        }
        auth.push_back(settings_.password);
        auto reply = command(auth);
        if (!reply) {
            return reply.error();
        }
        if (reply.value()->type == REDIS_REPLY_ERROR) {
            context_.reset();
            return unavailable(endpoint() + ": authentication refused");
        }
    }
    if (settings_.db != 0) {
        auto reply = command({"SELECT", std::to_string(settings_.db)});
        if (!reply) {
            return reply.error();
        }
        if (reply.value()->type == REDIS_REPLY_ERROR) {
            std::string message = endpoint() + ": SELECT: " + reply_text(reply.value().get());
            context_.reset();
            return unavailable(std::move(message));
        }
    }
    return Ok{};
}

Expected<SessionStore::ReplyPtr> SessionStore::command(const std::vector<std::string> &arguments) {
    if (!context_) {
        if (Status connected = connect(); !connected) {
            return connected.error();
        }
    }
    std::vector<const char *> argv;
    std::vector<std::size_t> lengths;
    argv.reserve(arguments.size());
    lengths.reserve(arguments.size());
    for (const std::string &argument : arguments) {
        argv.push_back(argument.data());
        lengths.push_back(argument.size());
    }
    ReplyPtr reply(static_cast<redisReply *>(redisCommandArgv(
        context_.get(), static_cast<int>(argv.size()), argv.data(), lengths.data())));
    if (!reply) {
        // I/O error, EOF or timeout: the connection is out of step; start
        // again next time.
        std::string message =
            endpoint() + ": " + (context_->errstr[0] != '\0' ? context_->errstr : "no reply");
        context_.reset();
        return unavailable(std::move(message));
    }
    return reply;
}

Expected<SessionStore::ReplyPtr> SessionStore::eval(Script script,
                                                    const std::vector<std::string> &keys,
                                                    const std::vector<std::string> &arguments) {
    const ScriptSpec &spec = script_spec(script);
    std::vector<std::string> call = {"EVALSHA", std::string(spec.sha1),
                                     std::to_string(keys.size())};
    call.insert(call.end(), keys.begin(), keys.end());
    call.insert(call.end(), arguments.begin(), arguments.end());
    if (spec.sha1.empty()) {
        call[0] = "EVAL";
        call[1] = std::string(spec.source);
    }
    auto reply = command(call);
    if (reply && reply.value()->type == REDIS_REPLY_ERROR &&
        std::strncmp(reply.value()->str, "NOSCRIPT", 8) == 0) {
        call[0] = "EVAL";
        call[1] = std::string(spec.source);
        reply = command(call);
    }
    if (!reply) {
        return reply.error();
    }
    if (reply.value()->type == REDIS_REPLY_ERROR) {
        return unavailable(endpoint() + ": " + std::string(spec.name) + ": " +
                           reply_text(reply.value().get()));
    }
    return reply;
}

Expected<ScriptOutcome> SessionStore::run_script(Script script,
                                                 const std::vector<std::string> &keys,
                                                 const std::vector<std::string> &arguments) {
    const ScriptSpec &spec = script_spec(script);
    auto reply = eval(script, keys, arguments);
    if (!reply) {
        return reply.error();
    }
    const redisReply *value = reply.value().get();
    const auto outcome = outcome_of(value);
    if (!outcome) {
        return unavailable(endpoint() + ": " + std::string(spec.name) +
                           ": unexpected reply from the script");
    }
    return *outcome;
}

Expected<ScriptOutcome> SessionStore::mark_ready(const std::string &pod,
                                                 const std::string &identity, const std::string &ip,
                                                 int port) {
    return run_script(Script::kMarkReady,
                      {keys_.session(pod), keys_.creation_lock(pod), keys_.activity()},
                      {pod, identity, ip, std::to_string(port), keys_.notify_channel()});
}

Expected<ScriptOutcome> SessionStore::mark_failed(const std::string &pod,
                                                  const std::string &identity,
                                                  const std::string &reason) {
    return run_script(
        Script::kMarkFailed, {keys_.session(pod), keys_.creation_lock(pod), keys_.activity()},
        {pod, identity, reason, std::to_string(settings_.failed_ttl_ms), keys_.notify_channel()});
}

Expected<ScriptOutcome> SessionStore::begin_reap(const std::string &pod,
                                                 std::int64_t idle_timeout_ms) {
    return run_script(Script::kBeginReap, {keys_.session(pod), keys_.activity()},
                      {pod, std::to_string(idle_timeout_ms)});
}

Expected<ScriptOutcome> SessionStore::finish_reap(const std::string &pod) {
    return run_script(Script::kFinishReap,
                      {keys_.session(pod), keys_.activity(), keys_.creation_lock(pod)},
                      {pod, keys_.notify_channel()});
}

Expected<ScriptOutcome> SessionStore::mark_stale(const std::string &pod, const std::string &ip,
                                                 const std::string &port) {
    return run_script(Script::kMarkStale, {keys_.session(pod), keys_.activity()},
                      {pod, ip, port, keys_.notify_channel()});
}

Expected<ScriptOutcome> SessionStore::set_stage(const std::string &pod, const std::string &identity,
                                                std::string_view stage) {
    return run_script(Script::kSetStage, {keys_.session(pod)}, {identity, std::string(stage)});
}

Expected<PoolReply> SessionStore::run_pool_script(Script script,
                                                  const std::vector<std::string> &arguments) {
    auto reply =
        eval(script, {keys_.pool_free(), keys_.pool_address(), keys_.pool_claimed()}, arguments);
    if (!reply) {
        return reply.error();
    }
    const redisReply *value = reply.value().get();
    const auto outcome = outcome_of(value);
    if (!outcome) {
        return unavailable(endpoint() + ": " + std::string(script_spec(script).name) +
                           ": unexpected reply from the script");
    }
    PoolReply result{*outcome, {}};
    if (value->type == REDIS_REPLY_ARRAY && value->elements > 1) {
        result.session = reply_text(value->element[1]);
    }
    return result;
}

Expected<PoolReply> SessionStore::pool_ready(const std::string &pod, const std::string &ip,
                                             int port) {
    return run_pool_script(Script::kPoolReady, {pod, ip, std::to_string(port)});
}

Expected<PoolReply> SessionStore::pool_retire(const std::string &pod) {
    return run_pool_script(Script::kPoolRetire, {pod});
}

Status SessionStore::pool_forget(const std::string &pod) {
    auto forgotten = run_pool_script(Script::kPoolForget, {pod});
    if (!forgotten) {
        return forgotten.error();
    }
    return Ok{};
}

Expected<std::size_t> SessionStore::pool_free_count() {
    auto reply = command({"SCARD", keys_.pool_free()});
    if (!reply) {
        return reply.error();
    }
    if (reply.value()->type != REDIS_REPLY_INTEGER) {
        return unavailable(endpoint() + ": SCARD: " + reply_text(reply.value().get()));
    }
    return static_cast<std::size_t>(std::max<long long>(0, reply.value()->integer));
}

Status SessionStore::set_pool_target(std::size_t size) {
    auto reply = size > 0 ? command({"SET", keys_.pool_target(), std::to_string(size)})
                          : command({"DEL", keys_.pool_target()});
    if (!reply) {
        return reply.error();
    }
    if (reply.value()->type == REDIS_REPLY_ERROR) {
        return unavailable(endpoint() + ": " + reply_text(reply.value().get()));
    }
    return Ok{};
}

Expected<std::vector<PoolClaim>> SessionStore::take_claims(std::size_t limit) {
    auto reply = command({"LPOP", keys_.pool_claims(), std::to_string(limit)});
    if (!reply) {
        return reply.error();
    }
    const redisReply *value = reply.value().get();
    std::vector<PoolClaim> claims;
    if (value->type == REDIS_REPLY_NIL) {
        return claims;
    }
    if (value->type != REDIS_REPLY_ARRAY) {
        return unavailable(endpoint() + ": LPOP: " + reply_text(value));
    }
    for (std::size_t i = 0; i < value->elements; ++i) {
        const std::string entry = reply_text(value->element[i]);
        const std::size_t space = entry.find(' ');
        if (space == std::string::npos) {
            continue; // not written by the route script; nothing to label
        }
        claims.push_back(PoolClaim{entry.substr(0, space), entry.substr(space + 1)});
    }
    return claims;
}

Expected<PoolMembers> SessionStore::pool_members() {
    // Three reads, not one transaction: a pod offered or claimed between
    // them is listed by one or the other, and the sweep acts only on pods
    // it finds missing twice.
    PoolMembers members;
    auto free = command({"SMEMBERS", keys_.pool_free()});
    if (!free) {
        return free.error();
    }
    auto addressed = command({"HKEYS", keys_.pool_address()});
    if (!addressed) {
        return addressed.error();
    }
    auto claimed = command({"HGETALL", keys_.pool_claimed()});
    if (!claimed) {
        return claimed.error();
    }
    for (const redisReply *list : {free.value().get(), addressed.value().get()}) {
        if (list->type != REDIS_REPLY_ARRAY) {
            return unavailable(endpoint() + ": pool members: " + reply_text(list));
        }
        for (std::size_t i = 0; i < list->elements; ++i) {
            members.named.insert(reply_text(list->element[i]));
        }
    }
    const redisReply *pairs = claimed.value().get();
    if (pairs->type != REDIS_REPLY_ARRAY || pairs->elements % 2 != 0) {
        return unavailable(endpoint() + ": HGETALL: " + reply_text(pairs));
    }
    for (std::size_t i = 0; i + 1 < pairs->elements; i += 2) {
        const std::string pod = reply_text(pairs->element[i]);
        members.named.insert(pod);
        members.claimed[pod] = reply_text(pairs->element[i + 1]);
    }
    return members;
}

Expected<std::optional<SessionRecord>> SessionStore::session(const std::string &pod) {
    auto reply = command(
        {"HMGET", keys_.session(pod), "state", "identity", "ip", "port", "updated_ms", "pod"});
    if (!reply) {
        return reply.error();
    }
    const redisReply *value = reply.value().get();
    if (value->type != REDIS_REPLY_ARRAY || value->elements != 6) {
        return unavailable(endpoint() + ": HMGET: unexpected reply");
    }
    if (value->element[0]->type != REDIS_REPLY_STRING) {
        return std::optional<SessionRecord>();
    }
    SessionRecord record;
    record.state = reply_text(value->element[0]);
    record.identity = reply_text(value->element[1]);
    record.ip = reply_text(value->element[2]);
    record.port = reply_text(value->element[3]);
    record.updated_ms = std::strtoll(reply_text(value->element[4]).c_str(), nullptr, 10);
    // Sessions written before the warm pool have no pod field: their pod is
    // named after them.
    record.pod = reply_text(value->element[5]);
    if (record.pod.empty()) {
        record.pod = pod;
    }
    return std::optional<SessionRecord>(std::move(record));
}

Expected<std::int64_t> SessionStore::now_ms() {
    auto reply = command({"TIME"});
    if (!reply) {
        return reply.error();
    }
    const redisReply *value = reply.value().get();
    if (value->type != REDIS_REPLY_ARRAY || value->elements != 2) {
        return unavailable(endpoint() + ": TIME: unexpected reply");
    }
    const long long seconds = std::strtoll(reply_text(value->element[0]).c_str(), nullptr, 10);
    const long long micros = std::strtoll(reply_text(value->element[1]).c_str(), nullptr, 10);
    return static_cast<std::int64_t>(seconds * 1000 + micros / 1000);
}

Expected<std::vector<std::string>> SessionStore::idle_pods(std::int64_t cutoff_ms,
                                                           std::size_t limit) {
    auto reply = command({"ZRANGEBYSCORE", keys_.activity(), "-inf", std::to_string(cutoff_ms),
                          "LIMIT", "0", std::to_string(limit)});
    if (!reply) {
        return reply.error();
    }
    const redisReply *value = reply.value().get();
    if (value->type != REDIS_REPLY_ARRAY) {
        return unavailable(endpoint() + ": ZRANGEBYSCORE: " + reply_text(value));
    }
    std::vector<std::string> pods;
    pods.reserve(value->elements);
    for (std::size_t i = 0; i < value->elements; ++i) {
        pods.push_back(reply_text(value->element[i]));
    }
    return pods;
}

Expected<std::vector<std::string>> SessionStore::session_pods() {
    const std::string session_prefix = keys_.session("");
    std::vector<std::string> pods;
    std::string cursor = "0";
    do {
        auto reply = command({"SCAN", cursor, "MATCH", session_prefix + "*", "COUNT", "1000"});
        if (!reply) {
            return reply.error();
        }
        const redisReply *value = reply.value().get();
        if (value->type != REDIS_REPLY_ARRAY || value->elements != 2 ||
            value->element[1]->type != REDIS_REPLY_ARRAY) {
            return unavailable(endpoint() + ": SCAN: unexpected reply");
        }
        cursor = reply_text(value->element[0]);
        const redisReply *batch = value->element[1];
        for (std::size_t i = 0; i < batch->elements; ++i) {
            const std::string key = reply_text(batch->element[i]);
            pods.push_back(key.substr(session_prefix.size()));
        }
    } while (cursor != "0");
    return pods;
}

Status SessionStore::ping() {
    auto reply = command({"PING"});
    if (!reply) {
        return reply.error();
    }
    if (reply.value()->type == REDIS_REPLY_ERROR) {
        return unavailable(endpoint() + ": PING: " + reply_text(reply.value().get()));
    }
    return Ok{};
}

} // namespace pod_router::controller
