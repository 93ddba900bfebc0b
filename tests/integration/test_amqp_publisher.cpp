// The AMQP publisher (amqp_publisher.h) against a real rabbitmq-server: the
// CTest fixture starts a private node (tests/amqp.cmake). A second, plain
// rabbitmq-c connection plays the controller's part: it resets the topology
// before each test, reads what arrived, and breaks things on purpose.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/amqp_test_broker.hpp"
#include "../support/cmocka_cpp.hpp"
#include "pod_router/amqp_publisher.h"
#include "pod_router/amqp_topology.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using amqp_test::broker_port;
using amqp_test::bytes;
using amqp_test::kHost;
using amqp_test::rabbitmqctl;
using amqp_test::text;
constexpr std::string_view kBody = R"({"v":1,"identity":"alice","pod":"user-alice"})";
constexpr const char *kCustomExchange = "pod-router-test.exchange";
constexpr const char *kCustomQueue = "pod-router-test.queue";

pr_amqp_config_t config_for(int port) {
    pr_amqp_config_t config{};
    config.host = kHost;
    config.port = port;
    config.username = "guest";
    config.password = "guest";
    config.connect_timeout_ms = 1000;
    config.io_timeout_ms = 2000;
    return config;
}

struct PublisherDestroy {
    void operator()(pr_amqp_publisher_t *publisher) const noexcept {
        pr_amqp_publisher_destroy(publisher);
    }
};
using PublisherPtr = std::unique_ptr<pr_amqp_publisher_t, PublisherDestroy>;

PublisherPtr make_publisher(const pr_amqp_config_t &config) {
    char err[PR_ERROR_SIZE] = "";
    pr_amqp_publisher_t *publisher = nullptr;
    if (pr_amqp_publisher_create(&config, &publisher, err, sizeof(err)) != PR_OK) {
        fail_msg("pr_amqp_publisher_create: %s", err);
    }
    return PublisherPtr(publisher);
}

struct Outcome {
    pr_status_t status;
    std::string error;
    std::chrono::milliseconds elapsed;
};

Outcome publish(pr_amqp_publisher_t *publisher, std::string_view body, std::string_view id) {
    char err[PR_ERROR_SIZE] = "";
    const auto start = Clock::now();
    const pr_status_t status = pr_amqp_publish(publisher, body.data(), body.size(), id.data(),
                                               id.size(), err, sizeof(err));
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    return Outcome{status, err, elapsed};
}

void assert_published(const Outcome &outcome) {
    if (outcome.status != PR_OK) {
        fail_msg("publish failed (%s): %s", pr_status_name(outcome.status), outcome.error.c_str());
    }
}

struct Message {
    std::string body;
    std::string content_type;
    int delivery_mode = 0;
    std::string message_id;
    uint64_t delivery_tag = 0;
};

// The test's own view of the broker, on channel 1 of its own connection.
class Broker : public amqp_test::Connection {
  public:
    // Every test starts with no pod-router exchange or queue at all.
    void reset() {
        for (std::string_view queue : {pod_router::kAmqpQueue, pod_router::kAmqpDeadLetterQueue,
                                       std::string_view(kCustomQueue)}) {
            delete_queue(queue);
        }
        for (std::string_view exchange :
             {pod_router::kAmqpExchange, pod_router::kAmqpDeadLetterExchange,
              std::string_view(kCustomExchange)}) {
            delete_exchange(exchange);
        }
    }

    std::optional<Message> get(std::string_view queue, bool ack = true) {
        const amqp_rpc_reply_t reply = amqp_basic_get(connection(), 1, bytes(queue), 0);
        expect_ok(reply, "basic.get");
        if (reply.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) {
            return std::nullopt;
        }
        assert_int_equal(reply.reply.id, AMQP_BASIC_GET_OK_METHOD);
        Message result;
        result.delivery_tag = static_cast<amqp_basic_get_ok_t *>(reply.reply.decoded)->delivery_tag;
        amqp_message_t message;
        expect_ok(amqp_read_message(connection(), 1, &message, 0), "reading a message");
        result.body = text(message.body);
        const amqp_basic_properties_t &properties = message.properties;
        if ((properties._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) != 0) {
            result.content_type = text(properties.content_type);
        }
        if ((properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) != 0) {
            result.delivery_mode = properties.delivery_mode;
        }
        if ((properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) {
            result.message_id = text(properties.message_id);
        }
        amqp_destroy_message(&message);
        if (ack) {
            assert_int_equal(amqp_basic_ack(connection(), 1, result.delivery_tag, 0), 0);
        }
        return result;
    }

    // What the controller does with a poison message.
    void reject(uint64_t delivery_tag) {
        assert_int_equal(amqp_basic_reject(connection(), 1, delivery_tag, 0), 0);
    }

    void unbind(std::string_view queue, std::string_view exchange, std::string_view key) {
        amqp_queue_unbind(connection(), 1, bytes(queue), bytes(exchange), bytes(key),
                          amqp_empty_table);
        expect_ok(amqp_get_rpc_reply(connection()), "queue.unbind");
    }

    // True if the broker accepts the declaration; a refusal closes the
    // channel, which is then reopened.
    bool declare_queue(std::string_view queue, bool passive, amqp_table_t arguments) {
        amqp_queue_declare(connection(), 1, bytes(queue), passive ? 1 : 0, 1, 0, 0, arguments);
        return accepted();
    }

    bool exchange_exists(std::string_view exchange) {
        amqp_exchange_declare(connection(), 1, bytes(exchange), bytes("direct"), 1, 0, 0, 0,
                              amqp_empty_table);
        return accepted();
    }

  private:
    bool accepted() {
        const amqp_rpc_reply_t reply = amqp_get_rpc_reply(connection());
        if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
            reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_ok_t close_ok{};
            assert_int_equal(
                amqp_send_method(connection(), 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok),
                AMQP_STATUS_OK);
            open_channel();
            return false;
        }
        expect_ok(reply, "declaration");
        return true;
    }
};

amqp_table_t dead_letter_arguments(amqp_table_entry_t (&entries)[2]) {
    entries[0].key = bytes(pod_router::kAmqpArgDeadLetterExchange);
    entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[0].value.value.bytes = bytes(pod_router::kAmqpDeadLetterExchange);
    entries[1].key = bytes(pod_router::kAmqpArgDeadLetterRoutingKey);
    entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[1].value.value.bytes = bytes(pod_router::kAmqpDeadLetterRoutingKey);
    return amqp_table_t{2, entries};
}

class Socket {
  public:
    Socket() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) { assert_true(fd_ >= 0); }
    ~Socket() { ::close(fd_); }
    Socket(const Socket &) = delete;
    Socket &operator=(const Socket &) = delete;

    // Binds to a free loopback port and returns it.
    int bind_loopback() {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof(address);
        assert_int_equal(::bind(fd_, reinterpret_cast<sockaddr *>(&address), length), 0);
        assert_int_equal(::getsockname(fd_, reinterpret_cast<sockaddr *>(&address), &length), 0);
        return ntohs(address.sin_port);
    }
    void listen() { assert_int_equal(::listen(fd_, 8), 0); }

  private:
    int fd_;
};

struct Fixture {
    std::unique_ptr<Broker> broker = std::make_unique<Broker>();
    PublisherPtr publisher = make_publisher(config_for(broker_port()));
};

int setup(void **state) {
    auto fixture = std::make_unique<Fixture>();
    fixture->broker->reset();
    *state = fixture.release();
    return 0;
}

int teardown(void **state) {
    std::unique_ptr<Fixture> fixture(static_cast<Fixture *>(*state));
    return 0;
}

Fixture &fixture_of(void **state) {
    return *static_cast<Fixture *>(*state);
}

void publish_declares_the_topology_and_the_message_arrives(void **state) {
    Fixture &f = fixture_of(state);
    assert_false(f.broker->exchange_exists(pod_router::kAmqpExchange));

    assert_published(publish(f.publisher.get(), kBody, "req-1"));

    const std::optional<Message> message = f.broker->get(pod_router::kAmqpQueue);
    assert_true(message.has_value());
    assert_string_view_equal(message->body, kBody);
    assert_string_equal(message->content_type.c_str(), "application/json");
    assert_int_equal(message->delivery_mode, 2);
    assert_string_equal(message->message_id.c_str(), "req-1");
    assert_false(f.broker->get(pod_router::kAmqpQueue).has_value());

    assert_true(f.broker->exchange_exists(pod_router::kAmqpExchange));
    assert_true(f.broker->exchange_exists(pod_router::kAmqpDeadLetterExchange));
    assert_true(f.broker->declare_queue(pod_router::kAmqpDeadLetterQueue, true, amqp_empty_table));
}

void the_work_queue_dead_letters_into_the_dead_queue(void **state) {
    Fixture &f = fixture_of(state);
    assert_published(publish(f.publisher.get(), kBody, "req-poison"));

    // The arguments are there: the same declaration is accepted, one
    // without them is refused as inequivalent.
    amqp_table_entry_t entries[2];
    assert_true(
        f.broker->declare_queue(pod_router::kAmqpQueue, false, dead_letter_arguments(entries)));
    assert_false(f.broker->declare_queue(pod_router::kAmqpQueue, false, amqp_empty_table));

    // And they work: a message the controller rejects ends up in the DLQ.
    const std::optional<Message> message = f.broker->get(pod_router::kAmqpQueue, false);
    assert_true(message.has_value());
    f.broker->reject(message->delivery_tag);
    std::optional<Message> dead;
    for (int i = 0; i < 50 && !dead; ++i) {
        dead = f.broker->get(pod_router::kAmqpDeadLetterQueue);
        if (!dead) {
            std::this_thread::sleep_for(50ms);
        }
    }
    assert_true(dead.has_value());
    assert_string_view_equal(dead->body, kBody);
    assert_string_equal(dead->message_id.c_str(), "req-poison");
}

void a_healthy_connection_is_reused_without_redeclaring(void **state) {
    Fixture &f = fixture_of(state);
    assert_published(publish(f.publisher.get(), kBody, "req-1"));
    assert_published(publish(f.publisher.get(), kBody, "req-2"));

    // Had the publisher reconnected it would have bound the queue again;
    // on the same connection the message comes back unroutable.
    f.broker->unbind(pod_router::kAmqpQueue, pod_router::kAmqpExchange,
                     pod_router::kAmqpRoutingKey);
    const Outcome returned = publish(f.publisher.get(), kBody, "req-3");
    assert_int_equal(returned.status, PR_UNAVAILABLE);
    assert_true(contains(returned.error, "returned"));

    // The failure dropped the connection: the next publish declares again.
    assert_published(publish(f.publisher.get(), kBody, "req-4"));
    for (const char *id : {"req-1", "req-2", "req-4"}) {
        const std::optional<Message> message = f.broker->get(pod_router::kAmqpQueue);
        assert_true(message.has_value());
        assert_string_equal(message->message_id.c_str(), id);
    }
    assert_false(f.broker->get(pod_router::kAmqpQueue).has_value());
}

void custom_names_are_declared_and_used(void **state) {
    Fixture &f = fixture_of(state);
    pr_amqp_config_t config = config_for(broker_port());
    config.exchange = kCustomExchange;
    config.queue = kCustomQueue;
    config.routing_key = "custom-key";
    PublisherPtr publisher = make_publisher(config);
    assert_published(publish(publisher.get(), kBody, ""));

    const std::optional<Message> message = f.broker->get(kCustomQueue);
    assert_true(message.has_value());
    assert_string_view_equal(message->body, kBody);
    assert_true(message->message_id.empty());
    // The dead-letter side is shared; the default work queue is not made.
    assert_true(f.broker->declare_queue(pod_router::kAmqpDeadLetterQueue, true, amqp_empty_table));
    assert_false(f.broker->declare_queue(pod_router::kAmqpQueue, true, amqp_empty_table));
}

void nothing_listening_is_unavailable_within_the_connect_timeout(void **) {
    int port = 0;
    {
        Socket probe;
        port = probe.bind_loopback(); // free once the socket closes
    }
    PublisherPtr publisher = make_publisher(config_for(port));
    const Outcome outcome = publish(publisher.get(), kBody, "req-1");
    assert_int_equal(outcome.status, PR_UNAVAILABLE);
    assert_string_equal(pr_status_name(outcome.status), "unavailable");
    assert_true(contains(outcome.error, std::string(kHost) + ":" + std::to_string(port)));
    assert_true(outcome.elapsed < 1500ms);
}

void a_silent_server_is_unavailable_within_the_io_timeout(void **) {
    // The kernel completes the TCP handshake; nobody ever speaks AMQP.
    Socket silent;
    const int port = silent.bind_loopback();
    silent.listen();
    pr_amqp_config_t config = config_for(port);
    config.io_timeout_ms = 500;
    PublisherPtr publisher = make_publisher(config);
    const Outcome outcome = publish(publisher.get(), kBody, "req-1");
    assert_int_equal(outcome.status, PR_UNAVAILABLE);
    assert_true(contains(outcome.error, std::to_string(port)));
    assert_true(outcome.elapsed >= 400ms);
    assert_true(outcome.elapsed < 1500ms);
}

void a_wrong_password_is_unavailable_and_never_echoed(void **) {
    pr_amqp_config_t config = config_for(broker_port());
    const std::string password = "not-the-guest-password-7f3a";
    config.password = password.c_str();
    PublisherPtr publisher = make_publisher(config);
    for (int attempt = 0; attempt < 2; ++attempt) {
        const Outcome outcome = publish(publisher.get(), kBody, "req-1");
        assert_int_equal(outcome.status, PR_UNAVAILABLE);
        assert_false(outcome.error.empty());
        assert_false(contains(outcome.error, password));
        assert_true(contains(outcome.error, std::string(kHost) + ":"));
        assert_true(contains(outcome.error, "ACCESS_REFUSED"));
    }
}

void a_killed_connection_is_replaced(void **state) {
    Fixture &f = fixture_of(state);
    assert_published(publish(f.publisher.get(), kBody, "req-1"));

    rabbitmqctl("close_all_connections pod-router-test");
    std::this_thread::sleep_for(200ms); // let the close reach the client
    bool published = false;
    for (int attempt = 0; attempt < 3 && !published; ++attempt) {
        published = publish(f.publisher.get(), kBody, "req-2").status == PR_OK;
    }
    assert_true(published);

    f.broker = std::make_unique<Broker>(); // ours was closed as well
    std::optional<Message> first = f.broker->get(pod_router::kAmqpQueue);
    assert_true(first.has_value());
    assert_string_equal(first->message_id.c_str(), "req-1");
    std::optional<Message> second = f.broker->get(pod_router::kAmqpQueue);
    assert_true(second.has_value());
    assert_string_equal(second->message_id.c_str(), "req-2");
}

void bad_arguments_are_refused(void **) {
    char err[PR_ERROR_SIZE];
    pr_amqp_publisher_t *publisher = nullptr;
    const pr_amqp_config_t good = config_for(broker_port());

    pr_amqp_config_t bad = good;
    bad.host = nullptr;
    assert_int_equal(pr_amqp_publisher_create(&bad, &publisher, err, sizeof(err)),
                     PR_INVALID_CONFIG);
    assert_null(publisher);
    assert_true(contains(err, "host"));
    bad = good;
    bad.port = 70000;
    assert_int_equal(pr_amqp_publisher_create(&bad, &publisher, err, sizeof(err)),
                     PR_INVALID_CONFIG);
    bad = good;
    bad.password = nullptr;
    assert_int_equal(pr_amqp_publisher_create(&bad, &publisher, err, sizeof(err)),
                     PR_INVALID_CONFIG);
    bad = good;
    bad.io_timeout_ms = 0;
    assert_int_equal(pr_amqp_publisher_create(&bad, &publisher, err, sizeof(err)),
                     PR_INVALID_CONFIG);
    bad = good;
    bad.exchange = "";
    assert_int_equal(pr_amqp_publisher_create(&bad, &publisher, err, sizeof(err)),
                     PR_INVALID_CONFIG);
    const std::string long_queue(256, 'q');
    bad = good;
    bad.queue = long_queue.c_str();
    assert_int_equal(pr_amqp_publisher_create(&bad, &publisher, err, sizeof(err)),
                     PR_INVALID_CONFIG);
    assert_int_equal(pr_amqp_publisher_create(nullptr, &publisher, err, sizeof(err)),
                     PR_INVALID_CONFIG);
    assert_int_equal(pr_amqp_publisher_create(&good, nullptr, err, sizeof(err)), PR_INTERNAL_ERROR);

    PublisherPtr valid = make_publisher(good); // never connects: nothing is published
    assert_int_equal(pr_amqp_publish(nullptr, "x", 1, nullptr, 0, err, sizeof(err)),
                     PR_INTERNAL_ERROR);
    assert_int_equal(pr_amqp_publish(valid.get(), nullptr, 0, nullptr, 0, err, sizeof(err)),
                     PR_MALFORMED_EVENT);
    const std::string long_id(256, 'i');
    assert_int_equal(
        pr_amqp_publish(valid.get(), "x", 1, long_id.data(), long_id.size(), err, sizeof(err)),
        PR_MALFORMED_EVENT);
    pr_amqp_publisher_destroy(nullptr);
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(publish_declares_the_topology_and_the_message_arrives,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(the_work_queue_dead_letters_into_the_dead_queue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_healthy_connection_is_reused_without_redeclaring, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(custom_names_are_declared_and_used, setup, teardown),
        cmocka_unit_test(nothing_listening_is_unavailable_within_the_connect_timeout),
        cmocka_unit_test(a_silent_server_is_unavailable_within_the_io_timeout),
        cmocka_unit_test(a_wrong_password_is_unavailable_and_never_echoed),
        cmocka_unit_test_setup_teardown(a_killed_connection_is_replaced, setup, teardown),
        cmocka_unit_test(bad_arguments_are_refused),
    };
    return cmocka_run_group_tests_name("amqp_publisher", tests, nullptr, nullptr);
}
