// The controller's Prometheus metrics: a fixed set, lock-free to update
// (atomics) from any thread, rendered in the text exposition format by the
// /metrics endpoint. Names are pod_router_controller_*.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace pod_router::controller {

class Counter {
  public:
    void add(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
    std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<std::uint64_t> value_{0};
};

class Gauge {
  public:
    void set(double value) noexcept { value_.store(value, std::memory_order_relaxed); }
    double value() const noexcept { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<double> value_{0};
};

// Buckets fixed at construction (upper bounds in seconds, ascending).
class Histogram {
  public:
    explicit Histogram(std::vector<double> bounds);
    void observe(double seconds) noexcept;
    // Appends the _bucket, _sum and _count lines.
    void render(std::string &out, std::string_view name) const;

  private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_; // cumulative on render
    std::atomic<std::uint64_t> count_{0};
    std::atomic<double> sum_{0};
};

// A counter with one label whose values are not known in advance (an HTTP
// status, a failure reason). The caller keeps the set of values small.
class LabeledCounter {
  public:
    void add(const std::string &label_value, std::uint64_t n = 1);
    std::uint64_t value(const std::string &label_value) const;
    void render(std::string &out, std::string_view name, std::string_view label) const;

  private:
    mutable std::mutex mutex_;
    std::map<std::string, std::uint64_t> values_;
};

struct ControllerMetrics {
    ControllerMetrics();

    // Consuming creation events.
    Counter events_consumed;      // deliveries received
    Counter events_acked;         // outcome recorded, acknowledged
    Counter events_dead_lettered; // rejected to the dead-letter queue
    Counter events_duplicate;     // acked at once: the session was already ready
    Counter amqp_reconnects;
    Gauge amqp_connected;

    // Pods.
    Counter pods_created;           // 201 from the API
    Counter pods_already_existed;   // 409 AlreadyExists: a redelivery or a second event
    Counter pods_ready;             // mark_ready written
    LabeledCounter pods_failed;     // mark_failed written, by reason
    Counter pods_replaced;          // a serving pod's container restarted: deleted
    Counter pods_reaped;            // idle, deleted, session forgotten
    LabeledCounter reconcile_fixes; // by kind

    // Create to ready, in three parts.
    Histogram queue_wait_seconds; // event published -> consumed
    Histogram api_create_seconds; // POST pods round trip (with retries)
    Histogram start_seconds;      // created -> Ready observed

    Histogram reap_tick_seconds;
    LabeledCounter api_errors; // Kubernetes API answers >= 400 and transport errors (status 0)
    Counter watch_restarts;    // the watch stream ended or broke and was opened again
    Counter watch_relists;     // 410 Gone: the whole list read again
    Gauge tracked_creations;   // creations waiting for their pod's outcome
    Gauge leader;              // 1 while this replica holds the Lease
    Counter leader_transitions;

    // Warm pool (the leader keeps it; other replicas show 0 or their last).
    Gauge pool_target;             // --warm-pool-size
    Gauge pool_free;               // Ready pool pods no user has claimed
    Gauge pool_starting;           // pool pods created, not Ready yet
    Counter pool_claims;           // claimed pods labelled with their user
    Counter pool_pods_created;     // pool pods the API answered 201 for
    LabeledCounter pool_pods_lost; // pool pods deleted before a claim, by reason
    Histogram pool_refill_seconds; // pool pod created -> offered to users

    std::string render() const;
};

} // namespace pod_router::controller
