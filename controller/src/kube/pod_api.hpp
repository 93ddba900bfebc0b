// The pods the controller manages, through the Kubernetes API: create one
// from the operator's template, delete one, list them all. One instance per
// thread (it owns a KubeClient).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kube/kube_client.hpp"
#include "lifecycle/pod_status.hpp"
#include "lifecycle/seams.hpp"
#include "ops/metrics.hpp"
#include "pod_template.hpp"

namespace pod_router::controller {

// The label selector of every pod this controller manages.
std::string managed_pods_selector();
// Percent-encodes a query parameter value.
std::string url_encode(const std::string &value);

struct PodList {
    std::vector<PodView> pods;
    std::string resource_version; // of the snapshot, to watch from
};
// Every managed pod in the namespace, following `continue` pages of 500; a
// paginated list is one consistent snapshot at the first page's version.
Expected<PodList> list_managed_pods(KubeClient &client, const std::string &pod_namespace,
                                    ControllerMetrics &metrics);

class KubePodApi final : public PodApi, public PoolPodApi {
  public:
    KubePodApi(std::unique_ptr<KubeClient> client, PodTemplate pod_template,
               std::string pod_namespace, ControllerMetrics &metrics);

    ApiResult create_pod(const std::string &pod, const std::string &identity) override;
    ApiResult delete_pod(const std::string &pod) override;
    ApiResult create_pool_pod(const std::string &pod) override;
    ApiResult label_claimed(const std::string &pod, const std::string &session,
                            const std::string &identity) override;
    Expected<std::vector<PodView>> list_pods();

  private:
    ApiResult create_from(const PodRequest &request);
    ApiResult classify(const ApiResponse &response);

    std::unique_ptr<KubeClient> client_;
    PodTemplate template_;
    std::string namespace_;
    ControllerMetrics &metrics_;
};

} // namespace pod_router::controller
