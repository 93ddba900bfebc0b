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
#include <amqp_tcp_socket.h>
#include <sys/time.h>

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

// AMQP short strings (names, keys, message ids) are at most 255 bytes.
constexpr std::size_t kMaxShortString = 255;
// The only channel a publisher uses.
constexpr amqp_channel_t kChannel = 1;

struct ConnectionDeleter {
    void operator()(amqp_connection_state_t_ *connection) const noexcept {
        // Closes the socket too; nothing useful to do with its status.
        static_cast<void>(amqp_destroy_connection(connection));
    }
};
using ConnectionPtr = std::unique_ptr<amqp_connection_state_t_, ConnectionDeleter>;

// rabbitmq-c takes byte strings as non-const void * but only reads them when
// sending.
amqp_bytes_t bytes_of(std::string_view text) noexcept {
    amqp_bytes_t bytes;
    bytes.len = text.size();
    bytes.bytes = const_cast<char *>(text.data()); // NOLINT(cppcoreguidelines-pro-type-const-cast)
    return bytes;
}

timeval to_timeval(std::chrono::microseconds duration) noexcept {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(duration.count() / 1'000'000);
    tv.tv_usec = static_cast<suseconds_t>(duration.count() % 1'000'000);
    return tv;
}

// Text from the broker (reply texts), made safe for a one-line log message.
std::string printable(amqp_bytes_t bytes) {
    constexpr std::size_t kMaxText = 160;
    const auto *data = static_cast<const unsigned char *>(bytes.bytes);
    const std::size_t length = data == nullptr ? 0 : std::min(bytes.len, kMaxText);
    std::string text;
    text.reserve(length);
    for (std::size_t i = 0; i < length; ++i) {
        text += data[i] >= 0x20 && data[i] < 0x7f ? static_cast<char>(data[i]) : '?';
    }
    return text;
}

std::string library_error(int status) {
    const char *text = amqp_error_string2(status);
    return text != nullptr ? text : "unknown rabbitmq-c error " + std::to_string(status);
}

std::string reply_summary(uint16_t code, amqp_bytes_t text) {
    return std::to_string(code) + " " + printable(text);
}

// What is known about the connection after a failure decides how it can be
// left: the broker must see close-ok for a close it sent, and a connection
// that is out of step (timeout, socket error) can only be dropped.
enum class Teardown {
    kPolite,               // in step: connection.close, wait for close-ok
    kAfterChannelClose,    // the broker closed our channel: channel.close-ok, then kPolite
    kAfterConnectionClose, // the broker closed the connection: connection.close-ok only
    kAbandon,              // out of step or dead: just close the socket
};

// The result of one step of a publish.
struct [[nodiscard]] Step {
    bool ok = true;
    Teardown teardown = Teardown::kPolite; // when !ok
    std::string message;                   // when !ok: why, one line, no password
};

Step done() {
    return Step{};
}

Step failed(Teardown teardown, std::string message) {
    return Step{false, teardown, std::move(message)};
}

// A close method the broker sent, either as an RPC reply or unprompted.
Step broker_closed(const amqp_method_t &method, const std::string &what) {
    if (method.id == AMQP_CONNECTION_CLOSE_METHOD && method.decoded != nullptr) {
        const auto *close = static_cast<const amqp_connection_close_t *>(method.decoded);
        return failed(Teardown::kAfterConnectionClose,
                      what + ": the broker closed the connection: " +
                          reply_summary(close->reply_code, close->reply_text));
    }
    if (method.id == AMQP_CHANNEL_CLOSE_METHOD && method.decoded != nullptr) {
        const auto *close = static_cast<const amqp_channel_close_t *>(method.decoded);
        return failed(Teardown::kAfterChannelClose,
                      what + ": the broker closed the channel: " +
                          reply_summary(close->reply_code, close->reply_text));
    }
    // AMQP numbers a method by class and method: 60.80 is basic.ack.
    return failed(Teardown::kAbandon, what + ": unexpected method " +
                                          std::to_string(method.id >> 16) + "." +
                                          std::to_string(method.id & 0xffffU) + " from the broker");
}

// All three kinds of amqp_rpc_reply_t (rabbitmq-c's examples die on them;
// this reports and lets the caller drop the connection).
Step check_reply(const amqp_rpc_reply_t &reply, const std::string &what) {
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return done();
    case AMQP_RESPONSE_NONE:
        return failed(Teardown::kAbandon, what + ": no reply from the broker");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return failed(Teardown::kAbandon, what + ": " + library_error(reply.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        return broker_closed(reply.reply, what);
    }
    return failed(Teardown::kAbandon, what + ": unknown reply type");
}

std::string quoted(std::string_view name) {
    return "'" + std::string(name) + "'";
}

} // namespace

struct AmqpPublisherConfig {
    std::string host;
    int port = kAmqpDefaultPort;
    std::string vhost;
    std::string username;
    std::string password;
    std::string exchange;
    std::string routing_key;
    std::string queue;
    milliseconds connect_timeout{0};
    milliseconds io_timeout{0};
};

class AmqpPublisher {
  public:
    explicit AmqpPublisher(AmqpPublisherConfig config)
        : config_(std::move(config)), endpoint_(endpoint(config_)) {}
    ~AmqpPublisher() {
        if (!connection_) {
            return;
        }
        try {
            const Step idle = check_idle();
            drop(idle.ok ? Teardown::kPolite : idle.teardown);
        } catch (...) {
            drop(Teardown::kAbandon);
        }
    }
    AmqpPublisher(const AmqpPublisher &) = delete;
    AmqpPublisher &operator=(const AmqpPublisher &) = delete;

    // Empty on success; otherwise why, and the connection is gone.
    std::string publish(std::string_view body, std::string_view message_id) {
        try {
            if (connection_) {
                // A close the broker sent while we were idle: start over now
                // rather than fail this publish on a connection known dead.
                Step idle = check_idle();
                if (!idle.ok) {
                    drop(idle.teardown);
                }
            }
            Step step = connection_ ? done() : open();
            if (step.ok) {
                step = publish_confirmed(body, message_id);
            }
            if (step.ok) {
                return {};
            }
            drop(step.teardown);
            return scrub(endpoint_ + ": " + step.message);
        } catch (...) {
            // Out of memory half way: the stream may be out of step.
            drop(Teardown::kAbandon);
            throw;
        }
    }

  private:
    static std::string endpoint(const AmqpPublisherConfig &config) {
        const bool ipv6 = config.host.find(':') != std::string::npos;
        return "rabbitmq " + (ipv6 ? "[" + config.host + "]" : config.host) + ":" +
               std::to_string(config.port);
    }

    // Broker texts never contain our password, but a message must not, ever.
    std::string scrub(std::string message) const {
        const std::string &password = config_.password;
        if (password.empty()) {
            return message;
        }
        for (std::size_t at = message.find(password); at != std::string::npos;
             at = message.find(password, at)) {
            message.replace(at, password.size(), "***");
            at += 3;
        }
        return message;
    }

    timeval io_timeval() const noexcept { return to_timeval(config_.io_timeout); }

    Step open() {
        connection_.reset(amqp_new_connection());
        if (!connection_) {
            throw std::bad_alloc();
        }
        amqp_connection_state_t connection = connection_.get();
        amqp_socket_t *socket = amqp_tcp_socket_new(connection); // owned by the connection
        if (socket == nullptr) {
            throw std::bad_alloc();
        }
        const timeval connect_timeout = to_timeval(config_.connect_timeout);
        const int status =
            amqp_socket_open_noblock(socket, config_.host.c_str(), config_.port, &connect_timeout);
        if (status == AMQP_STATUS_TIMEOUT) {
            return failed(Teardown::kAbandon, "connect: no answer within " +
                                                  std::to_string(config_.connect_timeout.count()) +
                                                  " ms");
        }
        if (status != AMQP_STATUS_OK) {
            return failed(Teardown::kAbandon, "connect: " + library_error(status));
        }
        // Every later round trip (login, declarations, close) is bounded too.
        const timeval io_timeout = io_timeval();
        if (amqp_set_handshake_timeout(connection, &io_timeout) != AMQP_STATUS_OK ||
            amqp_set_rpc_timeout(connection, &io_timeout) != AMQP_STATUS_OK) {
            return failed(Teardown::kAbandon, "cannot set the rabbitmq-c timeouts");
        }
        Step step = login();
        if (step.ok) {
            amqp_channel_open(connection, kChannel);
            step = check_reply(amqp_get_rpc_reply(connection), "channel.open");
        }
        if (step.ok) {
            step = declare_topology();
        }
        if (step.ok) {
            // Confirm mode: the broker acks each message once it is queued
            // (and, being persistent, written), or nacks it.
            amqp_confirm_select(connection, kChannel);
            step = check_reply(amqp_get_rpc_reply(connection), "confirm.select");
        }
        next_delivery_tag_ = 1;
        return step;
    }

    Step login() {
        // Heartbeat 0: between publishes no thread reads the socket, so the
        // broker would time us out; a dead connection is caught by the
        // idle check and by io_timeout_ms instead.
        amqp_table_entry_t property{};
        property.key = bytes_of("connection_name");
        property.value.kind = AMQP_FIELD_KIND_UTF8;
        property.value.value.bytes = bytes_of("pod-router gateway");
        amqp_table_t properties;
        properties.num_entries = 1;
        properties.entries = &property;
        const amqp_rpc_reply_t reply = amqp_login_with_properties(
            connection_.get(), config_.vhost.c_str(), AMQP_DEFAULT_MAX_CHANNELS,
            AMQP_DEFAULT_FRAME_SIZE, 0, &properties, AMQP_SASL_METHOD_PLAIN,
            config_.username.c_str(), config_.password.c_str());
        return check_reply(reply, "login to vhost " + quoted(config_.vhost));
    }

    Step declare_exchange(std::string_view name, std::string_view type) {
        amqp_connection_state_t connection = connection_.get();
        amqp_exchange_declare(connection, kChannel, bytes_of(name), bytes_of(type),
                              /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0,
                              amqp_empty_table);
        return check_reply(amqp_get_rpc_reply(connection), "declaring exchange " + quoted(name));
    }

    Step declare_queue(std::string_view name, amqp_table_t arguments) {
        amqp_connection_state_t connection = connection_.get();
        amqp_queue_declare(connection, kChannel, bytes_of(name), /*passive=*/0, /*durable=*/1,
                           /*exclusive=*/0, /*auto_delete=*/0, arguments);
        return check_reply(amqp_get_rpc_reply(connection), "declaring queue " + quoted(name));
    }

    Step bind(std::string_view queue, std::string_view exchange, std::string_view key) {
        amqp_connection_state_t connection = connection_.get();
        amqp_queue_bind(connection, kChannel, bytes_of(queue), bytes_of(exchange), bytes_of(key),
                        amqp_empty_table);
        return check_reply(amqp_get_rpc_reply(connection),
                           "binding queue " + quoted(queue) + " to " + quoted(exchange));
    }

    // All of amqp_topology.hpp, dead-letter side first so that the work
    // queue never exists without somewhere to dead-letter to. Idempotent:
    // the same declarations as the controller's, so neither side's start
    // order matters.
    Step declare_topology() {
        amqp_table_entry_t dead_letter[2]{};
        dead_letter[0].key = bytes_of(kAmqpArgDeadLetterExchange);
        dead_letter[0].value.kind = AMQP_FIELD_KIND_UTF8;
        dead_letter[0].value.value.bytes = bytes_of(kAmqpDeadLetterExchange);
        dead_letter[1].key = bytes_of(kAmqpArgDeadLetterRoutingKey);
        dead_letter[1].value.kind = AMQP_FIELD_KIND_UTF8;
        dead_letter[1].value.value.bytes = bytes_of(kAmqpDeadLetterRoutingKey);
        amqp_table_t queue_arguments;
        queue_arguments.num_entries = 2;
        queue_arguments.entries = dead_letter;

        Step step = declare_exchange(kAmqpDeadLetterExchange, kAmqpDeadLetterExchangeType);
        if (step.ok) {
            step = declare_queue(kAmqpDeadLetterQueue, amqp_empty_table);
        }
        if (step.ok) {
            step = bind(kAmqpDeadLetterQueue, kAmqpDeadLetterExchange, kAmqpDeadLetterRoutingKey);
        }
        if (step.ok) {
            step = declare_exchange(config_.exchange, kAmqpExchangeType);
        }
        if (step.ok) {
            step = declare_queue(config_.queue, queue_arguments);
        }
        if (step.ok) {
            step = bind(config_.queue, config_.exchange, config_.routing_key);
        }
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
        const auto deadline = Clock::now() + config_.io_timeout;
        for (;;) {
            amqp_maybe_release_buffers(connection);
            const auto remaining =
                std::chrono::ceil<std::chrono::microseconds>(deadline - Clock::now());
            const timeval wait = to_timeval(std::max(remaining, std::chrono::microseconds(0)));
            amqp_frame_t frame;
            const int status = amqp_simple_wait_frame_noblock(connection, &frame, &wait);
            if (status == AMQP_STATUS_TIMEOUT) {
                return failed(Teardown::kAbandon, "no publisher confirm within " +
                                                      std::to_string(config_.io_timeout.count()) +
                                                      " ms");
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

    // Drains what the broker sent while the connection was idle, without
    // waiting: a close (close_all_connections, broker shutdown) or EOF.
    Step check_idle() {
        amqp_connection_state_t connection = connection_.get();
        for (;;) {
            const timeval no_wait{};
            amqp_frame_t frame;
            const int status = amqp_simple_wait_frame_noblock(connection, &frame, &no_wait);
            if (status == AMQP_STATUS_TIMEOUT) {
                amqp_maybe_release_buffers(connection);
                return done();
            }
            if (status != AMQP_STATUS_OK) {
                return failed(Teardown::kAbandon, "idle connection: " + library_error(status));
            }
            if (frame.frame_type == AMQP_FRAME_METHOD &&
                (frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD ||
                 frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD)) {
                return broker_closed(frame.payload.method, "idle connection");
            }
        }
    }

    // Leaves the connection as its state allows, each exchange bounded by
    // io_timeout_ms, then forgets it. Failures here change nothing: the
    // socket is closed either way.
    void drop(Teardown teardown) noexcept {
        if (!connection_) {
            return;
        }
        amqp_connection_state_t connection = connection_.get();
        switch (teardown) {
        case Teardown::kAfterChannelClose: {
            amqp_channel_close_ok_t close_ok{};
            if (amqp_send_method(connection, kChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) !=
                AMQP_STATUS_OK) {
                break;
            }
            static_cast<void>(amqp_connection_close(connection, AMQP_REPLY_SUCCESS));
            break;
        }
        case Teardown::kPolite:
            static_cast<void>(amqp_connection_close(connection, AMQP_REPLY_SUCCESS));
            break;
        case Teardown::kAfterConnectionClose: {
            amqp_connection_close_ok_t close_ok{};
            static_cast<void>(
                amqp_send_method(connection, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok));
            break;
        }
        case Teardown::kAbandon:
            break;
        }
        connection_.reset();
    }

    const AmqpPublisherConfig config_;
    const std::string endpoint_; // "rabbitmq host:port", the prefix of every message
    ConnectionPtr connection_;   // null until the next publish connects
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
    config.host = c.host;
    config.port = c.port;
    config.username = c.username;
    config.password = c.password;
    config.connect_timeout = milliseconds(c.connect_timeout_ms);
    config.io_timeout = milliseconds(c.io_timeout_ms);
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
    config.vhost = std::move(vhost).value();
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
