// What only the leader does: reap idle sessions and reconcile drift between
// the pods and the sessions. Both run on one thread of their own, so that a
// slow pass never delays the creation flow.
//
// Reaper, every reap_interval: the sessions whose last activity is older
// than idle_timeout, read from the activity sorted set oldest first (cost
// proportional to the expired ones, not to all sessions); for each,
// begin_reap re-checks atomically (used since? not ready?) and marks it
// terminating; then the pod is deleted and finish_reap forgets the session
// and announces "gone", so a waiting request creates a new pod.
//
// Warm pool (pool/warm_pool.hpp), when there is one: tended on every pass
// of this thread's loop (twice a second).
//
// Reconciler, at election and every reconcile_interval:
//   - a managed pod without a session, older than the grace period: orphan
//     (a crash between creation and recording), deleted; so is one whose
//     session is served by another pod (a late cold pod of a user who
//     claimed a warm one). Unclaimed or not yet labelled pool pods are the
//     pool's, never orphans;
//   - a ready session whose pod no longer exists: removed (mark_stale);
//   - a terminating session (a reap interrupted by a crash): finished;
//   - a pod not Ready past the start timeout: failed and deleted;
//   - a Ready pod whose session is still pending (its outcome was never
//     recorded): recorded ready.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

#include "kube/pod_api.hpp"
#include "ops/log.hpp"
#include "ops/metrics.hpp"
#include "pool/warm_pool.hpp"
#include "store/session_store.hpp"

namespace pod_router::controller {

struct DutySettings {
    std::chrono::milliseconds idle_timeout{600'000};
    std::chrono::milliseconds reap_interval{10'000};
    std::chrono::milliseconds reconcile_interval{120'000};
    std::chrono::milliseconds start_timeout{120'000};
    // A pod younger than this is never taken for an orphan: its session may
    // be being written right now.
    std::chrono::milliseconds orphan_grace{60'000};
    std::size_t reap_batch = 500;
};

struct ReapResult {
    std::size_t candidates = 0;
    std::size_t reaped = 0;
    bool complete = true; // false when Redis or the API failed part way
};

struct ReconcileResult {
    std::size_t orphans_deleted = 0;
    std::size_t stale_sessions = 0;
    std::size_t reaps_finished = 0;
    std::size_t stuck_failed = 0;
    std::size_t ready_recorded = 0;
    bool complete = true;
};

class LeaderDuties {
  public:
    // pool may be null (no warm pool); it must outlive this object.
    LeaderDuties(DutySettings settings, SessionStore &store, KubePodApi &pods,
                 std::function<bool()> is_leader, Logger &logger, ControllerMetrics &metrics,
                 WarmPool *pool = nullptr);

    ReapResult reap_once();
    ReconcileResult reconcile_once();

    void run() noexcept; // the thread's body; returns after stop()
    void stop() noexcept;

  private:
    // Deletes the pod serving a terminating session, then forgets it.
    bool delete_and_finish(const std::string &session, const std::string &pod);

    DutySettings settings_;
    SessionStore &store_;
    KubePodApi &pods_;
    std::function<bool()> is_leader_;
    ComponentLog log_;
    ControllerMetrics &metrics_;
    WarmPool *pool_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
};

} // namespace pod_router::controller
