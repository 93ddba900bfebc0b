// Leader election against kube-sim or the real control plane (started by
// the CTest fixture, POD_ROUTER_CLUSTER=real), with short timings: a Lease
// of 2 s, a renew deadline of 1.5 s, a round every 200 ms. Electors run on
// threads, so every test stops them before it asserts: a cmocka failure
// must never leave a thread behind.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <thread>
#include <unistd.h>

#include "../support/cmocka_cpp.hpp"
#include "kube/kube_client.hpp"
#include "leader/lease_elector.hpp"

using namespace pod_router::controller;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr char kNamespace[] = "lease-test";
const char *const kLeaseNames[] = {"single", "pair", "handover", "partition", "foreign", "faulty"};

KubeConfig admin_config() {
    const char *path = std::getenv("POD_ROUTER_TEST_KUBECONFIG");
    if (path == nullptr) {
        fail_msg("POD_ROUTER_TEST_KUBECONFIG is not set; run through ctest");
    }
    auto config = load_kubeconfig(path);
    if (!config) {
        fail_msg("%s", config.error().message.c_str());
    }
    return config.value();
}

// The election loop is the retry: one attempt per call, answers within a
// round, no client-side rate limit (a round is two calls every 200 ms).
ClientOptions elector_options() {
    ClientOptions options;
    options.qps = 0;
    options.retry.max_attempts = 1;
    options.connect_timeout = 1000ms;
    options.request_timeout = 1000ms;
    return options;
}

ClientOptions admin_options() {
    ClientOptions options;
    options.qps = 0;
    options.retry.base_delay = 10ms;
    return options;
}

std::string lease_path(const std::string &name) {
    return std::string("/apis/coordination.k8s.io/v1/namespaces/") + kNamespace + "/leases/" + name;
}

Logger &shared_logger() {
    static Logger logger(LogLevel::kDebug);
    return logger;
}

LeaseSettings short_settings(const std::string &lease, const std::string &identity) {
    LeaseSettings settings;
    settings.lease_namespace = kNamespace;
    settings.name = lease;
    settings.identity = identity;
    settings.lease_duration = 2000ms;
    settings.renew_deadline = 1500ms;
    settings.retry_period = 200ms;
    return settings;
}

// One replica: an elector with its own client and metrics, on its thread.
struct Candidate {
    Candidate(const std::string &lease, const std::string &identity,
              KubeConfig config = admin_config(), Logger &logger = shared_logger())
        : elector(std::make_unique<KubeClient>(std::move(config), elector_options()),
                  short_settings(lease, identity), logger, metrics) {}
    Candidate(const Candidate &) = delete;
    Candidate &operator=(const Candidate &) = delete;
    ~Candidate() { stop(); }

    void start() {
        thread = std::thread([this] { elector.run(); });
    }
    void stop() {
        elector.stop();
        if (thread.joinable()) {
            thread.join();
        }
    }
    bool leads() const { return elector.is_leader(); }

    ControllerMetrics metrics; // before the elector, which keeps a reference
    LeaseElector elector;
    std::thread thread;
};

bool wait_until(const std::function<bool()> &condition, Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!condition()) {
        if (Clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

long long millis(Clock::duration duration) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
}

// The Lease's spec, or null when it cannot be read. Never asserts: it is
// called while electors run.
JsonPtr read_spec(KubeClient &client, const std::string &name) {
    ApiResponse read = client.request("GET", lease_path(name));
    json_t *spec = read.ok() ? json_object_get(read.body.get(), "spec") : nullptr;
    return JsonPtr(spec != nullptr ? json_incref(spec) : nullptr);
}

std::string spec_string(const JsonPtr &spec, const char *key) {
    const char *value = spec ? json_string_value(json_object_get(spec.get(), key)) : nullptr;
    return value != nullptr ? value : "<absent>";
}

long long spec_integer(const JsonPtr &spec, const char *key) {
    const json_t *value = spec ? json_object_get(spec.get(), key) : nullptr;
    return json_is_integer(value) ? json_integer_value(value) : -1;
}

// metav1.MicroTime: "2026-11-26T08:00:00.000000Z".
bool is_micro_time(const std::string &text) {
    static const char kShape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (text.size() != sizeof kShape - 1) {
        return false;
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
        const bool ok = kShape[i] == 'd' ? text[i] >= '0' && text[i] <= '9' : text[i] == kShape[i];
        if (!ok) {
            return false;
        }
    }
    return true;
}

std::string micro_time_now() {
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    const auto seconds = static_cast<std::time_t>(micros / 1'000'000);
    std::tm utc{};
    char text[64];
    if (gmtime_r(&seconds, &utc) == nullptr ||
        std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ",
                      utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                      utc.tm_sec, static_cast<long long>(micros % 1'000'000)) <= 0) {
        return "<no time>";
    }
    return text;
}

JsonPtr parse(const std::string &text) {
    json_error_t error;
    JsonPtr json(json_loads(text.c_str(), 0, &error));
    if (!json) {
        fail_msg("bad test JSON: %s", error.text);
    }
    return json;
}

struct FileClose {
    void operator()(std::FILE *file) const noexcept { (void)std::fclose(file); } // NOLINT: owns it
};

// Counts the lines of a log that contain a text.
int count_lines(std::FILE *log, const char *text) {
    (void)std::fflush(log);
    std::rewind(log);
    int count = 0;
    char line[4096];
    while (std::fgets(line, sizeof line, log) != nullptr) {
        count += std::strstr(line, text) != nullptr ? 1 : 0;
    }
    return count;
}

int prepare(void **) {
    KubeClient client(admin_config(), admin_options());
    JsonPtr ns = parse(std::string(R"({"metadata": {"name": ")") + kNamespace + "\"}}");
    ApiResponse created = client.request("POST", "/api/v1/namespaces", ns.get());
    if (created.status != 201 && created.status != 409) {
        return -1;
    }
    // A rerun against the same cluster starts without last run's Leases.
    for (const char *name : kLeaseNames) {
        const long status = client.request("DELETE", lease_path(name)).status;
        if (status != 200 && status != 404) {
            return -1;
        }
    }
    return 0;
}

void a_single_elector_leads_and_the_lease_names_it(void **) {
    KubeClient admin(admin_config(), admin_options());
    Candidate a("single", "replica-a");
    a.start();
    const bool led = wait_until([&] { return a.leads(); }, 3s);
    JsonPtr first = read_spec(admin, "single");
    std::this_thread::sleep_for(600ms);
    JsonPtr later = read_spec(admin, "single");
    const double gauge_while_leading = a.metrics.leader.value();
    a.stop();
    JsonPtr released = read_spec(admin, "single");

    assert_true(led);
    assert_string_equal(spec_string(first, "holderIdentity").c_str(), "replica-a");
    assert_int_equal(spec_integer(first, "leaseDurationSeconds"), 2);
    assert_int_equal(spec_integer(first, "leaseTransitions"), 0);
    assert_true(is_micro_time(spec_string(first, "acquireTime")));
    assert_true(is_micro_time(spec_string(first, "renewTime")));
    // Renewed while leading; acquireTime stays.
    assert_string_equal(spec_string(later, "holderIdentity").c_str(), "replica-a");
    assert_string_not_equal(spec_string(later, "renewTime").c_str(),
                            spec_string(first, "renewTime").c_str());
    assert_string_equal(spec_string(later, "acquireTime").c_str(),
                        spec_string(first, "acquireTime").c_str());
    assert_true(gauge_while_leading == 1.0);
    assert_int_equal(a.metrics.leader_transitions.value(), 1);
    // stop() released it: an empty holder that expires at once.
    assert_false(a.leads());
    assert_true(a.metrics.leader.value() == 0.0);
    assert_string_equal(spec_string(released, "holderIdentity").c_str(), "");
    assert_int_equal(spec_integer(released, "leaseDurationSeconds"), 1);
    assert_true(is_micro_time(spec_string(released, "renewTime")));
}

void two_electors_never_lead_at_once(void **) {
    KubeClient admin(admin_config(), admin_options());
    Candidate a("pair", "replica-a");
    Candidate b("pair", "replica-b");
    a.start();
    b.start();
    int both = 0;
    int led_samples = 0;
    const auto until = Clock::now() + 4s;
    while (Clock::now() < until) {
        const bool a_leads = a.leads();
        const bool b_leads = b.leads();
        both += a_leads && b_leads ? 1 : 0;
        led_samples += a_leads || b_leads ? 1 : 0;
        std::this_thread::sleep_for(2ms);
    }
    const std::string leader = a.leads() ? "replica-a" : b.leads() ? "replica-b" : "none";
    JsonPtr spec = read_spec(admin, "pair");
    a.stop();
    b.stop();

    assert_int_equal(both, 0);
    assert_true(led_samples > 0);
    assert_string_equal(spec_string(spec, "holderIdentity").c_str(), leader.c_str());
    // Leadership went to one of them, once, and stayed there.
    assert_int_equal(a.metrics.leader_transitions.value() + b.metrics.leader_transitions.value(),
                     1);
}

void the_leader_releases_on_stop_and_the_other_takes_over_at_once(void **) {
    KubeClient admin(admin_config(), admin_options());
    Candidate a("handover", "replica-a");
    Candidate b("handover", "replica-b");
    a.start();
    b.start();
    const bool someone_led = wait_until([&] { return a.leads() || b.leads(); }, 3s);
    Candidate &leader = a.leads() ? a : b;
    Candidate &follower = a.leads() ? b : a;
    std::this_thread::sleep_for(500ms); // the follower has read the Lease
    const auto stopped_at = Clock::now();
    leader.stop();
    const bool took_over = wait_until([&] { return follower.leads(); }, 3s);
    const auto handover = Clock::now() - stopped_at;
    JsonPtr spec = read_spec(admin, "handover");
    a.stop();
    b.stop();

    assert_true(someone_led);
    assert_true(took_over);
    // Well under the 2 s Lease: the release, not the expiry, let it in.
    if (handover >= 1000ms) {
        fail_msg("took over after %lld ms", millis(handover));
    }
    assert_string_equal(spec_string(spec, "holderIdentity").c_str(),
                        follower.elector.identity().c_str());
    assert_int_equal(spec_integer(spec, "leaseTransitions"), 1);
    assert_int_equal(spec_integer(spec, "leaseDurationSeconds"), 2);
}

// The leader is cut off from the API (its token file now holds a bad
// token: every call is 401) without releasing: it must step down by its
// renew deadline, and the other may take over only once the Lease it saw
// last has been unchanged for leaseDurationSeconds.
void a_cut_off_leader_steps_down_and_the_lease_expires_to_the_other(void **) {
    KubeClient admin(admin_config(), admin_options());
    char token_path[] = "/tmp/lease-elector-token.XXXXXX";
    const int fd = mkstemp(token_path);
    assert_true(fd >= 0);
    close(fd);
    KubeConfig cut_off = admin_config();
    { std::ofstream(token_path, std::ios::trunc) << cut_off.token; }
    cut_off.token_file = token_path;

    Candidate a("partition", "replica-a", cut_off);
    Candidate b("partition", "replica-b");
    a.start();
    const bool a_led = wait_until([&] { return a.leads(); }, 3s);
    b.start();
    std::this_thread::sleep_for(600ms); // b follows a
    const bool a_still_leads = a.leads() && !b.leads();

    { std::ofstream(token_path, std::ios::trunc) << "revoked"; }
    const auto cut_at = Clock::now();
    int both = 0;
    Clock::duration a_down = -1s;
    Clock::duration b_up = -1s;
    while (Clock::now() - cut_at < 6s && b_up < 0s) {
        const bool a_leads = a.leads();
        const bool b_leads = b.leads();
        both += a_leads && b_leads ? 1 : 0;
        if (!a_leads && a_down < 0s) {
            a_down = Clock::now() - cut_at;
        }
        if (b_leads && b_up < 0s) {
            b_up = Clock::now() - cut_at;
        }
        std::this_thread::sleep_for(2ms);
    }
    JsonPtr spec = read_spec(admin, "partition");
    const bool a_reclaimed = a.leads();
    a.stop();
    b.stop();
    unlink(token_path);

    assert_true(a_led);
    assert_true(a_still_leads);
    assert_int_equal(both, 0);
    // The renew deadline (1.5 s) from a's last renewal, which came before the cut.
    if (a_down < 0s || a_down > 1600ms) {
        fail_msg("a stepped down %lld ms after the cut", millis(a_down));
    }
    // leaseDurationSeconds (2 s) from b's last sight of a change, which came
    // at most a round (200 ms) before the cut; b polls every 200 ms.
    if (b_up < 1600ms || b_up > 3000ms) {
        fail_msg("b took over %lld ms after the cut", millis(b_up));
    }
    assert_false(a_reclaimed);
    assert_true(a.metrics.api_errors.value("401") > 0);
    assert_string_equal(spec_string(spec, "holderIdentity").c_str(), "replica-b");
    assert_int_equal(spec_integer(spec, "leaseTransitions"), 1);
}

// Someone else's Lease that keeps being renewed is never taken, whatever
// its age; once the renewals stop, it is taken after leaseDurationSeconds.
void a_renewed_foreign_lease_is_never_taken(void **) {
    KubeClient admin(admin_config(), admin_options());
    const std::string created_at = micro_time_now();
    JsonPtr lease = parse(std::string(R"({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "foreign"}, "spec": {"holderIdentity": "someone-else",
        "leaseDurationSeconds": 2, "leaseTransitions": 4, "acquireTime": ")") +
                          created_at + R"(", "renewTime": ")" + created_at + "\"}}");
    ApiResponse created = admin.request(
        "POST", std::string("/apis/coordination.k8s.io/v1/namespaces/") + kNamespace + "/leases",
        lease.get());
    assert_int_equal(created.status, 201);

    Candidate a("foreign", "replica-a");
    a.start();
    int a_led = 0;
    int renewals = 0;
    int failed_renewals = 0;
    const auto until = Clock::now() + 5s; // 2.5 Lease durations
    auto next_renewal = Clock::now() + 300ms;
    while (Clock::now() < until) {
        a_led += a.leads() ? 1 : 0;
        if (Clock::now() >= next_renewal) {
            ApiResponse read = admin.request("GET", lease_path("foreign"));
            json_t *spec = json_object_get(read.body.get(), "spec");
            if (!read.ok() || spec == nullptr ||
                json_object_set_new(spec, "renewTime", json_string(micro_time_now().c_str())) !=
                    0 ||
                !admin.request("PUT", lease_path("foreign"), read.body.get()).ok()) {
                ++failed_renewals;
            }
            ++renewals;
            next_renewal += 300ms;
        }
        std::this_thread::sleep_for(5ms);
    }
    // A last renewal, then none: the Lease expires 2 s after it was written.
    ApiResponse last = admin.request("GET", lease_path("foreign"));
    json_t *last_spec = json_object_get(last.body.get(), "spec");
    const bool last_renewed =
        last.ok() && last_spec != nullptr &&
        json_object_set_new(last_spec, "renewTime", json_string(micro_time_now().c_str())) == 0 &&
        admin.request("PUT", lease_path("foreign"), last.body.get()).ok();
    const auto renewals_stopped = Clock::now();
    JsonPtr while_renewed = read_spec(admin, "foreign");
    const bool taken = wait_until([&] { return a.leads(); }, 4s);
    const auto expiry = Clock::now() - renewals_stopped;
    JsonPtr after = read_spec(admin, "foreign");
    a.stop();

    assert_int_equal(a_led, 0);
    assert_true(renewals >= 15);
    assert_int_equal(failed_renewals, 0);
    assert_true(last_renewed);
    assert_string_equal(spec_string(while_renewed, "holderIdentity").c_str(), "someone-else");
    assert_true(taken);
    if (expiry < 1800ms || expiry > 3000ms) {
        fail_msg("took the expired Lease %lld ms after its last renewal", millis(expiry));
    }
    assert_string_equal(spec_string(after, "holderIdentity").c_str(), "replica-a");
    assert_int_equal(spec_integer(after, "leaseTransitions"), 5);
    assert_string_not_equal(spec_string(after, "acquireTime").c_str(), created_at.c_str());
}

// API failures are counted by status and logged once, not once a round;
// the elector carries on and leads when the API answers again.
void api_failures_are_counted_logged_once_and_survived(void **) {
    if (on_real_cluster()) {
        skip(); // needs kube-sim's fault injection
    }
    KubeClient admin(admin_config(), admin_options());
    JsonPtr fault =
        parse(R"({"status": 503, "count": 4, "method": "GET", "reason": "ServiceUnavailable",
        "path_prefix": ")" +
              lease_path("faulty") + "\"}");
    assert_int_equal(admin.request("POST", "/kube-sim/faults", fault.get()).status, 201);

    const std::unique_ptr<std::FILE, FileClose> log(std::tmpfile());
    assert_non_null(log.get());
    Logger logger(LogLevel::kDebug, log.get());
    Candidate a("faulty", "replica-a", admin_config(), logger);
    a.start();
    const bool led = wait_until([&] { return a.leads(); }, 4s);
    a.stop();
    const int failure_lines = count_lines(log.get(), "Lease API call failed");
    const int recovery_lines = count_lines(log.get(), "the Lease API answers again");
    const int leader_lines = count_lines(log.get(), "became leader");

    assert_true(led);
    assert_int_equal(a.metrics.api_errors.value("503"), 4);
    assert_int_equal(failure_lines, 1);
    assert_int_equal(recovery_lines, 1);
    assert_int_equal(leader_lines, 1);
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_single_elector_leads_and_the_lease_names_it),
        cmocka_unit_test(two_electors_never_lead_at_once),
        cmocka_unit_test(the_leader_releases_on_stop_and_the_other_takes_over_at_once),
        cmocka_unit_test(a_cut_off_leader_steps_down_and_the_lease_expires_to_the_other),
        cmocka_unit_test(a_renewed_foreign_lease_is_never_taken),
        cmocka_unit_test(api_failures_are_counted_logged_once_and_survived),
    };
    return cmocka_run_group_tests_name("lease_elector", tests, prepare, nullptr);
}
