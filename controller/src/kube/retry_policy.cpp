#include "kube/retry_policy.hpp"

#include <algorithm>
#include <cstdlib>

namespace pod_router::controller {

std::chrono::milliseconds RetryPolicy::delay(int attempt,
                                             std::optional<std::chrono::seconds> retry_after,
                                             std::mt19937_64 &random) const {
    if (retry_after) {
        return std::min<std::chrono::milliseconds>(*retry_after, max_delay);
    }
    // Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))], so that
    // replicas retrying together spread out instead of arriving together.
    const int shift = std::clamp(attempt - 1, 0, 20);
    const auto ceiling = std::min<std::int64_t>(max_delay.count(), base_delay.count() << shift);
    std::uniform_int_distribution<std::int64_t> spread(0, ceiling);
    return std::chrono::milliseconds(spread(random));
}

std::chrono::milliseconds jittered_backoff(int attempt, std::chrono::milliseconds first,
                                           std::chrono::milliseconds ceiling,
                                           std::mt19937_64 &random) {
    const std::int64_t floor = std::max<std::int64_t>(first.count() / 2, 1);
    const int shift = std::clamp(attempt, 0, 20);
    const std::int64_t cap =
        std::max(floor, std::min<std::int64_t>(ceiling.count(), first.count() << shift));
    std::uniform_int_distribution<std::int64_t> spread(floor, cap);
    return std::chrono::milliseconds(spread(random));
}

std::optional<std::chrono::seconds> parse_retry_after(const char *value) noexcept {
    if (value == nullptr || *value == '\0') {
        return std::nullopt;
    }
    char *end = nullptr;
    const long seconds = std::strtol(value, &end, 10);
    if (end == value || seconds < 0 || seconds > 3600) {
        return std::nullopt;
    }
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') {
        ++end;
    }
    if (*end != '\0') {
        return std::nullopt;
    }
    return std::chrono::seconds(seconds);
}

} // namespace pod_router::controller
