// The warm pool: pods started from the user pod template before anyone asks,
// so that a new user's first request is served at once (docs/controller.md,
// "Warm pool"; the Redis side is docs/redis-schema.md, "Warm pool").
//
//   watch thread          leader's thread, every pass (tend)
//   ------------          ----------------------------------
//   pool pod seen ---->   Ready and unassigned: offered (pool_ready: into the
//   (observe)             free set, unless a user claimed it already)
//                         claims the gateways made (route's SPOP): labelled
//                         with their user (PATCH), then they are user pods
//                         failed, restarted or stuck starting: retired
//                         (pool_retire) and deleted; never offered again
//                         fewer than size free or starting: created (at most
//                         max_creations_per_pass, paced by the API client's
//                         rate limiter); more: free ones retired and deleted
//   pool pod deleted ->   forgotten in Redis (pool_forget)
//
// A pool pod serves one user, once: after a claim it carries the user's
// labels and is reaped like any user pod, never returned to the pool. No
// user ever lands on a process another user has touched.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "lifecycle/seams.hpp"
#include "ops/log.hpp"
#include "ops/metrics.hpp"
#include "pod_router/pod_name.hpp"
#include "store/session_store.hpp"

namespace pod_router::controller {

struct PoolSettings {
    std::size_t size = 0; // --warm-pool-size; 0: no pool
    // A pool pod not Ready this long after creation is deleted and replaced.
    std::chrono::milliseconds start_timeout{120'000};
    // Creations per pass (a pass runs about twice a second); the API
    // client's token bucket paces them further.
    std::size_t max_creations_per_pass = 10;
    // A pod created but never shown by the watch is no longer counted as
    // starting after this (its creation event was lost, or it was deleted).
    std::chrono::milliseconds unseen_timeout{30'000};
};

struct PoolPassResult {
    std::size_t free = 0;     // in the free set after the pass
    std::size_t starting = 0; // created, not Ready yet
    std::size_t created = 0;
    std::size_t offered = 0;
    std::size_t labelled = 0;
    std::size_t retired = 0;
    bool complete = true; // false when Redis or the API failed part way
};

class WarmPool final : public PodObserver {
  public:
    using Clock = std::chrono::steady_clock;

    WarmPool(PoolSettings settings, NamingPolicy naming, PoolStore &store, PoolPodApi &api,
             Logger &logger, ControllerMetrics &metrics);

    // Watch thread: only pods that carry the pool label are kept.
    void observe(const PodView &pod) override;
    void observe_deleted(const std::string &pod) override;
    void observe_all(const std::vector<PodView> &pods) override;

    // Leader's thread: one pass. newly_elected: forget what a previous term
    // of leadership believed (another leader may have acted since).
    PoolPassResult tend(bool newly_elected);

  private:
    void label_claim(const PoolClaim &claim, PoolPassResult &result);
    // surplus: only a free pod goes (a claimed one is its user's now);
    // otherwise the pod is broken and goes even if a user claimed it.
    void retire_and_delete(const PodView &pod, const char *reason, bool surplus,
                           PoolPassResult &result);
    std::string new_pod_name();

    PoolSettings settings_;
    NamingPolicy naming_;
    PoolStore &store_;
    PoolPodApi &api_;
    ComponentLog log_;
    ControllerMetrics &metrics_;

    // Filled by the watch thread, read by tend() under the mutex.
    mutable std::mutex mutex_;
    std::map<std::string, PodView> pods_; // pool pods, claimed or not
    std::set<std::string> deleted_;       // pool pods deleted since the last pass
    bool synced_ = false;

    // The leader's thread only.
    std::set<std::string> offered_;                    // pool_ready answered ok this term
    std::map<std::string, Clock::time_point> created_; // by this replica, not yet offered
    std::vector<PoolClaim> unlabelled_;                // claims whose PATCH must be retried
    // Pods labelled, or taken out of the pool while they terminate, until
    // the watch shows the change or the pod is gone: each is done once.
    std::set<std::string> labelled_;
    std::set<std::string> withdrawn_;
    bool target_published_ = false;
};

} // namespace pod_router::controller
