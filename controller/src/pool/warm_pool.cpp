#include "pool/warm_pool.hpp"

#include <algorithm>
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
    thread_local std::mt19937_64 random{std::random_device{}()};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string suffix(12, '0');
    for (char &c : suffix) {
        c = kHex[random() & 15];
    }
    return naming_.pool_pod_name(suffix);
}

void WarmPool::label_claim(const PoolClaim &claim, PoolPassResult &result) {
    if (labelled_.count(claim.pod) != 0) {
        return; // the same claim, seen again through pool_ready after a restart
    }
    auto session = store_.session(claim.session);
    if (!session) {
        unlabelled_.push_back(claim);
        result.complete = false;
        return;
    }
    if (!session.value() || session.value()->pod != claim.pod) {
        // The user let go of it already (a dead address, a reap): a claimed
        // pod is never offered again, so it is only deleted.
        const ApiResult deleted = api_.delete_pod(claim.pod);
        log_.info("deleting a claimed pool pod its session no longer uses",
                  {{"pod", claim.pod}, {"session", claim.session}, {"api", deleted.message}});
        return;
    }
    const ApiResult labelled =
        api_.label_claimed(claim.pod, claim.session, session.value()->identity);
    switch (labelled.outcome) {
    case ApiOutcome::kDone:
        labelled_.insert(claim.pod);
        ++result.labelled;
        metrics_.pool_claims.add();
        log_.info("pool pod claimed by a new user",
                  {{"pod", claim.pod}, {"session", claim.session}});
        return;
    case ApiOutcome::kNotFound:
        return; // gone: the watch reports it and it is forgotten
    case ApiOutcome::kRejected:
        // The claim stands without labels: the session names the pod, so it
        // is reaped as usual. Only the labels for operators are missing.
        log_.error("labelling a claimed pool pod was refused",
                   {{"pod", claim.pod}, {"status", labelled.status}, {"error", labelled.message}});
        return;
    case ApiOutcome::kExists:
    case ApiOutcome::kUnavailable:
        break;
    }
    unlabelled_.push_back(claim);
    result.complete = false;
}

void WarmPool::retire_and_delete(const PodView &pod, const char *reason, bool surplus,
                                 PoolPassResult &result) {
    auto retired = store_.pool_retire(pod.name);
    if (!retired) {
        result.complete = false;
        return;
    }
    if (retired.value().outcome == ScriptOutcome::kClaimed && surplus) {
        return; // a user has it now
    }
    const ApiResult deleted = api_.delete_pod(pod.name);
    if (deleted.outcome != ApiOutcome::kDone && deleted.outcome != ApiOutcome::kNotFound) {
        log_.warn("deleting a pool pod failed", {{"pod", pod.name}, {"error", deleted.message}});
        result.complete = false;
        return;
    }
    offered_.erase(pod.name);
    created_.erase(pod.name);
    if (retired.value().outcome == ScriptOutcome::kClaimed) {
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

PoolPassResult WarmPool::tend(bool newly_elected) {
    PoolPassResult result;
    if (newly_elected) {
        offered_.clear();
        target_published_ = false;
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
        if (!store_.pool_forget(name)) {
            result.complete = false;
            const std::lock_guard<std::mutex> lock(mutex_);
            deleted_.insert(name);
        }
    }
    if (!synced) {
        return result; // nothing is known about the pool yet
    }

    std::vector<PoolClaim> claims;
    claims.swap(unlabelled_);
    auto taken = store_.take_claims(kClaimsPerPass);
    if (taken) {
        claims.insert(claims.end(), taken.value().begin(), taken.value().end());
    } else {
        result.complete = false;
    }
    for (const PoolClaim &claim : claims) {
        label_claim(claim, result);
    }

    const std::int64_t now_ms = wall_clock_ms();
    std::set<std::string> listed;
    std::vector<const PodView *> offered;
    for (const PodView &pod : pods) {
        listed.insert(pod.name);
        if (!pod.session.empty()) {
            created_.erase(pod.name); // labelled: a user's pod now
            labelled_.erase(pod.name);
            continue;
        }
        if (pod.condition == PodCondition::kTerminating) {
            // Deleted by someone (an operator, an eviction): out of the pool
            // now, not when its grace period ends, so no new user is given
            // a dying pod and a replacement starts at once.
            created_.erase(pod.name);
            if (withdrawn_.count(pod.name) == 0) {
                if (store_.pool_retire(pod.name)) {
                    withdrawn_.insert(pod.name);
                    offered_.erase(pod.name);
                } else {
                    result.complete = false;
                }
            }
            continue;
        }
        if (pod.condition == PodCondition::kFailed) {
            retire_and_delete(pod, "failed", false, result);
            continue;
        }
        if (pod.restarts > 0) {
            // Its process died once: whatever it held is suspect.
            retire_and_delete(pod, "restarted", false, result);
            continue;
        }
        if (pod.condition == PodCondition::kStarting) {
            const std::int64_t age_ms = pod.created_ms > 0 ? now_ms - pod.created_ms : 0;
            if (age_ms >= settings_.start_timeout.count()) {
                retire_and_delete(pod, "start_timeout", false, result);
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
            label_claim(PoolClaim{pod.name, ready.value().session}, result);
            continue;
        }
        offered_.insert(pod.name);
        offered.push_back(&pod);
        ++result.offered;
        const auto mine = created_.find(pod.name);
        if (mine != created_.end()) {
            metrics_.pool_refill_seconds.observe(
                std::chrono::duration<double>(Clock::now() - mine->second).count());
            created_.erase(mine);
        }
    }
    // Created by this replica, not shown by the watch yet: still starting,
    // or the next pass would create them again.
    const auto now = Clock::now();
    for (auto mine = created_.begin(); mine != created_.end();) {
        if (listed.count(mine->first) != 0) {
            ++mine;
        } else if (now - mine->second > settings_.unseen_timeout) {
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
        const std::size_t wanted =
            std::min(settings_.size - supply, settings_.max_creations_per_pass);
        for (std::size_t i = 0; i < wanted; ++i) {
            const std::string name = new_pod_name();
            const ApiResult created = api_.create_pool_pod(name);
            if (created.outcome == ApiOutcome::kExists) {
                continue; // 48 random bits collided: the next pass tries again
            }
            if (created.outcome != ApiOutcome::kDone) {
                log_.warn("creating a pool pod failed",
                          {{"status", created.status}, {"error", created.message}});
                result.complete = false;
                break;
            }
            created_[name] = Clock::now();
            metrics_.pool_pods_created.add();
            ++result.created;
        }
    } else if (supply > settings_.size) {
        std::size_t surplus = std::min(supply - settings_.size, result.free);
        for (const PodView *pod : offered) {
            if (surplus == 0) {
                break;
            }
            const std::size_t before = result.retired;
            retire_and_delete(*pod, "surplus", true, result);
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
