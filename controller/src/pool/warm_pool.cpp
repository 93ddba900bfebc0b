#include "pool/warm_pool.hpp"

#include <algorithm>
#include <iterator>
#include <random>

namespace pod_router::controller {

namespace {

constexpr std::size_t kClaimsPerPass = 100;

} // namespace

WarmPool::WarmPool(PoolSettings settings, NamingPolicy naming, PoolStore &store, PoolPodApi &api,
                   Logger &logger, ControllerMetrics &metrics)
    : settings_(settings), naming_(std::move(naming)), store_(store), api_(api),
      log_(logger, "pool"), metrics_(metrics) {
}

// ---------------------------------------------------------------- watch side

void WarmPool::observe(const PodView &pod) {
    if (!pod.pool) {
        return;
    }
    const std::lock_guard<std::mutex> lock(mutex_);
    pods_[pod.name] = pod;
}

void WarmPool::observe_deleted(const std::string &pod) {
    if (!naming_.is_pool_pod_name(pod)) {
        return;
    }
    const std::lock_guard<std::mutex> lock(mutex_);
    pods_.erase(pod);
    deleted_.insert(pod);
}

void WarmPool::observe_all(const std::vector<PodView> &pods) {
    std::map<std::string, PodView> fresh;
    for (const PodView &pod : pods) {
        if (pod.pool) {
            fresh.emplace(pod.name, pod);
        }
    }
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const auto &[name, view] : pods_) {
        if (fresh.count(name) == 0) {
            deleted_.insert(name); // deleted while the watch was away
        }
    }
    pods_ = std::move(fresh);
    synced_ = true;
}

// --------------------------------------------------------------- leader side

std::string WarmPool::new_pod_name() {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string suffix(12, '0');
    for (char &c : suffix) {
        c = kHex[random_() & 15];
    }
    return naming_.pool_pod_name(suffix);
}

WarmPool::Clock::duration WarmPool::backoff(int attempts) {
    return jittered_backoff(attempts, settings_.retry_initial, settings_.retry_max, random_);
}

void WarmPool::queue_claim(const std::string &pod, const std::string &session) {
    // Claimed: never offered by this replica again, whatever it believed.
    offered_.erase(pod);
    if (labelled_.count(pod) == 0 && withdrawn_.count(pod) == 0) {
        unlabelled_.try_emplace(pod, PendingClaim{session, 0, now_});
    }
}

WarmPool::ClaimStep WarmPool::delete_claimed(const std::string &pod, const std::string &why) {
    const ApiResult deleted = api_.delete_pod(pod);
    if (deleted.outcome != ApiOutcome::kDone && deleted.outcome != ApiOutcome::kNotFound) {
        log_.warn("deleting a claimed pool pod failed", {{"pod", pod}, {"error", deleted.message}});
        return ClaimStep::kRetry;
    }
    withdrawn_.insert(pod);
    log_.info(why, {{"pod", pod}});
    return ClaimStep::kDone;
}

WarmPool::ClaimStep WarmPool::label_claim(const std::string &pod, PendingClaim &claim) {
    if (claim.session.empty()) {
        // Taken out by route for an address it could not use: nobody has it.
        return delete_claimed(pod, "deleting a pool pod whose address Redis could not use");
    }
    auto session = store_.session(claim.session);
    if (!session) {
        return ClaimStep::kRetry;
    }
    if (!session.value() || session.value()->pod != pod) {
        // The user let go of it already (a dead address, a reap): a claimed
        // pod is never offered again, so it is only deleted.
        return delete_claimed(pod, "deleting a claimed pool pod its session no longer uses");
    }
    const ApiResult labelled = api_.label_claimed(pod, claim.session, session.value()->identity);
    switch (labelled.outcome) {
    case ApiOutcome::kDone:
        labelled_.insert(pod);
        metrics_.pool_claims.add();
        log_.info("pool pod claimed by a new user", {{"pod", pod}, {"session", claim.session}});
        return ClaimStep::kDone;
    case ApiOutcome::kNotFound:
        return ClaimStep::kDone; // gone: the watch reports it and it is forgotten
    case ApiOutcome::kRejected:
        // The claim stands without labels, and the session names the pod,
        // so it is reaped as usual; but until it is labelled nothing else
        // would delete it, so it is tried again, ever more slowly.
        if (claim.attempts == 0) {
            log_.error("labelling a claimed pool pod was refused; retrying with a back-off",
                       {{"pod", pod}, {"status", labelled.status}, {"error", labelled.message}});
        }
        return ClaimStep::kRetry;
    case ApiOutcome::kExists:
    case ApiOutcome::kUnavailable:
        break;
    }
    return ClaimStep::kRetry;
}

void WarmPool::retire_and_delete(const PodView &pod, const char *reason, Claimed claimed,
                                 PoolPassResult &result) {
    auto retired = store_.pool_retire(pod.name);
    if (!retired) {
        result.complete = false;
        return;
    }
    const bool was_claimed = retired.value().outcome == ScriptOutcome::kClaimed;
    if (was_claimed && claimed == Claimed::kOnlyIfFree) {
        queue_claim(pod.name, retired.value().session); // a user has it now
        return;
    }
    const ApiResult deleted = api_.delete_pod(pod.name);
    if (deleted.outcome != ApiOutcome::kDone && deleted.outcome != ApiOutcome::kNotFound) {
        log_.warn("deleting a pool pod failed", {{"pod", pod.name}, {"error", deleted.message}});
        result.complete = false;
        return;
    }
    // Until the watch shows it terminating, it still looks Ready: it must
    // not be offered again meanwhile, nor counted twice.
    withdrawn_.insert(pod.name);
    offered_.erase(pod.name);
    created_.erase(pod.name);
    unlabelled_.erase(pod.name);
    if (was_claimed) {
        // Broken after a user claimed it: that user's next request finds the
        // address dead and gets a new pod, like any user whose pod died.
        log_.warn("deleted a claimed pool pod that broke",
                  {{"pod", pod.name}, {"session", retired.value().session}, {"reason", reason}});
        return;
    }
    ++result.retired;
    metrics_.pool_pods_lost.add(reason);
    log_.info("pool pod removed", {{"pod", pod.name}, {"reason", reason}, {"detail", pod.reason}});
}

void WarmPool::sweep(const std::vector<PodView> &pods, PoolPassResult &result) {
    auto members = store_.pool_members();
    if (!members) {
        result.complete = false;
        next_sweep_ =
            now_ + std::min<Clock::duration>(settings_.sweep_interval, std::chrono::seconds(5));
        return;
    }
    next_sweep_ = now_ + settings_.sweep_interval;
    std::map<std::string, const PodView *> existing;
    for (const PodView &pod : pods) {
        existing.emplace(pod.name, &pod);
    }
    // A pod deleted while no replica watched (all down, or a leader that
    // lost its lease in the middle) leaves its entries behind: a dead
    // address a new user would be given, and a free count the refill
    // trusts. Missing at two sweeps running, never at one: another leader
    // can offer a pod this watch has not shown yet.
    std::set<std::string> missing;
    for (const std::string &name : members.value().named) {
        if (existing.count(name) != 0) {
            continue;
        }
        if (missing_.count(name) == 0) {
            missing.insert(name);
            continue;
        }
        if (!store_.pool_forget(name)) {
            result.complete = false;
            missing.insert(name);
            continue;
        }
        ++result.forgotten;
        log_.warn("forgot a pool pod that Redis listed and no longer exists", {{"pod", name}});
    }
    missing_ = std::move(missing);
    // Offered once, now in none of the keys (removed by hand, or lost with
    // Redis data): offered again on this pass; pool_ready refuses a claimed one.
    for (auto name = offered_.begin(); name != offered_.end();) {
        name = members.value().named.count(*name) == 0 ? offered_.erase(name) : std::next(name);
    }
    // A claim whose queue entry was lost (a reply that never came, a pass
    // that failed after taking it) is found here: claimed, still unlabelled.
    for (const auto &[name, session] : members.value().claimed) {
        const auto pod = existing.find(name);
        if (pod != existing.end() && pod->second->session.empty() &&
            pod->second->condition != PodCondition::kTerminating) {
            queue_claim(name, session);
        }
    }
}

void WarmPool::create_pods(std::size_t wanted, PoolPassResult &result) {
    if (now_ < next_create_) {
        return; // backing off after a refusal
    }
    for (std::size_t i = 0; i < wanted; ++i) {
        const std::string name = new_pod_name();
        const ApiResult created = api_.create_pool_pod(name);
        if (created.outcome == ApiOutcome::kExists) {
            continue; // 48 random bits collided: the next pass tries again
        }
        if (created.outcome != ApiOutcome::kDone) {
            // A quota, an admission webhook, the API away: each pass would
            // ask again and spend the rate limit the reaper shares.
            ++create_failures_;
            next_create_ = now_ + backoff(create_failures_);
            if ((create_failures_ & (create_failures_ - 1)) == 0) { // 1st, 2nd, 4th, 8th...
                log_.warn("creating a pool pod failed; backing off",
                          {{"status", created.status},
                           {"error", created.message},
                           {"failures", std::to_string(create_failures_)}});
            }
            result.complete = false;
            return;
        }
        create_failures_ = 0;
        created_[name] = now_;
        metrics_.pool_pods_created.add();
        ++result.created;
    }
}

void WarmPool::forget_term() {
    offered_.clear();
    missing_.clear();
    next_sweep_ = Clock::time_point{}; // another leader may have acted: look at once
    target_published_ = false;
}

void WarmPool::follow() {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        deleted_.clear(); // the next leader sweeps instead
    }
    forget_term();
    created_.clear();
    unlabelled_.clear();
}

PoolPassResult WarmPool::tend_at(bool newly_elected, Clock::time_point now) {
    PoolPassResult result;
    now_ = now;
    if (newly_elected) {
        forget_term();
    }
    if (!target_published_) {
        // For the gateways' "pool empty" count; absent means no pool.
        target_published_ = static_cast<bool>(store_.set_pool_target(settings_.size));
        metrics_.pool_target.set(static_cast<double>(settings_.size));
    }

    std::vector<PodView> pods;
    std::set<std::string> deleted;
    bool synced = false;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        pods.reserve(pods_.size());
        for (const auto &[name, view] : pods_) {
            pods.push_back(view);
        }
        deleted.swap(deleted_);
        synced = synced_;
    }
    for (const std::string &name : deleted) {
        offered_.erase(name);
        created_.erase(name);
        labelled_.erase(name);
        withdrawn_.erase(name);
        unlabelled_.erase(name);
        if (!store_.pool_forget(name)) {
            result.complete = false;
            const std::lock_guard<std::mutex> lock(mutex_);
            deleted_.insert(name);
        }
    }
    if (!synced) {
        return result; // nothing is known about the pool yet
    }

    auto taken = store_.take_claims(kClaimsPerPass);
    if (taken) {
        for (const PoolClaim &claim : taken.value()) {
            queue_claim(claim.pod, claim.session);
        }
    } else {
        result.complete = false;
    }
    if (now_ >= next_sweep_) {
        sweep(pods, result);
    }
    std::size_t attempted = 0;
    for (auto claim = unlabelled_.begin();
         claim != unlabelled_.end() && attempted < kClaimsPerPass;) {
        if (claim->second.next_try > now_) {
            ++claim;
            continue;
        }
        ++attempted;
        if (label_claim(claim->first, claim->second) == ClaimStep::kDone) {
            if (labelled_.count(claim->first) != 0) {
                ++result.labelled;
            }
            claim = unlabelled_.erase(claim);
            continue;
        }
        ++claim->second.attempts;
        claim->second.next_try = now_ + backoff(claim->second.attempts);
        result.complete = false;
        ++claim;
    }

    const std::int64_t now_ms = wall_clock_ms();
    std::set<std::string> listed;
    std::vector<const PodView *> offered;
    for (const PodView &pod : pods) {
        listed.insert(pod.name);
        if (!pod.session.empty()) {
            created_.erase(pod.name); // labelled: a user's pod now
            labelled_.erase(pod.name);
            unlabelled_.erase(pod.name);
            continue;
        }
        if (withdrawn_.count(pod.name) != 0 || unlabelled_.count(pod.name) != 0 ||
            labelled_.count(pod.name) != 0) {
            continue; // on its way out, or a user's already (the watch lags)
        }
        if (pod.condition == PodCondition::kTerminating) {
            // Deleted by someone (an operator, an eviction): out of the pool
            // now, not when its grace period ends, so no new user is given
            // a dying pod and a replacement starts at once.
            created_.erase(pod.name);
            auto retired = store_.pool_retire(pod.name);
            if (retired) {
                withdrawn_.insert(pod.name);
                offered_.erase(pod.name);
            } else {
                result.complete = false;
            }
            continue;
        }
        if (pod.condition == PodCondition::kFailed) {
            retire_and_delete(pod, "failed", Claimed::kAlso, result);
            continue;
        }
        if (pod.restarts > 0) {
            // Its process died once: whatever it held is suspect. A claimed
            // one is its user's, and restarts as user pods do.
            retire_and_delete(pod, "restarted", Claimed::kOnlyIfFree, result);
            continue;
        }
        if (pod.condition == PodCondition::kStarting) {
            const std::int64_t age_ms = pod.created_ms > 0 ? now_ms - pod.created_ms : 0;
            if (offered_.count(pod.name) != 0) {
                // Ready once, not now: out of the free set before a new user
                // is sent to it, and not counted as starting while there.
                retire_and_delete(pod, "not_ready", Claimed::kOnlyIfFree, result);
            } else if (age_ms >= settings_.start_timeout.count()) {
                retire_and_delete(pod, "start_timeout", Claimed::kOnlyIfFree, result);
            } else {
                ++result.starting;
            }
            continue;
        }
        if (offered_.count(pod.name) != 0) {
            offered.push_back(&pod);
            continue;
        }
        auto ready = store_.pool_ready(pod.name, pod.ip, pod.port);
        if (!ready) {
            result.complete = false;
            continue;
        }
        if (ready.value().outcome == ScriptOutcome::kClaimed) {
            // Claimed while this replica was not looking: label it now.
            queue_claim(pod.name, ready.value().session);
            continue;
        }
        offered_.insert(pod.name);
        offered.push_back(&pod);
        ++result.offered;
        const auto mine = created_.find(pod.name);
        if (mine != created_.end()) {
            metrics_.pool_refill_seconds.observe(
                std::chrono::duration<double>(now_ - mine->second).count());
            created_.erase(mine);
        }
    }
    // Created by this replica, not shown by the watch yet: still starting,
    // or the next pass would create them again.
    for (auto mine = created_.begin(); mine != created_.end();) {
        if (listed.count(mine->first) != 0) {
            ++mine;
        } else if (now_ - mine->second > settings_.unseen_timeout) {
            mine = created_.erase(mine);
        } else {
            ++result.starting;
            ++mine;
        }
    }

    auto free = store_.pool_free_count();
    if (!free) {
        // Without the count, creating could overshoot: wait for Redis.
        result.complete = false;
        return result;
    }
    result.free = free.value();
    const std::size_t supply = result.free + result.starting;
    if (supply < settings_.size) {
        create_pods(std::min(settings_.size - supply, settings_.max_creations_per_pass), result);
    } else if (supply > settings_.size) {
        std::size_t surplus = std::min(supply - settings_.size, result.free);
        for (const PodView *pod : offered) {
            if (surplus == 0) {
                break;
            }
            const std::size_t before = result.retired;
            retire_and_delete(*pod, "surplus", Claimed::kOnlyIfFree, result);
            if (result.retired > before) {
                --surplus;
                --result.free;
            }
        }
    }
    metrics_.pool_free.set(static_cast<double>(result.free));
    metrics_.pool_starting.set(static_cast<double>(result.starting + result.created));
    return result;
}

} // namespace pod_router::controller
