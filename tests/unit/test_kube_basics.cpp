// The controller's Kubernetes client pieces that need no server: retry
// timing, the rate limiter (with a fake clock) and configuration loading.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "../support/cmocka_cpp.hpp"
#include "kube/kube_config.hpp"
#include "kube/rate_limiter.hpp"
#include "kube/retry_policy.hpp"

using namespace pod_router::controller;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

std::filesystem::path scratch(const char *name) {
    auto path = std::filesystem::temp_directory_path() /
                (std::string("pod-router-test-") + std::to_string(getpid()) + "-" + name);
    std::filesystem::create_directories(path);
    return path;
}

void write(const std::filesystem::path &path, const std::string &text) {
    std::ofstream(path, std::ios::binary) << text;
}

void only_transient_failures_are_retried(void **) {
    for (const long status : {0L, 429L, 500L, 502L, 503L, 504L}) {
        assert_true(RetryPolicy::is_retryable(status));
    }
    for (const long status : {200L, 201L, 400L, 401L, 403L, 404L, 409L, 410L, 422L}) {
        assert_false(RetryPolicy::is_retryable(status));
    }
}

void backoff_grows_with_full_jitter_up_to_the_cap(void **) {
    RetryPolicy policy;
    policy.base_delay = milliseconds(100);
    policy.max_delay = milliseconds(1000);
    std::mt19937_64 random(7);
    for (int attempt = 1; attempt <= 8; ++attempt) {
        const long ceiling = std::min(1000L, 100L << (attempt - 1));
        long largest = 0;
        for (int i = 0; i < 2000; ++i) {
            const long wait = policy.delay(attempt, std::nullopt, random).count();
            assert_true(wait >= 0 && wait <= ceiling);
            largest = std::max(largest, wait);
        }
        // jitter spreads over the whole range, not around one value
        assert_true(largest > ceiling * 9 / 10);
    }
}

void loop_backoff_stays_above_half_the_first_delay_and_doubles_to_the_cap(void **) {
    std::mt19937_64 random(11);
    for (int attempt = 0; attempt <= 8; ++attempt) {
        const long ceiling = std::min(3000L, 200L << attempt);
        long smallest = ceiling;
        long largest = 0;
        for (int i = 0; i < 2000; ++i) {
            const long wait = pod_router::controller::jittered_backoff(attempt, milliseconds(200),
                                                                       milliseconds(3000), random)
                                  .count();
            assert_true(wait >= 100 && wait <= ceiling);
            smallest = std::min(smallest, wait);
            largest = std::max(largest, wait);
        }
        assert_true(largest > ceiling * 9 / 10);
        assert_true(smallest < 100 + (ceiling - 100) / 10);
    }
}

void retry_after_wins_but_is_capped(void **) {
    RetryPolicy policy;
    policy.max_delay = milliseconds(5000);
    std::mt19937_64 random(1);
    assert_int_equal(policy.delay(1, seconds(2), random).count(), 2000);
    assert_int_equal(policy.delay(1, seconds(60), random).count(), 5000);
    assert_int_equal(parse_retry_after("3")->count(), 3);
    assert_int_equal(parse_retry_after("12\r\n")->count(), 12);
    assert_false(parse_retry_after("").has_value());
    assert_false(parse_retry_after("soon").has_value());
    assert_false(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").has_value());
    assert_false(parse_retry_after("-1").has_value());
}

void the_rate_limiter_allows_a_burst_then_paces(void **) {
    const auto start = RateLimiter::Clock::time_point();
    RateLimiter limiter(5.0, 10, start);
    for (int i = 0; i < 10; ++i) {
        assert_int_equal(limiter.reserve(start).count(), 0);
    }
    // the 11th call waits one token: 1/5 s
    assert_int_equal(limiter.reserve(start).count(), 200'000);
    // a second later, five tokens have come back, less the one owed
    const auto later = start + seconds(1);
    for (int i = 0; i < 4; ++i) {
        assert_int_equal(limiter.reserve(later).count(), 0);
    }
    assert_true(limiter.reserve(later).count() > 0);
    RateLimiter unlimited(0, 1, start);
    for (int i = 0; i < 100; ++i) {
        assert_int_equal(unlimited.reserve(start).count(), 0);
    }
}

void a_kubeconfig_with_inline_data_and_files(void **) {
    const auto dir = scratch("kubeconfig");
    write(dir / "ca.pem", "CA-FROM-FILE");
    write(dir / "config", R"(apiVersion: v1
kind: Config
current-context: sim
clusters:
- name: sim
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority: ca.pem
- name: other
  cluster:
    server: https://10.0.0.1
    certificate-authority-data: SU5MSU5FLUNB
contexts:
- name: sim
  context: {cluster: sim, user: admin, namespace: pod-router-users}
- name: elsewhere
  context: {cluster: other, user: robot}
users:
- name: admin
  user: {token: s3cret}
- name: robot
  user: {tokenFile: token}
)");
    auto config = load_kubeconfig((dir / "config").string());
    assert_true(config.has_value());
    assert_string_equal(config.value().server.c_str(), "https://127.0.0.1:6443");
    assert_string_equal(config.value().ca_pem.c_str(), "CA-FROM-FILE");
    assert_string_equal(config.value().token.c_str(), "s3cret");
    assert_string_equal(config.value().namespace_name.c_str(), "pod-router-users");

    auto other = load_kubeconfig((dir / "config").string(), "elsewhere");
    assert_true(other.has_value());
    assert_string_equal(other.value().ca_pem.c_str(), "INLINE-CA");
    assert_string_equal(other.value().token_file.c_str(), (dir / "token").c_str());
    assert_string_equal(other.value().namespace_name.c_str(), "default");

    auto missing = load_kubeconfig((dir / "config").string(), "nope");
    assert_false(missing.has_value());
    assert_true(contains(missing.error().message, "no context \"nope\""));
    assert_false(load_kubeconfig((dir / "absent").string()).has_value());
    std::filesystem::remove_all(dir);
}

void in_cluster_configuration(void **) {
    const auto dir = scratch("serviceaccount");
    write(dir / "ca.crt", "CLUSTER-CA");
    write(dir / "token", "jwt");
    write(dir / "namespace", "pod-router-system");
    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_false(load_in_cluster(dir.string()).has_value());
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    auto config = load_in_cluster(dir.string());
    assert_true(config.has_value());
    assert_string_equal(config.value().server.c_str(), "https://[fd00::1]:443");
    assert_string_equal(config.value().ca_pem.c_str(), "CLUSTER-CA");
    assert_string_equal(config.value().token_file.c_str(), (dir / "token").c_str());
    assert_string_equal(config.value().namespace_name.c_str(), "pod-router-system");
    std::filesystem::remove_all(dir);
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_transient_failures_are_retried),
        cmocka_unit_test(loop_backoff_stays_above_half_the_first_delay_and_doubles_to_the_cap),
        cmocka_unit_test(backoff_grows_with_full_jitter_up_to_the_cap),
        cmocka_unit_test(retry_after_wins_but_is_capped),
        cmocka_unit_test(the_rate_limiter_allows_a_burst_then_paces),
        cmocka_unit_test(a_kubeconfig_with_inline_data_and_files),
        cmocka_unit_test(in_cluster_configuration),
    };
    return cmocka_run_group_tests_name("kube_basics", tests, nullptr, nullptr);
}
