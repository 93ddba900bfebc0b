// The creation flow through its seams: a scripted Kubernetes API, sessions
// in memory, a settler that records. The creator and the recorder are
// stepped by hand with explicit times, so every path (and every back-off)
// runs without threads, sleeps or servers.
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../support/cmocka_cpp.hpp"
#include "lifecycle/creation_flow.hpp"

using namespace pod_router::controller;
using pod_router::CreationEvent;
using pod_router::Error;
using pod_router::ErrorCode;
using pod_router::Expected;
using pod_router::NamingPolicy;
using pod_router::ScriptOutcome;
using std::chrono::milliseconds;
using std::chrono::seconds;
using TimePoint = CreationFlow::Clock::time_point;

namespace {

// Far from the epoch, so that back-offs never look "before the start".
const TimePoint kStart = TimePoint() + std::chrono::hours(1000);

// ------------------------------------------------------------------ fakes

class FakePodApi final : public PodApi {
  public:
    struct Created {
        std::string pod;
        std::string identity;
    };

    // Each create_pod takes the next scripted outcome; then `otherwise`.
    std::deque<ApiResult> script;
    ApiResult otherwise{ApiOutcome::kDone, 201, ""};
    ApiResult delete_result{ApiOutcome::kDone, 200, ""};
    std::vector<Created> creates;
    std::vector<std::string> deletes;

    ApiResult create_pod(const std::string &pod, const std::string &identity) override {
        creates.push_back({pod, identity});
        if (script.empty()) {
            return otherwise;
        }
        ApiResult next = script.front();
        script.pop_front();
        return next;
    }
    ApiResult delete_pod(const std::string &pod) override {
        deletes.push_back(pod);
        return delete_result;
    }
};

class FakeSessions final : public SessionWriter {
  public:
    struct Ready {
        std::string pod;
        std::string identity;
        std::string ip;
        int port;
    };
    struct Failed {
        std::string pod;
        std::string identity;
        std::string reason;
    };

    bool unavailable = false; // every call fails, as with Redis down
    bool superseded = false;  // mark_ready finds a warm pod serving the session
    std::map<std::string, SessionRecord> sessions;
    int lookups = 0;
    int ready_tries = 0;
    int failed_tries = 0;
    std::vector<Ready> ready;   // written
    std::vector<Failed> failed; // written

    void put(const std::string &pod, std::string_view state, const std::string &identity) {
        SessionRecord record;
        record.state = std::string(state);
        record.identity = identity;
        sessions[pod] = record;
    }

    Expected<std::optional<SessionRecord>> session(const std::string &pod) override {
        ++lookups;
        if (unavailable) {
            return down();
        }
        const auto found = sessions.find(pod);
        if (found == sessions.end()) {
            return std::optional<SessionRecord>();
        }
        return std::optional<SessionRecord>(found->second);
    }
    Expected<ScriptOutcome> mark_ready(const std::string &pod, const std::string &identity,
                                       const std::string &ip, int port) override {
        ++ready_tries;
        if (unavailable) {
            return down();
        }
        if (superseded) {
            return ScriptOutcome::kSuperseded;
        }
        ready.push_back({pod, identity, ip, port});
        put(pod, pod_router::session_state::kReady, identity);
        return ScriptOutcome::kOk;
    }
    Expected<ScriptOutcome> mark_failed(const std::string &pod, const std::string &identity,
                                        const std::string &reason) override {
        ++failed_tries;
        if (unavailable) {
            return down();
        }
        failed.push_back({pod, identity, reason});
        put(pod, pod_router::session_state::kFailed, identity);
        return ScriptOutcome::kOk;
    }

    Expected<ScriptOutcome> mark_stale(const std::string &pod, const std::string &ip,
                                       const std::string &port) override {
        ++stale_tries;
        if (unavailable) {
            return down();
        }
        stale.push_back(pod + " " + ip + ":" + port);
        sessions.erase(pod);
        return ScriptOutcome::kOk;
    }
    int stale_tries = 0;
    std::vector<std::string> stale;

    Expected<ScriptOutcome> set_stage(const std::string &pod, const std::string &identity,
                                      std::string_view stage) override {
        if (unavailable) {
            return down();
        }
        stages.push_back(pod + " " + identity + " " + std::string(stage));
        return ScriptOutcome::kOk;
    }
    std::vector<std::string> stages; // "<pod> <identity> <stage>", in order

  private:
    static Error down() {
        return Error{ErrorCode::kUnavailable, "redis 127.0.0.1:6379: Connection refused"};
    }
};

class RecordingSettler final : public Settler {
  public:
    struct Settled {
        std::uint64_t connection;
        std::uint64_t tag;
        Settlement settlement;
    };
    std::vector<Settled> settled;

    void settle(std::uint64_t connection, std::uint64_t tag, Settlement settlement) override {
        settled.push_back({connection, tag, settlement});
    }
    // How often the delivery was settled, and whether always that way.
    int count(std::uint64_t tag, Settlement settlement) const {
        int n = 0;
        for (const Settled &each : settled) {
            if (each.tag == tag) {
                if (each.settlement != settlement) {
                    fail_msg("delivery %llu settled as %d", static_cast<unsigned long long>(tag),
                             static_cast<int>(each.settlement));
                }
                ++n;
            }
        }
        return n;
    }
};

struct FileClose {
    void operator()(std::FILE *file) const noexcept { std::fclose(file); }
};

FlowSettings test_settings() {
    FlowSettings settings;
    settings.start_timeout = seconds(60);
    settings.max_attempts = 3;
    settings.retry_min = milliseconds(100);
    settings.retry_max = milliseconds(1000);
    return settings;
}

// Everything one flow talks to. The creator and the recorder share one
// "Redis" (as two connections to the same server would) but have their own
// API clients, so a test can tell which side called.
struct Harness {
    explicit Harness(FlowSettings flow_settings = test_settings())
        : settings(flow_settings), log_file(std::tmpfile()),
          logger(LogLevel::kDebug, log_file ? log_file.get() : stderr),
          flow(settings, creator_api, sessions, recorder_api, sessions, settler, logger, metrics) {}

    Delivery delivery(const std::string &identity, std::uint64_t tag) const {
        CreationEvent event;
        event.identity = identity;
        event.pod = pod(identity);
        event.request_id = "req-" + std::to_string(tag);
        event.timestamp_ms = 1795680000000;
        Delivery delivery;
        delivery.connection = 1;
        delivery.tag = tag;
        delivery.body = pod_router::encode_creation_event(event, settings.naming).value();
        delivery.message_id = "msg-" + std::to_string(tag);
        return delivery;
    }
    std::string pod(const std::string &identity) const {
        return settings.naming.pod_name(identity).value();
    }

    FlowSettings settings;
    FakePodApi creator_api;
    FakePodApi recorder_api;
    FakeSessions sessions;
    RecordingSettler settler;
    std::unique_ptr<std::FILE, FileClose> log_file;
    Logger logger;
    ControllerMetrics metrics;
    CreationFlow flow;
};

PodView pod_view(const std::string &name, const std::string &identity, PodCondition condition,
                 const std::string &reason = "") {
    PodView view;
    view.name = name;
    view.session = name;
    view.uid = "uid-" + name;
    view.identity = identity;
    view.condition = condition;
    view.reason = reason;
    return view;
}

PodView ready_view(const std::string &name, const std::string &identity) {
    PodView view = pod_view(name, identity, PodCondition::kReady);
    view.ip = "10.244.1.17";
    view.port = 8080;
    return view;
}

// -------------------------------------------------------------- the cases

void events_that_can_never_succeed_are_dead_lettered_at_once(void **) {
    Harness h;
    const char *bodies[] = {
        "not json at all",
        R"({"version":1,"identity":"a\nb","pod":"user-a","request_id":"r","timestamp_ms":1})",
        R"({"version":2,"identity":"alice","pod":"user-alice","request_id":"r","timestamp_ms":1})",
        R"({"version":1,"identity":"alice","pod":"user-bob","request_id":"r","timestamp_ms":1})",
    };
    std::uint64_t tag = 0;
    for (const char *body : bodies) {
        Delivery delivery;
        delivery.connection = 1;
        delivery.tag = ++tag;
        delivery.body = body;
        h.flow.enqueue(std::move(delivery));
    }
    assert_int_equal(h.flow.unsettled(), 4);
    assert_int_equal(h.flow.creator_step(kStart), 4);
    for (std::uint64_t each = 1; each <= tag; ++each) {
        assert_int_equal(h.settler.count(each, Settlement::kDeadLetter), 1);
    }
    assert_int_equal(h.creator_api.creates.size(), 0);
    assert_int_equal(h.sessions.lookups, 0);
    assert_int_equal(h.sessions.failed_tries, 0);
    assert_int_equal(h.flow.unsettled(), 0);
}

void a_ready_session_is_acked_at_once(void **) {
    Harness h;
    h.sessions.put(h.pod("alice"), pod_router::session_state::kReady, "alice");
    h.flow.enqueue(h.delivery("alice", 1));
    assert_int_equal(h.flow.creator_step(kStart), 1);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.metrics.events_duplicate.value(), 1);
    assert_int_equal(h.creator_api.creates.size(), 0);
    assert_int_equal(h.flow.unsettled(), 0);
}

void a_session_being_reaped_drops_the_event(void **) {
    Harness h;
    h.sessions.put(h.pod("alice"), pod_router::session_state::kTerminating, "alice");
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.metrics.events_duplicate.value(), 0);
    assert_int_equal(h.creator_api.creates.size(), 0);
    assert_int_equal(h.flow.unsettled(), 0);
}

void a_created_pod_is_acked_once_it_is_ready(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.sessions.put(pod, pod_router::session_state::kPending, "alice");
    h.flow.enqueue(h.delivery("alice", 7));
    h.flow.creator_step(kStart);
    assert_int_equal(h.creator_api.creates.size(), 1);
    assert_string_view_equal(h.creator_api.creates[0].pod, pod);
    assert_string_view_equal(h.creator_api.creates[0].identity, "alice");
    assert_int_equal(h.metrics.pods_created.value(), 1);
    assert_true(h.metrics.tracked_creations.value() == 1.0);
    // created is not done: nothing is settled before the outcome is in Redis
    assert_int_equal(h.settler.settled.size(), 0);
    assert_int_equal(h.flow.unsettled(), 1);

    h.flow.recorder_step(kStart);
    h.flow.observe(pod_view(pod, "alice", PodCondition::kStarting, "scheduling"));
    h.flow.recorder_step(kStart + seconds(1));
    h.flow.observe(pod_view(pod, "alice", PodCondition::kStarting, "ContainerCreating"));
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.settler.settled.size(), 0);
    assert_int_equal(h.sessions.ready_tries, 0);

    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart + seconds(3));
    assert_int_equal(h.sessions.ready.size(), 1);
    assert_string_view_equal(h.sessions.ready[0].pod, pod);
    assert_string_view_equal(h.sessions.ready[0].identity, "alice");
    assert_string_view_equal(h.sessions.ready[0].ip, "10.244.1.17");
    assert_int_equal(h.sessions.ready[0].port, 8080);
    assert_int_equal(h.settler.count(7, Settlement::kAck), 1);
    assert_int_equal(h.metrics.pods_ready.value(), 1);
    assert_true(h.metrics.tracked_creations.value() == 0.0);
    assert_int_equal(h.flow.unsettled(), 0);

    // later watch events about the pod change nothing
    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart + seconds(4));
    h.flow.recorder_step(kStart + seconds(600));
    assert_int_equal(h.settler.settled.size(), 1);
    assert_int_equal(h.sessions.ready_tries, 1);
    assert_int_equal(h.recorder_api.deletes.size(), 0);
}

void an_existing_pod_409_is_the_same_pod_and_later_deliveries_join_it(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.creator_api.script.push_back(
        {ApiOutcome::kExists, 409, "pods \"" + pod + "\" already exists"});
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.metrics.pods_already_existed.value(), 1);
    assert_int_equal(h.metrics.pods_created.value(), 0);
    assert_int_equal(h.flow.unsettled(), 1);

    // a redelivery, or a second gateway's event, while the pod is tracked
    h.flow.enqueue(h.delivery("alice", 2));
    h.flow.creator_step(kStart + seconds(1));
    assert_int_equal(h.creator_api.creates.size(), 1);
    assert_int_equal(h.settler.settled.size(), 0);
    assert_int_equal(h.flow.unsettled(), 2);

    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.sessions.ready.size(), 1);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.settler.count(2, Settlement::kAck), 1);
    assert_int_equal(h.settler.settled.size(), 2);
    assert_int_equal(h.flow.unsettled(), 0);
}

void a_pod_the_api_refuses_is_recorded_as_failed(void **) {
    Harness h;
    const std::string message =
        "Pod \"" + h.pod("alice") + "\" is invalid: spec.containers[0].image: Required value";
    h.creator_api.script.push_back({ApiOutcome::kRejected, 422, message});
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_string_view_equal(h.sessions.failed[0].pod, h.pod("alice"));
    assert_string_view_equal(h.sessions.failed[0].identity, "alice");
    assert_string_view_equal(h.sessions.failed[0].reason,
                             "the Kubernetes API refused the pod: " + message);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.metrics.pods_failed.value("Rejected"), 1);
    assert_int_equal(h.flow.unsettled(), 0);
    // nothing is tracked: the recorder has nothing to do
    h.flow.recorder_step(kStart + seconds(120));
    assert_int_equal(h.settler.settled.size(), 1);
    assert_int_equal(h.recorder_api.deletes.size(), 0);
}

// Steps the creator a millisecond at a time from `from` until it calls the
// API again; returns how long that took.
milliseconds next_create_after(Harness &h, TimePoint from, milliseconds limit) {
    const std::size_t before = h.creator_api.creates.size();
    for (milliseconds waited(1); waited <= limit; ++waited) {
        h.flow.creator_step(from + waited);
        if (h.creator_api.creates.size() != before) {
            assert_int_equal(h.creator_api.creates.size(), before + 1);
            return waited;
        }
    }
    fail_msg("no retry within %lld ms", static_cast<long long>(limit.count()));
    return limit;
}

void an_unavailable_api_is_retried_with_backoff_then_dead_lettered(void **) {
    Harness h; // max_attempts 3, retry_min 100 ms, retry_max 1 s
    h.creator_api.otherwise = {ApiOutcome::kUnavailable, 503, "etcdserver: request timed out"};
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.creator_api.creates.size(), 1);
    assert_int_equal(h.settler.settled.size(), 0);
    assert_int_equal(h.flow.unsettled(), 1);

    // attempt 2: after full jitter between retry_min / 2 and 2 * retry_min
    const milliseconds first = next_create_after(h, kStart, milliseconds(1000));
    assert_true(first >= milliseconds(50) && first <= milliseconds(200));
    assert_int_equal(h.settler.settled.size(), 0);
    assert_int_equal(h.flow.unsettled(), 1);

    // attempt 3, the last: between retry_min / 2 and 4 * retry_min
    const milliseconds second = next_create_after(h, kStart + first, milliseconds(1000));
    assert_true(second >= milliseconds(50) && second <= milliseconds(400));

    assert_int_equal(h.creator_api.creates.size(), 3);
    assert_int_equal(h.settler.count(1, Settlement::kDeadLetter), 1);
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_string_view_equal(h.sessions.failed[0].reason,
                             "the controller could not create the pod: creating the pod: "
                             "etcdserver: request timed out");
    assert_int_equal(h.metrics.pods_failed.value("Unavailable"), 1);
    assert_int_equal(h.flow.unsettled(), 0);

    // and never again
    h.flow.creator_step(kStart + seconds(3600));
    h.flow.recorder_step(kStart + seconds(3600));
    assert_int_equal(h.creator_api.creates.size(), 3);
    assert_int_equal(h.settler.settled.size(), 1);
}

void redis_down_at_the_lookup_is_retried_not_settled(void **) {
    Harness h;
    h.sessions.unavailable = true;
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.sessions.lookups, 1);
    assert_int_equal(h.creator_api.creates.size(), 0);
    assert_int_equal(h.settler.settled.size(), 0);
    assert_int_equal(h.flow.unsettled(), 1);
    // not before the back-off
    assert_int_equal(h.flow.creator_step(kStart + milliseconds(49)), 0);
    assert_int_equal(h.sessions.lookups, 1);

    h.sessions.unavailable = false;
    assert_int_equal(h.flow.creator_step(kStart + seconds(1)), 1);
    assert_int_equal(h.sessions.lookups, 2);
    assert_int_equal(h.creator_api.creates.size(), 1);
    assert_int_equal(h.settler.settled.size(), 0);
    h.flow.observe(ready_view(h.pod("alice"), "alice"));
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
}

void redis_down_through_every_attempt_still_dead_letters(void **) {
    Harness h;
    h.sessions.unavailable = true;
    h.flow.enqueue(h.delivery("alice", 1));
    for (int second = 0; second < 10; ++second) {
        h.flow.creator_step(kStart + seconds(second));
    }
    assert_int_equal(h.sessions.lookups, 3);
    assert_int_equal(h.sessions.failed_tries, 1); // tried, could not be written
    assert_int_equal(h.metrics.pods_failed.value("Unavailable"), 0);
    assert_int_equal(h.settler.count(1, Settlement::kDeadLetter), 1);
    assert_int_equal(h.creator_api.creates.size(), 0);
    assert_int_equal(h.flow.unsettled(), 0);
}

void a_failed_pod_is_recorded_deleted_and_acked(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    const std::string reason =
        "ErrImagePull: rpc error: code = NotFound desc = failed to pull image \"nope:1\"";
    h.flow.observe(pod_view(pod, "alice", PodCondition::kFailed, reason));
    h.flow.recorder_step(kStart + seconds(5));
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_string_view_equal(h.sessions.failed[0].pod, pod);
    assert_string_view_equal(h.sessions.failed[0].identity, "alice");
    assert_string_view_equal(h.sessions.failed[0].reason, reason);
    assert_int_equal(h.recorder_api.deletes.size(), 1);
    assert_string_view_equal(h.recorder_api.deletes[0], pod);
    assert_int_equal(h.creator_api.deletes.size(), 0);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.metrics.pods_failed.value("ErrImagePull"), 1);
    assert_int_equal(h.flow.unsettled(), 0);
}

void a_failure_is_acked_even_if_the_delete_fails(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.recorder_api.delete_result = {ApiOutcome::kUnavailable, 503, "no answer"};
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    h.flow.observe(pod_view(pod, "alice", PodCondition::kFailed, "CrashLoopBackOff: back-off"));
    h.flow.recorder_step(kStart + seconds(5));
    assert_int_equal(h.recorder_api.deletes.size(), 1);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
}

void each_new_stage_of_a_starting_pod_is_written_once_in_order(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.sessions.put(pod, pod_router::session_state::kPending, "alice");
    h.flow.enqueue(h.delivery("alice", 7));
    h.flow.creator_step(kStart);
    h.flow.recorder_step(kStart);
    for (const char *stage :
         {"scheduling", "scheduled", "ContainerCreating", "ContainerCreating", "starting"}) {
        h.flow.observe(pod_view(pod, "alice", PodCondition::kStarting, stage));
        h.flow.recorder_step(kStart + seconds(1));
    }
    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart + seconds(2));
    const std::vector<std::string> expected = {pod + " alice creating", pod + " alice scheduled",
                                               pod + " alice pulling image",
                                               pod + " alice starting"};
    assert_true(h.sessions.stages == expected);
    assert_int_equal(h.sessions.ready.size(), 1); // ready itself is mark_ready's to write
}

void a_cold_pod_whose_user_claimed_a_warm_one_is_deleted(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.sessions.put(pod, pod_router::session_state::kPending, "alice");
    h.flow.enqueue(h.delivery("alice", 7));
    h.flow.creator_step(kStart);
    h.sessions.superseded = true; // the user took a warm pod meanwhile
    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart + seconds(1));
    assert_int_equal(h.recorder_api.deletes.size(), 1);
    assert_string_view_equal(h.recorder_api.deletes[0], pod);
    assert_int_equal(h.metrics.pods_ready.value(), 0);
    assert_int_equal(h.settler.count(7, Settlement::kAck), 1);
}

void a_pod_not_ready_in_time_is_failed_and_deleted(void **) {
    Harness h; // start_timeout 60 s
    const std::string pod = h.pod("alice");
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    h.flow.observe(pod_view(pod, "alice", PodCondition::kStarting, "ContainerCreating"));
    h.flow.recorder_step(kStart + seconds(1));
    h.flow.recorder_step(kStart + seconds(60) - milliseconds(1));
    assert_int_equal(h.sessions.failed_tries, 0);
    assert_int_equal(h.recorder_api.deletes.size(), 0);
    assert_int_equal(h.settler.settled.size(), 0);

    h.flow.recorder_step(kStart + seconds(60));
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_string_view_equal(h.sessions.failed[0].reason,
                             "StartTimeout: not ready within 60 s (ContainerCreating)");
    assert_int_equal(h.recorder_api.deletes.size(), 1);
    assert_string_view_equal(h.recorder_api.deletes[0], pod);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.metrics.pods_failed.value("StartTimeout"), 1);
    assert_int_equal(h.flow.unsettled(), 0);
}

void a_pod_the_watch_never_showed_times_out_too(void **) {
    Harness h;
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    h.flow.recorder_step(kStart + seconds(59));
    assert_int_equal(h.settler.settled.size(), 0);
    h.flow.recorder_step(kStart + seconds(61));
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_string_view_equal(h.sessions.failed[0].reason, "StartTimeout: not ready within 60 s");
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
}

void mark_ready_failing_is_retried_and_acked_only_once_written(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    h.flow.observe(ready_view(pod, "alice"));
    h.sessions.unavailable = true;
    const TimePoint ready_at = kStart + seconds(2);
    h.flow.recorder_step(ready_at);
    assert_int_equal(h.sessions.ready_tries, 1);
    assert_int_equal(h.settler.settled.size(), 0);
    assert_int_equal(h.flow.unsettled(), 1);

    h.sessions.unavailable = false;
    // not before the back-off: at least retry_min / 2
    h.flow.recorder_step(ready_at + milliseconds(49));
    assert_int_equal(h.sessions.ready_tries, 1);
    assert_int_equal(h.settler.settled.size(), 0);

    h.flow.recorder_step(ready_at + milliseconds(200));
    assert_int_equal(h.sessions.ready_tries, 2);
    assert_int_equal(h.sessions.ready.size(), 1);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.metrics.pods_ready.value(), 1);
    h.flow.recorder_step(ready_at + seconds(10));
    assert_int_equal(h.settler.settled.size(), 1);
}

void mark_ready_failing_past_the_deadline_is_still_not_a_timeout(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    h.flow.observe(ready_view(pod, "alice"));
    h.sessions.unavailable = true;
    for (int second = 1; second <= 70; ++second) {
        h.flow.recorder_step(kStart + seconds(second));
    }
    assert_true(h.sessions.ready_tries > 1);
    assert_int_equal(h.settler.settled.size(), 0);
    assert_int_equal(h.recorder_api.deletes.size(), 0);
    h.sessions.unavailable = false;
    h.flow.recorder_step(kStart + seconds(80));
    assert_int_equal(h.sessions.ready.size(), 1);
    assert_int_equal(h.sessions.failed.size(), 0);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
}

void a_pod_deleted_before_ready_fails_the_session(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    h.flow.observe(pod_view(pod, "alice", PodCondition::kStarting, "scheduled"));
    h.flow.recorder_step(kStart + seconds(1));
    h.flow.observe_deleted(pod);
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_string_view_equal(h.sessions.failed[0].reason,
                             "Deleted: the pod was deleted before it was ready");
    assert_int_equal(h.recorder_api.deletes.size(), 0);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.metrics.pods_failed.value("Deleted"), 1);
    assert_false(h.flow.cached(pod).has_value());
}

void a_terminating_pod_is_replaced_once_it_is_gone(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    // the previous pod, being deleted (reaped, or failed and deleted)
    h.flow.observe(pod_view(pod, "alice", PodCondition::kTerminating, "deleted"));
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.creator_api.creates.size(), 0);
    assert_int_equal(h.flow.unsettled(), 1);

    h.flow.recorder_step(kStart + seconds(1));
    h.flow.observe(pod_view(pod, "alice", PodCondition::kTerminating, "deleted"));
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.recorder_api.creates.size(), 0);
    assert_int_equal(h.sessions.failed_tries, 0);
    assert_int_equal(h.settler.settled.size(), 0);

    h.flow.observe_deleted(pod);
    h.flow.recorder_step(kStart + seconds(3));
    assert_int_equal(h.recorder_api.creates.size(), 1);
    assert_string_view_equal(h.recorder_api.creates[0].pod, pod);
    assert_string_view_equal(h.recorder_api.creates[0].identity, "alice");
    assert_int_equal(h.creator_api.creates.size(), 0);
    assert_int_equal(h.metrics.pods_created.value(), 1);
    assert_int_equal(h.settler.settled.size(), 0);

    h.flow.observe(pod_view(pod, "alice", PodCondition::kStarting, "scheduling"));
    h.flow.recorder_step(kStart + seconds(4));
    assert_int_equal(h.settler.settled.size(), 0);
    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart + seconds(5));
    assert_int_equal(h.sessions.ready.size(), 1);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.recorder_api.creates.size(), 1);
    assert_int_equal(h.flow.unsettled(), 0);
}

// A pod whose container died (the gateway found its address dead, so the
// session is gone and a new event comes): replaced, not reused.
void a_pod_whose_containers_restarted_is_replaced(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    PodView restarted = ready_view(pod, "alice");
    restarted.restarts = 1;
    h.flow.observe(restarted);
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.creator_api.deletes.size(), 1);
    assert_string_view_equal(h.creator_api.deletes[0], pod);
    assert_int_equal(h.creator_api.creates.size(), 0);
    // not recorded ready on the old pod while it is being deleted
    h.flow.recorder_step(kStart + seconds(1));
    assert_int_equal(h.sessions.ready.size(), 0);
    h.flow.observe(pod_view(pod, "alice", PodCondition::kTerminating, "deleted"));
    h.flow.recorder_step(kStart + seconds(2));
    h.flow.observe_deleted(pod);
    h.flow.recorder_step(kStart + seconds(3));
    assert_int_equal(h.recorder_api.creates.size(), 1);
    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart + seconds(4));
    assert_int_equal(h.sessions.ready.size(), 1);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
}

// The watch shows a serving pod's container restarted: its session is
// removed (only if it still points at that address) and the pod deleted, so
// the user's next request gets a new pod. A pod still being created is left
// to the creation flow, and a first sight proves nothing.
void a_serving_pod_whose_container_restarts_is_deleted(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart);
    assert_int_equal(h.recorder_api.deletes.size(), 0);
    PodView restarted = ready_view(pod, "alice");
    restarted.restarts = 1;
    h.flow.observe(restarted);
    h.flow.observe(restarted); // the same restart seen again: one replacement
    h.flow.recorder_step(kStart + seconds(1));
    assert_int_equal(h.sessions.stale.size(), 1);
    assert_string_view_equal(h.sessions.stale[0], pod + " 10.244.1.17:8080");
    assert_int_equal(h.recorder_api.deletes.size(), 1);
    assert_string_view_equal(h.recorder_api.deletes[0], pod);
    assert_int_equal(h.metrics.pods_replaced.value(), 1);

    const std::string other = h.pod("bob");
    PodView first_seen = ready_view(other, "bob");
    first_seen.restarts = 3;
    h.flow.observe(first_seen);
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.recorder_api.deletes.size(), 1);
}

// The user's request found the pod not ready (its container died) and
// waits on this replica; another replica's watch saw the restart and
// deleted the pod. The user gets the new pod, not a failure.
void a_waited_for_pod_deleted_for_a_restart_is_made_again(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.observe(pod_view(pod, "alice", PodCondition::kStarting, "restarting"));
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.creator_api.creates.size(), 0);
    PodView restarted = pod_view(pod, "alice", PodCondition::kStarting, "restarting");
    restarted.restarts = 1;
    h.flow.observe(restarted);
    h.flow.recorder_step(kStart + seconds(1));
    h.flow.observe(pod_view(pod, "alice", PodCondition::kTerminating, "deleted"));
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.sessions.failed_tries, 0);
    h.flow.observe_deleted(pod);
    h.flow.recorder_step(kStart + seconds(3));
    assert_int_equal(h.recorder_api.creates.size(), 1);
    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart + seconds(4));
    assert_int_equal(h.sessions.ready.size(), 1);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.sessions.failed_tries, 0);
}

void a_terminating_pod_missing_from_a_relist_is_replaced(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.observe_all({pod_view(pod, "alice", PodCondition::kTerminating, "deleted")});
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    h.flow.recorder_step(kStart + seconds(1));
    assert_int_equal(h.recorder_api.creates.size(), 0);
    // the watch was away while the old pod went
    h.flow.observe_all({});
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.recorder_api.creates.size(), 1);
    assert_int_equal(h.sessions.failed_tries, 0);
    h.flow.observe(ready_view(pod, "alice"));
    h.flow.recorder_step(kStart + seconds(3));
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
}

void a_pod_already_ready_in_the_cache_needs_no_create(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.observe(ready_view(pod, "alice"));
    h.sessions.put(pod, pod_router::session_state::kPending, "alice");
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.creator_api.creates.size(), 0);
    h.flow.recorder_step(kStart);
    assert_int_equal(h.sessions.ready.size(), 1);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
}

void a_cached_pod_of_another_identity_is_a_collision(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.observe(ready_view(pod, "mallory"));
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    assert_int_equal(h.creator_api.creates.size(), 0);
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_string_view_equal(h.sessions.failed[0].identity, "alice");
    assert_string_view_equal(h.sessions.failed[0].reason,
                             "the pod name is taken by another identity");
    assert_int_equal(h.metrics.pods_failed.value("NameCollision"), 1);
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    h.flow.recorder_step(kStart + seconds(1));
    assert_int_equal(h.sessions.ready_tries, 0);
}

void a_relist_without_a_seen_pod_means_it_was_deleted(void **) {
    Harness h;
    const std::string alice = h.pod("alice");
    const std::string bob = h.pod("bob");
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.enqueue(h.delivery("bob", 2));
    h.flow.creator_step(kStart);
    h.flow.observe(pod_view(alice, "alice", PodCondition::kStarting, "scheduling"));
    h.flow.recorder_step(kStart + seconds(1));
    assert_false(h.flow.synced());

    // alice's pod was seen and is gone; bob's was never seen: the watch may
    // simply not have caught up with its creation yet
    const PodView other = pod_view("user-carol", "carol", PodCondition::kStarting, "scheduling");
    h.flow.observe_all({other});
    assert_true(h.flow.synced());
    assert_true(h.flow.cached("user-carol").has_value());
    assert_false(h.flow.cached(alice).has_value());
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_string_view_equal(h.sessions.failed[0].pod, alice);
    assert_true(contains(h.sessions.failed[0].reason, "Deleted"));
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.settler.count(2, Settlement::kAck), 0);
    assert_int_equal(h.flow.unsettled(), 1);

    h.flow.observe(ready_view(bob, "bob"));
    h.flow.recorder_step(kStart + seconds(3));
    assert_int_equal(h.settler.count(2, Settlement::kAck), 1);
}

void unsettled_counts_everything_still_waiting(void **) {
    Harness h;
    h.sessions.put(h.pod("carol"), pod_router::session_state::kReady, "carol");
    h.creator_api.script.push_back({ApiOutcome::kDone, 201, ""});             // alice
    h.creator_api.script.push_back({ApiOutcome::kUnavailable, 0, "timeout"}); // bob
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.enqueue(h.delivery("bob", 2));
    h.flow.enqueue(h.delivery("carol", 3));
    assert_int_equal(h.flow.unsettled(), 3); // queued
    h.flow.creator_step(kStart);
    // alice tracked, bob waiting for a retry, carol acked
    assert_int_equal(h.flow.unsettled(), 2);
    h.flow.enqueue(h.delivery("alice", 4));
    assert_int_equal(h.flow.unsettled(), 3);
    h.flow.creator_step(kStart + milliseconds(1));
    assert_int_equal(h.flow.unsettled(), 3);  // alice's two deliveries, bob's retry
    h.flow.creator_step(kStart + seconds(1)); // bob: 201 now
    h.flow.observe(ready_view(h.pod("alice"), "alice"));
    h.flow.observe(ready_view(h.pod("bob"), "bob"));
    h.flow.recorder_step(kStart + seconds(2));
    assert_int_equal(h.flow.unsettled(), 0);
    assert_int_equal(h.settler.settled.size(), 4);
}

// The replacement of a terminating pod cannot be created while the API is
// unavailable: it counts against max_attempts like the creator's own tries,
// then is recorded failed and dead-lettered, instead of being retried for ever.
void a_replacement_that_cannot_be_created_is_failed_after_max_attempts(void **) {
    Harness h; // max_attempts 3, start_timeout 60 s, retry_max 1 s
    const std::string pod = h.pod("alice");
    h.flow.observe(pod_view(pod, "alice", PodCondition::kTerminating, "deleted"));
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    h.flow.observe_deleted(pod);
    h.recorder_api.otherwise = {ApiOutcome::kUnavailable, 503, "etcdserver: leader changed"};
    for (int second = 1; second <= 120; ++second) {
        h.flow.recorder_step(kStart + seconds(second));
    }
    if (h.recorder_api.creates.size() > static_cast<std::size_t>(h.settings.max_attempts)) {
        fail_msg("create_pod was called %zu times (max_attempts %d); settled %zu, failed %zu",
                 h.recorder_api.creates.size(), h.settings.max_attempts, h.settler.settled.size(),
                 h.sessions.failed.size());
    }
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_int_equal(h.settler.settled.size(), 1);
    assert_int_equal(h.settler.count(1, Settlement::kDeadLetter), 1);
    assert_int_equal(h.metrics.pods_failed.value("Unavailable"), 1);
    assert_int_equal(h.flow.unsettled(), 0);
}

// A replacement the API refuses is counted as Rejected, as the creator
// counts the same failure (not by the reason's first word, "the").
void a_refused_replacement_is_counted_as_rejected(void **) {
    Harness h;
    const std::string pod = h.pod("alice");
    h.flow.observe(pod_view(pod, "alice", PodCondition::kTerminating, "deleted"));
    h.flow.enqueue(h.delivery("alice", 1));
    h.flow.creator_step(kStart);
    h.flow.observe_deleted(pod);
    h.recorder_api.otherwise = {ApiOutcome::kRejected, 422, "spec.containers: Required value"};
    h.flow.recorder_step(kStart + seconds(1));
    assert_int_equal(h.sessions.failed.size(), 1);
    assert_string_view_equal(h.sessions.failed[0].reason,
                             "the Kubernetes API refused the pod: spec.containers: Required value");
    assert_int_equal(h.settler.count(1, Settlement::kAck), 1);
    assert_int_equal(h.metrics.pods_failed.value("the"), 0);
    assert_int_equal(h.metrics.pods_failed.value("Rejected"), 1);
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_that_can_never_succeed_are_dead_lettered_at_once),
        cmocka_unit_test(a_ready_session_is_acked_at_once),
        cmocka_unit_test(a_session_being_reaped_drops_the_event),
        cmocka_unit_test(a_created_pod_is_acked_once_it_is_ready),
        cmocka_unit_test(each_new_stage_of_a_starting_pod_is_written_once_in_order),
        cmocka_unit_test(a_cold_pod_whose_user_claimed_a_warm_one_is_deleted),
        cmocka_unit_test(an_existing_pod_409_is_the_same_pod_and_later_deliveries_join_it),
        cmocka_unit_test(a_pod_the_api_refuses_is_recorded_as_failed),
        cmocka_unit_test(an_unavailable_api_is_retried_with_backoff_then_dead_lettered),
        cmocka_unit_test(redis_down_at_the_lookup_is_retried_not_settled),
        cmocka_unit_test(redis_down_through_every_attempt_still_dead_letters),
        cmocka_unit_test(a_failed_pod_is_recorded_deleted_and_acked),
        cmocka_unit_test(a_failure_is_acked_even_if_the_delete_fails),
        cmocka_unit_test(a_pod_not_ready_in_time_is_failed_and_deleted),
        cmocka_unit_test(a_pod_the_watch_never_showed_times_out_too),
        cmocka_unit_test(mark_ready_failing_is_retried_and_acked_only_once_written),
        cmocka_unit_test(mark_ready_failing_past_the_deadline_is_still_not_a_timeout),
        cmocka_unit_test(a_pod_deleted_before_ready_fails_the_session),
        cmocka_unit_test(a_terminating_pod_is_replaced_once_it_is_gone),
        cmocka_unit_test(a_terminating_pod_missing_from_a_relist_is_replaced),
        cmocka_unit_test(a_pod_whose_containers_restarted_is_replaced),
        cmocka_unit_test(a_serving_pod_whose_container_restarts_is_deleted),
        cmocka_unit_test(a_waited_for_pod_deleted_for_a_restart_is_made_again),
        cmocka_unit_test(a_pod_already_ready_in_the_cache_needs_no_create),
        cmocka_unit_test(a_cached_pod_of_another_identity_is_a_collision),
        cmocka_unit_test(a_relist_without_a_seen_pod_means_it_was_deleted),
        cmocka_unit_test(unsettled_counts_everything_still_waiting),
        cmocka_unit_test(a_replacement_that_cannot_be_created_is_failed_after_max_attempts),
        cmocka_unit_test(a_refused_replacement_is_counted_as_rejected),
    };
    return cmocka_run_group_tests_name("creation_flow", tests, nullptr, nullptr);
}
