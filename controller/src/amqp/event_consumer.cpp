// The consumer thread owns the rabbitmq-c connection outright; other
// threads only touch the mutex-guarded flags and settlement queue below and
// the atomic consuming_ flag. Each read waits at most kPollInterval, so
// queued settlements, stop_consuming() and stop() are acted on within about
// that long, and rabbitmq-c gets to send and check heartbeats.
//
// Connections are numbered (the generation) from 1 as they are opened; a
// delivery carries the number of its connection, and a settlement for any
// other number is skipped: delivery tags are per connection, and acking a
// stale tag on a new connection would make the broker close the channel
// (PRECONDITION_FAILED) or, worse, ack somebody else's delivery.
#include "amqp/event_consumer.hpp"

#include "kube/retry_policy.hpp"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <random>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <amqp.h>
#include <amqp_framing.h>

#include "pod_router/amqp_connection.hpp"
#include "pod_router/amqp_topology.hpp"

namespace pod_router::controller {

namespace {

using amqp::broker_closed;
using amqp::bytes_of;
using amqp::check_reply;
using amqp::done;
using amqp::failed;
using amqp::kChannel;
using amqp::library_error;
using amqp::Step;
using amqp::Teardown;
using amqp::to_timeval;
using std::chrono::milliseconds;

constexpr std::string_view kConnectionName = "pod-router controller";
// How long one read waits for a delivery; bounds how late a settlement,
// stop_consuming() or stop() is acted on.
constexpr milliseconds kPollInterval{100};
// basic.qos takes a 16-bit count, and 0 would mean "no limit".
constexpr int kMaxPrefetch = 65535;

struct PendingSettlement {
    std::uint64_t connection = 0;
    std::uint64_t tag = 0;
    Settlement settlement = Settlement::kAck;
};

std::string_view settlement_name(Settlement settlement) noexcept {
    switch (settlement) {
    case Settlement::kAck:
        return "basic.ack";
    case Settlement::kDeadLetter:
        return "basic.reject";
    case Settlement::kRequeue:
        return "basic.nack";
    }
    return "settlement";
}

amqp::ConnectionSettings connection_settings(const AmqpSettings &settings) {
    amqp::ConnectionSettings connection;
    connection.host = settings.host;
    connection.port = settings.port;
    connection.vhost = settings.vhost;
    connection.username = settings.username;
    connection.password = settings.password;
    connection.connect_timeout = settings.connect_timeout;
    connection.io_timeout = settings.io_timeout;
    // The consumer thread reads the socket every kPollInterval, so rabbitmq-c
    // can answer the broker's heartbeats and notice when they stop.
    connection.heartbeat = settings.heartbeat;
    // Without it a deleted queue cancels the consumer silently, and we would
    // wait for deliveries forever.
    connection.consumer_cancel_notify = true;
    return connection;
}

// Frees what amqp_consume_message() allocated, on every way out.
class EnvelopeOwner {
  public:
    explicit EnvelopeOwner(amqp_envelope_t &envelope) noexcept : envelope_(envelope) {}
    ~EnvelopeOwner() { amqp_destroy_envelope(&envelope_); }
    EnvelopeOwner(const EnvelopeOwner &) = delete;
    EnvelopeOwner &operator=(const EnvelopeOwner &) = delete;

  private:
    amqp_envelope_t &envelope_;
};

} // namespace

class EventConsumer::Impl {
  public:
    Impl(AmqpSettings settings, Handler handler, Logger &logger, ControllerMetrics &metrics)
        : settings_(std::move(settings)), handler_(std::move(handler)), log_(logger, "consumer"),
          metrics_(metrics), connection_(connection_settings(settings_)),
          random_(std::random_device{}()) {}

    void run() noexcept;
    void settle(std::uint64_t connection, std::uint64_t tag, Settlement settlement);
    void stop_consuming() noexcept;
    void stop() noexcept;
    bool consuming() const noexcept { return consuming_.load(std::memory_order_acquire); }

  private:
    // All below run on the consumer thread.
    Step connect();
    Step start_consuming();
    Step cancel_consumer();
    Step consume();
    Step deliver(amqp_envelope_t &envelope);
    Step handle_frame();
    Step apply_settlements();
    Step settle_now(std::uint64_t tag, Settlement settlement);
    void disconnect(const Step &step) noexcept;
    milliseconds backoff(int attempt);
    bool wait_before_retry(milliseconds delay); // false once stop() was called

    const AmqpSettings settings_;
    const Handler handler_;
    const ComponentLog log_;
    ControllerMetrics &metrics_;

    mutable std::mutex mutex_;
    std::condition_variable wake_;           // stop() ends the back-off wait
    bool stop_requested_ = false;            // guarded by mutex_
    bool stop_consuming_requested_ = false;  // guarded by mutex_
    std::vector<PendingSettlement> pending_; // guarded by mutex_
    std::atomic<bool> consuming_{false};     // written by the consumer thread

    // The consumer thread's own.
    amqp::Connection connection_;
    std::uint64_t generation_ = 0;                // of the connection open now, or last
    std::string consumer_tag_;                    // the broker's name for our consumer
    bool consumer_active_ = false;                // consume-ok seen, no cancel either way
    std::unordered_set<std::uint64_t> unsettled_; // tags handed out on this connection
    std::mt19937_64 random_;
};

void EventConsumer::Impl::settle(std::uint64_t connection, std::uint64_t tag,
                                 Settlement settlement) {
    const std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back(PendingSettlement{connection, tag, settlement});
}

void EventConsumer::Impl::stop_consuming() noexcept {
    const std::lock_guard<std::mutex> lock(mutex_);
    stop_consuming_requested_ = true;
}

void EventConsumer::Impl::stop() noexcept {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stop_requested_ = true;
    }
    wake_.notify_all();
}

void EventConsumer::Impl::run() noexcept {
    int attempt = 0; // failures since the last connection that got to consume
    bool connected_before = false;
    for (;;) {
        {
            const std::lock_guard<std::mutex> lock(mutex_);
            if (stop_requested_) {
                break;
            }
        }
        Step step;
        bool connected = false;
        try {
            step = connect();
            connected = step.ok;
            if (step.ok) {
                if (connected_before) {
                    metrics_.amqp_reconnects.add();
                }
                connected_before = true;
                attempt = 0;
                step = consume(); // ok: stop() was called
            }
        } catch (const std::exception &e) {
            step = failed(Teardown::kAbandon, std::string("unexpected error: ") + e.what());
        } catch (...) {
            step = failed(Teardown::kAbandon, "unexpected error");
        }
        disconnect(step);
        if (step.ok) {
            break;
        }
        try {
            const milliseconds delay = backoff(attempt);
            ++attempt;
            log_.warn(connected ? "lost the rabbitmq connection" : "cannot connect to rabbitmq",
                      {{"endpoint", connection_.endpoint()},
                       {"error", connection_.scrub(step.message)},
                       {"attempt", attempt},
                       {"retry_in_ms", static_cast<long long>(delay.count())}});
            if (!wait_before_retry(delay)) {
                break;
            }
        } catch (...) {
            // Cannot happen short of running out of memory; retrying at
            // once would spin, and giving up loses events.
            log_.error("rabbitmq consumer: unexpected error between connections");
            if (!wait_before_retry(std::max(settings_.reconnect_max, milliseconds(1)))) {
                break;
            }
        }
    }
    log_.info("stopped");
}

bool EventConsumer::Impl::wait_before_retry(milliseconds delay) {
    std::unique_lock<std::mutex> lock(mutex_);
    return !wake_.wait_for(lock, delay, [this] { return stop_requested_; });
}

milliseconds EventConsumer::Impl::backoff(int attempt) {
    return jittered_backoff(attempt, settings_.reconnect_min, settings_.reconnect_max, random_);
}

Step EventConsumer::Impl::connect() {
    Step step = connection_.open(kConnectionName);
    if (step.ok) {
        // The same declarations as the gateway's (PRECONDITION_FAILED
        // otherwise), so that whichever side starts first creates it all.
        step = connection_.declare_topology(kAmqpExchange, kAmqpQueue, kAmqpRoutingKey);
    }
    if (step.ok) {
        const int prefetch = std::clamp(settings_.prefetch, 1, kMaxPrefetch);
        amqp_basic_qos(connection_.get(), kChannel, 0, static_cast<uint16_t>(prefetch),
                       /*global=*/0);
        step = check_reply(amqp_get_rpc_reply(connection_.get()), "basic.qos");
    }
    if (!step.ok) {
        return step;
    }
    ++generation_;
    unsettled_.clear();
    metrics_.amqp_connected.set(1);
    bool stop_consuming = false;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stop_consuming = stop_consuming_requested_;
    }
    if (stop_consuming) {
        log_.info("connected, not consuming: stop_consuming() was called",
                  {{"connection", generation_}});
        return done();
    }
    return start_consuming();
}

Step EventConsumer::Impl::start_consuming() {
    amqp_connection_state_t connection = connection_.get();
    const amqp_basic_consume_ok_t *consume_ok =
        amqp_basic_consume(connection, kChannel, bytes_of(kAmqpQueue), amqp_empty_bytes,
                           /*no_local=*/0, /*no_ack=*/0, /*exclusive=*/0, amqp_empty_table);
    Step step = check_reply(amqp_get_rpc_reply(connection), "basic.consume");
    if (!step.ok) {
        return step;
    }
    if (consume_ok == nullptr) {
        return failed(Teardown::kAbandon, "basic.consume: no consume-ok");
    }
    consumer_tag_ = amqp::string_of(consume_ok->consumer_tag);
    consumer_active_ = true;
    consuming_.store(true, std::memory_order_release);
    log_.info("consuming", {{"endpoint", connection_.endpoint()},
                            {"queue", kAmqpQueue},
                            {"prefetch", std::clamp(settings_.prefetch, 1, kMaxPrefetch)},
                            {"connection", generation_}});
    return done();
}

// basic.cancel without waiting for cancel-ok here: deliveries the broker
// sent before it still arrive, and the read loop hands them out as usual.
Step EventConsumer::Impl::cancel_consumer() {
    consumer_active_ = false;
    consuming_.store(false, std::memory_order_release);
    amqp_basic_cancel_t cancel{};
    cancel.consumer_tag = bytes_of(consumer_tag_);
    cancel.nowait = 0;
    const int status =
        amqp_send_method(connection_.get(), kChannel, AMQP_BASIC_CANCEL_METHOD, &cancel);
    if (status != AMQP_STATUS_OK) {
        return failed(Teardown::kAbandon, "basic.cancel: " + library_error(status));
    }
    log_.info("stopping consuming: no new deliveries", {{"connection", generation_}});
    return done();
}

// The read loop of one connection: returns ok once stop() was called,
// otherwise why the connection cannot go on.
Step EventConsumer::Impl::consume() {
    amqp_connection_state_t connection = connection_.get();
    const timeval poll = to_timeval(kPollInterval);
    for (;;) {
        bool stop = false;
        bool stop_consuming = false;
        {
            const std::lock_guard<std::mutex> lock(mutex_);
            stop = stop_requested_;
            stop_consuming = stop_consuming_requested_;
        }
        // Before stopping too: an ack applied now spares a redelivery.
        Step step = apply_settlements();
        if (!step.ok || stop) {
            return step;
        }
        if (stop_consuming && consumer_active_) {
            step = cancel_consumer();
            if (!step.ok) {
                return step;
            }
        }
        amqp_maybe_release_buffers(connection);
        amqp_envelope_t envelope;
        const amqp_rpc_reply_t reply = amqp_consume_message(connection, &envelope, &poll, 0);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
            step = deliver(envelope);
        } else if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                   reply.library_error == AMQP_STATUS_TIMEOUT) {
            continue;
        } else if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                   reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            step = handle_frame(); // not a delivery: rabbitmq-c put the frame back
        } else {
            // A close in the middle of a message, a dead socket, a missed
            // heartbeat.
            step = check_reply(reply, "consuming");
        }
        if (!step.ok) {
            return step;
        }
    }
}

Step EventConsumer::Impl::deliver(amqp_envelope_t &envelope) {
    Delivery delivery;
    {
        const EnvelopeOwner owner(envelope);
        delivery.connection = generation_;
        delivery.tag = envelope.delivery_tag;
        delivery.redelivered = envelope.redelivered != 0;
        delivery.body = amqp::string_of(envelope.message.body);
        const amqp_basic_properties_t &properties = envelope.message.properties;
        if ((properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) {
            delivery.message_id = amqp::string_of(properties.message_id);
        }
    }
    const std::uint64_t tag = delivery.tag;
    metrics_.events_consumed.add();
    unsettled_.insert(tag);
    log_.debug("delivery", {{"connection", generation_},
                            {"tag", tag},
                            {"redelivered", delivery.redelivered},
                            {"message_id", delivery.message_id}});
    try {
        handler_(std::move(delivery));
        return done();
    } catch (const std::exception &e) {
        log_.error("the event handler failed; requeueing the delivery",
                   {{"connection", generation_}, {"tag", tag}, {"error", e.what()}});
    } catch (...) {
        log_.error("the event handler failed; requeueing the delivery",
                   {{"connection", generation_}, {"tag", tag}, {"error", "unknown exception"}});
    }
    // A settle() the handler queued before throwing is then skipped as one
    // for a tag no longer outstanding.
    unsettled_.erase(tag);
    return settle_now(tag, Settlement::kRequeue);
}

// The frame amqp_consume_message() put back: read it (it is queued, so this
// does not wait) and act on it.
Step EventConsumer::Impl::handle_frame() {
    const timeval wait = to_timeval(settings_.io_timeout);
    amqp_frame_t frame;
    const int status = amqp_simple_wait_frame_noblock(connection_.get(), &frame, &wait);
    if (status != AMQP_STATUS_OK) {
        return failed(Teardown::kAbandon, "reading from the broker: " + library_error(status));
    }
    if (frame.frame_type != AMQP_FRAME_METHOD) {
        log_.debug("ignored a frame outside a delivery",
                   {{"frame_type", static_cast<int>(frame.frame_type)}});
        return done();
    }
    const amqp_method_t &method = frame.payload.method;
    switch (method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        return broker_closed(method, "consuming");
    case AMQP_BASIC_CANCEL_METHOD:
        // Sent because we advertise consumer_cancel_notify.
        consumer_active_ = false;
        consuming_.store(false, std::memory_order_release);
        return failed(Teardown::kPolite, "the broker cancelled the consumer (queue " +
                                             amqp::quoted(kAmqpQueue) + " deleted?)");
    case AMQP_BASIC_CANCEL_OK_METHOD:
        log_.info("stopped consuming: the broker confirmed basic.cancel",
                  {{"connection", generation_}});
        return done();
    default:
        // connection.blocked/unblocked and the like: nothing to do.
        log_.debug("ignored a method from the broker", {{"method", amqp::method_name(method.id)}});
        return done();
    }
}

Step EventConsumer::Impl::apply_settlements() {
    std::vector<PendingSettlement> batch;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        batch.swap(pending_);
    }
    for (const PendingSettlement &pending : batch) {
        if (pending.connection != generation_) {
            log_.debug("skipped a settlement for another connection: the broker requeued it",
                       {{"connection", pending.connection},
                        {"current_connection", generation_},
                        {"tag", pending.tag},
                        {"settlement", settlement_name(pending.settlement)}});
            continue;
        }
        if (unsettled_.erase(pending.tag) == 0) {
            // Settling a tag twice would make the broker close the channel.
            log_.warn("skipped a settlement for a delivery not outstanding",
                      {{"connection", pending.connection},
                       {"tag", pending.tag},
                       {"settlement", settlement_name(pending.settlement)}});
            continue;
        }
        Step step = settle_now(pending.tag, pending.settlement);
        if (!step.ok) {
            return step; // the rest are moot: the broker requeues them with the connection
        }
    }
    return done();
}

Step EventConsumer::Impl::settle_now(std::uint64_t tag, Settlement settlement) {
    amqp_connection_state_t connection = connection_.get();
    int status = AMQP_STATUS_OK;
    switch (settlement) {
    case Settlement::kAck:
        status = amqp_basic_ack(connection, kChannel, tag, /*multiple=*/0);
        break;
    case Settlement::kDeadLetter:
        status = amqp_basic_reject(connection, kChannel, tag, /*requeue=*/0);
        break;
    case Settlement::kRequeue:
        status = amqp_basic_nack(connection, kChannel, tag, /*multiple=*/0, /*requeue=*/1);
        break;
    }
    if (status != AMQP_STATUS_OK) {
        return failed(Teardown::kAbandon,
                      std::string(settlement_name(settlement)) + ": " + library_error(status));
    }
    if (settlement == Settlement::kAck) {
        metrics_.events_acked.add();
    } else if (settlement == Settlement::kDeadLetter) {
        metrics_.events_dead_lettered.add();
    }
    return done();
}

void EventConsumer::Impl::disconnect(const Step &step) noexcept {
    consumer_active_ = false;
    consuming_.store(false, std::memory_order_release);
    metrics_.amqp_connected.set(0);
    // Unsettled deliveries go back to the queue with the connection.
    connection_.drop(step.ok ? Teardown::kPolite : step.teardown);
    unsettled_.clear();
}

EventConsumer::EventConsumer(AmqpSettings settings, Handler handler, Logger &logger,
                             ControllerMetrics &metrics)
    : impl_(std::make_unique<Impl>(std::move(settings), std::move(handler), logger, metrics)) {
}

EventConsumer::~EventConsumer() = default;

void EventConsumer::run() noexcept {
    impl_->run();
}

void EventConsumer::settle(std::uint64_t connection, std::uint64_t tag, Settlement settlement) {
    impl_->settle(connection, tag, settlement);
}

void EventConsumer::stop_consuming() noexcept {
    impl_->stop_consuming();
}

void EventConsumer::stop() noexcept {
    impl_->stop();
}

bool EventConsumer::consuming() const noexcept {
    return impl_->consuming();
}

} // namespace pod_router::controller
