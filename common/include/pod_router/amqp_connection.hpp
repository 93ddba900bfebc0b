// The rabbitmq-c plumbing shared by the gateway's publisher
// (amqp_publisher.cpp) and the controller's consumer: one blocking
// connection on one channel, every round trip bounded, and failures
// reported as a Step that says how the connection can still be left.
// Internal to pod-router; not part of the C API.
//
// A Connection belongs to one thread at a time: rabbitmq-c connections are
// not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <amqp.h>
#include <amqp_framing.h>
#include <sys/time.h>

#include "pod_router/amqp_topology.hpp"

namespace pod_router::amqp {

// The only channel either side opens.
inline constexpr amqp_channel_t kChannel = 1;

struct ConnectionDeleter {
    void operator()(amqp_connection_state_t_ *connection) const noexcept {
        // Closes the socket too; nothing useful to do with its status.
        static_cast<void>(amqp_destroy_connection(connection));
    }
};
using ConnectionPtr = std::unique_ptr<amqp_connection_state_t_, ConnectionDeleter>;

// rabbitmq-c takes byte strings as non-const void * but only reads them when
// sending.
amqp_bytes_t bytes_of(std::string_view text) noexcept;
std::string string_of(amqp_bytes_t bytes);
timeval to_timeval(std::chrono::microseconds duration) noexcept;
// Text from the broker (reply texts), made safe for a one-line log message.
std::string printable(amqp_bytes_t bytes);
std::string library_error(int status);
std::string reply_summary(uint16_t code, amqp_bytes_t text);
// AMQP numbers a method by class and method: "60.80" is basic.ack.
std::string method_name(amqp_method_number_t id);
std::string quoted(std::string_view name);

// What is known about the connection after a failure decides how it can be
// left: the broker must see close-ok for a close it sent, and a connection
// that is out of step (timeout, socket error) can only be dropped.
enum class Teardown {
    kPolite,               // in step: connection.close, wait for close-ok
    kAfterChannelClose,    // the broker closed our channel: channel.close-ok, then kPolite
    kAfterConnectionClose, // the broker closed the connection: connection.close-ok only
    kAbandon,              // out of step or dead: just close the socket
};

// The result of one step with the broker.
struct [[nodiscard]] Step {
    bool ok = true;
    Teardown teardown = Teardown::kPolite; // when !ok
    std::string message;                   // when !ok: why, one line, no password
};

Step done();
Step failed(Teardown teardown, std::string message);
// A close method the broker sent, either as an RPC reply or unprompted; any
// other method is out of step.
Step broker_closed(const amqp_method_t &method, const std::string &what);
// All three kinds of amqp_rpc_reply_t (rabbitmq-c's examples die on them;
// this reports and lets the caller drop the connection).
Step check_reply(const amqp_rpc_reply_t &reply, const std::string &what);

struct ConnectionSettings {
    std::string host;
    int port = kAmqpDefaultPort;
    std::string vhost{kAmqpDefaultVhost};
    std::string username;
    std::string password;
    std::chrono::milliseconds connect_timeout{0}; // the TCP connect
    std::chrono::milliseconds io_timeout{0};      // each round trip after it
    // 0 turns heartbeats off. Only for a connection whose socket some thread
    // reads at least every heartbeat: rabbitmq-c answers and checks
    // heartbeats only while it reads.
    std::chrono::seconds heartbeat{0};
    // Advertises the consumer_cancel_notify capability, without which the
    // broker cancels a consumer (its queue deleted) without telling it.
    bool consumer_cancel_notify = false;
};

class Connection {
  public:
    explicit Connection(ConnectionSettings settings);
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    // Connects (connect_timeout), logs in (io_timeout for this and every
    // later round trip) and opens kChannel. On failure the connection is
    // kept for drop(step.teardown). Throws std::bad_alloc.
    Step open(std::string_view connection_name);

    // All of amqp_topology.hpp, dead-letter side first so that the work
    // queue never exists without somewhere to dead-letter to. Idempotent:
    // the gateway and the controller declare the same, so neither side's
    // start order matters.
    Step declare_topology(std::string_view exchange, std::string_view queue,
                          std::string_view routing_key);

    // Drains what the broker sent while the connection was idle, without
    // waiting: a close (close_all_connections, broker shutdown) or EOF.
    Step check_idle();

    // Leaves the connection as its state allows, each exchange bounded by
    // io_timeout, then forgets it. Failures here change nothing: the socket
    // is closed either way. Does nothing when not open.
    void drop(Teardown teardown) noexcept;

    // Broker texts never contain our password, but a message must not, ever.
    std::string scrub(std::string message) const;

    bool is_open() const noexcept { return connection_ != nullptr; }
    // Only while is_open().
    amqp_connection_state_t get() const noexcept { return connection_.get(); }
    const ConnectionSettings &settings() const noexcept { return settings_; }
    // "rabbitmq host:port", the prefix of every failure message.
    const std::string &endpoint() const noexcept { return endpoint_; }

  private:
    Step login(std::string_view connection_name);
    Step declare_exchange(std::string_view name, std::string_view type);
    Step declare_queue(std::string_view name, amqp_table_t arguments);
    Step bind(std::string_view queue, std::string_view exchange, std::string_view key);

    const ConnectionSettings settings_;
    const std::string endpoint_;
    ConnectionPtr connection_; // null while closed
};

} // namespace pod_router::amqp
