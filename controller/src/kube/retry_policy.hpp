// When to retry a Kubernetes API call, and how long to wait: exponential
// backoff with full jitter (client-go's shape), a server's Retry-After
// honoured, a bounded number of attempts. Pure, so tests drive it directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>

namespace pod_router::controller {

struct RetryPolicy {
    int max_attempts = 5;
    std::chrono::milliseconds base_delay{200};
    std::chrono::milliseconds max_delay{10'000};

    // 429, 5xx and transport failures (status 0) are worth another try;
    // anything else is an answer.
    static bool is_retryable(long status) noexcept {
        return status == 0 || status == 429 || (status >= 500 && status <= 599);
    }

    // The wait before attempt number `attempt` (1 = the first retry). A
    // Retry-After from the server wins, capped at max_delay.
    std::chrono::milliseconds delay(int attempt, std::optional<std::chrono::seconds> retry_after,
                                    std::mt19937_64 &random) const;
};

// The controller's own loops (reconnecting to the broker, reopening the pod
// watch, retrying an event): uniform in [first / 2, min(ceiling, first *
// 2^attempt)], so that replicas cut off together come back spread out, and
// never sooner than half the first delay.
std::chrono::milliseconds jittered_backoff(int attempt, std::chrono::milliseconds first,
                                           std::chrono::milliseconds ceiling,
                                           std::mt19937_64 &random);

// Retry-After in seconds (the HTTP-date form is not used by kube-apiserver).
std::optional<std::chrono::seconds> parse_retry_after(const char *value) noexcept;

} // namespace pod_router::controller
