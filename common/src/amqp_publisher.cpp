// The publisher behind amqp_publisher.h: one blocking rabbitmq-c connection
// per publisher, opened on first use and after any failure, with publisher
// confirms so that PR_OK means the broker has the message.
//
// Failure model: whatever goes wrong (socket, timeout, a close from the
// broker, nack, return), the connection is closed as well as its state
// allows and forgotten, so the next publish starts from a fresh TCP
// connection and a fresh topology declaration. A reused connection is first
// checked for a close the broker sent while it sat idle.
//
// Like c_api.cpp, every C entry point catches everything; they are also
// declared noexcept in C++ (PR_AMQP_NOEXCEPT).
#include "pod_router/amqp_publisher.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>

#include <amqp.h>
#include <amqp_framing.h>
#include <sys/time.h>

#include "pod_router/amqp_connection.hpp"
#include "pod_router/amqp_topology.hpp"
#include "pod_router/creation_event.hpp"
#include "pod_router/expected.hpp"

static_assert(pod_router::kAmqpDefaultPort == PR_AMQP_DEFAULT_PORT);
static_assert(pod_router::kAmqpDefaultVhost == PR_AMQP_DEFAULT_VHOST);
static_assert(pod_router::kAmqpExchange == PR_AMQP_DEFAULT_EXCHANGE);
static_assert(pod_router::kAmqpRoutingKey == PR_AMQP_DEFAULT_ROUTING_KEY);
static_assert(pod_router::kAmqpQueue == PR_AMQP_DEFAULT_QUEUE);

namespace pod_router {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

using amqp::broker_closed;
using amqp::bytes_of;
using amqp::check_reply;
using amqp::done;
using amqp::failed;
using amqp::kChannel;
using amqp::library_error;
using amqp::quoted;
using amqp::reply_summary;
using amqp::Step;
using amqp::Teardown;
using amqp::to_timeval;

// AMQP short strings (names, keys, message ids) are at most 255 bytes.
constexpr std::size_t kMaxShortString = 255;

} // namespace

struct AmqpPublisherConfig {
    amqp::ConnectionSettings connection;
    std::string exchange;
    std::string routing_key;
    std::string queue;
};

class AmqpPublisher {
  public:
    explicit AmqpPublisher(AmqpPublisherConfig config)
        : config_(std::move(config)), connection_(config_.connection) {}
    ~AmqpPublisher() {
        if (!connection_.is_open()) {
            return;
        }
        try {
            const Step idle = connection_.check_idle();
            connection_.drop(idle.ok ? Teardown::kPolite : idle.teardown);
        } catch (...) {
            connection_.drop(Teardown::kAbandon);
        }
    }
    AmqpPublisher(const AmqpPublisher &) = delete;
    AmqpPublisher &operator=(const AmqpPublisher &) = delete;

    // Empty on success; otherwise why, and the connection is gone.
    std::string publish(std::string_view body, std::string_view message_id) {
        try {
            if (connection_.is_open()) {
                // A close the broker sent while we were idle: start over now
                // rather than fail this publish on a connection known dead.
                Step idle = connection_.check_idle();
                if (!idle.ok) {
                    connection_.drop(idle.teardown);
                }
            }
            Step step = connection_.is_open() ? done() : open();
            if (step.ok) {
                step = publish_confirmed(body, message_id);
            }
            if (step.ok) {
                return {};
            }
            connection_.drop(step.teardown);
            return connection_.scrub(connection_.endpoint() + ": " + step.message);
        } catch (...) {
            // Out of memory half way: the stream may be out of step.
            connection_.drop(Teardown::kAbandon);
            throw;
        }
    }

  private:
    Step open() {
        Step step = connection_.open("pod-router gateway");
        if (step.ok) {
            step =
                connection_.declare_topology(config_.exchange, config_.queue, config_.routing_key);
        }
        if (step.ok) {
            // Confirm mode: the broker acks each message once it is queued
            // (and, being persistent, written), or nacks it.
            amqp_confirm_select(connection_.get(), kChannel);
            step = check_reply(amqp_get_rpc_reply(connection_.get()), "confirm.select");
        }
        next_delivery_tag_ = 1;
        return step;
    }

    Step publish_confirmed(std::string_view body, std::string_view message_id) {
        amqp_basic_properties_t properties{};
        properties._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
        properties.content_type = bytes_of(kCreationEventContentType);
        properties.delivery_mode = AMQP_DELIVERY_PERSISTENT;
        if (!message_id.empty()) {
            properties._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
            properties.message_id = bytes_of(message_id);
        }
        // mandatory: an unroutable message comes back (basic.return) instead
        // of being acked and silently dropped.
        const int status =
            amqp_basic_publish(connection_.get(), kChannel, bytes_of(config_.exchange),
                               bytes_of(config_.routing_key), /*mandatory=*/1,
                               /*immediate=*/0, &properties, bytes_of(body));
        if (status != AMQP_STATUS_OK) {
            return failed(Teardown::kAbandon, "basic.publish: " + library_error(status));
        }
        return await_confirm(next_delivery_tag_++);
    }

    // Reads frames until the broker acks, nacks or returns the message, or
    // closes, or io_timeout_ms passes.
    Step await_confirm(uint64_t delivery_tag) {
        amqp_connection_state_t connection = connection_.get();
        const auto deadline = Clock::now() + config_.connection.io_timeout;
        for (;;) {
            amqp_maybe_release_buffers(connection);
            const auto remaining =
                std::chrono::ceil<std::chrono::microseconds>(deadline - Clock::now());
            const timeval wait = to_timeval(std::max(remaining, std::chrono::microseconds(0)));
            amqp_frame_t frame;
            const int status = amqp_simple_wait_frame_noblock(connection, &frame, &wait);
            if (status == AMQP_STATUS_TIMEOUT) {
                return failed(Teardown::kAbandon,
                              "no publisher confirm within " +
                                  std::to_string(config_.connection.io_timeout.count()) + " ms");
            }
            if (status != AMQP_STATUS_OK) {
                return failed(Teardown::kAbandon,
                              "waiting for the publisher confirm: " + library_error(status));
            }
            if (frame.frame_type != AMQP_FRAME_METHOD) {
                continue; // header or body of a returned message
            }
            const amqp_method_t &method = frame.payload.method;
            switch (method.id) {
            case AMQP_BASIC_ACK_METHOD: {
                const auto *ack = static_cast<const amqp_basic_ack_t *>(method.decoded);
                if (ack->delivery_tag == delivery_tag ||
                    (ack->multiple != 0 && ack->delivery_tag > delivery_tag)) {
                    return done();
                }
                continue; // an earlier message's: cannot happen, one at a time
            }
            case AMQP_BASIC_NACK_METHOD:
                return failed(Teardown::kPolite,
                              "the broker refused the message (basic.nack): it could not "
                              "store it");
            case AMQP_BASIC_RETURN_METHOD: {
                // Its ack follows; the connection is dropped instead, and
                // the next publish declares the binding again.
                const auto *returned = static_cast<const amqp_basic_return_t *>(method.decoded);
                return failed(Teardown::kPolite,
                              "the broker returned the message (" +
                                  reply_summary(returned->reply_code, returned->reply_text) +
                                  "): no queue bound to exchange " + quoted(config_.exchange) +
                                  " with key " + quoted(config_.routing_key));
            }
            case AMQP_CHANNEL_CLOSE_METHOD:
            case AMQP_CONNECTION_CLOSE_METHOD:
                return broker_closed(method, "publishing");
            default:
                continue; // e.g. connection.blocked: the timeout covers it
            }
        }
    }

    const AmqpPublisherConfig config_;
    amqp::Connection connection_; // closed until the next publish connects
    uint64_t next_delivery_tag_ = 1;
};

namespace {

Expected<std::string> name_or_default(const char *value, std::string_view fallback,
                                      const char *field, bool allow_empty) {
    const std::string_view name = value != nullptr ? std::string_view(value) : fallback;
    if (name.size() > kMaxShortString) {
        return Error{ErrorCode::kInvalidConfig,
                     std::string("amqp ") + field + " is longer than 255 bytes"};
    }
    if (name.empty() && !allow_empty) {
        return Error{ErrorCode::kInvalidConfig, std::string("amqp ") + field + " is empty"};
    }
    return std::string(name);
}

Expected<AmqpPublisherConfig> copy_config(const pr_amqp_config_t &c) {
    auto invalid = [](const char *message) { return Error{ErrorCode::kInvalidConfig, message}; };
    if (c.host == nullptr || *c.host == '\0') {
        return invalid("amqp host is not set");
    }
    if (c.port < 1 || c.port > 65535) {
        return invalid("amqp port must be 1..65535");
    }
    if (c.username == nullptr || *c.username == '\0') {
        return invalid("amqp username is not set");
    }
    if (c.password == nullptr) {
        return invalid("amqp password is not set");
    }
    if (c.connect_timeout_ms <= 0 || c.io_timeout_ms <= 0) {
        return invalid("amqp timeouts must be positive");
    }
    AmqpPublisherConfig config;
    amqp::ConnectionSettings &connection = config.connection;
    connection.host = c.host;
    connection.port = c.port;
    connection.username = c.username;
    connection.password = c.password;
    connection.connect_timeout = milliseconds(c.connect_timeout_ms);
    connection.io_timeout = milliseconds(c.io_timeout_ms);
    // Heartbeat 0: between publishes no thread reads the socket, so the
    // broker would time us out; a dead connection is caught by the idle
    // check and by io_timeout_ms instead.
    connection.heartbeat = std::chrono::seconds(0);
    // The default exchange ("") and server-named queues cannot be declared
    // and bound like ours, so neither name may be empty.
    auto vhost = name_or_default(c.vhost, kAmqpDefaultVhost, "vhost", false);
    auto exchange = name_or_default(c.exchange, kAmqpExchange, "exchange", false);
    auto routing_key = name_or_default(c.routing_key, kAmqpRoutingKey, "routing key", true);
    auto queue = name_or_default(c.queue, kAmqpQueue, "queue", false);
    for (const auto *name : {&vhost, &exchange, &routing_key, &queue}) {
        if (!*name) {
            return name->error();
        }
    }
    connection.vhost = std::move(vhost).value();
    config.exchange = std::move(exchange).value();
    config.routing_key = std::move(routing_key).value();
    config.queue = std::move(queue).value();
    return config;
}

void write_message(std::string_view message, char *err, std::size_t err_size) noexcept {
    if (err == nullptr || err_size == 0) {
        return;
    }
    const std::size_t n = std::min(message.size(), err_size - 1);
    std::memcpy(err, message.data(), n);
    err[n] = '\0';
}

pr_status_t report(pr_status_t status, std::string_view message, char *err,
                   std::size_t err_size) noexcept {
    write_message(message, err, err_size);
    return status;
}

} // namespace

} // namespace pod_router

struct pr_amqp_publisher_s {
    explicit pr_amqp_publisher_s(pod_router::AmqpPublisherConfig config)
        : publisher(std::move(config)) {}
    pod_router::AmqpPublisher publisher;
};

extern "C" {

pr_status_t pr_amqp_publisher_create(const pr_amqp_config_t *config, pr_amqp_publisher_t **out,
                                     char *err, size_t err_size) PR_AMQP_NOEXCEPT {
    using pod_router::report;
    if (out == nullptr) {
        return report(PR_INTERNAL_ERROR, "pr_amqp_publisher_create: no output pointer", err,
                      err_size);
    }
    *out = nullptr;
    if (config == nullptr) {
        return report(PR_INVALID_CONFIG, "pr_amqp_publisher_create: no configuration", err,
                      err_size);
    }
    try {
        auto copied = pod_router::copy_config(*config);
        if (!copied) {
            return report(PR_INVALID_CONFIG, copied.error().message, err, err_size);
        }
        auto owned = std::make_unique<pr_amqp_publisher_s>(std::move(copied).value());
        *out = owned.release(); // the caller owns it until pr_amqp_publisher_destroy()
        return PR_OK;
    } catch (const std::bad_alloc &) {
        return report(PR_INTERNAL_ERROR, "out of memory", err, err_size);
    } catch (...) {
        return report(PR_INTERNAL_ERROR, "unexpected error creating the amqp publisher", err,
                      err_size);
    }
}

pr_status_t pr_amqp_publish(pr_amqp_publisher_t *publisher, const char *body, size_t body_len,
                            const char *message_id, size_t message_id_len, char *err,
                            size_t err_size) PR_AMQP_NOEXCEPT {
    using pod_router::report;
    if (publisher == nullptr) {
        return report(PR_INTERNAL_ERROR, "pr_amqp_publish: no publisher", err, err_size);
    }
    if (body == nullptr || body_len == 0) {
        return report(PR_MALFORMED_EVENT, "amqp publish: empty message", err, err_size);
    }
    if (body_len > pod_router::kMaxCreationEventBytes) {
        return report(PR_MALFORMED_EVENT, "amqp publish: message larger than 64 KiB", err,
                      err_size);
    }
    if ((message_id == nullptr && message_id_len != 0) ||
        message_id_len > pod_router::kMaxShortString) {
        return report(PR_MALFORMED_EVENT, "amqp publish: message id missing or over 255 bytes", err,
                      err_size);
    }
    try {
        const std::string failure = publisher->publisher.publish(
            std::string_view(body, body_len), message_id == nullptr
                                                  ? std::string_view()
                                                  : std::string_view(message_id, message_id_len));
        if (failure.empty()) {
            return PR_OK;
        }
        return report(PR_UNAVAILABLE, failure, err, err_size);
    } catch (const std::bad_alloc &) {
        return report(PR_INTERNAL_ERROR, "out of memory", err, err_size);
    } catch (...) {
        return report(PR_INTERNAL_ERROR, "unexpected error publishing to rabbitmq", err, err_size);
    }
}

void pr_amqp_publisher_destroy(pr_amqp_publisher_t *publisher) PR_AMQP_NOEXCEPT {
    // Takes back the ownership pr_amqp_publisher_create() handed out; the
    // destructor closes the connection politely.
    std::unique_ptr<pr_amqp_publisher_s> owned(publisher);
}

} // extern "C"
