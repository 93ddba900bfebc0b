// The warm pool: pods started from the user pod template before anyone asks,
// so that a new user's first request is served at once (docs/controller.md,
// "Warm pool"; the Redis side is docs/redis-schema.md, "Warm pool").
//
//   watch thread          leader's thread, every pass (tend)
//   ------------          ----------------------------------
//   pool pod seen ---->   Ready and unassigned: offered (pool_ready: into the
//   (observe)             free set, unless a user claimed it already)
//                         claims the gateways made (route's SPOP): labelled
//                         with their user (PATCH), then they are user pods;
//                         a claim that cannot be labelled yet is retried
//                         with a back-off, never dropped
//                         failed, restarted, not Ready after being offered,
//                         or stuck starting: retired (pool_retire) and
//                         deleted; never offered again
//                         fewer than size free or starting: created (at most
//                         max_creations_per_pass, paced by the API client's
//                         rate limiter, backing off after a refusal); more:
//                         free ones retired and deleted
//   pool pod deleted ->   forgotten in Redis (pool_forget)
//                         every sweep_interval, and when elected: Redis
//                         compared with the pods that exist; a pod Redis
//                         names that is missing twice running is forgotten,
//                         a claimed pod nobody labelled is labelled
//
// A pool pod serves one user, once: after a claim it carries the user's
// labels and is reaped like any user pod, never returned to the pool. No
// user ever lands on a process another user has touched.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kube/retry_policy.hpp"
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
    // How often Redis's pool entries are checked against the pods.
    std::chrono::milliseconds sweep_interval{30'000};
    // Back-off after a refused creation or label (jittered_backoff: from
    // half the first delay up to first * 2^attempts, at most the cap).
    std::chrono::milliseconds retry_initial{1'000};
    std::chrono::milliseconds retry_max{300'000};
};

struct PoolPassResult {
    std::size_t free = 0;     // in the free set after the pass
    std::size_t starting = 0; // created, not Ready yet
    std::size_t created = 0;
    std::size_t offered = 0;
    std::size_t labelled = 0;
    std::size_t retired = 0;
    std::size_t forgotten = 0; // by the sweep: Redis named them, no pod exists
    bool complete = true;      // false when Redis or the API failed part way
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
    PoolPassResult tend(bool newly_elected) { return tend_at(newly_elected, Clock::now()); }
    // The same at a given time, for tests.
    PoolPassResult tend_at(bool newly_elected, Clock::time_point now);
    // The duties' thread while another replica leads: what a leader would
    // need is dropped (the next term starts with a sweep).
    void follow();

  private:
    struct PendingClaim {
        std::string session;
        int attempts = 0;
        Clock::time_point next_try{};
    };
    enum class ClaimStep { kDone, kRetry };
    enum class Claimed { kOnlyIfFree, kAlso }; // whether a claimed pod is deleted too

    void queue_claim(const std::string &pod, const std::string &session);
    ClaimStep label_claim(const std::string &pod, PendingClaim &claim);
    ClaimStep delete_claimed(const std::string &pod, const std::string &why);
    void sweep(const std::vector<PodView> &pods, PoolPassResult &result);
    // kOnlyIfFree: a claimed pod is its user's now (it is queued for its
    // label instead); kAlso: the pod is broken and goes even if claimed.
    void retire_and_delete(const PodView &pod, const char *reason, Claimed claimed,
                           PoolPassResult &result);
    void create_pods(std::size_t wanted, PoolPassResult &result);
    // What one term of leadership believed about Redis and other leaders.
    void forget_term();
    Clock::duration backoff(int attempts);
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
    std::mt19937_64 random_{std::random_device{}()};   // pod names, back-off jitter
    Clock::time_point now_{};                          // of the pass running
    std::set<std::string> offered_;                    // pool_ready answered ok this term
    std::map<std::string, Clock::time_point> created_; // by this replica, not yet offered
    std::map<std::string, PendingClaim> unlabelled_;   // claims to label (or delete), by pod
    // Pods labelled, or taken out of the pool (deleted, or terminating),
    // until the watch shows the change or the pod is gone: each is done once.
    std::set<std::string> labelled_;
    std::set<std::string> withdrawn_;
    std::set<std::string> missing_;  // named by Redis, no pod, at the last sweep
    Clock::time_point next_sweep_{}; // the epoch: at once
    int create_failures_ = 0;
    Clock::time_point next_create_{};
    bool target_published_ = false;
};

} // namespace pod_router::controller
