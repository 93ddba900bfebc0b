// A token bucket: client-go's client-side limit on API calls (QPS with a
// burst), so that a storm of creation events cannot flood the apiserver.
// The clock is a parameter, so tests run without sleeping.
#pragma once

#include <algorithm>
#include <chrono>

namespace pod_router::controller {

class RateLimiter {
  public:
    using Clock = std::chrono::steady_clock;

    RateLimiter(double qps, int burst, Clock::time_point now = Clock::now())
        : qps_(qps), burst_(std::max(burst, 1)), tokens_(std::max(burst, 1)), last_(now) {}

    // How long the caller must wait before its call; takes the token now.
    // Zero when a token is available. qps <= 0 means no limit.
    std::chrono::microseconds reserve(Clock::time_point now) {
        if (qps_ <= 0) {
            return std::chrono::microseconds(0);
        }
        const double elapsed = std::chrono::duration<double>(now - last_).count();
        last_ = now;
        tokens_ = std::min<double>(burst_, tokens_ + elapsed * qps_);
        tokens_ -= 1.0;
        if (tokens_ >= 0) {
            return std::chrono::microseconds(0);
        }
        return std::chrono::microseconds(static_cast<long long>(-tokens_ / qps_ * 1e6));
    }

  private:
    double qps_;
    int burst_;
    double tokens_;
    Clock::time_point last_;
};

} // namespace pod_router::controller
