#include "pod_router/amqp_connection.hpp"

#include <algorithm>
#include <new>
#include <utility>

#include <amqp_tcp_socket.h>

namespace pod_router::amqp {

amqp_bytes_t bytes_of(std::string_view text) noexcept {
    amqp_bytes_t bytes;
    bytes.len = text.size();
    bytes.bytes = const_cast<char *>(text.data()); // NOLINT(cppcoreguidelines-pro-type-const-cast)
    return bytes;
}

std::string string_of(amqp_bytes_t bytes) {
    if (bytes.bytes == nullptr) {
        return {};
    }
    return std::string(static_cast<const char *>(bytes.bytes), bytes.len);
}

timeval to_timeval(std::chrono::microseconds duration) noexcept {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(duration.count() / 1'000'000);
    tv.tv_usec = static_cast<suseconds_t>(duration.count() % 1'000'000);
    return tv;
}

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

std::string method_name(amqp_method_number_t id) {
    return std::to_string(id >> 16) + "." + std::to_string(id & 0xffffU);
}

std::string quoted(std::string_view name) {
    return "'" + std::string(name) + "'";
}

Step done() {
    return Step{};
}

Step failed(Teardown teardown, std::string message) {
    return Step{false, teardown, std::move(message)};
}

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
    return failed(Teardown::kAbandon,
                  what + ": unexpected method " + method_name(method.id) + " from the broker");
}

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

namespace {

std::string endpoint_of(const ConnectionSettings &settings) {
    const bool ipv6 = settings.host.find(':') != std::string::npos;
    return "rabbitmq " + (ipv6 ? "[" + settings.host + "]" : settings.host) + ":" +
           std::to_string(settings.port);
}

amqp_table_entry_t utf8_entry(std::string_view key, std::string_view value) noexcept {
    amqp_table_entry_t entry{};
    entry.key = bytes_of(key);
    entry.value.kind = AMQP_FIELD_KIND_UTF8;
    entry.value.value.bytes = bytes_of(value);
    return entry;
}

} // namespace

Connection::Connection(ConnectionSettings settings)
    : settings_(std::move(settings)), endpoint_(endpoint_of(settings_)) {
}

std::string Connection::scrub(std::string message) const {
    const std::string &password = settings_.password;
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

Step Connection::open(std::string_view connection_name) {
    connection_.reset(amqp_new_connection());
    if (!connection_) {
        throw std::bad_alloc();
    }
    amqp_connection_state_t connection = connection_.get();
    amqp_socket_t *socket = amqp_tcp_socket_new(connection); // owned by the connection
    if (socket == nullptr) {
        throw std::bad_alloc();
    }
    const timeval connect_timeout = to_timeval(settings_.connect_timeout);
    const int status =
        amqp_socket_open_noblock(socket, settings_.host.c_str(), settings_.port, &connect_timeout);
    if (status == AMQP_STATUS_TIMEOUT) {
        return failed(Teardown::kAbandon, "connect: no answer within " +
                                              std::to_string(settings_.connect_timeout.count()) +
                                              " ms");
    }
    if (status != AMQP_STATUS_OK) {
        return failed(Teardown::kAbandon, "connect: " + library_error(status));
    }
    // Every later round trip (login, declarations, close) is bounded too.
    const timeval io_timeout = to_timeval(settings_.io_timeout);
    if (amqp_set_handshake_timeout(connection, &io_timeout) != AMQP_STATUS_OK ||
        amqp_set_rpc_timeout(connection, &io_timeout) != AMQP_STATUS_OK) {
        return failed(Teardown::kAbandon, "cannot set the rabbitmq-c timeouts");
    }
    Step step = login(connection_name);
    if (step.ok) {
        amqp_channel_open(connection, kChannel);
        step = check_reply(amqp_get_rpc_reply(connection), "channel.open");
    }
    return step;
}

Step Connection::login(std::string_view connection_name) {
    // rabbitmq-c merges these into its own client properties, capabilities
    // included.
    amqp_table_entry_t capability{};
    capability.key = bytes_of("consumer_cancel_notify");
    capability.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capability.value.value.boolean = 1;
    amqp_table_entry_t properties_entries[2] = {utf8_entry("connection_name", connection_name),
                                                amqp_table_entry_t{}};
    amqp_table_t properties;
    properties.num_entries = 1;
    properties.entries = properties_entries;
    if (settings_.consumer_cancel_notify) {
        properties_entries[1].key = bytes_of("capabilities");
        properties_entries[1].value.kind = AMQP_FIELD_KIND_TABLE;
        properties_entries[1].value.value.table.num_entries = 1;
        properties_entries[1].value.value.table.entries = &capability;
        properties.num_entries = 2;
    }
    const auto heartbeat = static_cast<int>(settings_.heartbeat.count());
    const amqp_rpc_reply_t reply = amqp_login_with_properties(
        connection_.get(), settings_.vhost.c_str(), AMQP_DEFAULT_MAX_CHANNELS,
        AMQP_DEFAULT_FRAME_SIZE, heartbeat, &properties, AMQP_SASL_METHOD_PLAIN,
        settings_.username.c_str(), settings_.password.c_str());
    return check_reply(reply, "login to vhost " + quoted(settings_.vhost));
}

Step Connection::declare_exchange(std::string_view name, std::string_view type) {
    amqp_connection_state_t connection = connection_.get();
    amqp_exchange_declare(connection, kChannel, bytes_of(name), bytes_of(type),
                          /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0,
                          amqp_empty_table);
    return check_reply(amqp_get_rpc_reply(connection), "declaring exchange " + quoted(name));
}

Step Connection::declare_queue(std::string_view name, amqp_table_t arguments) {
    amqp_connection_state_t connection = connection_.get();
    amqp_queue_declare(connection, kChannel, bytes_of(name), /*passive=*/0, /*durable=*/1,
                       /*exclusive=*/0, /*auto_delete=*/0, arguments);
    return check_reply(amqp_get_rpc_reply(connection), "declaring queue " + quoted(name));
}

Step Connection::bind(std::string_view queue, std::string_view exchange, std::string_view key) {
    amqp_connection_state_t connection = connection_.get();
    amqp_queue_bind(connection, kChannel, bytes_of(queue), bytes_of(exchange), bytes_of(key),
                    amqp_empty_table);
    return check_reply(amqp_get_rpc_reply(connection),
                       "binding queue " + quoted(queue) + " to " + quoted(exchange));
}

Step Connection::declare_topology(std::string_view exchange, std::string_view queue,
                                  std::string_view routing_key) {
    amqp_table_entry_t dead_letter[2] = {
        utf8_entry(kAmqpArgDeadLetterExchange, kAmqpDeadLetterExchange),
        utf8_entry(kAmqpArgDeadLetterRoutingKey, kAmqpDeadLetterRoutingKey),
    };
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
        step = declare_exchange(exchange, kAmqpExchangeType);
    }
    if (step.ok) {
        step = declare_queue(queue, queue_arguments);
    }
    if (step.ok) {
        step = bind(queue, exchange, routing_key);
    }
    return step;
}

Step Connection::check_idle() {
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

void Connection::drop(Teardown teardown) noexcept {
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

} // namespace pod_router::amqp
