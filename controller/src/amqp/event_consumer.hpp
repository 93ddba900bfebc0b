// Consuming creation events from RabbitMQ (librabbitmq-c), on a thread of
// its own: connect, declare the shared topology (amqp_topology.hpp), set the
// prefetch, consume with manual acks, and hand each delivery to a callback.
// Whatever goes wrong with the broker (refused, closed, restarted, timed
// out), the connection is dropped and opened again with a growing back-off;
// unacknowledged messages are then redelivered by the broker, so none is
// lost, and the callback's owner must treat every delivery as idempotent.
//
// A delivery is settled (ack, dead-letter) later and from any thread through
// settle(): rabbitmq-c connections are not thread-safe, so settle() only
// queues the request and the consumer thread applies it. A settle for a
// delivery of an earlier connection is dropped: the broker has already
// requeued that message, and its redelivery will be handled again.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ops/log.hpp"
#include "ops/metrics.hpp"

namespace pod_router::controller {

struct AmqpSettings {
    std::string host = "127.0.0.1";
    int port = 5672;
    std::string vhost = "/";
    std::string username = "guest";
    std::string password = "guest"; // from a file; never logged
    std::chrono::milliseconds connect_timeout{5'000};
    std::chrono::milliseconds io_timeout{5'000}; // each broker round trip
    int prefetch = 500;                          // unacknowledged deliveries at once
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{10'000};
    std::chrono::seconds heartbeat{30};
};

struct Delivery {
    std::uint64_t connection = 0; // which connection it came on (1, 2, ...)
    std::uint64_t tag = 0;        // its delivery tag on that connection
    bool redelivered = false;
    std::string body;
    std::string message_id; // empty if none
};

enum class Settlement {
    kAck,        // done: the outcome is recorded
    kDeadLetter, // basic.reject without requeue: to pod-router.create.dead
    kRequeue,    // basic.nack with requeue: someone (maybe us) tries again
};

class EventConsumer {
  public:
    // Called on the consumer thread for each delivery; must return quickly
    // (hand the work off). An exception from it is logged and the delivery
    // requeued.
    using Handler = std::function<void(Delivery)>;

    EventConsumer(AmqpSettings settings, Handler handler, Logger &logger,
                  ControllerMetrics &metrics);
    ~EventConsumer();
    EventConsumer(const EventConsumer &) = delete;
    EventConsumer &operator=(const EventConsumer &) = delete;

    // The consumer thread's body: returns once stop() was called and the
    // connection is closed (politely, when the broker is reachable).
    void run() noexcept;

    // Thread-safe; applied by the consumer thread within ~100 ms.
    void settle(std::uint64_t connection, std::uint64_t tag, Settlement settlement);

    // Thread-safe. Stops new deliveries (basic.cancel) but keeps the
    // connection so that deliveries already handed out can still be settled.
    void stop_consuming() noexcept;
    // Thread-safe. Makes run() close the connection and return.
    void stop() noexcept;

    // For /readyz: connected, topology declared, consuming.
    bool consuming() const noexcept;

  private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace pod_router::controller
