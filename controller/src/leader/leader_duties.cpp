#include "leader/leader_duties.hpp"

#include <map>

namespace pod_router::controller {

namespace {

using Clock = std::chrono::steady_clock;

} // namespace

LeaderDuties::LeaderDuties(DutySettings settings, SessionStore &store, KubePodApi &pods,
                           std::function<bool()> is_leader, Logger &logger,
                           ControllerMetrics &metrics, WarmPool *pool)
    : settings_(settings), store_(store), pods_(pods), is_leader_(std::move(is_leader)),
      log_(logger, "leader"), metrics_(metrics), pool_(pool) {
}

bool LeaderDuties::delete_and_finish(const std::string &session, const std::string &pod) {
    const ApiResult deleted = pods_.delete_pod(pod);
    if (deleted.outcome != ApiOutcome::kDone && deleted.outcome != ApiOutcome::kNotFound) {
        // The session stays terminating; the reconciler finishes it later.
        log_.warn("deleting an idle pod failed", {{"pod", pod}, {"error", deleted.message}});
        return false;
    }
    auto finished = store_.finish_reap(session);
    if (!finished) {
        log_.warn("forgetting a reaped session failed",
                  {{"session", session}, {"error", finished.error().message}});
        return false;
    }
    return finished.value() == ScriptOutcome::kOk;
}

ReapResult LeaderDuties::reap_once() {
    const auto started = Clock::now();
    ReapResult result;
    const std::int64_t idle_ms = settings_.idle_timeout.count();
    auto now = store_.now_ms();
    if (!now) {
        log_.warn("reaper cannot read the Redis clock", {{"error", now.error().message}});
        result.complete = false;
        return result;
    }
    auto candidates = store_.idle_pods(now.value() - idle_ms, settings_.reap_batch);
    if (!candidates) {
        log_.warn("reaper cannot read the activity set", {{"error", candidates.error().message}});
        result.complete = false;
        return result;
    }
    result.candidates = candidates.value().size();
    for (const std::string &session : candidates.value()) {
        // The pod to delete: the session's own, or the warm pool pod it
        // claimed. It never changes once a session is ready.
        auto record = store_.session(session);
        if (!record) {
            log_.warn("reaper lost Redis",
                      {{"session", session}, {"error", record.error().message}});
            result.complete = false;
            break;
        }
        const std::string pod = record.value() ? record.value()->pod : session;
        auto claimed = store_.begin_reap(session, idle_ms);
        if (!claimed) {
            log_.warn("reaper lost Redis", {{"pod", pod}, {"error", claimed.error().message}});
            result.complete = false;
            break;
        }
        if (claimed.value() != ScriptOutcome::kReap) {
            continue; // used since it was picked, not ready, or already gone
        }
        if (delete_and_finish(session, pod)) {
            ++result.reaped;
            metrics_.pods_reaped.add();
            log_.info("reaped an idle pod",
                      {{"pod", pod}, {"idle_timeout_s", static_cast<long>(idle_ms / 1000)}});
        } else {
            result.complete = false;
        }
    }
    metrics_.reap_tick_seconds.observe(
        std::chrono::duration<double>(Clock::now() - started).count());
    return result;
}

ReconcileResult LeaderDuties::reconcile_once() {
    ReconcileResult result;
    // Redis's clock before the list: a session changed after it may refer
    // to a pod the list could not show yet, and is left for the next pass.
    auto listed_at = store_.now_ms();
    if (!listed_at) {
        result.complete = false;
        return result;
    }
    auto pods = pods_.list_pods();
    if (!pods) {
        log_.warn("reconciler cannot list pods", {{"error", pods.error().message}});
        result.complete = false;
        return result;
    }
    auto names = store_.session_pods();
    if (!names) {
        log_.warn("reconciler cannot scan sessions", {{"error", names.error().message}});
        result.complete = false;
        return result;
    }
    std::map<std::string, const PodView *> by_name;
    for (const PodView &pod : pods.value()) {
        by_name.emplace(pod.name, &pod);
    }
    std::map<std::string, std::string> state_of; // session -> its state
    std::map<std::string, std::string> pod_of;   // session -> the pod serving it
    const std::int64_t now = wall_clock_ms();
    const auto fix = [&](const char *kind, const std::string &pod, std::size_t &counter) {
        ++counter;
        metrics_.reconcile_fixes.add(kind);
        log_.info("reconciled", {{"kind", kind}, {"pod", pod}});
    };

    for (const std::string &name : names.value()) {
        auto record = store_.session(name);
        if (!record) {
            result.complete = false;
            break;
        }
        if (!record.value()) {
            continue; // expired since the scan
        }
        const SessionRecord &session = *record.value();
        state_of[name] = session.state;
        pod_of[name] = session.pod;
        const auto found = by_name.find(session.pod);
        const PodView *view = found == by_name.end() ? nullptr : found->second;
        const bool settled_before_list = session.updated_ms < listed_at.value();
        if (session.state == session_state::kTerminating) {
            if (settled_before_list && delete_and_finish(name, session.pod)) {
                fix("unfinished_reap", name, result.reaps_finished);
            }
        } else if (session.state == session_state::kReady && view == nullptr &&
                   settled_before_list) {
            auto stale = store_.mark_stale(name, session.ip, session.port);
            if (stale && stale.value() == ScriptOutcome::kOk) {
                fix("stale_session", name, result.stale_sessions);
            }
        } else if (session.state == session_state::kPending && view != nullptr &&
                   view->condition == PodCondition::kReady) {
            auto ready = store_.mark_ready(name, session.identity, view->ip, view->port);
            if (ready && ready.value() == ScriptOutcome::kOk) {
                fix("missed_ready", name, result.ready_recorded);
            }
        }
    }

    if (!result.complete) {
        // Sessions not read are not absent: their pods are not orphans.
        return result;
    }
    for (const PodView &pod : pods.value()) {
        if (pod.condition == PodCondition::kTerminating || pod.session.empty()) {
            continue; // leaving, or a pool pod no user has (the pool tends it)
        }
        const std::int64_t age_ms = pod.created_ms > 0 ? now - pod.created_ms : 0;
        const auto session = state_of.find(pod.session);
        const bool superseded = session != state_of.end() && pod_of[pod.session] != pod.name;
        if (session == state_of.end() || superseded) {
            if (age_ms >= settings_.orphan_grace.count()) {
                const ApiResult deleted = pods_.delete_pod(pod.name);
                if (deleted.outcome == ApiOutcome::kDone) {
                    fix("orphan_pod", pod.name, result.orphans_deleted);
                }
            }
            continue;
        }
        const bool stuck =
            pod.condition == PodCondition::kFailed ||
            (pod.condition == PodCondition::kStarting && age_ms >= settings_.start_timeout.count());
        if (stuck && session->second == session_state::kFailed) {
            pods_.delete_pod(pod.name); // recorded already; only the pod is left
        } else if (stuck && session->second == session_state::kPending) {
            const std::string reason =
                pod.condition == PodCondition::kFailed
                    ? pod.reason
                    : start_timeout_reason(settings_.start_timeout, pod.reason);
            auto failed = store_.mark_failed(pod.session, pod.identity, reason);
            if (failed && failed.value() == ScriptOutcome::kOk) {
                metrics_.pods_failed.add("Stuck");
                pods_.delete_pod(pod.name);
                fix("stuck_pending", pod.name, result.stuck_failed);
            }
        }
    }
    return result;
}

void LeaderDuties::stop() noexcept {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
}

void LeaderDuties::run() noexcept {
    bool was_leader = false;
    Clock::time_point next_reap = Clock::now();
    Clock::time_point next_reconcile = Clock::now();
    bool pool_term_new = false; // until the pool's first pass of this term has run
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping_; });
            if (stopping_) {
                return;
            }
        }
        try {
            const bool leader = is_leader_();
            const auto now = Clock::now();
            if (leader && !was_leader) {
                // Newly elected: repair what the previous leader may have left.
                next_reconcile = now;
                next_reap = now;
                pool_term_new = true;
            }
            was_leader = leader;
            if (!leader) {
                if (pool_ != nullptr) {
                    pool_->follow();
                }
                continue;
            }
            if (now >= next_reconcile) {
                const ReconcileResult fixed = reconcile_once();
                next_reconcile = now + (fixed.complete ? settings_.reconcile_interval
                                                       : std::chrono::milliseconds(10'000));
            }
            if (pool_ != nullptr) {
                pool_->tend(pool_term_new);
                pool_term_new = false; // not before: a pass that threw starts over
            }
            if (now >= next_reap) {
                const ReapResult reaped = reap_once();
                // A full batch means more are waiting: go again at once.
                next_reap =
                    reaped.candidates >= settings_.reap_batch ? now : now + settings_.reap_interval;
            }
        } catch (const std::exception &error) {
            log_.error("leader duties failed", {{"error", error.what()}});
        }
    }
}

} // namespace pod_router::controller
