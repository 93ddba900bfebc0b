#include "kube/pod_api.hpp"

#include <chrono>
#include <ctime>

#include "pod_router/pod_name.hpp"

namespace pod_router::controller {

namespace {

std::string rfc3339_now() {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char text[32];
    static_cast<void>(std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc));
    return text;
}

} // namespace

std::string managed_pods_selector() {
    return std::string(kManagedByLabel) + "=" + kManagedByValue;
}

std::string url_encode(const std::string &value) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const unsigned char c : value) {
        const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
        if (plain) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

KubePodApi::KubePodApi(std::unique_ptr<KubeClient> client, PodTemplate pod_template,
                       std::string pod_namespace, ControllerMetrics &metrics)
    : client_(std::move(client)), template_(std::move(pod_template)),
      namespace_(std::move(pod_namespace)), metrics_(metrics) {
}

ApiResult KubePodApi::classify(const ApiResponse &response) {
    ApiResult result;
    result.status = response.status;
    result.message = response.error;
    if (response.ok()) {
        result.outcome = ApiOutcome::kDone;
        return result;
    }
    metrics_.api_errors.add(std::to_string(response.status));
    if (response.status == 409 && response.reason() == "AlreadyExists") {
        result.outcome = ApiOutcome::kExists;
    } else if (response.status == 404) {
        result.outcome = ApiOutcome::kNotFound;
    } else if (response.status == 401 || response.status == 408) {
        // Our credentials, not the pod: a service-account token that expired
        // or was revoked before the new one was written (the client reads
        // the file again when it changes), or a request the server timed
        // out. Retried; never a user's failure.
        result.outcome = ApiOutcome::kUnavailable;
    } else if (response.status >= 400 && response.status < 500 && response.status != 429) {
        result.outcome = ApiOutcome::kRejected;
    } else {
        result.outcome = ApiOutcome::kUnavailable;
    }
    return result;
}

ApiResult KubePodApi::create_pod(const std::string &pod, const std::string &identity) {
    return create_from(PodRequest{pod, namespace_, identity, rfc3339_now(), false});
}

ApiResult KubePodApi::create_pool_pod(const std::string &pod) {
    return create_from(PodRequest{pod, namespace_, std::string(), rfc3339_now(), true});
}

ApiResult KubePodApi::create_from(const PodRequest &request) {
    auto rendered = template_.render(request);
    if (!rendered) {
        ApiResult result;
        result.outcome = ApiOutcome::kRejected;
        result.message = rendered.error().message;
        return result;
    }
    const ApiResponse response = client_->request(
        "POST", "/api/v1/namespaces/" + namespace_ + "/pods", rendered.value().get());
    return classify(response);
}

ApiResult KubePodApi::label_claimed(const std::string &pod, const std::string &session,
                                    const std::string &identity) {
    auto digest = identity_digest(identity);
    if (!digest) {
        ApiResult result;
        result.outcome = ApiOutcome::kRejected;
        result.message = digest.error().message;
        return result;
    }
    // A JSON merge patch (RFC 7386) of metadata only: the keys given are set,
    // every other label and annotation stays. Repeating it is harmless.
    JsonPtr patch(json_pack("{s:{s:{s:s, s:s}, s:{s:s, s:s}}}", "metadata", "labels", kSessionLabel,
                            session.c_str(), kIdentityHashLabel, digest.value().c_str(),
                            "annotations", kIdentityAnnotation, identity.c_str(),
                            kClaimedAtAnnotation, rfc3339_now().c_str()));
    if (!patch) {
        ApiResult result;
        result.outcome = ApiOutcome::kRejected;
        result.message = "the claim's labels could not be encoded";
        return result;
    }
    return classify(client_->request("PATCH", "/api/v1/namespaces/" + namespace_ + "/pods/" + pod,
                                     patch.get(), "application/merge-patch+json"));
}

ApiResult KubePodApi::delete_pod(const std::string &pod) {
    // Background propagation, the default grace period: the kubelet stops
    // the container politely.
    return classify(
        client_->request("DELETE", "/api/v1/namespaces/" + namespace_ + "/pods/" + pod));
}

Expected<PodList> list_managed_pods(KubeClient &client, const std::string &pod_namespace,
                                    ControllerMetrics &metrics) {
    PodList list;
    std::string continue_token;
    do {
        std::string path = "/api/v1/namespaces/" + pod_namespace +
                           "/pods?limit=500&labelSelector=" + url_encode(managed_pods_selector());
        if (!continue_token.empty()) {
            path += "&continue=" + url_encode(continue_token);
        }
        const ApiResponse response = client.request("GET", path);
        if (!response.ok() || !response.body) {
            metrics.api_errors.add(std::to_string(response.status));
            return Error{ErrorCode::kUnavailable, "listing pods: " + response.error};
        }
        const json_t *items = json_object_get(response.body.get(), "items");
        std::size_t index;
        const json_t *item;
        json_array_foreach(items, index, item) {
            if (auto view = view_pod(item)) {
                list.pods.push_back(std::move(*view));
            }
        }
        const json_t *metadata = json_object_get(response.body.get(), "metadata");
        const json_t *token = json_object_get(metadata, "continue");
        continue_token = json_is_string(token) ? json_string_value(token) : "";
        const json_t *version = json_object_get(metadata, "resourceVersion");
        if (list.resource_version.empty() && json_is_string(version)) {
            list.resource_version = json_string_value(version);
        }
    } while (!continue_token.empty());
    return list;
}

Expected<std::vector<PodView>> KubePodApi::list_pods() {
    auto list = list_managed_pods(*client_, namespace_, metrics_);
    if (!list) {
        return list.error();
    }
    return std::move(list).value().pods;
}

} // namespace pod_router::controller
