// The tests' own plain rabbitmq-c connection to the CTest broker fixture
// (tests/amqp.cmake: POD_ROUTER_TEST_AMQP_PORT, POD_ROUTER_TEST_AMQP_CTL),
// on channel 1, for the test to play the operator: inspect and reset queues,
// break connections. Header-only.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "cmocka_cpp.hpp"

namespace amqp_test {

inline constexpr const char *kHost = "127.0.0.1";

// The fixture's settings, from ctest. getenv and system are safe here: no
// thread of a test program changes the environment.
inline std::string environment(const char *name) {
    const char *value = std::getenv(name); // NOLINT(concurrency-mt-unsafe)
    if (value == nullptr) {
        fail_msg("%s is not set; run through ctest", name);
        return {};
    }
    return value;
}

inline int broker_port() {
    return std::stoi(environment("POD_ROUTER_TEST_AMQP_PORT"));
}

// rabbitmqctl against the fixture's node, e.g. "close_all_connections x".
inline void rabbitmqctl(const std::string &arguments) {
    const std::string command =
        environment("POD_ROUTER_TEST_AMQP_CTL") + " " + arguments + " >/dev/null";
    if (std::system(command.c_str()) != 0) { // NOLINT(concurrency-mt-unsafe)
        fail_msg("failed: %s", command.c_str());
    }
}

inline amqp_bytes_t bytes(std::string_view value) {
    return amqp_bytes_t{value.size(), const_cast<char *>(value.data())};
}

inline std::string text(amqp_bytes_t value) {
    return value.bytes == nullptr ? std::string()
                                  : std::string(static_cast<const char *>(value.bytes), value.len);
}

struct ConnectionDestroy {
    void operator()(amqp_connection_state_t_ *connection) const noexcept {
        static_cast<void>(amqp_connection_close(connection, AMQP_REPLY_SUCCESS));
        static_cast<void>(amqp_destroy_connection(connection));
    }
};

// Logged in as guest, channel 1 open; each test's Broker adds what it needs.
class Connection {
  public:
    Connection() : connection_(amqp_new_connection()) {
        amqp_socket_t *socket = amqp_tcp_socket_new(connection_.get());
        const timeval timeout = {5, 0};
        if (socket == nullptr ||
            amqp_socket_open_noblock(socket, kHost, broker_port(), &timeout) != AMQP_STATUS_OK) {
            fail_msg("the test cannot connect to rabbitmq on port %d", broker_port());
        }
        assert_int_equal(amqp_set_rpc_timeout(connection_.get(), &timeout), AMQP_STATUS_OK);
        expect_ok(amqp_login(connection_.get(), "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                             AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
                  "login");
        open_channel();
    }

    void delete_queue(std::string_view queue) {
        amqp_queue_delete(connection_.get(), 1, bytes(queue), 0, 0);
        expect_ok(amqp_get_rpc_reply(connection_.get()), "queue.delete");
    }

    void delete_exchange(std::string_view exchange) {
        amqp_exchange_delete(connection_.get(), 1, bytes(exchange), 0);
        expect_ok(amqp_get_rpc_reply(connection_.get()), "exchange.delete");
    }

  protected:
    amqp_connection_state_t connection() const { return connection_.get(); }

    void open_channel() {
        amqp_channel_open(connection_.get(), 1);
        expect_ok(amqp_get_rpc_reply(connection_.get()), "channel.open");
    }

    static void expect_ok(const amqp_rpc_reply_t &reply, const char *what) {
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
            fail_msg("%s: rabbitmq reply type %d, library error %s", what,
                     static_cast<int>(reply.reply_type), amqp_error_string2(reply.library_error));
        }
    }

  private:
    std::unique_ptr<amqp_connection_state_t_, ConnectionDestroy> connection_;
};

} // namespace amqp_test
