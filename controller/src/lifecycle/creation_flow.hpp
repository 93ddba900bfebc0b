// A creation event's journey through the controller, from delivery to ack:
//
//   consumer thread      creation workers (N threads)   recorder thread
//   ---------------      ----------------------------   ---------------
//   delivery --enqueue-> decode (poison: dead-letter)
//                        session already ready? ack
//                        pod known? else POST /pods
//                        (409 AlreadyExists = created)
//                        track(pod, delivery) ---------> pod Ready:  mark_ready, ack
//   watch thread                                         pod failed: mark_failed, delete, ack
//   ------------                                         deleted:    mark_failed, ack
//   pod event --observe-----------------------------> not Ready in time: mark_failed, delete, ack
//
// A delivery is acknowledged only once its outcome is written to Redis, so a
// crash anywhere before that leaves the message unacknowledged and the
// broker redelivers it; every step is idempotent (409 is success, a ready
// session is just acked), so a redelivery creates no second pod.
//
// The creation workers (--concurrent-creations) each have their own API
// client and Redis connection and take one delivery at a time, so that a
// class of new users arriving together is not created one round trip after
// another; their API calls share one rate limit. Two deliveries for the same
// pod are never in two workers' hands at once: the second waits until the
// first is handled, then finds it tracked (client-go's work queue makes the
// same promise per key).
//
// Failures of Redis or of the API are retried with back-off while the
// message stays unacknowledged (it counts against the prefetch: natural
// back-pressure); after max_attempts the event goes to the dead-letter
// queue, recorded as failed when Redis allows. A message that can never
// succeed (not a valid event, invalid identity) is dead-lettered at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lifecycle/pod_status.hpp"
#include "lifecycle/seams.hpp"
#include "ops/log.hpp"
#include "ops/metrics.hpp"
#include "pod_router/creation_event.hpp"
#include "pod_router/pod_name.hpp"

namespace pod_router::controller {

struct FlowSettings {
    NamingPolicy naming = NamingPolicy::create().value();
    // A pod not Ready this long after its creation is failed and deleted.
    std::chrono::milliseconds start_timeout{120'000};
    // Tries of one event while Redis or the API is unavailable.
    int max_attempts = 5;
    std::chrono::milliseconds retry_min{500};
    std::chrono::milliseconds retry_max{10'000};
};

// What one creation worker talks to: its own API client and Redis
// connection (neither is shareable between threads).
struct CreatorSeams {
    PodApi &api;
    SessionWriter &sessions;
};

class CreationFlow final : public PodObserver {
  public:
    using Clock = std::chrono::steady_clock;

    // One creation worker per entry of `creators` (at least one).
    CreationFlow(FlowSettings settings, std::vector<CreatorSeams> creators, PodApi &recorder_api,
                 SessionWriter &recorder_sessions, Settler &settler, Logger &logger,
                 ControllerMetrics &metrics);
    // One creation worker.
    CreationFlow(FlowSettings settings, PodApi &creator_api, SessionWriter &creator_sessions,
                 PodApi &recorder_api, SessionWriter &recorder_sessions, Settler &settler,
                 Logger &logger, ControllerMetrics &metrics);

    // Consumer thread: hand a delivery over; never blocks on I/O.
    void enqueue(Delivery delivery);

    // Watch thread: what the one watch over managed pods saw.
    void observe(const PodView &pod) override;
    void observe_deleted(const std::string &pod) override;
    void observe_all(const std::vector<PodView> &pods) override;

    // The threads' bodies; return once stop() was called. run_creator runs
    // creation worker number `worker` (0 to creators() - 1), each on a
    // thread of its own.
    void run_creator(std::size_t worker) noexcept;
    void run_recorder() noexcept;
    void stop() noexcept;
    std::size_t creators() const noexcept { return creators_.size(); }

    // One step of each loop, for the threads above and for tests.
    // Creator: worker `worker` handles the queued and due deliveries, one
    // at a time; returns how many.
    std::size_t creator_step(Clock::time_point now, std::size_t worker = 0);
    // Recorder: records outcomes of changed pods and expired deadlines.
    void recorder_step(Clock::time_point now);

    // Deliveries taken but not yet settled (the graceful shutdown waits for
    // them to drain, up to its timeout).
    std::size_t unsettled() const;
    // The pod cache: whether the watch has listed once, and one pod's view.
    bool synced() const;
    std::optional<PodView> cached(const std::string &pod) const;

  private:
    struct Attempt {
        Delivery delivery;
        int attempts = 0;
        Clock::time_point due;
    };
    struct Tracked {
        std::string identity;
        std::vector<std::pair<std::uint64_t, std::uint64_t>> deliveries; // (connection, tag)
        Clock::time_point deadline;
        Clock::time_point retry_at; // when a Redis or API failure is retried
        int failures = 0;
        bool recreate = false;  // a previous pod is being deleted; create again once it is gone
        bool seen = false;      // the watch has shown the pod since it was tracked
        bool deleted = false;   // the watch saw it deleted
        bool restarted = false; // the watch has shown its containers restarted
        std::string stage;      // the spawn stage last written for waiting users
    };
    enum class Handled { kDone, kRetry };

    // The next delivery due, retries first; counted in hand until finished.
    std::optional<Attempt> take(Clock::time_point now);
    bool retry_due(Clock::time_point now) const; // mutex_ held
    // Takes and handles one delivery on `seams`; false when none was due.
    bool creator_take_one(CreatorSeams &seams, Clock::time_point now);
    // Handled::kRetry sets `why`.
    Handled handle(CreatorSeams &seams, const Attempt &attempt, const CreationEvent &event,
                   Clock::time_point now, std::string &why);
    Handled handle_create(CreatorSeams &seams, const CreationEvent &event, const Delivery &delivery,
                          Clock::time_point now, std::string &why);
    void track(const CreationEvent &event, const Delivery &delivery, Clock::time_point now,
               bool recreate);
    void retry_or_dead_letter(CreatorSeams &seams, Attempt attempt, const std::string &why,
                              Clock::time_point now);
    Clock::duration backoff(int attempts) const;

    // False when Redis did not take it.
    bool write_stage(SessionWriter &sessions, const std::string &pod, const std::string &identity,
                     std::string_view stage);
    // Recorder side: the outcome for one tracked pod; false to retry later.
    void record(const std::string &pod, Clock::time_point now);
    void replace_restarted(const PodView &before);
    void settle_tracked(const std::string &pod, Settlement settlement);
    // Tracked pods are settled all at once with the first delivery's outcome.
    // Records the failure (label: the metric's reason, empty for the
    // reason's first word) and settles every delivery of the pod.
    void fail_tracked(const std::string &pod, const std::string &reason, bool delete_pod,
                      Clock::time_point now, const std::string &label = {},
                      Settlement settlement = Settlement::kAck);

    FlowSettings settings_;
    std::vector<CreatorSeams> creators_;
    PodApi &recorder_api_;
    SessionWriter &recorder_sessions_;
    Settler &settler_;
    ComponentLog log_;
    ControllerMetrics &metrics_;

    mutable std::mutex mutex_;
    std::condition_variable creator_wake_;
    std::condition_variable recorder_wake_;
    bool stopping_ = false;
    std::deque<Delivery> incoming_;
    std::size_t in_hand_ = 0; // taken by a worker, not yet tracked, settled or put back
    std::vector<Attempt> retries_;
    std::set<std::string> busy_;                   // pods a worker is handling now
    std::multimap<std::string, Attempt> deferred_; // their other deliveries, until then
    std::map<std::string, PodView> pods_;          // the watch's cache
    bool synced_ = false;
    std::map<std::string, Tracked> tracked_;
    std::set<std::string> changed_;            // pods the recorder must look at
    std::map<std::string, PodView> restarted_; // serving pods whose container restarted
    bool recorder_poked_ = false;              // something new for the recorder
};

} // namespace pod_router::controller
