#include "run/settings.hpp"

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <fstream>

#include "pod_router/redis_schema.hpp"

namespace pod_router::controller {

namespace {

Error invalid(std::string message) {
    return Error{ErrorCode::kInvalidConfig, std::move(message)};
}

// The first line of a file, without its line end: how secrets are mounted.
Expected<std::string> first_line_of(const std::string &path, const char *what) {
    std::ifstream file(path);
    if (!file) {
        return invalid(std::string("cannot read the ") + what + " file " + path);
    }
    std::string line;
    std::getline(file, line);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) {
        line.pop_back();
    }
    return line;
}

Expected<std::chrono::milliseconds> duration_flag(const std::string &text, const char *flag,
                                                  bool allow_zero = false) {
    const auto parsed = parse_duration(text);
    if (!parsed || (!allow_zero && parsed->count() <= 0)) {
        return invalid(std::string("invalid value \"") + text + "\" for " + flag +
                       ": expected a duration such as 500ms, 10s, 10m or 2h");
    }
    return *parsed;
}

// host[:port] or [v6]:port; port 0 only where it means "any free port".
Expected<std::pair<std::string, int>> host_port(const std::string &text, int default_port,
                                                const char *flag, bool allow_any_port = false) {
    std::string host = text;
    int port = default_port;
    std::string port_text;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos) {
            return invalid(std::string("invalid address \"") + text + "\" for " + flag);
        }
        host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') {
                return invalid(std::string("invalid address \"") + text + "\" for " + flag);
            }
            port_text = text.substr(close + 2);
        }
    } else if (const auto colon = text.rfind(':'); colon != std::string::npos) {
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
    }
    if (!port_text.empty()) {
        char *end = nullptr;
        const long value = std::strtol(port_text.c_str(), &end, 10);
        if (*end != '\0' || value < (allow_any_port ? 0 : 1) || value > 65535) {
            return invalid(std::string("invalid port in \"") + text + "\" for " + flag);
        }
        port = static_cast<int>(value);
    }
    if (host.empty()) {
        return invalid(std::string("no host in \"") + text + "\" for " + flag);
    }
    return std::make_pair(host, port);
}

std::string percent_decoded(const std::string &text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(text[i + 1]) != 0 &&
            std::isxdigit(text[i + 2]) != 0) {
            out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

std::string default_identity() {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
        static_cast<void>(std::snprintf(host, sizeof host, "controller"));
    }
    return std::string(host) + "_" + std::to_string(getpid());
}

} // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) noexcept {
    if (text.empty()) {
        return std::nullopt;
    }
    std::size_t digits = 0;
    long long value = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
        value = value * 10 + (text[digits] - '0');
        if (value > 1'000'000'000LL) {
            return std::nullopt;
        }
        ++digits;
    }
    if (digits == 0) {
        return std::nullopt;
    }
    const std::string_view unit = text.substr(digits);
    long long millis_per_unit = 0;
    if (unit.empty() || unit == "s") {
        millis_per_unit = 1000;
    } else if (unit == "ms") {
        millis_per_unit = 1;
    } else if (unit == "m") {
        millis_per_unit = 60'000;
    } else if (unit == "h") {
        millis_per_unit = 3'600'000;
    } else {
        return std::nullopt;
    }
    return std::chrono::milliseconds(value * millis_per_unit);
}

void add_run_flags(CLI::App &command, RunFlags &flags) {
    const auto option = [&command](const std::string &name, auto &target, const std::string &help,
                                   const std::string &env) {
        return command.add_option(name, target, help)->envname(env)->capture_default_str();
    };
    option("--kubeconfig", flags.kubeconfig,
           "kubeconfig file; empty: the in-cluster service account", "KUBECONFIG")
        ->group("Kubernetes");
    option("--context", flags.kube_context, "kubeconfig context; empty: the current one",
           "POD_ROUTER_KUBE_CONTEXT")
        ->group("Kubernetes");
    option("--namespace", flags.pod_namespace, "Namespace of the user pods", "POD_ROUTER_NAMESPACE")
        ->group("Kubernetes");
    option("--pod-template", flags.pod_template, "The user pod's template, YAML or JSON",
           "POD_ROUTER_POD_TEMPLATE")
        ->required()
        ->group("Kubernetes");
    option("--kube-qps", flags.kube_qps,
           "API requests per second: the creation workers' together, and each other client's",
           "POD_ROUTER_KUBE_QPS")
        ->check(CLI::PositiveNumber)
        ->group("Kubernetes");
    option("--kube-burst", flags.kube_burst, "API request burst, as --kube-qps",
           "POD_ROUTER_KUBE_BURST")
        ->check(CLI::Range(1, 1000))
        ->group("Kubernetes");
    option("--concurrent-creations", flags.concurrent_creations,
           "Pod creations in flight at once (creation workers)", "POD_ROUTER_CONCURRENT_CREATIONS")
        ->check(CLI::Range(1, 64))
        ->group("Kubernetes");

    option("--watch-timeout", flags.watch_timeout,
           "The pod watch is renewed after this to twice this (at least 1s)",
           "POD_ROUTER_WATCH_TIMEOUT")
        ->group("Kubernetes");
    option("--redis", flags.redis, "Redis host[:port], or unix:/path/to/socket", "POD_ROUTER_REDIS")
        ->group("Redis");
    option("--redis-db", flags.redis_db, "Redis database number", "POD_ROUTER_REDIS_DB")
        ->check(CLI::Range(0, 15))
        ->group("Redis");
    option("--redis-username", flags.redis_username, "Redis ACL user; empty: the default user",
           "POD_ROUTER_REDIS_USERNAME")
        ->group("Redis");
    option("--redis-password-file", flags.redis_password_file,
           "File whose first line is the Redis password", "POD_ROUTER_REDIS_PASSWORD_FILE")
        ->group("Redis");
    option("--redis-timeout", flags.redis_timeout, "Redis connect and command timeout",
           "POD_ROUTER_REDIS_TIMEOUT")
        ->group("Redis");
    option("--key-prefix", flags.key_prefix, "Prefix of every Redis key; must match the gateway's",
           "POD_ROUTER_KEY_PREFIX")
        ->group("Redis");

    option("--amqp-url", flags.amqp_url, "RabbitMQ amqp://host[:port][/vhost], without credentials",
           "POD_ROUTER_AMQP_URL")
        ->group("RabbitMQ");
    option("--amqp-credentials-file", flags.amqp_credentials_file,
           "File whose first line is user:password; empty: guest:guest",
           "POD_ROUTER_AMQP_CREDENTIALS_FILE")
        ->group("RabbitMQ");
    option("--prefetch", flags.prefetch, "Creation events in progress at once (basic.qos)",
           "POD_ROUTER_PREFETCH")
        ->check(CLI::Range(1, 10000))
        ->group("RabbitMQ");
    option("--amqp-timeout", flags.amqp_timeout, "RabbitMQ connect and round-trip timeout",
           "POD_ROUTER_AMQP_TIMEOUT")
        ->group("RabbitMQ");

    option("--idle-timeout", flags.idle_timeout, "Delete a pod unused for this long",
           "POD_ROUTER_IDLE_TIMEOUT")
        ->group("Lifecycle");
    option("--reap-interval", flags.reap_interval, "How often the leader looks for idle pods",
           "POD_ROUTER_REAP_INTERVAL")
        ->group("Lifecycle");
    option("--reconcile-interval", flags.reconcile_interval,
           "How often the leader repairs drift between pods and sessions",
           "POD_ROUTER_RECONCILE_INTERVAL")
        ->group("Lifecycle");
    option("--start-timeout", flags.start_timeout,
           "A pod not Ready this long after creation is failed and deleted",
           "POD_ROUTER_START_TIMEOUT")
        ->group("Lifecycle");
    option("--orphan-grace", flags.orphan_grace,
           "A pod without a session is deleted only once this old", "POD_ROUTER_ORPHAN_GRACE")
        ->group("Lifecycle");
    option("--failed-ttl", flags.failed_ttl,
           "How long a failed session answers with its reason before a retry",
           "POD_ROUTER_FAILED_TTL")
        ->group("Lifecycle");
    option("--max-attempts", flags.max_attempts,
           "Tries of one event while Redis or the API fails, then the dead-letter queue",
           "POD_ROUTER_MAX_ATTEMPTS")
        ->check(CLI::Range(1, 100))
        ->group("Lifecycle");

    option("--warm-pool-size", flags.warm_pool_size,
           "Ready pods kept unassigned for new users (0: no warm pool)",
           "POD_ROUTER_WARM_POOL_SIZE")
        ->check(CLI::Range(0, 10000))
        ->group("Lifecycle");
    option("--warm-pool-sweep-interval", flags.warm_pool_sweep_interval,
           "How often the leader checks the pool's Redis entries against the pods that exist",
           "POD_ROUTER_WARM_POOL_SWEEP_INTERVAL")
        ->group("Lifecycle");

    option("--lease-namespace", flags.lease_namespace,
           "Namespace of the leader Lease; empty: the service account's (or kubeconfig's)",
           "POD_ROUTER_LEASE_NAMESPACE")
        ->group("Leader election");
    option("--lease-name", flags.lease_name, "Name of the leader Lease", "POD_ROUTER_LEASE_NAME")
        ->group("Leader election");
    option("--lease-identity", flags.lease_identity,
           "This replica's name in the Lease; empty: hostname_pid", "POD_ROUTER_LEASE_IDENTITY")
        ->group("Leader election");
    option("--lease-duration", flags.lease_duration, "How long a Lease lasts unrenewed",
           "POD_ROUTER_LEASE_DURATION")
        ->group("Leader election");
    option("--renew-deadline", flags.renew_deadline,
           "The leader steps down if it cannot renew within this", "POD_ROUTER_RENEW_DEADLINE")
        ->group("Leader election");
    option("--retry-period", flags.retry_period, "How often replicas try to acquire or renew",
           "POD_ROUTER_RETRY_PERIOD")
        ->group("Leader election");

    option("--listen", flags.listen, "Address of /healthz, /readyz and /metrics (port 0: any)",
           "POD_ROUTER_LISTEN")
        ->group("Operations");
    option("--log-level", flags.log_level, "debug, info, warn or error", "POD_ROUTER_LOG_LEVEL")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
        ->group("Operations");
    option("--shutdown-timeout", flags.shutdown_timeout,
           "On SIGTERM, how long to wait for creations in progress before leaving them to "
           "another replica",
           "POD_ROUTER_SHUTDOWN_TIMEOUT")
        ->group("Operations");
}

Expected<RunSettings> resolve_run_settings(const RunFlags &flags) {
    RunSettings settings;
    settings.kubeconfig = flags.kubeconfig;
    settings.kube_context = flags.kube_context;
    settings.pod_namespace = flags.pod_namespace;
    settings.pod_template = flags.pod_template;
    settings.kube_qps = flags.kube_qps;
    settings.kube_burst = flags.kube_burst;
    settings.concurrent_creations = flags.concurrent_creations;

    struct DurationFlag {
        const std::string &text;
        const char *flag;
        std::chrono::milliseconds *target;
    };
    std::chrono::milliseconds redis_timeout{};
    std::chrono::milliseconds amqp_timeout{};
    std::chrono::milliseconds failed_ttl{};
    const DurationFlag durations[] = {
        {flags.redis_timeout, "--redis-timeout", &redis_timeout},
        {flags.watch_timeout, "--watch-timeout", &settings.watch_timeout},
        {flags.amqp_timeout, "--amqp-timeout", &amqp_timeout},
        {flags.idle_timeout, "--idle-timeout", &settings.duties.idle_timeout},
        {flags.reap_interval, "--reap-interval", &settings.duties.reap_interval},
        {flags.reconcile_interval, "--reconcile-interval", &settings.duties.reconcile_interval},
        {flags.start_timeout, "--start-timeout", &settings.flow.start_timeout},
        {flags.orphan_grace, "--orphan-grace", &settings.duties.orphan_grace},
        {flags.failed_ttl, "--failed-ttl", &failed_ttl},
        {flags.warm_pool_sweep_interval, "--warm-pool-sweep-interval",
         &settings.pool.sweep_interval},
        {flags.lease_duration, "--lease-duration", &settings.lease.lease_duration},
        {flags.renew_deadline, "--renew-deadline", &settings.lease.renew_deadline},
        {flags.retry_period, "--retry-period", &settings.lease.retry_period},
        {flags.shutdown_timeout, "--shutdown-timeout", &settings.shutdown_timeout},
    };
    for (const DurationFlag &duration : durations) {
        auto parsed = duration_flag(duration.text, duration.flag);
        if (!parsed) {
            return parsed.error();
        }
        *duration.target = parsed.value();
    }
    settings.duties.start_timeout = settings.flow.start_timeout;
    if (settings.lease.renew_deadline >= settings.lease.lease_duration ||
        settings.lease.retry_period >= settings.lease.renew_deadline) {
        return invalid("leader election needs --retry-period < --renew-deadline < "
                       "--lease-duration");
    }
    settings.lease.name = flags.lease_name;
    settings.lease.lease_namespace = flags.lease_namespace;
    settings.lease.identity =
        flags.lease_identity.empty() ? default_identity() : flags.lease_identity;

    constexpr std::string_view kUnix = "unix:";
    if (flags.redis.compare(0, kUnix.size(), kUnix) == 0) {
        settings.redis.unix_socket = flags.redis.substr(kUnix.size());
        if (settings.redis.unix_socket.empty()) {
            return invalid("--redis unix: needs a socket path");
        }
    } else {
        auto redis = host_port(flags.redis, 6379, "--redis");
        if (!redis) {
            return redis.error();
        }
        settings.redis.host = redis.value().first;
        settings.redis.port = redis.value().second;
    }
    settings.redis.db = flags.redis_db;
    settings.redis.username = flags.redis_username;
    settings.redis.connect_timeout = redis_timeout;
    settings.redis.command_timeout = redis_timeout;
    settings.redis.failed_ttl_ms = failed_ttl.count();
    if (!is_valid_redis_key_prefix(flags.key_prefix)) {
        return invalid("invalid --key-prefix: 1 to 64 printable ASCII characters without spaces");
    }
    settings.redis.key_prefix = flags.key_prefix;
    if (!flags.redis_password_file.empty()) {
        auto password = first_line_of(flags.redis_password_file, "Redis password");
        if (!password) {
            return password.error();
        }
        settings.redis.password = std::move(password).value();
    }

    constexpr std::string_view kScheme = "amqp://";
    if (flags.amqp_url.compare(0, kScheme.size(), kScheme) != 0) {
        return invalid("--amqp-url must start with amqp://");
    }
    std::string rest = flags.amqp_url.substr(kScheme.size());
    if (rest.find('@') != std::string::npos) {
        return invalid("--amqp-url must not hold credentials (they would show in ps): use "
                       "--amqp-credentials-file");
    }
    const auto slash = rest.find('/');
    const std::string authority = rest.substr(0, slash);
    const std::string vhost = slash == std::string::npos ? "" : rest.substr(slash + 1);
    auto amqp = host_port(authority, 5672, "--amqp-url");
    if (!amqp) {
        return amqp.error();
    }
    settings.amqp.host = amqp.value().first;
    settings.amqp.port = amqp.value().second;
    settings.amqp.vhost = vhost.empty() ? "/" : percent_decoded(vhost);
    settings.amqp.prefetch = flags.prefetch;
    settings.amqp.connect_timeout = amqp_timeout;
    settings.amqp.io_timeout = amqp_timeout;
    if (!flags.amqp_credentials_file.empty()) {
        auto line = first_line_of(flags.amqp_credentials_file, "RabbitMQ credentials");
        if (!line) {
            return line.error();
        }
        const auto colon = line.value().find(':');
        if (colon == std::string::npos || colon == 0) {
            return invalid("the RabbitMQ credentials file must hold user:password on its first "
                           "line");
        }
        settings.amqp.username = line.value().substr(0, colon);
        settings.amqp.password = line.value().substr(colon + 1);
    }

    settings.flow.max_attempts = flags.max_attempts;
    settings.pool.size = flags.warm_pool_size;
    settings.pool.start_timeout = settings.flow.start_timeout;
    auto naming = NamingPolicy::create(flags.pod_name_prefix, flags.max_identity_bytes);
    if (!naming) {
        return naming.error();
    }
    settings.flow.naming = std::move(naming).value();

    auto listen = host_port(flags.listen, 8081, "--listen", true);
    if (!listen) {
        return listen.error();
    }
    settings.listen_host = listen.value().first;
    settings.listen_port = listen.value().second;
    settings.log_level = parse_log_level(flags.log_level).value_or(LogLevel::kInfo);
    return settings;
}

} // namespace pod_router::controller
