// The run mode's configuration: every setting is a flag, and may also come
// from a config file (--config, TOML or INI, a [run] section) or an
// environment variable (POD_ROUTER_*), in that order of precedence (CLI11
// applies the file before the environment): flag, file, environment, default.
// Secrets (the Redis password, the RabbitMQ credentials) are only ever read
// from files named here, never given on the command line.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "amqp/event_consumer.hpp"
#include "leader/leader_duties.hpp"
#include "leader/lease_elector.hpp"
#include "lifecycle/creation_flow.hpp"
#include "ops/log.hpp"
#include "pod_router/expected.hpp"
#include "pod_router/pod_name.hpp"
#include "store/session_store.hpp"

namespace pod_router::controller {

// "500ms", "10s", "10m", "2h", or a number of seconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) noexcept;

// What the flags hold before they are checked and turned into settings.
struct RunFlags {
    std::string kubeconfig;
    std::string kube_context;
    std::string pod_namespace = "pod-router-users";
    std::string pod_template;
    double kube_qps = 50.0; // kube-scheduler's defaults (docs/controller.md)
    int kube_burst = 100;
    int concurrent_creations = 8;
    std::string watch_timeout = "5m";

    std::string redis = "127.0.0.1:6379";
    int redis_db = 0;
    std::string redis_username;
    std::string redis_password_file;
    std::string redis_timeout = "2s";
    std::string key_prefix = "pod-router:";

    std::string amqp_url = "amqp://127.0.0.1:5672/";
    std::string amqp_credentials_file;
    int prefetch = 500; // creations in flight, up to their pods' Ready (docs/controller.md)
    std::string amqp_timeout = "5s";

    std::string idle_timeout = "10m";
    std::string reap_interval = "10s";
    std::string reconcile_interval = "2m";
    std::string start_timeout = "2m";
    std::string orphan_grace = "60s";
    std::string failed_ttl = "30s";
    int max_attempts = 5;
    std::size_t warm_pool_size = 0;
    std::string warm_pool_sweep_interval = "30s";

    std::string lease_namespace; // empty: the kubeconfig's or service account's namespace
    std::string lease_name = "pod-router-controller";
    std::string lease_identity; // empty: hostname and pid
    std::string lease_duration = "15s";
    std::string renew_deadline = "10s";
    std::string retry_period = "2s";

    std::string listen = "0.0.0.0:8081";
    std::string log_level = "info";
    std::string shutdown_timeout = "20s";

    std::string pod_name_prefix = std::string(kDefaultPodNamePrefix);
    std::size_t max_identity_bytes = kDefaultMaxIdentityBytes;
};

// Adds the run subcommand's flags, each with its environment variable.
void add_run_flags(CLI::App &command, RunFlags &flags);

struct RunSettings {
    std::string kubeconfig; // empty: in-cluster
    std::string kube_context;
    std::string pod_namespace;
    std::string pod_template;
    double kube_qps = 50.0;
    int kube_burst = 100;
    int concurrent_creations = 8; // creation workers
    std::chrono::milliseconds watch_timeout{300'000};
    RedisSettings redis;
    AmqpSettings amqp;
    FlowSettings flow;
    DutySettings duties;
    PoolSettings pool;
    LeaseSettings lease; // lease_namespace may still be empty here
    std::string listen_host;
    int listen_port = 8081;
    LogLevel log_level = LogLevel::kInfo;
    std::chrono::milliseconds shutdown_timeout{20'000};
};

// Checks the flags, reads the credential files; a clear message otherwise.
Expected<RunSettings> resolve_run_settings(const RunFlags &flags);

} // namespace pod_router::controller
