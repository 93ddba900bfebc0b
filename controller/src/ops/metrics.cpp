#include "ops/metrics.hpp"

#include <cmath>
#include <cstdio>
#include <memory>
#include <utility>

namespace pod_router::controller {

namespace {

std::string number(double value) {
    if (std::isinf(value)) {
        return value > 0 ? "+Inf" : "-Inf";
    }
    char text[40];
    static_cast<void>(std::snprintf(text, sizeof text, "%.17g", value));
    return text;
}

void add_atomic(std::atomic<double> &target, double delta) noexcept {
    double current = target.load(std::memory_order_relaxed);
    while (!target.compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
    }
}

// Label values are escaped as the exposition format requires.
std::string escaped(std::string_view value) {
    std::string out;
    for (const char c : value) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

void header(std::string &out, std::string_view name, std::string_view type, std::string_view help) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void counter(std::string &out, std::string_view name, std::string_view help, const Counter &value) {
    header(out, name, "counter", help);
    out.append(name).append(" ").append(std::to_string(value.value())).append("\n");
}

void gauge(std::string &out, std::string_view name, std::string_view help, const Gauge &value) {
    header(out, name, "gauge", help);
    out.append(name).append(" ").append(number(value.value())).append("\n");
}

std::vector<double> latency_buckets() {
    return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

} // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size())) {
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
        buckets_[i].store(0, std::memory_order_relaxed);
    }
}

void Histogram::observe(double seconds) noexcept {
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
        if (seconds <= bounds_[i]) {
            buckets_[i].fetch_add(1, std::memory_order_relaxed);
            break;
        }
    }
    count_.fetch_add(1, std::memory_order_relaxed);
    add_atomic(sum_, seconds);
}

void Histogram::render(std::string &out, std::string_view name) const {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        out.append(name).append("_bucket{le=\"").append(number(bounds_[i])).append("\"} ");
        out.append(std::to_string(cumulative)).append("\n");
    }
    const std::uint64_t count = count_.load(std::memory_order_relaxed);
    out.append(name).append("_bucket{le=\"+Inf\"} ").append(std::to_string(count)).append("\n");
    out.append(name).append("_sum ").append(number(sum_.load(std::memory_order_relaxed)));
    out.append("\n").append(name).append("_count ").append(std::to_string(count)).append("\n");
}

void LabeledCounter::add(const std::string &label_value, std::uint64_t n) {
    const std::lock_guard<std::mutex> lock(mutex_);
    values_[label_value] += n;
}

std::uint64_t LabeledCounter::value(const std::string &label_value) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto found = values_.find(label_value);
    return found == values_.end() ? 0 : found->second;
}

void LabeledCounter::render(std::string &out, std::string_view name, std::string_view label) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const auto &[value, count] : values_) {
        out.append(name).append("{").append(label).append("=\"").append(escaped(value));
        out.append("\"} ").append(std::to_string(count)).append("\n");
    }
}

ControllerMetrics::ControllerMetrics()
    : queue_wait_seconds(latency_buckets()), api_create_seconds(latency_buckets()),
      start_seconds(latency_buckets()),
      reap_tick_seconds({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30}),
      pool_refill_seconds(latency_buckets()) {
}

std::string ControllerMetrics::render() const {
    std::string out;
    const std::string p = "pod_router_controller_";
    counter(out, p + "events_consumed_total", "Creation events received from RabbitMQ.",
            events_consumed);
    counter(out, p + "events_acked_total",
            "Creation events acknowledged once their outcome was recorded.", events_acked);
    counter(out, p + "events_dead_lettered_total",
            "Creation events rejected to the dead-letter queue.", events_dead_lettered);
    counter(out, p + "events_duplicate_total",
            "Creation events acknowledged at once because the session was already ready.",
            events_duplicate);
    counter(out, p + "amqp_reconnects_total", "Connections to RabbitMQ opened after the first.",
            amqp_reconnects);
    gauge(out, p + "amqp_connected", "1 while consuming from RabbitMQ.", amqp_connected);
    counter(out, p + "pods_created_total", "Pods the API answered 201 Created for.", pods_created);
    counter(out, p + "pods_already_existed_total",
            "Pod creations answered 409 AlreadyExists (redeliveries, repeated events).",
            pods_already_existed);
    counter(out, p + "pods_ready_total", "Pods recorded ready in Redis.", pods_ready);
    header(out, p + "pods_failed_total", "counter", "Pods recorded failed in Redis, by reason.");
    pods_failed.render(out, p + "pods_failed_total", "reason");
    counter(out, p + "pods_reaped_total", "Idle pods deleted and their sessions forgotten.",
            pods_reaped);
    counter(out, p + "pods_replaced_total",
            "Serving pods deleted because a container restarted (the user gets a new pod).",
            pods_replaced);
    header(out, p + "reconcile_fixes_total", "counter",
           "Drift repaired by the reconciler, by kind.");
    reconcile_fixes.render(out, p + "reconcile_fixes_total", "kind");
    header(out, p + "creation_queue_wait_seconds", "histogram",
           "From the gateway publishing a creation event to the controller consuming it.");
    queue_wait_seconds.render(out, p + "creation_queue_wait_seconds");
    header(out, p + "creation_api_seconds", "histogram",
           "The pod creation call to the Kubernetes API, retries included.");
    api_create_seconds.render(out, p + "creation_api_seconds");
    header(out, p + "creation_start_seconds", "histogram",
           "From the pod's creation to the controller seeing it Ready.");
    start_seconds.render(out, p + "creation_start_seconds");
    header(out, p + "reap_tick_seconds", "histogram", "Duration of one reaper pass.");
    reap_tick_seconds.render(out, p + "reap_tick_seconds");
    header(out, p + "api_errors_total", "counter",
           "Kubernetes API calls that failed, by HTTP status (0: no answer).");
    api_errors.render(out, p + "api_errors_total", "status");
    counter(out, p + "watch_restarts_total", "Pod watch streams opened again after ending.",
            watch_restarts);
    counter(out, p + "watch_relists_total",
            "Full pod lists after the watch's resourceVersion expired (410 Gone).", watch_relists);
    gauge(out, p + "tracked_creations", "Creations waiting for their pod to be Ready or fail.",
          tracked_creations);
    gauge(out, p + "leader", "1 while this replica holds the leader Lease.", leader);
    counter(out, p + "leader_transitions_total", "Times this replica became the leader.",
            leader_transitions);
    gauge(out, p + "pool_target", "Warm pool size kept (--warm-pool-size).", pool_target);
    gauge(out, p + "pool_free", "Ready warm pool pods no user has claimed (the leader's count).",
          pool_free);
    gauge(out, p + "pool_starting", "Warm pool pods created and not Ready yet.", pool_starting);
    counter(out, p + "pool_claims_total",
            "Warm pool pods claimed by a new user and labelled with that user.", pool_claims);
    counter(out, p + "pool_pods_created_total", "Warm pool pods the API answered 201 for.",
            pool_pods_created);
    header(out, p + "pool_pods_lost_total", "counter",
           "Warm pool pods deleted before any user claimed them, by reason.");
    pool_pods_lost.render(out, p + "pool_pods_lost_total", "reason");
    header(out, p + "pool_refill_seconds", "histogram",
           "From a warm pool pod's creation to it being offered to new users.");
    pool_refill_seconds.render(out, p + "pool_refill_seconds");
    return out;
}

} // namespace pod_router::controller
