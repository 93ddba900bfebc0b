// The pod template: YAML or JSON in, the Pod for one identity out.
#include <cstring>

#include "../support/cmocka_cpp.hpp"
#include "pod_template.hpp"

using namespace pod_router::controller;

namespace {

const char *string_at(json_t *root, std::initializer_list<const char *> path) {
    json_t *node = root;
    for (const char *key : path) {
        node = json_object_get(node, key);
    }
    return json_is_string(node) ? json_string_value(node) : nullptr;
}

constexpr const char *kMinimal = R"(
apiVersion: v1
kind: Pod
metadata:
  name: ignored
  namespace: ignored-too
  labels: {team: blue}
spec:
  containers:
  - name: web
    image: "nginx:1.25"
    ports: [{containerPort: 8080}]
    env: [{name: PORT, value: "8080"}, {name: DEBUG, value: "true"}]
)";

void renders_name_namespace_labels_and_annotations(void **) {
    auto parsed = PodTemplate::parse(kMinimal, "test");
    assert_true(parsed.has_value());
    assert_int_equal(parsed.value().port(), 8080);
    auto pod = parsed.value().render(
        {"user-alice---3bc51062973c458d", "users", "Alice", "2026-11-26T05:00:00Z"});
    assert_true(pod.has_value());
    json_t *root = pod.value().get();
    assert_string_equal(string_at(root, {"metadata", "name"}), "user-alice---3bc51062973c458d");
    assert_string_equal(string_at(root, {"metadata", "namespace"}), "users");
    assert_string_equal(string_at(root, {"metadata", "labels", "team"}), "blue");
    assert_string_equal(string_at(root, {"metadata", "labels", kManagedByLabel}), "pod-router");
    assert_int_equal(std::strlen(string_at(root, {"metadata", "labels", kIdentityHashLabel})), 32);
    assert_string_equal(string_at(root, {"metadata", "annotations", kIdentityAnnotation}), "Alice");
    assert_string_equal(string_at(root, {"metadata", "annotations", kCreatedAtAnnotation}),
                        "2026-11-26T05:00:00Z");
    // quoted YAML stays a string, plain numbers become numbers
    json_t *env = json_object_get(
        json_array_get(json_object_get(json_object_get(root, "spec"), "containers"), 0), "env");
    assert_true(json_is_string(json_object_get(json_array_get(env, 0), "value")));
    assert_true(json_is_string(json_object_get(json_array_get(env, 1), "value")));
    json_t *port = json_object_get(
        json_array_get(
            json_object_get(
                json_array_get(json_object_get(json_object_get(root, "spec"), "containers"), 0),
                "ports"),
            0),
        "containerPort");
    assert_true(json_is_integer(port));
}

void different_identities_get_different_hash_labels_and_the_template_is_untouched(void **) {
    auto parsed = PodTemplate::parse(kMinimal, "test").value();
    auto first = parsed.render({"user-a", "users", "a", "t"});
    auto second = parsed.render({"user-b", "users", "b", "t"});
    assert_string_not_equal(
        string_at(first.value().get(), {"metadata", "labels", kIdentityHashLabel}),
        string_at(second.value().get(), {"metadata", "labels", kIdentityHashLabel}));
    assert_string_equal(
        string_at(second.value().get(), {"metadata", "annotations", kIdentityAnnotation}), "b");
}

void a_pool_pod_has_the_pool_label_and_no_user(void **) {
    auto parsed = PodTemplate::parse(kMinimal, "test").value();
    auto pod = parsed.render({"user--pool-0a1b2c3d4e5f", "users", "", "t", true});
    assert_true(pod.has_value());
    json_t *root = pod.value().get();
    assert_string_equal(string_at(root, {"metadata", "labels", kPoolLabel}), "true");
    assert_string_equal(string_at(root, {"metadata", "labels", kManagedByLabel}), "pod-router");
    assert_string_equal(string_at(root, {"metadata", "labels", "team"}), "blue");
    json_t *labels = json_object_get(json_object_get(root, "metadata"), "labels");
    json_t *annotations = json_object_get(json_object_get(root, "metadata"), "annotations");
    assert_null(json_object_get(labels, kIdentityHashLabel));
    assert_null(json_object_get(annotations, kIdentityAnnotation));
    assert_null(json_object_get(labels, kSessionLabel));
}

void json_templates_work_too_and_the_default_port_is_80(void **) {
    auto parsed = PodTemplate::parse(
        R"({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c", "image": "i"}]}})",
        "json");
    assert_true(parsed.has_value());
    assert_int_equal(parsed.value().port(), 80);
}

void bad_templates_are_refused_with_the_reason(void **) {
    struct Case {
        const char *text;
        const char *message;
    };
    const Case cases[] = {
        {"kind: Deployment\napiVersion: apps/v1\n", "must be apiVersion v1, kind Pod"},
        {"apiVersion: v1\nkind: Pod\nspec: {containers: []}\n", "at least one container"},
        {"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - {name: c, image: i, ports: "
         "[{containerPort: http}]}\n",
         "containerPort must be a number"},
        {"apiVersion: v1\nkind: Pod\nspec: [unclosed\n", "pod template bad:"},
        {"- just\n- a list\n", "is not a Pod object"},
    };
    for (const Case &c : cases) {
        auto parsed = PodTemplate::parse(c.text, "bad");
        assert_false(parsed.has_value());
        if (!contains(parsed.error().message, c.message)) {
            fail_msg("'%s' lacks '%s'", parsed.error().message.c_str(), c.message);
        }
    }
    assert_false(PodTemplate::load("/nonexistent/template.yaml").has_value());
}

void the_shipped_template_is_safe_by_default(void **) {
    const char *path = std::getenv("POD_ROUTER_POD_TEMPLATE");
    assert_non_null(path);
    auto parsed = PodTemplate::load(path);
    if (!parsed) {
        fail_msg("%s", parsed.error().message.c_str());
    }
    assert_int_equal(parsed.value().port(), 8080);
    auto pod = parsed.value().render({"user-x", "users", "x", "t"});
    json_t *spec = json_object_get(pod.value().get(), "spec");
    assert_true(json_is_false(json_object_get(spec, "automountServiceAccountToken")));
    json_t *pod_security = json_object_get(spec, "securityContext");
    assert_true(json_is_true(json_object_get(pod_security, "runAsNonRoot")));
    assert_string_equal(string_at(pod_security, {"seccompProfile", "type"}), "RuntimeDefault");
    json_t *container = json_array_get(json_object_get(spec, "containers"), 0);
    json_t *security = json_object_get(container, "securityContext");
    assert_true(json_is_false(json_object_get(security, "allowPrivilegeEscalation")));
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_object_get(security, "capabilities"), "drop"), 0)),
                        "ALL");
    json_t *resources = json_object_get(container, "resources");
    assert_non_null(json_object_get(json_object_get(resources, "requests"), "memory"));
    assert_non_null(json_object_get(json_object_get(resources, "limits"), "cpu"));
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(renders_name_namespace_labels_and_annotations),
        cmocka_unit_test(
            different_identities_get_different_hash_labels_and_the_template_is_untouched),
        cmocka_unit_test(a_pool_pod_has_the_pool_label_and_no_user),
        cmocka_unit_test(json_templates_work_too_and_the_default_port_is_80),
        cmocka_unit_test(bad_templates_are_refused_with_the_reason),
        cmocka_unit_test(the_shipped_template_is_safe_by_default),
    };
    return cmocka_run_group_tests_name("pod_template", tests, nullptr, nullptr);
}
