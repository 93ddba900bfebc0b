// The operator's pod template (YAML or JSON), rendered into the Pod the
// controller creates for one identity.
#pragma once

#include <string>

#include "kube/kube_client.hpp"
#include "pod_router/expected.hpp"

namespace pod_router::controller {

inline constexpr const char *kManagedByLabel = "app.kubernetes.io/managed-by";
inline constexpr const char *kManagedByValue = "pod-router";
inline constexpr const char *kIdentityHashLabel = "pod-router.io/identity-hash";
inline constexpr const char *kIdentityAnnotation = "pod-router.io/identity";
inline constexpr const char *kCreatedAtAnnotation = "pod-router.io/created-at";
// Warm pool pods (docs/controller.md, "Warm pool"): created with the pool
// label and no user; a claim adds the session label, the identity hash and
// the identity, and the pool label stays, so a pool pod is always known as
// one (it is never put back: used once, then deleted).
inline constexpr const char *kPoolLabel = "pod-router.io/pool";
inline constexpr const char *kPoolLabelValue = "true";
inline constexpr const char *kSessionLabel = "pod-router.io/session";
inline constexpr const char *kClaimedAtAnnotation = "pod-router.io/claimed-at";

struct PodRequest {
    std::string pod_name;
    std::string namespace_name;
    std::string identity;   // empty for a warm pool pod
    std::string created_at; // RFC 3339
    bool pool = false;      // a warm pool pod: no user yet
};

class PodTemplate {
  public:
    static Expected<PodTemplate> load(const std::string &path);
    static Expected<PodTemplate> parse(const std::string &text, const std::string &source);

    // A fresh Pod object for this request; the template is not changed.
    Expected<JsonPtr> render(const PodRequest &request) const;

    // The port the gateway proxies to: the first container's first port.
    int port() const noexcept { return port_; }

  private:
    PodTemplate(JsonPtr pod, int port) : pod_(pod.release(), JsonDecref()), port_(port) {}

    // shared: templates are copied cheaply, and rendering deep-copies
    std::shared_ptr<json_t> pod_;
    int port_;
};

} // namespace pod_router::controller
