// The controller's Kubernetes client against kube-sim or the real control
// plane (started by the CTest fixture, POD_ROUTER_CLUSTER=real): TLS
// verified with the kubeconfig's CA, Status errors decoded, and (kube-sim
// only, which injects them) retries on 500s and 429s with Retry-After.
#include <cstdlib>
#include <cstring>

#include "../support/cmocka_cpp.hpp"
#include "kube/kube_client.hpp"
#include "pod_template.hpp"

#include <thread>

using namespace pod_router::controller;

namespace {

KubeConfig admin_config() {
    const char *path = std::getenv("POD_ROUTER_TEST_KUBECONFIG");
    if (path == nullptr) {
        fail_msg("POD_ROUTER_TEST_KUBECONFIG is not set; run through ctest");
    }
    auto config = load_kubeconfig(path);
    if (!config) {
        fail_msg("%s", config.error().message.c_str());
    }
    return config.value();
}

ClientOptions fast_retries() {
    ClientOptions options;
    options.retry.base_delay = std::chrono::milliseconds(10);
    options.retry.max_delay = std::chrono::milliseconds(2000);
    options.qps = 0;
    return options;
}

JsonPtr parse(const char *text) {
    json_error_t error;
    JsonPtr json(json_loads(text, 0, &error));
    if (!json) {
        fail_msg("bad test JSON: %s", error.text);
    }
    return json;
}

void inject(KubeClient &client, const char *fault) {
    JsonPtr body = parse(fault);
    ApiResponse response = client.request("POST", "/kube-sim/faults", body.get());
    assert_int_equal(response.status, 201);
}

int ensure_namespace(void **) {
    KubeClient client(admin_config(), fast_retries());
    JsonPtr ns = parse(R"({"metadata": {"name": "client-test"}})");
    ApiResponse response = client.request("POST", "/api/v1/namespaces", ns.get());
    return response.status == 201 || response.status == 409 ? 0 : -1;
}

void pods_round_trip_with_status_errors(void **) {
    KubeClient client(admin_config(), fast_retries());
    JsonPtr pod = parse(R"({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "via-curl", "labels": {"app.kubernetes.io/managed-by": "pod-router"}},
        "spec": {"containers": [{"name": "web", "image": "httpd:2.4"}]}})");
    const std::string pods = "/api/v1/namespaces/client-test/pods";

    ApiResponse created = client.request("POST", pods, pod.get());
    assert_int_equal(created.status, 201);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(created.body.get(), "metadata"), "name")),
        "via-curl");

    ApiResponse again = client.request("POST", pods, pod.get());
    assert_int_equal(again.status, 409);
    assert_string_equal(again.reason().c_str(), "AlreadyExists");
    assert_int_equal(again.attempts, 1); // an answer, not retried
    assert_true(contains(again.error, "already exists"));

    ApiResponse listed =
        client.request("GET", pods + "?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dpod-router");
    assert_int_equal(listed.status, 200);
    assert_int_equal(json_array_size(json_object_get(listed.body.get(), "items")), 1);

    ApiResponse deleted = client.request("DELETE", pods + "/via-curl?gracePeriodSeconds=0");
    assert_int_equal(deleted.status, 200);
    ApiResponse missing = client.request("GET", pods + "/never-was");
    assert_int_equal(missing.status, 404);
    assert_string_equal(missing.reason().c_str(), "NotFound");
}

void server_errors_and_throttling_are_retried(void **) {
    if (on_real_cluster()) {
        skip();
    }
    KubeClient client(admin_config(), fast_retries());
    const std::string path = "/api/v1/namespaces/client-test/configmaps";

    inject(client, R"({"status": 500, "count": 2, "method": "GET",
                      "path_prefix": "/api/v1/namespaces/client-test/configmaps"})");
    ApiResponse after_500s = client.request("GET", path);
    assert_int_equal(after_500s.status, 200);
    assert_int_equal(after_500s.attempts, 3);

    inject(client, R"({"status": 429, "count": 1, "retry_after": 1, "reason": "TooManyRequests",
                      "method": "GET", "path_prefix": "/api/v1/namespaces/client-test/configmaps"})");
    const auto started = std::chrono::steady_clock::now();
    ApiResponse after_429 = client.request("GET", path);
    const auto waited = std::chrono::steady_clock::now() - started;
    assert_int_equal(after_429.status, 200);
    assert_int_equal(after_429.attempts, 2);
    // Retry-After: 1 was honoured (jitter alone would have waited ~10 ms)
    assert_true(waited >= std::chrono::milliseconds(950));

    inject(client, R"({"status": 503, "count": 10, "method": "GET",
                      "path_prefix": "/api/v1/namespaces/client-test/configmaps"})");
    ApiResponse gave_up = client.request("GET", path);
    assert_int_equal(gave_up.status, 503);
    assert_int_equal(gave_up.attempts, 5);
    assert_int_equal(client.request("DELETE", "/kube-sim/faults").status, 200);
}

void tls_is_verified_and_tokens_are_checked(void **) {
    KubeConfig wrong_ca = admin_config();
    wrong_ca.ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    ClientOptions no_retry = fast_retries();
    no_retry.retry.max_attempts = 1;
    ApiResponse refused = KubeClient(wrong_ca, no_retry).request("GET", "/api/v1/namespaces");
    assert_int_equal(refused.status, 0);
    assert_false(refused.error.empty());

    KubeConfig bad_token = admin_config();
    bad_token.token = "not-the-token";
    ApiResponse unauthorized = KubeClient(bad_token, no_retry).request("GET", "/api/v1/namespaces");
    assert_int_equal(unauthorized.status, 401);
    assert_false(contains(unauthorized.error, "not-the-token"));
}

void the_shipped_template_starts_a_ready_pod(void **) {
    const char *path = std::getenv("POD_ROUTER_POD_TEMPLATE");
    assert_non_null(path);
    auto pod_template = PodTemplate::load(path);
    assert_true(pod_template.has_value());
    auto pod = pod_template.value().render(
        {"user-shipped", "client-test", "shipped", "2026-11-26T00:00:00Z"});
    assert_true(pod.has_value());
    KubeClient client(admin_config(), fast_retries());
    const std::string pods = "/api/v1/namespaces/client-test/pods";
    ApiResponse created = client.request("POST", pods, pod.value().get());
    if (created.status != 201) {
        fail_msg("create answered %ld: %s", created.status, created.error.c_str());
    }
    bool ready = false;
    for (int i = 0; i < 100 && !ready; ++i) {
        ApiResponse current = client.request("GET", pods + "/user-shipped");
        json_t *conditions =
            json_object_get(json_object_get(current.body.get(), "status"), "conditions");
        std::size_t index;
        json_t *condition;
        json_array_foreach(conditions, index, condition) {
            ready |=
                std::strcmp(json_string_value(json_object_get(condition, "type")), "Ready") == 0 &&
                std::strcmp(json_string_value(json_object_get(condition, "status")), "True") == 0;
        }
        if (!ready) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }
    assert_true(ready);
    assert_int_equal(client.request("DELETE", pods + "/user-shipped?gracePeriodSeconds=0").status,
                     200);
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pods_round_trip_with_status_errors),
        cmocka_unit_test(server_errors_and_throttling_are_retried),
        cmocka_unit_test(tls_is_verified_and_tokens_are_checked),
        cmocka_unit_test(the_shipped_template_starts_a_ready_pod),
    };
    return cmocka_run_group_tests_name("kube_client", tests, ensure_namespace, nullptr);
}
