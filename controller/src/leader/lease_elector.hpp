// Leader election over a coordination.k8s.io/v1 Lease, as client-go's
// leaderelection does: only the leader reaps and reconciles (consuming
// needs no leader). Timings are client-go's defaults: a Lease lasts 15 s,
// the leader must renew within 10 s or step down, and every replica tries
// every 2 s.
//
// A candidate takes the Lease when it has no holder or when the holder's
// renewTime has not changed for leaseDurationSeconds as measured on OUR
// clock since we first saw that value (never by comparing the server's
// timestamps with our clock, which may be skewed). Every write is a PUT
// carrying the resourceVersion read, so two candidates cannot both win: the
// loser gets 409 Conflict. On shutdown the leader releases the Lease (empty
// holder, leaseDurationSeconds 1) so that another replica takes over at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "kube/kube_client.hpp"
#include "ops/log.hpp"
#include "ops/metrics.hpp"

namespace pod_router::controller {

struct LeaseSettings {
    std::string lease_namespace = "pod-router-system";
    std::string name = "pod-router-controller";
    std::string identity; // unique per replica: the pod name (HOSTNAME) and pid
    std::chrono::milliseconds lease_duration{15'000};
    std::chrono::milliseconds renew_deadline{10'000};
    std::chrono::milliseconds retry_period{2'000};
};

class LeaseElector {
  public:
    LeaseElector(std::unique_ptr<KubeClient> client, LeaseSettings settings, Logger &logger,
                 ControllerMetrics &metrics);

    // The election loop, on a thread of its own; returns after stop(),
    // having released the Lease if it held it.
    void run() noexcept;
    void stop() noexcept;

    // False from the renew deadline on, even while the loop is still blocked
    // in an API call that has not returned.
    bool is_leader() const noexcept {
        return leader_.load(std::memory_order_acquire) &&
               Clock::now().time_since_epoch().count() <
                   leader_until_.load(std::memory_order_acquire);
    }
    const std::string &identity() const noexcept { return settings_.identity; }

  private:
    using Clock = std::chrono::steady_clock;

    // The Lease's record as last read or written, and when it last changed
    // on OUR clock: the only time a takeover is measured against.
    struct Observed {
        std::string holder;
        std::string renew_time;
        std::string resource_version;
        std::chrono::seconds duration{0}; // the holder's leaseDurationSeconds
        Clock::time_point changed_at;
    };

    enum class Write { kRenew, kTakeOver, kRelease };

    bool try_acquire_or_renew();
    bool create();
    bool write(Write kind);
    void release();
    void observe(JsonPtr lease, bool ours); // ours: the answer to our own write
    void renewed(Clock::time_point sent);
    void step_down(std::string_view reason);
    void api_failed(std::string_view operation, const ApiResponse &response);
    bool wait_for_next_round();
    std::string lease_path() const;

    std::unique_ptr<KubeClient> client_;
    LeaseSettings settings_;
    ComponentLog log_;
    ControllerMetrics &metrics_;
    std::atomic<bool> leader_{false};
    std::atomic<Clock::rep> leader_until_{0}; // the renew deadline, in Clock ticks
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false; // guarded by mutex_

    // Used by the loop thread only.
    JsonPtr lease_;
    Observed observed_;
    Clock::time_point renew_deadline_;
    std::string last_problem_; // what the last failure log said, to log each once
};

} // namespace pod_router::controller
