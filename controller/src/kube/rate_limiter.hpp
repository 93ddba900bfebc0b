// A token bucket: client-go's client-side limit on API calls (QPS with a
// burst), so that a storm of creation events cannot flood the apiserver.
// Thread-safe: the creation workers share one (run/controller.cpp), so that
// --kube-qps bounds their calls together, as one client-go clientset shared
// by a controller's workers does. The clock is a parameter, so tests run
// without sleeping.
#pragma once

#include <algorithm>
#include <chrono>
#include <mutex>

namespace pod_router::controller {

class RateLimiter {
  public:
    using Clock = std::chrono::steady_clock;

    RateLimiter(double qps, int burst, Clock::time_point now = Clock::now())
        : qps_(qps), burst_(std::max(burst, 1)), tokens_(std::max(burst, 1)), last_(now) {}
    RateLimiter(const RateLimiter &) = delete;
    RateLimiter &operator=(const RateLimiter &) = delete;

    // How long the caller must wait before its call; takes the token now, so
    // callers on several threads are spaced out in the order they reserved.
    // Zero when a token is available. qps <= 0 means no limit.
    std::chrono::microseconds reserve(Clock::time_point now) {
        if (qps_ <= 0) {
            return std::chrono::microseconds(0);
        }
        const std::lock_guard<std::mutex> lock(mutex_);
        // A caller whose clock reading is older than another's (it read the
        // clock before taking the lock) must not take tokens back.
        if (now > last_) {
            const double elapsed = std::chrono::duration<double>(now - last_).count();
            last_ = now;
            tokens_ = std::min<double>(burst_, tokens_ + elapsed * qps_);
        }
        tokens_ -= 1.0;
        if (tokens_ >= 0) {
            return std::chrono::microseconds(0);
        }
        return std::chrono::microseconds(static_cast<long long>(-tokens_ / qps_ * 1e6));
    }

  private:
    const double qps_;
    const int burst_;
    std::mutex mutex_;
    double tokens_;
    Clock::time_point last_;
};

} // namespace pod_router::controller
