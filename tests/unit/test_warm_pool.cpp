// The warm pool's leader pass through its seams: pool pods as the watch
// would show them, a Redis that keeps the pool keys as the scripts do, and a
// scripted Kubernetes API. Passes are run by hand at explicit times, so the
// back-offs and the sweep's two-strikes rule run without threads or sleeps.
// The scripts themselves run against a real Redis in tests/redis_scripts,
// and the whole pool against kube-sim in tests/controller_run.
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../support/cmocka_cpp.hpp"
#include "pool/warm_pool.hpp"

using namespace pod_router::controller;
using pod_router::Error;
using pod_router::ErrorCode;
using pod_router::Expected;
using pod_router::NamingPolicy;
using pod_router::Ok;
using pod_router::ScriptOutcome;
using pod_router::Status;
using std::chrono::milliseconds;
using std::chrono::seconds;
using TimePoint = WarmPool::Clock::time_point;

namespace {

const TimePoint kStart = TimePoint() + std::chrono::hours(1000);

// ------------------------------------------------------------------ fakes

// The pool keys and the sessions, kept as the Lua scripts keep them
// (docs/redis-schema.md, "Warm pool").
class FakePoolStore final : public PoolStore {
  public:
    std::set<std::string> free;
    std::map<std::string, std::string> address;
    std::map<std::string, std::string> claimed;
    std::deque<PoolClaim> claims;
    std::map<std::string, SessionRecord> sessions;
    bool down = false;
    int ready_calls = 0;

    // What the gateway's route script does for a new user.
    void claim(const std::string &pod, const std::string &session) {
        free.erase(pod);
        address.erase(pod);
        claimed[pod] = session;
        claims.push_back({pod, session});
        SessionRecord record;
        record.state = "ready";
        record.identity = "identity-of-" + session;
        record.pod = pod;
        sessions[session] = record;
    }

    Expected<PoolReply> pool_ready(const std::string &pod, const std::string &ip,
                                   int port) override {
        ++ready_calls;
        if (down) {
            return unavailable();
        }
        const auto owner = claimed.find(pod);
        if (owner != claimed.end()) {
            return PoolReply{ScriptOutcome::kClaimed, owner->second};
        }
        address[pod] = ip + " " + std::to_string(port);
        free.insert(pod);
        return PoolReply{ScriptOutcome::kOk, ""};
    }
    Expected<PoolReply> pool_retire(const std::string &pod) override {
        if (down) {
            return unavailable();
        }
        address.erase(pod);
        if (free.erase(pod) == 1) {
            return PoolReply{ScriptOutcome::kOk, ""};
        }
        const auto owner = claimed.find(pod);
        if (owner != claimed.end()) {
            return PoolReply{ScriptOutcome::kClaimed, owner->second};
        }
        return PoolReply{ScriptOutcome::kGone, ""};
    }
    Status pool_forget(const std::string &pod) override {
        if (down) {
            return unavailable();
        }
        free.erase(pod);
        address.erase(pod);
        claimed.erase(pod);
        return Ok{};
    }
    Expected<std::size_t> pool_free_count() override {
        if (down) {
            return unavailable();
        }
        return free.size();
    }
    Status set_pool_target(std::size_t) override { return Ok{}; }
    Expected<std::vector<PoolClaim>> take_claims(std::size_t limit) override {
        if (down) {
            return unavailable();
        }
        std::vector<PoolClaim> taken;
        while (!claims.empty() && taken.size() < limit) {
            taken.push_back(claims.front());
            claims.pop_front();
        }
        return taken;
    }
    Expected<PoolMembers> pool_members() override {
        if (down) {
            return unavailable();
        }
        PoolMembers members;
        members.named = free;
        for (const auto &[pod, unused] : address) {
            members.named.insert(pod);
        }
        for (const auto &[pod, session] : claimed) {
            members.named.insert(pod);
            members.claimed[pod] = session;
        }
        return members;
    }
    Expected<std::optional<SessionRecord>> session(const std::string &name) override {
        if (down) {
            return unavailable();
        }
        const auto found = sessions.find(name);
        if (found == sessions.end()) {
            return std::optional<SessionRecord>();
        }
        return std::optional<SessionRecord>(found->second);
    }

  private:
    static Error unavailable() { return Error{ErrorCode::kUnavailable, "redis is down"}; }
};

class FakePoolApi final : public PoolPodApi {
  public:
    std::deque<ApiResult> create_script; // then kDone
    std::deque<ApiResult> label_script;  // then kDone
    std::deque<ApiResult> delete_script; // then kDone
    std::vector<std::string> creates;
    std::vector<std::string> labels;
    std::vector<std::string> deletes;

    ApiResult create_pool_pod(const std::string &pod) override {
        creates.push_back(pod);
        return next(create_script);
    }
    ApiResult label_claimed(const std::string &pod, const std::string &,
                            const std::string &) override {
        labels.push_back(pod);
        return next(label_script);
    }
    ApiResult delete_pod(const std::string &pod) override {
        deletes.push_back(pod);
        return next(delete_script);
    }

  private:
    static ApiResult next(std::deque<ApiResult> &script) {
        if (script.empty()) {
            return ApiResult{ApiOutcome::kDone, 200, ""};
        }
        ApiResult result = script.front();
        script.pop_front();
        return result;
    }
};

const ApiResult kRefused{ApiOutcome::kRejected, 403, "forbidden"};
const ApiResult kAway{ApiOutcome::kUnavailable, 0, "connection refused"};

struct FileClose {
    void operator()(std::FILE *file) const noexcept { std::fclose(file); }
};

PoolSettings test_settings(std::size_t size) {
    PoolSettings settings;
    settings.size = size;
    settings.start_timeout = seconds(120);
    settings.sweep_interval = seconds(30);
    settings.retry_initial = seconds(1);
    settings.retry_max = seconds(8);
    return settings;
}

struct Harness {
    explicit Harness(std::size_t size)
        : log_file(std::tmpfile()), logger(LogLevel::kDebug, log_file ? log_file.get() : stderr),
          pool(test_settings(size), NamingPolicy::create().value(), store, api, logger, metrics) {}

    // A pool pod as the watch shows it: Ready and free unless told.
    PodView pod(const std::string &name, PodCondition condition = PodCondition::kReady) {
        PodView view;
        view.name = name;
        view.pool = true;
        view.condition = condition;
        view.ip = "10.244.0." + std::to_string(views.size() + 10);
        view.port = 8080;
        view.created_ms = wall_clock_ms();
        views[name] = view;
        return view;
    }
    void show() {
        std::vector<PodView> all;
        for (const auto &[name, view] : views) {
            all.push_back(view);
        }
        pool.observe_all(all);
    }
    PoolPassResult pass(TimePoint at, bool newly_elected = false) {
        show();
        return pool.tend_at(newly_elected, at);
    }

    FakePoolStore store;
    FakePoolApi api;
    std::map<std::string, PodView> views;
    std::unique_ptr<std::FILE, FileClose> log_file;
    Logger logger;
    ControllerMetrics metrics;
    WarmPool pool;
};

std::size_t count_of(const std::vector<std::string> &calls, const std::string &pod) {
    std::size_t n = 0;
    for (const std::string &call : calls) {
        n += call == pod ? 1 : 0;
    }
    return n;
}

const std::string kPodA = "user--pool-00000000000a";
const std::string kPodB = "user--pool-00000000000b";

// ------------------------------------------------------------------ tests

// Passes every 100 ms from `from` until `done` holds (at most a minute):
// the time of that pass.
template <typename Done> TimePoint pass_until(Harness &h, TimePoint from, Done done) {
    for (TimePoint at = from + milliseconds(100); at < from + seconds(60);
         at += milliseconds(100)) {
        h.pass(at);
        if (done()) {
            return at;
        }
    }
    fail_msg("nothing happened within a minute of passes");
    return from;
}

// jittered_backoff with retry_initial 1 s: the n-th retry waits between
// 0.5 s and 2^n s.
void assert_backed_off(TimePoint from, TimePoint retried, int attempt) {
    const auto waited = std::chrono::duration_cast<milliseconds>(retried - from).count();
    assert_in_range(waited, 500, 1000 << attempt);
}

void a_refused_label_is_retried_with_a_back_off_never_dropped(void **) {
    Harness h(1);
    h.pod(kPodA);
    h.pass(kStart, true);
    assert_true(h.store.free.count(kPodA) == 1);

    h.store.claim(kPodA, "user-s1");
    h.api.label_script = {kRefused, kRefused};
    const TimePoint first = kStart + milliseconds(500);
    h.pass(first);
    assert_int_equal(count_of(h.api.labels, kPodA), 1);
    assert_true(h.store.free.count(kPodA) == 0); // never offered again
    const TimePoint second =
        pass_until(h, first, [&] { return count_of(h.api.labels, kPodA) == 2; });
    assert_backed_off(first, second, 1);
    const TimePoint third =
        pass_until(h, second, [&] { return count_of(h.api.labels, kPodA) == 3; });
    assert_backed_off(second, third, 2);
    assert_int_equal(h.metrics.pool_claims.value(), 1);
    // Labelled once: a later pass does not label it again.
    h.pass(third + seconds(20));
    assert_int_equal(count_of(h.api.labels, kPodA), 3);
}

void a_claim_whose_session_moved_on_is_deleted_until_the_delete_succeeds(void **) {
    Harness h(1);
    h.pod(kPodA);
    h.pass(kStart, true);
    h.store.claim(kPodA, "user-s1");
    h.store.sessions.erase("user-s1"); // a dead address, say: the user let go
    h.api.delete_script = {kAway};
    h.pass(kStart + seconds(1));
    assert_int_equal(count_of(h.api.deletes, kPodA), 1);
    h.pass(kStart + seconds(3));
    assert_int_equal(count_of(h.api.deletes, kPodA), 2);
    assert_int_equal(count_of(h.api.labels, kPodA), 0);
    // Done: not deleted a third time while the watch still shows it.
    h.pass(kStart + seconds(10));
    assert_int_equal(count_of(h.api.deletes, kPodA), 2);
}

void a_pod_the_gateway_could_not_use_is_deleted(void **) {
    Harness h(1);
    h.pod(kPodA);
    h.pass(kStart, true);
    // route found no usable address: claimed by nobody, no queue entry.
    h.store.free.erase(kPodA);
    h.store.claimed[kPodA] = "";
    h.pass(kStart + seconds(31)); // the sweep finds it
    assert_int_equal(count_of(h.api.deletes, kPodA), 1);
    assert_int_equal(count_of(h.api.labels, kPodA), 0);
}

void entries_of_pods_that_no_longer_exist_are_forgotten_at_the_second_sweep(void **) {
    Harness h(0);
    const std::string ghost = "user--pool-0000000000ff";
    h.store.free.insert(ghost);
    h.store.address[ghost] = "10.244.9.9 8080";
    h.store.claimed["user--pool-0000000000fe"] = "user-gone";
    PoolPassResult first = h.pass(kStart, true);
    assert_int_equal(first.forgotten, 0);
    assert_true(h.store.free.count(ghost) == 1);
    // Before the interval: no sweep.
    h.pass(kStart + seconds(20));
    assert_true(h.store.free.count(ghost) == 1);
    PoolPassResult second = h.pass(kStart + seconds(30));
    assert_int_equal(second.forgotten, 2);
    assert_true(h.store.free.empty());
    assert_true(h.store.address.empty());
    assert_true(h.store.claimed.empty());
}

void a_pod_that_reappears_between_sweeps_is_not_forgotten(void **) {
    Harness h(1);
    // Offered by another leader whose watch was ahead of ours.
    h.store.free.insert(kPodA);
    h.store.address[kPodA] = "10.244.0.10 8080";
    h.pass(kStart, true);
    h.pod(kPodA);
    PoolPassResult second = h.pass(kStart + seconds(30));
    assert_int_equal(second.forgotten, 0);
    assert_true(h.store.free.count(kPodA) == 1);
}

void a_claim_lost_from_the_queue_is_found_by_the_sweep(void **) {
    Harness h(1);
    h.pod(kPodA);
    h.pass(kStart, true);
    h.store.claim(kPodA, "user-s1");
    h.store.claims.clear(); // taken by a pass that never finished
    h.pass(kStart + seconds(1));
    assert_int_equal(count_of(h.api.labels, kPodA), 0);
    h.pass(kStart + seconds(31));
    assert_int_equal(count_of(h.api.labels, kPodA), 1);
}

void a_surplus_pod_is_not_offered_again_while_it_still_looks_ready(void **) {
    Harness h(1);
    h.pod(kPodA);
    h.pod(kPodB);
    PoolPassResult first = h.pass(kStart, true);
    assert_int_equal(first.retired, 1);
    assert_int_equal(h.store.free.size(), 1);
    const std::string gone = h.api.deletes.at(0);
    // The watch lags: the deleted pod is still shown Ready.
    const int ready_calls = h.store.ready_calls;
    PoolPassResult second = h.pass(kStart + seconds(1));
    assert_int_equal(second.retired, 0);
    assert_int_equal(h.store.ready_calls, ready_calls);
    assert_true(h.store.free.count(gone) == 0);
    assert_int_equal(h.api.deletes.size(), 1);
    assert_int_equal(h.metrics.pool_pods_lost.value("surplus"), 1);
}

void a_free_pod_that_stops_being_ready_leaves_the_pool(void **) {
    Harness h(1);
    h.pod(kPodA);
    h.pass(kStart, true);
    h.views[kPodA].condition = PodCondition::kStarting;
    PoolPassResult result = h.pass(kStart + seconds(1));
    assert_true(h.store.free.count(kPodA) == 0);
    assert_int_equal(count_of(h.api.deletes, kPodA), 1);
    assert_int_equal(result.starting, 0); // not counted as starting as well
    assert_int_equal(h.metrics.pool_pods_lost.value("not_ready"), 1);
    assert_int_equal(result.created, 1); // its replacement
}

void a_claimed_pod_that_is_briefly_not_ready_is_never_deleted(void **) {
    Harness h(1);
    h.pod(kPodA);
    h.views[kPodA].condition = PodCondition::kStarting;
    h.views[kPodA].created_ms = wall_clock_ms() - 600'000; // older than the start timeout
    h.store.claimed[kPodA] = "user-s1";                    // claimed in a previous term
    SessionRecord record;
    record.state = "ready";
    record.identity = "alice";
    record.pod = kPodA;
    h.store.sessions["user-s1"] = record;
    h.pass(kStart, true);
    assert_int_equal(count_of(h.api.deletes, kPodA), 0);
    assert_int_equal(count_of(h.api.labels, kPodA), 1);
}

void refused_creations_back_off(void **) {
    Harness h(2);
    h.api.create_script = {kRefused, kRefused};
    h.pass(kStart, true);
    assert_int_equal(h.api.creates.size(), 1); // the first refusal stops the pass
    const TimePoint second = pass_until(h, kStart, [&] { return h.api.creates.size() == 2; });
    assert_backed_off(kStart, second, 1);
    const TimePoint third = pass_until(h, second, [&] { return h.api.creates.size() > 2; });
    assert_backed_off(second, third, 2);
    assert_int_equal(h.api.creates.size(), 4); // accepted: both created in that pass
}

void redis_away_changes_nothing_and_loses_no_claim(void **) {
    Harness h(1);
    h.pod(kPodA);
    h.pass(kStart, true);
    h.store.claim(kPodA, "user-s1");
    h.store.down = true;
    PoolPassResult away = h.pass(kStart + seconds(1));
    assert_false(away.complete);
    assert_true(h.api.creates.empty());
    assert_true(h.api.deletes.empty());
    h.store.down = false;
    h.pass(kStart + seconds(2));
    assert_int_equal(count_of(h.api.labels, kPodA), 1);
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_refused_label_is_retried_with_a_back_off_never_dropped),
        cmocka_unit_test(a_claim_whose_session_moved_on_is_deleted_until_the_delete_succeeds),
        cmocka_unit_test(a_pod_the_gateway_could_not_use_is_deleted),
        cmocka_unit_test(entries_of_pods_that_no_longer_exist_are_forgotten_at_the_second_sweep),
        cmocka_unit_test(a_pod_that_reappears_between_sweeps_is_not_forgotten),
        cmocka_unit_test(a_claim_lost_from_the_queue_is_found_by_the_sweep),
        cmocka_unit_test(a_surplus_pod_is_not_offered_again_while_it_still_looks_ready),
        cmocka_unit_test(a_free_pod_that_stops_being_ready_leaves_the_pool),
        cmocka_unit_test(a_claimed_pod_that_is_briefly_not_ready_is_never_deleted),
        cmocka_unit_test(refused_creations_back_off),
        cmocka_unit_test(redis_away_changes_nothing_and_loses_no_claim),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
