#include "lifecycle/creation_flow.hpp"

#include "kube/retry_policy.hpp"

#include <algorithm>
#include <random>
#include <stdexcept>

namespace pod_router::controller {

namespace {

double seconds_between(CreationFlow::Clock::time_point from, CreationFlow::Clock::time_point to) {
    return std::chrono::duration<double>(to - from).count();
}

// A short, bounded label for the failure metric: the reason's first word
// (ErrImagePull, CrashLoopBackOff, Unschedulable, ...).
std::string failure_label(const std::string &reason) {
    std::string label;
    for (const char c : reason) {
        const bool word = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (!word || label.size() >= 40) {
            break;
        }
        label += c;
    }
    return label.empty() ? "other" : label;
}

} // namespace

CreationFlow::CreationFlow(FlowSettings settings, std::vector<CreatorSeams> creators,
                           PodApi &recorder_api, SessionWriter &recorder_sessions, Settler &settler,
                           Logger &logger, ControllerMetrics &metrics)
    : settings_(std::move(settings)), creators_(std::move(creators)), recorder_api_(recorder_api),
      recorder_sessions_(recorder_sessions), settler_(settler), log_(logger, "creation"),
      metrics_(metrics) {
    if (creators_.empty()) {
        throw std::invalid_argument("a creation flow needs at least one creation worker");
    }
}

CreationFlow::CreationFlow(FlowSettings settings, PodApi &creator_api,
                           SessionWriter &creator_sessions, PodApi &recorder_api,
                           SessionWriter &recorder_sessions, Settler &settler, Logger &logger,
                           ControllerMetrics &metrics)
    : CreationFlow(std::move(settings), {CreatorSeams{creator_api, creator_sessions}}, recorder_api,
                   recorder_sessions, settler, logger, metrics) {
}

void CreationFlow::enqueue(Delivery delivery) {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        incoming_.push_back(std::move(delivery));
    }
    creator_wake_.notify_one();
}

// ---------------------------------------------------------------- watch side

void CreationFlow::observe(const PodView &pod) {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto before = pods_.find(pod.name);
        if (before != pods_.end() && pod.restarts > before->second.restarts &&
            pod.condition != PodCondition::kTerminating && tracked_.count(pod.name) == 0 &&
            !pod.session.empty()) {
            // A container of a pod that serves a user died: the user gets a
            // new pod rather than a restarted process whose state may be
            // broken (the recorder deletes it, with its session's address).
            restarted_.emplace(pod.name, before->second);
            recorder_poked_ = true;
        }
        pods_[pod.name] = pod;
        if (tracked_.count(pod.name) != 0) {
            changed_.insert(pod.name);
            recorder_poked_ = true;
        }
    }
    recorder_wake_.notify_one();
}

void CreationFlow::observe_deleted(const std::string &pod) {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        pods_.erase(pod);
        const auto tracked = tracked_.find(pod);
        if (tracked != tracked_.end()) {
            tracked->second.deleted = true;
            changed_.insert(pod);
            recorder_poked_ = true;
        }
    }
    recorder_wake_.notify_one();
}

void CreationFlow::observe_all(const std::vector<PodView> &pods) {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        std::map<std::string, PodView> fresh;
        for (const PodView &pod : pods) {
            fresh.emplace(pod.name, pod);
        }
        for (auto &[name, entry] : tracked_) {
            const bool was_there = pods_.count(name) != 0;
            if (was_there && fresh.count(name) == 0) {
                entry.deleted = true;
            }
            changed_.insert(name);
            recorder_poked_ = true;
        }
        pods_ = std::move(fresh);
        synced_ = true;
    }
    recorder_wake_.notify_one();
}

bool CreationFlow::synced() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return synced_;
}

std::optional<PodView> CreationFlow::cached(const std::string &pod) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto found = pods_.find(pod);
    if (found == pods_.end()) {
        return std::nullopt;
    }
    return found->second;
}

bool CreationFlow::write_stage(SessionWriter &sessions, const std::string &pod,
                               const std::string &identity, std::string_view stage) {
    // Progress for a waiting user, nothing more: a failure is only logged,
    // and the outcome (ready or failed) is written regardless.
    auto written = sessions.set_stage(pod, identity, stage);
    if (!written) {
        log_.debug(
            "writing the spawn stage failed",
            {{"pod", pod}, {"stage", std::string(stage)}, {"error", written.error().message}});
        return false;
    }
    return true;
}

std::size_t CreationFlow::unsettled() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::size_t count = incoming_.size() + in_hand_ + retries_.size() + deferred_.size();
    for (const auto &[name, entry] : tracked_) {
        count += entry.deliveries.size();
    }
    return count;
}

// -------------------------------------------------------------- creator side

CreationFlow::Clock::duration CreationFlow::backoff(int attempts) const {
    thread_local std::mt19937_64 random{std::random_device{}()};
    return jittered_backoff(attempts, settings_.retry_min, settings_.retry_max, random);
}

std::size_t CreationFlow::creator_step(Clock::time_point now, std::size_t worker) {
    CreatorSeams &seams = creators_.at(worker);
    std::size_t handled = 0;
    while (creator_take_one(seams, now)) {
        ++handled;
    }
    return handled;
}

bool CreationFlow::retry_due(Clock::time_point now) const {
    return std::any_of(retries_.begin(), retries_.end(),
                       [now](const Attempt &attempt) { return attempt.due <= now; });
}

std::optional<CreationFlow::Attempt> CreationFlow::take(Clock::time_point now) {
    const std::lock_guard<std::mutex> lock(mutex_);
    // Retries first: their users have waited longest.
    const auto due = std::find_if(retries_.begin(), retries_.end(),
                                  [now](const Attempt &attempt) { return attempt.due <= now; });
    if (due != retries_.end()) {
        Attempt attempt = std::move(*due);
        retries_.erase(due);
        ++in_hand_;
        return attempt;
    }
    if (incoming_.empty()) {
        return std::nullopt;
    }
    Attempt attempt{std::move(incoming_.front()), 0, now};
    incoming_.pop_front();
    ++in_hand_;
    return attempt;
}

bool CreationFlow::creator_take_one(CreatorSeams &seams, Clock::time_point now) {
    std::optional<Attempt> taken = take(now);
    if (!taken) {
        return false;
    }
    Attempt attempt = std::move(*taken);
    const Delivery &delivery = attempt.delivery;
    auto decoded = decode_creation_event(delivery.body, settings_.naming);
    if (!decoded) {
        // Never valid, however often it is tried: straight to the dead-letter
        // queue, where `pod-router-controller check-event` explains it.
        log_.warn("dead-lettering an event that can never succeed",
                  {{"error", decoded.error().message},
                   {"bytes", static_cast<long>(delivery.body.size())},
                   {"message_id", delivery.message_id}});
        settler_.settle(delivery.connection, delivery.tag, Settlement::kDeadLetter);
        const std::lock_guard<std::mutex> lock(mutex_);
        --in_hand_;
        return true;
    }
    const CreationEvent &event = decoded.value();
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (busy_.count(event.pod) != 0) {
            // Another worker has this pod in hand: this delivery waits for
            // it, then finds the pod tracked (or tries again if it failed).
            deferred_.emplace(event.pod, std::move(attempt));
            --in_hand_;
            return true;
        }
        busy_.insert(event.pod);
    }
    const auto release = [this, &event, now] {
        const std::lock_guard<std::mutex> lock(mutex_);
        busy_.erase(event.pod);
        --in_hand_;
        // The deliveries that waited for this pod are due now; this worker's
        // next take() finds them.
        const auto [first, last] = deferred_.equal_range(event.pod);
        for (auto waiting = first; waiting != last; ++waiting) {
            waiting->second.due = now;
            retries_.push_back(std::move(waiting->second));
        }
        deferred_.erase(first, last);
    };
    try {
        std::string why;
        if (handle(seams, attempt, event, now, why) == Handled::kRetry) {
            retry_or_dead_letter(seams, std::move(attempt), why, now);
        }
    } catch (...) {
        // The delivery stays unacknowledged (redelivered after a restart);
        // the pod must not stay busy, or its later deliveries would wait
        // for ever.
        release();
        throw;
    }
    release();
    return true;
}

CreationFlow::Handled CreationFlow::handle(CreatorSeams &seams, const Attempt &attempt,
                                           const CreationEvent &event, Clock::time_point now,
                                           std::string &why) {
    const Delivery &delivery = attempt.delivery;
    if (attempt.attempts == 0 && event.timestamp_ms > 0) {
        metrics_.queue_wait_seconds.observe(
            static_cast<double>(std::max<std::int64_t>(0, wall_clock_ms() - event.timestamp_ms)) /
            1000.0);
    }
    {
        // Already on its way: this delivery is settled with the first one's
        // outcome.
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto tracked = tracked_.find(event.pod);
        if (tracked != tracked_.end()) {
            tracked->second.deliveries.emplace_back(delivery.connection, delivery.tag);
            return Handled::kDone;
        }
    }
    auto session = seams.sessions.session(event.pod);
    if (!session) {
        why = session.error().message;
        return Handled::kRetry;
    }
    if (session.value() && session.value()->state == session_state::kReady) {
        metrics_.events_duplicate.add();
        log_.debug("session already ready; acknowledging a repeated event",
                   {{"pod", event.pod}, {"request_id", event.request_id}});
        settler_.settle(delivery.connection, delivery.tag, Settlement::kAck);
        return Handled::kDone;
    }
    if (session.value() && session.value()->state == session_state::kTerminating) {
        // The reaper is deleting this pod; the gateway publishes again once
        // the session is gone, and that event creates the new pod.
        log_.info("session is being reaped; dropping the event",
                  {{"pod", event.pod}, {"request_id", event.request_id}});
        settler_.settle(delivery.connection, delivery.tag, Settlement::kAck);
        return Handled::kDone;
    }
    return handle_create(seams, event, delivery, now, why);
}

CreationFlow::Handled CreationFlow::handle_create(CreatorSeams &seams, const CreationEvent &event,
                                                  const Delivery &delivery, Clock::time_point now,
                                                  std::string &why) {
    // The event is picked up: the waiting user sees "creating" from here.
    write_stage(seams.sessions, event.pod, event.identity, spawn_stage::kCreating);
    if (const auto known = cached(event.pod)) {
        if (!known->identity.empty() && known->identity != event.identity) {
            // Two identities with the same hashed name: astronomically rare,
            // and never resolved by sharing the pod.
            auto recorded = seams.sessions.mark_failed(event.pod, event.identity,
                                                       "the pod name is taken by another identity");
            if (!recorded) {
                why = recorded.error().message;
                return Handled::kRetry;
            }
            log_.error("pod name collision between identities", {{"pod", event.pod}});
            metrics_.pods_failed.add("NameCollision");
            settler_.settle(delivery.connection, delivery.tag, Settlement::kAck);
            return Handled::kDone;
        }
        if (known->restarts > 0 && known->condition != PodCondition::kTerminating) {
            // Its process died at least once, and a request found its
            // address dead (that is why the session is gone): the user gets
            // a fresh pod rather than one whose state may be broken.
            const ApiResult deleted = seams.api.delete_pod(event.pod);
            if (deleted.outcome != ApiOutcome::kDone && deleted.outcome != ApiOutcome::kNotFound) {
                why = "deleting a restarted pod: " + deleted.message;
                return Handled::kRetry;
            }
            log_.info("replacing a pod whose containers restarted",
                      {{"pod", event.pod}, {"restarts", known->restarts}});
            track(event, delivery, now, true);
            return Handled::kDone;
        }
        // Starting, ready or failed: the recorder settles it from the cache;
        // terminating: created again once the old one is gone.
        track(event, delivery, now, known->condition == PodCondition::kTerminating);
        return Handled::kDone;
    }
    const auto started = Clock::now();
    const ApiResult created = seams.api.create_pod(event.pod, event.identity);
    metrics_.api_create_seconds.observe(seconds_between(started, Clock::now()));
    switch (created.outcome) {
    case ApiOutcome::kDone:
        metrics_.pods_created.add();
        log_.info("pod created", {{"pod", event.pod}, {"request_id", event.request_id}});
        track(event, delivery, now, false);
        return Handled::kDone;
    case ApiOutcome::kExists:
        // A redelivery after a crash, or a second event: the same pod.
        metrics_.pods_already_existed.add();
        log_.info("pod already exists", {{"pod", event.pod}, {"request_id", event.request_id}});
        track(event, delivery, now, false);
        return Handled::kDone;
    case ApiOutcome::kRejected: {
        const std::string reason = "the Kubernetes API refused the pod: " + created.message;
        auto recorded = seams.sessions.mark_failed(event.pod, event.identity, reason);
        if (!recorded) {
            why = recorded.error().message;
            return Handled::kRetry;
        }
        metrics_.pods_failed.add("Rejected");
        log_.error("pod refused by the API",
                   {{"pod", event.pod}, {"status", created.status}, {"error", created.message}});
        settler_.settle(delivery.connection, delivery.tag, Settlement::kAck);
        return Handled::kDone;
    }
    case ApiOutcome::kNotFound:
    case ApiOutcome::kUnavailable:
        break;
    }
    why = "creating the pod: " + created.message;
    return Handled::kRetry;
}

void CreationFlow::track(const CreationEvent &event, const Delivery &delivery,
                         Clock::time_point now, bool recreate) {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        auto [entry, fresh] = tracked_.try_emplace(event.pod);
        Tracked &tracked = entry->second;
        if (fresh) {
            tracked.identity = event.identity;
            tracked.deadline = now + settings_.start_timeout;
            tracked.retry_at = now;
            tracked.recreate = recreate;
            tracked.stage = std::string(spawn_stage::kCreating); // written before the create
        }
        tracked.deliveries.emplace_back(delivery.connection, delivery.tag);
        changed_.insert(event.pod);
        recorder_poked_ = true;
        metrics_.tracked_creations.set(static_cast<double>(tracked_.size()));
    }
    recorder_wake_.notify_one();
}

void CreationFlow::retry_or_dead_letter(CreatorSeams &seams, Attempt attempt,
                                        const std::string &why, Clock::time_point now) {
    ++attempt.attempts;
    if (attempt.attempts < settings_.max_attempts) {
        attempt.due = now + backoff(attempt.attempts);
        log_.warn("creation event will be retried", {{"attempt", attempt.attempts},
                                                     {"error", why},
                                                     {"message_id", attempt.delivery.message_id}});
        const std::lock_guard<std::mutex> lock(mutex_);
        retries_.push_back(std::move(attempt));
        return;
    }
    // Record the failure so that held requests are released now, then park
    // the event where an operator can see and replay it.
    auto event = decode_creation_event(attempt.delivery.body, settings_.naming);
    if (event) {
        auto recorded =
            seams.sessions.mark_failed(event.value().pod, event.value().identity,
                                       "the controller could not create the pod: " + why);
        if (recorded) {
            metrics_.pods_failed.add("Unavailable");
        }
    }
    log_.error("dead-lettering a creation event after its last attempt",
               {{"attempts", attempt.attempts},
                {"error", why},
                {"message_id", attempt.delivery.message_id}});
    settler_.settle(attempt.delivery.connection, attempt.delivery.tag, Settlement::kDeadLetter);
}

void CreationFlow::run_creator(std::size_t worker) noexcept {
    CreatorSeams &seams = creators_.at(worker);
    for (;;) {
        try {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                Clock::time_point wake = Clock::now() + std::chrono::seconds(1);
                for (const Attempt &attempt : retries_) {
                    wake = std::min(wake, attempt.due);
                }
                creator_wake_.wait_until(lock, wake, [this] {
                    return stopping_ || !incoming_.empty() || retry_due(Clock::now());
                });
                if (stopping_) {
                    return;
                }
            }
            // One delivery at a time, each with a fresh clock: the others
            // are taken meanwhile by the other workers.
            while (creator_take_one(seams, Clock::now())) {
                const std::lock_guard<std::mutex> lock(mutex_);
                if (stopping_) {
                    return;
                }
            }
        } catch (const std::exception &error) {
            // Out of memory, most likely: the deliveries stay unacknowledged
            // and come back after a restart; keep the loop alive.
            log_.error("creator step failed", {{"error", error.what()}});
        }
    }
}

// ------------------------------------------------------------- recorder side

void CreationFlow::recorder_step(Clock::time_point now) {
    std::vector<std::string> due;
    std::map<std::string, PodView> restarted;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        recorder_poked_ = false;
        restarted.swap(restarted_);
        for (auto changed = changed_.begin(); changed != changed_.end();) {
            const auto tracked = tracked_.find(*changed);
            if (tracked == tracked_.end()) {
                changed = changed_.erase(changed);
            } else if (tracked->second.retry_at <= now) {
                due.push_back(*changed);
                changed = changed_.erase(changed);
            } else {
                ++changed; // a failure's back-off: kept until it is due
            }
        }
        for (const auto &[name, entry] : tracked_) {
            if (entry.deadline <= now && entry.retry_at <= now &&
                std::find(due.begin(), due.end(), name) == due.end()) {
                due.push_back(name);
            }
        }
    }
    for (const auto &[name, before] : restarted) {
        replace_restarted(before);
    }
    for (const std::string &pod : due) {
        record(pod, now);
    }
}

void CreationFlow::replace_restarted(const PodView &before) {
    // The session first, so that no request is sent to the old address once
    // "gone" is announced; it is removed only if it still points there.
    auto stale =
        recorder_sessions_.mark_stale(before.session, before.ip, std::to_string(before.port));
    if (!stale) {
        // The pod is deleted all the same; the gateway or the reconciler
        // removes the session once its address refuses.
        log_.warn("removing a restarted pod's session failed",
                  {{"pod", before.name}, {"error", stale.error().message}});
    }
    const ApiResult deleted = recorder_api_.delete_pod(before.name);
    if (deleted.outcome != ApiOutcome::kDone && deleted.outcome != ApiOutcome::kNotFound) {
        log_.warn("deleting a restarted pod failed",
                  {{"pod", before.name}, {"error", deleted.message}});
        return;
    }
    metrics_.pods_replaced.add();
    log_.info("deleted a pod whose container restarted; its user gets a new one",
              {{"pod", before.name}});
}

void CreationFlow::record(const std::string &pod, Clock::time_point now) {
    Tracked entry;
    std::optional<PodView> view;
    bool synced = false;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto found = tracked_.find(pod);
        if (found == tracked_.end()) {
            return;
        }
        entry = found->second;
        const auto known = pods_.find(pod);
        if (known != pods_.end()) {
            view = known->second;
            found->second.seen = true;
            if (known->second.restarts > 0) {
                found->second.restarted = true;
                entry.restarted = true;
            }
        }
        synced = synced_;
    }
    const auto retry_later = [&](const std::string &why) {
        log_.warn("recording the outcome failed; will retry", {{"pod", pod}, {"error", why}});
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto found = tracked_.find(pod);
        if (found != tracked_.end()) {
            found->second.failures += 1;
            found->second.retry_at = now + backoff(found->second.failures);
            changed_.insert(pod);
        }
    };

    const bool gone = !view && entry.seen && synced;
    const bool going = view && view->condition == PodCondition::kTerminating;
    if (entry.recreate && (gone || entry.deleted)) {
        // The previous pod is gone: now create the one this event asked for.
        const ApiResult created = recorder_api_.create_pod(pod, entry.identity);
        if (created.outcome == ApiOutcome::kDone || created.outcome == ApiOutcome::kExists) {
            const std::lock_guard<std::mutex> lock(mutex_);
            const auto found = tracked_.find(pod);
            if (found != tracked_.end()) {
                found->second.recreate = false;
                found->second.deleted = false;
                found->second.seen = false;
                found->second.deadline = now + settings_.start_timeout;
            }
            metrics_.pods_created.add();
            log_.info("pod created after its predecessor was deleted", {{"pod", pod}});
            return;
        }
        if (created.outcome == ApiOutcome::kRejected) {
            fail_tracked(pod, "the Kubernetes API refused the pod: " + created.message, false, now,
                         "Rejected");
            return;
        }
        if (entry.failures + 1 >= settings_.max_attempts) {
            // As on the creator's side: recorded failed, parked for an operator.
            fail_tracked(pod, "the controller could not create the pod: " + created.message, false,
                         now, "Unavailable", Settlement::kDeadLetter);
            return;
        }
        retry_later("creating the pod: " + created.message);
        return;
    }
    if (entry.recreate) {
        // The previous pod is still there: whatever it shows is not ours.
        if (entry.deadline <= now) {
            fail_tracked(pod, "StartTimeout: the previous pod was not gone in time", true, now);
        }
        return;
    }

    if (view && view->condition == PodCondition::kReady) {
        auto written = recorder_sessions_.mark_ready(pod, entry.identity, view->ip, view->port);
        if (!written) {
            retry_later(written.error().message);
            return;
        }
        if (written.value() == ScriptOutcome::kSuperseded) {
            // The user claimed a warm pod while this event waited: this one
            // is nobody's. Deleting it now spares the reconciler the orphan.
            const ApiResult deleted = recorder_api_.delete_pod(pod);
            log_.info("deleting a cold pod: its user claimed a warm one meanwhile",
                      {{"pod", pod}, {"api", deleted.message}});
        } else if (written.value() == ScriptOutcome::kOk) {
            metrics_.pods_ready.add();
            if (view->created_ms > 0) {
                metrics_.start_seconds.observe(static_cast<double>(std::max<std::int64_t>(
                                                   0, wall_clock_ms() - view->created_ms)) /
                                               1000.0);
            }
            log_.info("pod ready", {{"pod", pod}, {"ip", view->ip}, {"port", view->port}});
        } else {
            log_.warn("pod ready but the session moved on",
                      {{"pod", pod}, {"outcome", script_outcome_word(written.value())}});
        }
        settle_tracked(pod, Settlement::kAck);
        return;
    }
    if (view && view->condition == PodCondition::kFailed) {
        fail_tracked(pod, view->reason, true, now);
        return;
    }
    if (view && view->condition == PodCondition::kStarting) {
        const std::string_view stage = spawn_stage_of(*view);
        // Remembered only once written, so a stage Redis missed is tried
        // again on the next pass.
        if (stage != entry.stage && write_stage(recorder_sessions_, pod, entry.identity, stage)) {
            const std::lock_guard<std::mutex> lock(mutex_);
            const auto found = tracked_.find(pod);
            if (found != tracked_.end()) {
                found->second.stage = std::string(stage);
            }
        }
    }
    if (!entry.recreate && (going || gone || entry.deleted) && entry.restarted) {
        // Its container died while this creation waited, and the pod is
        // being replaced for it (by whichever replica's watch saw the
        // restart first): the user waits for the new pod, as after a
        // replacement this replica started itself.
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto found = tracked_.find(pod);
        if (found != tracked_.end()) {
            found->second.recreate = true;
            changed_.insert(pod);
        }
        log_.info("a pod whose container restarted is being replaced; creating it again once gone",
                  {{"pod", pod}});
        return;
    }
    if (!entry.recreate && (going || gone || entry.deleted)) {
        fail_tracked(pod, "Deleted: the pod was deleted before it was ready", false, now);
        return;
    }
    if (entry.deadline <= now) {
        fail_tracked(pod, start_timeout_reason(settings_.start_timeout, view ? view->reason : ""),
                     true, now);
    }
}

void CreationFlow::fail_tracked(const std::string &pod, const std::string &reason, bool delete_pod,
                                Clock::time_point now, const std::string &label,
                                Settlement settlement) {
    std::string identity;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto found = tracked_.find(pod);
        if (found == tracked_.end()) {
            return;
        }
        identity = found->second.identity;
    }
    auto written = recorder_sessions_.mark_failed(pod, identity, reason);
    if (!written) {
        log_.warn("recording a failure failed; will retry",
                  {{"pod", pod}, {"error", written.error().message}});
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto found = tracked_.find(pod);
        if (found != tracked_.end()) {
            found->second.failures += 1;
            found->second.retry_at = now + backoff(found->second.failures);
            changed_.insert(pod);
        }
        return;
    }
    metrics_.pods_failed.add(label.empty() ? failure_label(reason) : label);
    log_.warn("pod failed", {{"pod", pod}, {"reason", reason}});
    if (delete_pod) {
        const ApiResult deleted = recorder_api_.delete_pod(pod);
        if (deleted.outcome != ApiOutcome::kDone && deleted.outcome != ApiOutcome::kNotFound) {
            // The reconciler deletes it later: once the failed session
            // expires, the pod is an orphan.
            log_.warn("deleting a failed pod failed", {{"pod", pod}, {"error", deleted.message}});
        }
    }
    settle_tracked(pod, settlement);
}

void CreationFlow::settle_tracked(const std::string &pod, Settlement settlement) {
    Tracked entry;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto found = tracked_.find(pod);
        if (found == tracked_.end()) {
            return;
        }
        entry = std::move(found->second);
        tracked_.erase(found);
        metrics_.tracked_creations.set(static_cast<double>(tracked_.size()));
    }
    for (const auto &[connection, tag] : entry.deliveries) {
        settler_.settle(connection, tag, settlement);
    }
}

void CreationFlow::run_recorder() noexcept {
    for (;;) {
        try {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                recorder_wake_.wait_for(lock, std::chrono::milliseconds(250),
                                        [this] { return stopping_ || recorder_poked_; });
                if (stopping_) {
                    return;
                }
            }
            recorder_step(Clock::now());
        } catch (const std::exception &error) {
            log_.error("recorder step failed", {{"error", error.what()}});
        }
    }
}

void CreationFlow::stop() noexcept {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    creator_wake_.notify_all();
    recorder_wake_.notify_all();
}

} // namespace pod_router::controller
