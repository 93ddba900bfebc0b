// The controller's EventConsumer against a real rabbitmq-server: the CTest
// fixture starts a private node (tests/amqp.cmake). Events are published
// with the gateway's C publisher, as in production; a plain rabbitmq-c
// connection plays the operator: it resets the topology before each test,
// counts and reads queues, and breaks things on purpose.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support/amqp_test_broker.hpp"
#include "../support/cmocka_cpp.hpp"
#include "amqp/event_consumer.hpp"
#include "pod_router/amqp_publisher.h"
#include "pod_router/amqp_topology.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using pod_router::controller::AmqpSettings;
using pod_router::controller::ControllerMetrics;
using pod_router::controller::Delivery;
using pod_router::controller::EventConsumer;
using pod_router::controller::Logger;
using pod_router::controller::LogLevel;
using pod_router::controller::Settlement;

namespace {

using amqp_test::broker_port;
using amqp_test::bytes;
using amqp_test::environment;
using amqp_test::kHost;
using amqp_test::rabbitmqctl;
using amqp_test::text;
// Long enough for a delivery on a loaded machine, short enough to fail fast.
constexpr auto kPatience = 10s;

// Polls until the condition holds or the patience runs out; returns it.
template <typename Condition> bool eventually(Condition condition, Clock::duration patience) {
    const auto deadline = Clock::now() + patience;
    for (;;) {
        if (condition()) {
            return true;
        }
        if (Clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(20ms);
    }
}

// --- the gateway's side ------------------------------------------------------

struct PublisherDestroy {
    void operator()(pr_amqp_publisher_t *publisher) const noexcept {
        pr_amqp_publisher_destroy(publisher);
    }
};
using PublisherPtr = std::unique_ptr<pr_amqp_publisher_t, PublisherDestroy>;

PublisherPtr make_publisher() {
    pr_amqp_config_t config{};
    config.host = kHost;
    config.port = broker_port();
    config.username = "guest";
    config.password = "guest";
    config.connect_timeout_ms = 1000;
    config.io_timeout_ms = 2000;
    char err[PR_ERROR_SIZE] = "";
    pr_amqp_publisher_t *publisher = nullptr;
    if (pr_amqp_publisher_create(&config, &publisher, err, sizeof(err)) != PR_OK) {
        fail_msg("pr_amqp_publisher_create: %s", err);
    }
    return PublisherPtr(publisher);
}

void publish(pr_amqp_publisher_t *publisher, const std::string &body, const std::string &id) {
    char err[PR_ERROR_SIZE] = "";
    // The first attempt after close_all_connections may meet the dead
    // connection; the publisher then starts over.
    for (int attempt = 0; attempt < 3; ++attempt) {
        if (pr_amqp_publish(publisher, body.data(), body.size(), id.data(), id.size(), err,
                            sizeof(err)) == PR_OK) {
            return;
        }
    }
    fail_msg("publish %s: %s", id.c_str(), err);
}

std::string body_of(int n) {
    return R"({"v":1,"identity":"user-)" + std::to_string(n) + R"(","pod":"p)" + std::to_string(n) +
           R"("})";
}

// --- the operator's side -----------------------------------------------------

class Broker : public amqp_test::Connection {
  public:
    // Every test starts with no pod-router exchange or queue at all.
    void reset() {
        delete_queue(pod_router::kAmqpQueue);
        delete_queue(pod_router::kAmqpDeadLetterQueue);
        delete_exchange(pod_router::kAmqpExchange);
        delete_exchange(pod_router::kAmqpDeadLetterExchange);
    }

    // Messages ready in the queue (not those delivered and unacknowledged).
    uint32_t ready(std::string_view queue) {
        const amqp_queue_declare_ok_t *ok = amqp_queue_declare(
            connection(), 1, bytes(queue), /*passive=*/1, 0, 0, 0, amqp_empty_table);
        expect_ok(amqp_get_rpc_reply(connection()), "passive queue.declare");
        assert_non_null(ok);
        return ok->message_count;
    }

    // Consumers the broker counts on the queue.
    uint32_t consumers(std::string_view queue) {
        const amqp_queue_declare_ok_t *ok = amqp_queue_declare(
            connection(), 1, bytes(queue), /*passive=*/1, 0, 0, 0, amqp_empty_table);
        expect_ok(amqp_get_rpc_reply(connection()), "passive queue.declare");
        assert_non_null(ok);
        return ok->consumer_count;
    }

    bool eventually_ready(std::string_view queue, uint32_t expected) {
        return eventually([&] { return ready(queue) == expected; }, kPatience);
    }

    // basic.get with an ack: the body and message id, if any message.
    std::optional<std::pair<std::string, std::string>> take(std::string_view queue) {
        const amqp_rpc_reply_t reply = amqp_basic_get(connection(), 1, bytes(queue), 1);
        expect_ok(reply, "basic.get");
        if (reply.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) {
            return std::nullopt;
        }
        amqp_message_t message;
        expect_ok(amqp_read_message(connection(), 1, &message, 0), "reading a message");
        std::string id;
        if ((message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) {
            id = text(message.properties.message_id);
        }
        std::pair<std::string, std::string> result{text(message.body), id};
        amqp_destroy_message(&message);
        return result;
    }
};

// --- the controller's side ---------------------------------------------------

AmqpSettings settings_for(int port) {
    AmqpSettings settings;
    settings.host = kHost;
    settings.port = port;
    settings.connect_timeout = 1000ms;
    settings.io_timeout = 2000ms;
    settings.prefetch = 50;
    settings.reconnect_min = 50ms;
    settings.reconnect_max = 500ms;
    settings.heartbeat = 5s;
    return settings;
}

// A consumer running on its own thread, recording what it is handed. The
// handler runs on the consumer thread: it must not use cmocka's asserts.
class Running {
  public:
    explicit Running(AmqpSettings settings, std::FILE *log = stderr)
        : logger_(LogLevel::kInfo, log),
          consumer_(
              std::move(settings), [this](Delivery delivery) { record(std::move(delivery)); },
              logger_, metrics),
          thread_([this] { consumer_.run(); }) {}
    ~Running() { stop(); }
    Running(const Running &) = delete;
    Running &operator=(const Running &) = delete;

    // How long run() took to return after stop().
    std::chrono::milliseconds stop() {
        if (!thread_.joinable()) {
            return 0ms;
        }
        const auto start = Clock::now();
        consumer_.stop();
        thread_.join();
        return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    }

    EventConsumer &consumer() { return consumer_; }

    void wait_consuming() {
        if (!eventually([this] { return consumer_.consuming(); }, kPatience)) {
            fail_msg("the consumer did not start consuming");
        }
    }

    // Waits until at least `count` deliveries were handed out in all; a copy
    // of them all.
    std::vector<Delivery> wait_for(std::size_t count, Clock::duration patience = kPatience) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (!arrived_.wait_for(lock, patience, [&] { return deliveries_.size() >= count; })) {
            fail_msg("%zu deliveries arrived, expected %zu", deliveries_.size(), count);
        }
        return deliveries_;
    }

    std::size_t delivered() {
        const std::lock_guard<std::mutex> lock(mutex_);
        return deliveries_.size();
    }

    // The next `n` deliveries throw from the handler.
    void fail_next(int n) {
        const std::lock_guard<std::mutex> lock(mutex_);
        failures_left_ = n;
    }

    void settle(const Delivery &delivery, Settlement settlement) {
        consumer_.settle(delivery.connection, delivery.tag, settlement);
    }

    ControllerMetrics metrics;

  private:
    void record(Delivery delivery) {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (failures_left_ > 0) {
            --failures_left_;
            throw std::runtime_error("handler failure on purpose");
        }
        deliveries_.push_back(std::move(delivery));
        arrived_.notify_all();
    }

    Logger logger_;
    std::mutex mutex_;
    std::condition_variable arrived_;
    std::vector<Delivery> deliveries_;
    int failures_left_ = 0;
    EventConsumer consumer_;
    std::thread thread_; // last: starts once everything else exists
};

// A loopback port nothing listens on (bound, then released).
int closed_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    assert_int_equal(::bind(fd, reinterpret_cast<sockaddr *>(&address), length), 0);
    assert_int_equal(::getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length), 0);
    ::close(fd);
    return ntohs(address.sin_port);
}

// The consumers a test started. cmocka leaves a failing test with longjmp,
// past its destructors: owned here, they are stopped by the teardown
// instead of running on into the next test.
std::vector<std::unique_ptr<Running>> g_running;

Running &start(const AmqpSettings &settings, std::FILE *log = stderr) {
    g_running.push_back(std::make_unique<Running>(settings, log));
    return *g_running.back();
}

int setup(void **) {
    Broker().reset();
    return 0;
}

int teardown(void **) {
    g_running.clear();
    return 0;
}

// --- tests -------------------------------------------------------------------

void published_events_arrive_and_acks_remove_them(void **) {
    // Published first: the publisher declares the topology and the consumer
    // must accept it as its own.
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(1), "req-1");
    publish(publisher.get(), body_of(2), "");

    Running &running = start(settings_for(broker_port()));
    running.wait_consuming();
    const std::vector<Delivery> deliveries = running.wait_for(2);
    assert_int_equal(deliveries.size(), 2);
    assert_string_view_equal(deliveries[0].body, body_of(1));
    assert_string_equal(deliveries[0].message_id.c_str(), "req-1");
    assert_string_view_equal(deliveries[1].body, body_of(2));
    assert_true(deliveries[1].message_id.empty());
    for (const Delivery &delivery : deliveries) {
        assert_int_equal(delivery.connection, 1);
        assert_false(delivery.redelivered);
    }
    assert_int_not_equal(deliveries[0].tag, deliveries[1].tag);
    assert_int_equal(running.metrics.events_consumed.value(), 2);
    assert_true(running.metrics.amqp_connected.value() == 1.0);

    for (const Delivery &delivery : deliveries) {
        running.settle(delivery, Settlement::kAck);
    }
    assert_true(eventually([&] { return running.metrics.events_acked.value() == 2; }, kPatience));
    // Closing the connection would requeue anything unacknowledged.
    running.stop();
    assert_false(running.consumer().consuming());
    assert_true(running.metrics.amqp_connected.value() == 0.0);
    Broker broker;
    assert_int_equal(broker.ready(pod_router::kAmqpQueue), 0);
    assert_int_equal(broker.ready(pod_router::kAmqpDeadLetterQueue), 0);
    assert_int_equal(running.metrics.amqp_reconnects.value(), 0);
}

void the_consumer_declares_the_topology_for_a_later_publisher(void **) {
    Running &running = start(settings_for(broker_port()));
    running.wait_consuming();
    PublisherPtr publisher = make_publisher(); // same declarations: accepted
    publish(publisher.get(), body_of(1), "req-1");
    const std::vector<Delivery> deliveries = running.wait_for(1);
    assert_string_equal(deliveries[0].message_id.c_str(), "req-1");
    running.settle(deliveries[0], Settlement::kAck);
    assert_true(eventually([&] { return running.metrics.events_acked.value() == 1; }, kPatience));
}

void dead_lettered_events_land_in_the_dead_queue(void **) {
    Running &running = start(settings_for(broker_port()));
    running.wait_consuming();
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(7), "req-poison");
    const std::vector<Delivery> deliveries = running.wait_for(1);
    running.settle(deliveries[0], Settlement::kDeadLetter);
    assert_true(
        eventually([&] { return running.metrics.events_dead_lettered.value() == 1; }, kPatience));

    Broker broker;
    assert_true(broker.eventually_ready(pod_router::kAmqpDeadLetterQueue, 1));
    const auto dead = broker.take(pod_router::kAmqpDeadLetterQueue);
    assert_true(dead.has_value());
    assert_string_view_equal(dead->first, body_of(7));
    assert_string_equal(dead->second.c_str(), "req-poison");
    running.stop();
    assert_int_equal(broker.ready(pod_router::kAmqpQueue), 0);
    assert_int_equal(running.metrics.events_acked.value(), 0);
}

void requeued_events_come_back(void **) {
    Running &running = start(settings_for(broker_port()));
    running.wait_consuming();
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(1), "req-1");
    const std::vector<Delivery> first = running.wait_for(1);
    assert_false(first[0].redelivered);
    running.settle(first[0], Settlement::kRequeue);
    const std::vector<Delivery> again = running.wait_for(2);
    assert_true(again[1].redelivered);
    assert_string_equal(again[1].message_id.c_str(), "req-1");
    assert_int_equal(again[1].connection, 1);
    running.settle(again[1], Settlement::kAck);
    assert_true(eventually([&] { return running.metrics.events_acked.value() == 1; }, kPatience));
}

void a_throwing_handler_requeues_the_delivery(void **) {
    Running &running = start(settings_for(broker_port()));
    running.fail_next(1);
    running.wait_consuming();
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(1), "req-1");
    const std::vector<Delivery> deliveries = running.wait_for(1);
    assert_true(deliveries[0].redelivered); // the first one threw
    assert_int_equal(deliveries[0].connection, 1);
    assert_int_equal(running.metrics.events_consumed.value(), 2);
    assert_int_equal(running.metrics.amqp_reconnects.value(), 0);
    running.settle(deliveries[0], Settlement::kAck);
    assert_true(eventually([&] { return running.metrics.events_acked.value() == 1; }, kPatience));
}

void unsettled_events_are_redelivered_after_a_reconnect(void **) {
    Running &running = start(settings_for(broker_port()));
    running.wait_consuming();
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(1), "req-1");
    const std::vector<Delivery> before = running.wait_for(1);
    assert_int_equal(before[0].connection, 1);
    assert_false(before[0].redelivered);

    rabbitmqctl("close_all_connections pod-router-test");
    const std::vector<Delivery> after = running.wait_for(2);
    assert_int_equal(after[1].connection, 2);
    assert_true(after[1].redelivered);
    assert_string_equal(after[1].message_id.c_str(), "req-1");
    assert_string_view_equal(after[1].body, body_of(1));
    assert_int_equal(running.metrics.amqp_reconnects.value(), 1);
    running.wait_consuming();

    // The first connection's tag means nothing now (the same number names
    // the redelivery on this one): skipped, not sent.
    assert_int_equal(before[0].tag, after[1].tag);
    running.settle(before[0], Settlement::kDeadLetter);
    running.settle(after[1], Settlement::kAck);
    assert_true(eventually([&] { return running.metrics.events_acked.value() == 1; }, kPatience));
    running.stop();
    assert_int_equal(running.metrics.events_acked.value(), 1);
    assert_int_equal(running.metrics.events_dead_lettered.value(), 0);
    assert_int_equal(running.metrics.amqp_reconnects.value(), 1);
    Broker broker;
    assert_int_equal(broker.ready(pod_router::kAmqpQueue), 0);
    assert_int_equal(broker.ready(pod_router::kAmqpDeadLetterQueue), 0);
}

void a_new_consumer_gets_what_the_last_one_left_unsettled(void **) {
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(1), "req-1");
    Running &first = start(settings_for(broker_port()));
    first.wait_for(1);
    first.stop();
    Running &second = start(settings_for(broker_port()));
    const std::vector<Delivery> deliveries = second.wait_for(1);
    assert_true(deliveries[0].redelivered);
    assert_string_equal(deliveries[0].message_id.c_str(), "req-1");
    second.settle(deliveries[0], Settlement::kAck);
    assert_true(eventually([&] { return second.metrics.events_acked.value() == 1; }, kPatience));
}

void prefetch_bounds_unsettled_deliveries(void **) {
    PublisherPtr publisher = make_publisher();
    for (int i = 0; i < 10; ++i) {
        publish(publisher.get(), body_of(i), "req-" + std::to_string(i));
    }
    AmqpSettings settings = settings_for(broker_port());
    settings.prefetch = 3;
    Running &running = start(settings);
    std::vector<Delivery> deliveries = running.wait_for(3);
    // Time for more to arrive, were the limit not enforced.
    std::this_thread::sleep_for(300ms);
    assert_int_equal(running.delivered(), 3);

    running.settle(deliveries[0], Settlement::kAck);
    deliveries = running.wait_for(4);
    std::this_thread::sleep_for(300ms);
    assert_int_equal(running.delivered(), 4);

    // Settling as they come drains the queue, in order.
    for (std::size_t settled = 1; settled < 10; ++settled) {
        deliveries = running.wait_for(std::min<std::size_t>(settled + 3, 10));
        running.settle(deliveries[settled], Settlement::kAck);
    }
    assert_true(eventually([&] { return running.metrics.events_acked.value() == 10; }, kPatience));
    for (int i = 0; i < 10; ++i) {
        assert_string_equal(deliveries[i].message_id.c_str(), ("req-" + std::to_string(i)).c_str());
    }
    Broker broker;
    assert_int_equal(broker.ready(pod_router::kAmqpQueue), 0);
}

void settlements_for_other_connections_or_tags_are_ignored(void **) {
    Running &running = start(settings_for(broker_port()));
    running.wait_consuming();
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(1), "req-1");
    const Delivery delivery = running.wait_for(1)[0];

    running.consumer().settle(0, delivery.tag, Settlement::kDeadLetter);
    running.consumer().settle(delivery.connection + 1, delivery.tag, Settlement::kDeadLetter);
    running.consumer().settle(delivery.connection, delivery.tag + 100, Settlement::kAck);
    running.settle(delivery, Settlement::kAck);
    running.settle(delivery, Settlement::kDeadLetter); // settled already: skipped
    assert_true(eventually([&] { return running.metrics.events_acked.value() == 1; }, kPatience));

    // The channel survived all of it: the same connection still delivers.
    publish(publisher.get(), body_of(2), "req-2");
    const Delivery next = running.wait_for(2)[1];
    assert_int_equal(next.connection, delivery.connection);
    assert_false(next.redelivered);
    assert_int_equal(running.metrics.amqp_reconnects.value(), 0);
    assert_int_equal(running.metrics.events_acked.value(), 1);
    assert_int_equal(running.metrics.events_dead_lettered.value(), 0);
    running.settle(next, Settlement::kAck);
    assert_true(eventually([&] { return running.metrics.events_acked.value() == 2; }, kPatience));
}

void stop_consuming_keeps_settling(void **) {
    Running &running = start(settings_for(broker_port()));
    running.wait_consuming();
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(1), "req-1");
    const Delivery first = running.wait_for(1)[0];

    running.consumer().stop_consuming();
    assert_true(eventually([&] { return !running.consumer().consuming(); }, kPatience));
    Broker broker;
    assert_true(
        eventually([&] { return broker.consumers(pod_router::kAmqpQueue) == 0; }, kPatience));
    publish(publisher.get(), body_of(2), "req-2");
    std::this_thread::sleep_for(300ms);
    assert_int_equal(running.delivered(), 1);

    // Still connected: the delivery handed out before can be settled.
    running.settle(first, Settlement::kAck);
    assert_true(eventually([&] { return running.metrics.events_acked.value() == 1; }, kPatience));
    assert_true(running.metrics.amqp_connected.value() == 1.0);
    running.stop();
    assert_int_equal(broker.ready(pod_router::kAmqpQueue), 1);
    const auto left = broker.take(pod_router::kAmqpQueue);
    assert_true(left.has_value());
    assert_string_equal(left->second.c_str(), "req-2");
}

void a_deleted_queue_makes_the_consumer_reconnect(void **) {
    Running &running = start(settings_for(broker_port()));
    running.wait_consuming();
    Broker broker;
    broker.delete_queue(pod_router::kAmqpQueue);
    // The broker cancels the consumer; the consumer reconnects and declares
    // the queue again.
    assert_true(
        eventually([&] { return running.metrics.amqp_reconnects.value() == 1; }, kPatience));
    running.wait_consuming();
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(1), "req-1");
    const Delivery delivery = running.wait_for(1)[0];
    assert_int_equal(delivery.connection, 2);
}

void heartbeats_keep_an_idle_connection(void **) {
    AmqpSettings settings = settings_for(broker_port());
    settings.heartbeat = 1s;
    Running &running = start(settings);
    running.wait_consuming();
    // The broker closes a connection after two missed heartbeats.
    std::this_thread::sleep_for(3500ms);
    assert_true(running.consumer().consuming());
    assert_int_equal(running.metrics.amqp_reconnects.value(), 0);
    PublisherPtr publisher = make_publisher();
    publish(publisher.get(), body_of(1), "req-1");
    assert_int_equal(running.wait_for(1)[0].connection, 1);
}

void stop_is_prompt_while_the_broker_is_unreachable(void **) {
    AmqpSettings settings = settings_for(closed_port());
    Running &retrying = start(settings);
    // A few refused connections with short back-offs.
    std::this_thread::sleep_for(300ms);
    assert_false(retrying.consumer().consuming());
    assert_true(retrying.metrics.amqp_connected.value() == 0.0);
    assert_true(retrying.stop() < 300ms);

    // In the middle of a long back-off.
    settings.reconnect_min = 30s;
    settings.reconnect_max = 60s;
    Running &waiting = start(settings);
    std::this_thread::sleep_for(200ms);
    assert_true(waiting.stop() < 300ms);
    assert_int_equal(waiting.metrics.amqp_reconnects.value(), 0);
}

void stop_before_run_returns_at_once(void **) {
    Logger logger(LogLevel::kWarn);
    ControllerMetrics metrics;
    EventConsumer consumer(
        settings_for(broker_port()), [](const Delivery &) {}, logger, metrics);
    consumer.stop();
    const auto start = Clock::now();
    consumer.run();
    assert_true(Clock::now() - start < 100ms);
    assert_false(consumer.consuming());
}

void a_wrong_password_is_logged_without_it(void **) {
    std::unique_ptr<std::FILE, int (*)(std::FILE *)> log(std::tmpfile(), &std::fclose);
    assert_non_null(log.get());
    AmqpSettings settings = settings_for(broker_port());
    const std::string password = "not-the-guest-password-5c1e";
    settings.password = password;
    Running &running = start(settings, log.get());
    assert_true(eventually(
        [&] {
            static_cast<void>(std::fflush(log.get()));
            return std::ftell(log.get()) > 0 && running.metrics.amqp_connected.value() == 0.0;
        },
        kPatience));
    std::this_thread::sleep_for(300ms); // a few attempts
    assert_false(running.consumer().consuming());
    running.stop(); // nothing more is logged
    std::string logged;
    std::rewind(log.get());
    char chunk[4096];
    for (std::size_t n; (n = std::fread(chunk, 1, sizeof chunk, log.get())) > 0;) {
        logged.append(chunk, n);
    }
    assert_true(contains(logged, "cannot connect to rabbitmq"));
    assert_true(contains(logged, "ACCESS_REFUSED"));
    assert_false(contains(logged, password));
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(published_events_arrive_and_acks_remove_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_consumer_declares_the_topology_for_a_later_publisher,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(dead_lettered_events_land_in_the_dead_queue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(requeued_events_come_back, setup, teardown),
        cmocka_unit_test_setup_teardown(a_throwing_handler_requeues_the_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(unsettled_events_are_redelivered_after_a_reconnect, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_new_consumer_gets_what_the_last_one_left_unsettled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(prefetch_bounds_unsettled_deliveries, setup, teardown),
        cmocka_unit_test_setup_teardown(settlements_for_other_connections_or_tags_are_ignored,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(stop_consuming_keeps_settling, setup, teardown),
        cmocka_unit_test_setup_teardown(a_deleted_queue_makes_the_consumer_reconnect, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(heartbeats_keep_an_idle_connection, setup, teardown),
        cmocka_unit_test_teardown(stop_is_prompt_while_the_broker_is_unreachable, teardown),
        cmocka_unit_test_teardown(stop_before_run_returns_at_once, teardown),
        cmocka_unit_test_teardown(a_wrong_password_is_logged_without_it, teardown),
    };
    return cmocka_run_group_tests_name("event_consumer", tests, nullptr, nullptr);
}
