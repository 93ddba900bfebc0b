// The things the creation flow needs from the outside world, as
// interfaces: the Kubernetes API (pods), Redis (sessions) and the broker
// (settling deliveries). The run mode plugs in KubeClient, SessionStore and
// EventConsumer; the unit tests plug in fakes and drive every path.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "amqp/event_consumer.hpp"
#include "lifecycle/pod_status.hpp"
#include "pod_router/expected.hpp"
#include "store/session_store.hpp"

namespace pod_router::controller {

enum class ApiOutcome {
    kDone,        // 201 Created / 200 OK
    kExists,      // 409 AlreadyExists
    kNotFound,    // 404
    kRejected,    // any other 4xx: the request itself is wrong; retrying will not help
    kUnavailable, // 5xx, 429 or no answer, after the client's own retries
};

struct ApiResult {
    ApiOutcome outcome = ApiOutcome::kUnavailable;
    long status = 0;
    std::string message; // why, when not kDone
};

class PodApi {
  public:
    virtual ~PodApi() = default;
    virtual ApiResult create_pod(const std::string &pod, const std::string &identity) = 0;
    virtual ApiResult delete_pod(const std::string &pod) = 0;
};

// What the warm pool needs from the API besides deleting.
class PoolPodApi {
  public:
    virtual ~PoolPodApi() = default;
    // A pool pod from the template: pool label, no user.
    virtual ApiResult create_pool_pod(const std::string &pod) = 0;
    // A merge patch of the claimed pod's metadata: the session label, the
    // identity hash label and the identity annotation. 404: the pod is gone.
    virtual ApiResult label_claimed(const std::string &pod, const std::string &session,
                                    const std::string &identity) = 0;
    virtual ApiResult delete_pod(const std::string &pod) = 0;
};

// SessionWriter, the Redis seam, is in store/session_store.hpp.

class Settler {
  public:
    virtual ~Settler() = default;
    virtual void settle(std::uint64_t connection, std::uint64_t tag, Settlement settlement) = 0;
};

// Where the one pod watch reports what it sees.
class PodObserver {
  public:
    virtual ~PodObserver() = default;
    virtual void observe(const PodView &pod) = 0;
    virtual void observe_deleted(const std::string &pod) = 0;
    // After a (re)list: the complete set of managed pods. Pods missing from
    // it were deleted while the watch was away.
    virtual void observe_all(const std::vector<PodView> &pods) = 0;
};

} // namespace pod_router::controller
