// The run mode's settings: durations, addresses, the broker URL and the
// secret files, checked before anything connects.
#include <filesystem>
#include <fstream>

#include <unistd.h>

// before cmocka, whose fail() macro breaks CLI11's headers
#include "run/settings.hpp"

#include "../support/cmocka_cpp.hpp"

using namespace pod_router::controller;
using pod_router::ErrorCode;
using std::chrono::milliseconds;

namespace {

std::filesystem::path scratch() {
    auto path = std::filesystem::temp_directory_path() /
                ("pod-router-test-run-settings-" + std::to_string(getpid()));
    std::filesystem::create_directories(path);
    return path;
}

std::string write(const char *name, const std::string &text) {
    const auto path = scratch() / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
}

// What main() hands over: the flags' defaults plus the naming flags.
RunFlags defaults() {
    RunFlags flags;
    flags.pod_template = "/etc/pod-router/pod-template.yaml";
    flags.pod_name_prefix = std::string(pod_router::kDefaultPodNamePrefix);
    flags.max_identity_bytes = pod_router::kDefaultMaxIdentityBytes;
    return flags;
}

RunSettings resolved(const RunFlags &flags) {
    auto settings = resolve_run_settings(flags);
    if (!settings) {
        fail_msg("refused: %s", settings.error().message.c_str());
    }
    return std::move(settings).value();
}

// Refused as a configuration error whose message holds every needle.
void assert_refused(const RunFlags &flags, std::initializer_list<const char *> needles) {
    auto settings = resolve_run_settings(flags);
    if (settings) {
        fail_msg("accepted, expected a message with \"%s\"", *needles.begin());
    }
    assert_int_equal(static_cast<int>(settings.error().code),
                     static_cast<int>(ErrorCode::kInvalidConfig));
    for (const char *needle : needles) {
        if (!contains(settings.error().message, needle)) {
            fail_msg("\"%s\" is not in: %s", needle, settings.error().message.c_str());
        }
    }
}

void durations_take_a_unit_or_mean_seconds(void **) {
    assert_int_equal(parse_duration("500ms")->count(), 500);
    assert_int_equal(parse_duration("10s")->count(), 10'000);
    assert_int_equal(parse_duration("10m")->count(), 600'000);
    assert_int_equal(parse_duration("2h")->count(), 7'200'000);
    assert_int_equal(parse_duration("7")->count(), 7'000);
    assert_int_equal(parse_duration("0s")->count(), 0);
    assert_int_equal(parse_duration("1000000000h")->count(), 3'600'000'000'000'000LL);
}

void durations_refuse_anything_else(void **) {
    for (const char *text : {"", "s", "ms", "10x", "10 s", " 10s", "10S", "-1", "+5s", "1.5s",
                             "10sec", "10s ", "99999999999", "18446744073709551617ms"}) {
        if (parse_duration(text).has_value()) {
            fail_msg("accepted \"%s\"", text);
        }
    }
}

void the_defaults_resolve(void **) {
    const RunSettings settings = resolved(defaults());
    assert_string_view_equal(settings.pod_namespace, "pod-router-users");
    assert_string_view_equal(settings.redis.host, "127.0.0.1");
    assert_int_equal(settings.redis.port, 6379);
    assert_string_view_equal(settings.redis.unix_socket, "");
    assert_string_view_equal(settings.redis.password, "");
    assert_int_equal(settings.redis.command_timeout.count(), 2'000);
    assert_int_equal(settings.redis.failed_ttl_ms, 30'000);
    assert_string_view_equal(settings.redis.key_prefix, "pod-router:");
    assert_string_view_equal(settings.amqp.host, "127.0.0.1");
    assert_int_equal(settings.amqp.port, 5672);
    assert_string_view_equal(settings.amqp.vhost, "/");
    assert_string_view_equal(settings.amqp.username, "guest");
    assert_string_view_equal(settings.amqp.password, "guest");
    assert_int_equal(settings.amqp.prefetch, 500);
    assert_true(settings.kube_qps == 50.0);
    assert_int_equal(settings.kube_burst, 100);
    assert_int_equal(settings.concurrent_creations, 8);
    assert_int_equal(settings.amqp.io_timeout.count(), 5'000);
    assert_int_equal(settings.duties.idle_timeout.count(), 600'000);
    assert_int_equal(settings.duties.reap_interval.count(), 10'000);
    assert_int_equal(settings.duties.reconcile_interval.count(), 120'000);
    assert_int_equal(settings.duties.orphan_grace.count(), 60'000);
    assert_int_equal(settings.flow.start_timeout.count(), 120'000);
    assert_int_equal(settings.duties.start_timeout.count(), 120'000);
    assert_int_equal(settings.flow.max_attempts, 5);
    assert_int_equal(settings.lease.lease_duration.count(), 15'000);
    assert_int_equal(settings.lease.renew_deadline.count(), 10'000);
    assert_int_equal(settings.lease.retry_period.count(), 2'000);
    assert_string_view_equal(settings.lease.name, "pod-router-controller");
    // hostname_pid: unique per replica
    assert_true(contains(settings.lease.identity, "_" + std::to_string(getpid())));
    assert_string_view_equal(settings.listen_host, "0.0.0.0");
    assert_int_equal(settings.listen_port, 8081);
    assert_int_equal(static_cast<int>(settings.log_level), static_cast<int>(LogLevel::kInfo));
    assert_int_equal(settings.shutdown_timeout.count(), 20'000);
    assert_string_view_equal(settings.flow.naming.pod_name("alice").value(), "user-alice");
}

void flags_carry_through(void **) {
    RunFlags flags = defaults();
    flags.start_timeout = "90s";
    flags.max_attempts = 3;
    flags.lease_identity = "replica-a";
    flags.log_level = "debug";
    flags.listen = "127.0.0.1:0";
    flags.pod_name_prefix = "dev";
    const RunSettings settings = resolved(flags);
    assert_int_equal(settings.flow.start_timeout.count(), 90'000);
    assert_int_equal(settings.duties.start_timeout.count(), 90'000);
    assert_int_equal(settings.flow.max_attempts, 3);
    assert_string_view_equal(settings.lease.identity, "replica-a");
    assert_int_equal(static_cast<int>(settings.log_level), static_cast<int>(LogLevel::kDebug));
    assert_string_view_equal(settings.listen_host, "127.0.0.1");
    assert_int_equal(settings.listen_port, 0);
    assert_string_view_equal(settings.flow.naming.pod_name("alice").value(), "dev-alice");
}

void redis_by_host_port_ipv6_or_unix_socket(void **) {
    RunFlags flags = defaults();
    flags.redis = "redis.pod-router.svc:6380";
    RunSettings settings = resolved(flags);
    assert_string_view_equal(settings.redis.host, "redis.pod-router.svc");
    assert_int_equal(settings.redis.port, 6380);

    flags.redis = "redis";
    settings = resolved(flags);
    assert_string_view_equal(settings.redis.host, "redis");
    assert_int_equal(settings.redis.port, 6379);

    flags.redis = "[::1]:6380";
    settings = resolved(flags);
    assert_string_view_equal(settings.redis.host, "::1");
    assert_int_equal(settings.redis.port, 6380);

    flags.redis = "[fd00::7]";
    settings = resolved(flags);
    assert_string_view_equal(settings.redis.host, "fd00::7");
    assert_int_equal(settings.redis.port, 6379);

    flags.redis = "unix:/run/redis/redis.sock";
    settings = resolved(flags);
    assert_string_view_equal(settings.redis.unix_socket, "/run/redis/redis.sock");

    flags.redis = "unix:";
    assert_refused(flags, {"--redis", "socket path"});
    for (const char *bad : {"redis:65536", "redis:0", "redis:port", "redis:-1", ":6379", "[::1",
                            "[::1]6380", "[]:6379"}) {
        flags.redis = bad;
        assert_refused(flags, {"--redis", bad});
    }
}

void the_redis_password_is_the_first_line_of_its_file(void **) {
    RunFlags flags = defaults();
    flags.redis_password_file = write("redis-password", "s3cret:with spaces\r\nsecond line\n");
    flags.redis_username = "controller";
    const RunSettings settings = resolved(flags);
    assert_string_view_equal(settings.redis.password, "s3cret:with spaces");
    assert_string_view_equal(settings.redis.username, "controller");

    flags.redis_password_file = (scratch() / "no-such-file").string();
    assert_refused(flags, {"Redis password", "no-such-file"});
}

void an_invalid_key_prefix_is_refused(void **) {
    RunFlags flags = defaults();
    for (const char *bad : {"", "has space:", "tab\t:"}) {
        flags.key_prefix = bad;
        assert_refused(flags, {"--key-prefix"});
    }
    flags.key_prefix = std::string(65, 'k');
    assert_refused(flags, {"--key-prefix"});
    flags.key_prefix = "staging:pod-router:";
    assert_string_view_equal(resolved(flags).redis.key_prefix, "staging:pod-router:");
}

void the_amqp_url_gives_host_port_and_vhost(void **) {
    RunFlags flags = defaults();
    flags.amqp_url = "amqp://rabbitmq.pod-router.svc:5673/%2f";
    RunSettings settings = resolved(flags);
    assert_string_view_equal(settings.amqp.host, "rabbitmq.pod-router.svc");
    assert_int_equal(settings.amqp.port, 5673);
    assert_string_view_equal(settings.amqp.vhost, "/");

    flags.amqp_url = "amqp://rabbitmq/pod%2Drouter";
    settings = resolved(flags);
    assert_string_view_equal(settings.amqp.host, "rabbitmq");
    assert_int_equal(settings.amqp.port, 5672);
    assert_string_view_equal(settings.amqp.vhost, "pod-router");

    flags.amqp_url = "amqp://rabbitmq";
    settings = resolved(flags);
    assert_string_view_equal(settings.amqp.vhost, "/");

    flags.amqp_url = "amqp://[fd00::5]:5672/users";
    settings = resolved(flags);
    assert_string_view_equal(settings.amqp.host, "fd00::5");
    assert_string_view_equal(settings.amqp.vhost, "users");
}

void the_amqp_url_holds_no_credentials_and_no_other_scheme(void **) {
    RunFlags flags = defaults();
    flags.amqp_url = "amqp://guest:guest@rabbitmq:5672/";
    assert_refused(flags, {"--amqp-url", "credentials", "--amqp-credentials-file"});
    // and the password is not echoed back
    auto refused = resolve_run_settings(flags);
    assert_false(contains(refused.error().message, "guest"));

    for (const char *bad : {"amqps://rabbitmq:5671/", "http://rabbitmq:15672/", "rabbitmq:5672",
                            "AMQP://rabbitmq/", ""}) {
        flags.amqp_url = bad;
        assert_refused(flags, {"--amqp-url", "amqp://"});
    }
    flags.amqp_url = "amqp://rabbitmq:notaport/";
    assert_refused(flags, {"--amqp-url", "port"});
    flags.amqp_url = "amqp:///vhost";
    assert_refused(flags, {"--amqp-url", "no host"});
}

void amqp_credentials_come_from_a_file(void **) {
    RunFlags flags = defaults();
    flags.amqp_credentials_file = write("amqp-credentials", "pod-router:p@ss:word\nignored\n");
    RunSettings settings = resolved(flags);
    assert_string_view_equal(settings.amqp.username, "pod-router");
    assert_string_view_equal(settings.amqp.password, "p@ss:word");

    flags.amqp_credentials_file = write("amqp-empty-password", "pod-router:");
    settings = resolved(flags);
    assert_string_view_equal(settings.amqp.username, "pod-router");
    assert_string_view_equal(settings.amqp.password, "");

    for (const char *bad : {"no-colon\n", ":password\n", "\nuser:password\n", ""}) {
        flags.amqp_credentials_file = write("amqp-bad", bad);
        assert_refused(flags, {"RabbitMQ credentials file", "user:password"});
    }

    flags.amqp_credentials_file = (scratch() / "missing-credentials").string();
    assert_refused(flags, {"cannot read", "RabbitMQ credentials", "missing-credentials"});
}

void leader_timings_must_be_ordered(void **) {
    RunFlags flags = defaults();
    flags.renew_deadline = "15s"; // equal to the lease duration
    assert_refused(flags, {"--retry-period < --renew-deadline < --lease-duration"});
    flags = defaults();
    flags.retry_period = "10s"; // equal to the renew deadline
    assert_refused(flags, {"--retry-period < --renew-deadline < --lease-duration"});
    flags = defaults();
    flags.lease_duration = "60s";
    flags.renew_deadline = "40s";
    flags.retry_period = "500ms";
    const RunSettings settings = resolved(flags);
    assert_int_equal(settings.lease.lease_duration.count(), 60'000);
    assert_int_equal(settings.lease.renew_deadline.count(), 40'000);
    assert_int_equal(settings.lease.retry_period.count(), 500);
}

void an_invalid_duration_names_its_flag(void **) {
    const struct {
        std::string RunFlags::*field;
        const char *flag;
    } flags_with_durations[] = {
        {&RunFlags::redis_timeout, "--redis-timeout"},
        {&RunFlags::amqp_timeout, "--amqp-timeout"},
        {&RunFlags::idle_timeout, "--idle-timeout"},
        {&RunFlags::reap_interval, "--reap-interval"},
        {&RunFlags::reconcile_interval, "--reconcile-interval"},
        {&RunFlags::start_timeout, "--start-timeout"},
        {&RunFlags::orphan_grace, "--orphan-grace"},
        {&RunFlags::failed_ttl, "--failed-ttl"},
        {&RunFlags::lease_duration, "--lease-duration"},
        {&RunFlags::renew_deadline, "--renew-deadline"},
        {&RunFlags::retry_period, "--retry-period"},
        {&RunFlags::shutdown_timeout, "--shutdown-timeout"},
    };
    for (const auto &each : flags_with_durations) {
        for (const char *bad : {"10x", "0s", "-5s", ""}) {
            RunFlags flags = defaults();
            flags.*each.field = bad;
            assert_refused(flags, {each.flag, "invalid value"});
        }
    }
}

void an_invalid_naming_policy_is_refused(void **) {
    RunFlags flags = defaults();
    flags.pod_name_prefix = "Users";
    assert_refused(flags, {"prefix"});
    flags = defaults();
    flags.max_identity_bytes = 0;
    assert_refused(flags, {"identity"});
}

void an_invalid_listen_address_is_refused(void **) {
    RunFlags flags = defaults();
    flags.listen = "0.0.0.0:http";
    assert_refused(flags, {"--listen"});
    flags.listen = "[::]:9090";
    const RunSettings settings = resolved(flags);
    assert_string_view_equal(settings.listen_host, "::");
    assert_int_equal(settings.listen_port, 9090);
}

int remove_scratch(void **) {
    std::error_code ignored;
    std::filesystem::remove_all(scratch(), ignored);
    return 0;
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(durations_take_a_unit_or_mean_seconds),
        cmocka_unit_test(durations_refuse_anything_else),
        cmocka_unit_test(the_defaults_resolve),
        cmocka_unit_test(flags_carry_through),
        cmocka_unit_test(redis_by_host_port_ipv6_or_unix_socket),
        cmocka_unit_test(the_redis_password_is_the_first_line_of_its_file),
        cmocka_unit_test(an_invalid_key_prefix_is_refused),
        cmocka_unit_test(the_amqp_url_gives_host_port_and_vhost),
        cmocka_unit_test(the_amqp_url_holds_no_credentials_and_no_other_scheme),
        cmocka_unit_test(amqp_credentials_come_from_a_file),
        cmocka_unit_test(leader_timings_must_be_ordered),
        cmocka_unit_test(an_invalid_duration_names_its_flag),
        cmocka_unit_test(an_invalid_naming_policy_is_refused),
        cmocka_unit_test(an_invalid_listen_address_is_refused),
    };
    return cmocka_run_group_tests_name("run_settings", tests, nullptr, remove_scratch);
}
