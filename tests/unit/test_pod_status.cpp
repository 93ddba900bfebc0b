// What a Pod's status means for its session: Pod objects shaped like the
// kube-apiserver's, through view_pod, and the timestamps it parses.
#include <memory>
#include <string>

#include "../support/cmocka_cpp.hpp"
#include "lifecycle/pod_status.hpp"

using namespace pod_router::controller;

namespace {

struct JsonFree {
    void operator()(json_t *json) const noexcept { json_decref(json); }
};
using Json = std::unique_ptr<json_t, JsonFree>;

Json parse(const std::string &text) {
    json_error_t error;
    Json json(json_loads(text.c_str(), 0, &error));
    if (!json) {
        fail_msg("test JSON does not parse: %s (line %d)", error.text, error.line);
    }
    return json;
}

// A managed pod as the API returns it, with the given status object.
std::string pod_with_status(const std::string &status,
                            const std::string &ports = R"([{"containerPort": 8080}])") {
    return R"({
  "kind": "Pod",
  "apiVersion": "v1",
  "metadata": {
    "name": "user-alice---3bc51062973c458d",
    "namespace": "pod-router-users",
    "uid": "6f2a4c1e-58d3-4b7e-9a0c-1d2e3f405162",
    "resourceVersion": "48213",
    "creationTimestamp": "2026-11-26T08:00:00Z",
    "labels": {"app.kubernetes.io/managed-by": "pod-router"},
    "annotations": {"pod-router.io/identity": "Alice"}
  },
  "spec": {
    "containers": [{"name": "web", "image": "nginx:1.25", "ports": )" +
           ports + R"(}],
    "restartPolicy": "Always"
  },
  "status": )" +
           status + "\n}";
}

PodView view_of(const std::string &text) {
    const Json pod = parse(text);
    auto view = view_pod(pod.get());
    assert_true(view.has_value());
    return *view;
}

constexpr const char *kReadyStatus = R"({
    "phase": "Running",
    "conditions": [
      {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-26T08:00:00Z"},
      {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T08:00:04Z"},
      {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-26T08:00:04Z"},
      {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-26T08:00:00Z"}
    ],
    "hostIP": "10.0.0.7",
    "podIP": "10.244.1.17",
    "podIPs": [{"ip": "10.244.1.17"}],
    "startTime": "2026-11-26T08:00:00Z",
    "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0,
      "state": {"running": {"startedAt": "2026-11-26T08:00:03Z"}}}]
  })";

// A scheduled pod whose only container waits for the given reason.
std::string waiting_status(const std::string &reason, const std::string &message) {
    return R"({
    "phase": "Pending",
    "conditions": [
      {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
      {"type": "PodScheduled", "status": "True"}
    ],
    "hostIP": "10.0.0.7",
    "podIP": "10.244.1.17",
    "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0,
      "state": {"waiting": {"reason": ")" +
           reason + R"(", "message": ")" + message + R"("}}}]
  })";
}

void a_ready_pod_is_ready_with_its_address_and_port(void **) {
    const PodView view = view_of(pod_with_status(kReadyStatus));
    assert_int_equal(static_cast<int>(view.condition), static_cast<int>(PodCondition::kReady));
    assert_string_view_equal(view.name, "user-alice---3bc51062973c458d");
    assert_string_view_equal(view.uid, "6f2a4c1e-58d3-4b7e-9a0c-1d2e3f405162");
    assert_string_view_equal(view.resource_version, "48213");
    assert_string_view_equal(view.identity, "Alice");
    assert_string_view_equal(view.ip, "10.244.1.17");
    assert_int_equal(view.port, 8080);
    assert_int_equal(view.created_ms, 1795680000000);
}

void the_first_container_port_counts_and_80_is_the_default(void **) {
    const PodView two = view_of(pod_with_status(
        kReadyStatus, R"([{"containerPort": 3000}, {"containerPort": 9090, "name": "metrics"}])"));
    assert_int_equal(two.port, 3000);
    const PodView none = view_of(pod_with_status(kReadyStatus, "[]"));
    assert_int_equal(none.port, 80);
    const PodView out_of_range =
        view_of(pod_with_status(kReadyStatus, R"([{"containerPort": 70000}])"));
    assert_int_equal(out_of_range.port, 80);
}

void ready_needs_an_ip(void **) {
    const PodView view = view_of(pod_with_status(R"({
    "phase": "Running",
    "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
    "containerStatuses": [{"name": "web", "state": {"running": {}}}]
  })"));
    assert_int_equal(static_cast<int>(view.condition), static_cast<int>(PodCondition::kStarting));
}

void waiting_reasons_that_never_clear_are_failures(void **) {
    const struct {
        const char *reason;
        const char *message;
        const char *expected;
    } cases[] = {
        {"ErrImagePull",
         "rpc error: code = NotFound desc = failed to pull and unpack image "
         "\\\"docker.io/library/nope:1\\\"",
         "ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image "
         "\"docker.io/library/nope:1\""},
        {"ImagePullBackOff", "Back-off pulling image \\\"nope:1\\\"",
         "ImagePullBackOff: Back-off pulling image \"nope:1\""},
        {"CrashLoopBackOff",
         "back-off 40s restarting failed container=web pod=user-alice---3bc51062973c458d",
         "CrashLoopBackOff: back-off 40s restarting failed container=web "
         "pod=user-alice---3bc51062973c458d"},
        {"CreateContainerConfigError", "secret \\\"db\\\" not found",
         "CreateContainerConfigError: secret \"db\" not found"},
        {"CrashLoopBackOff", "", "CrashLoopBackOff"},
    };
    for (const auto &each : cases) {
        const PodView view = view_of(pod_with_status(waiting_status(each.reason, each.message)));
        assert_int_equal(static_cast<int>(view.condition), static_cast<int>(PodCondition::kFailed));
        assert_string_view_equal(view.reason, each.expected);
    }
}

void failure_reasons_are_one_line_of_at_most_300_bytes(void **) {
    const PodView multiline = view_of(pod_with_status(
        waiting_status("CreateContainerError", "first line\\nsecond\\r\\nthird\\tfield")));
    assert_string_view_equal(multiline.reason,
                             "CreateContainerError: first line second  third field");

    const std::string long_message(1000, 'x');
    const PodView long_one = view_of(pod_with_status(waiting_status("ErrImagePull", long_message)));
    assert_int_equal(long_one.reason.size(), 300);
    assert_true(long_one.reason.rfind("ErrImagePull: xxx", 0) == 0);
}

void a_failing_second_container_fails_the_pod(void **) {
    const PodView view = view_of(pod_with_status(R"({
    "phase": "Pending",
    "conditions": [{"type": "PodScheduled", "status": "True"}],
    "containerStatuses": [
      {"name": "web", "state": {"running": {}}},
      {"name": "sidecar", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
    ]
  })"));
    assert_int_equal(static_cast<int>(view.condition), static_cast<int>(PodCondition::kFailed));
    assert_string_view_equal(view.reason, "ImagePullBackOff");
}

void restarts_are_summed_over_containers(void **) {
    const PodView view = view_of(pod_with_status(R"({
    "phase": "Running",
    "podIP": "10.244.1.17",
    "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
    "containerStatuses": [
      {"name": "web", "restartCount": 2, "state": {"running": {}}},
      {"name": "sidecar", "restartCount": 1, "state": {"running": {}}}
    ]
  })"));
    assert_int_equal(static_cast<int>(view.condition), static_cast<int>(PodCondition::kReady));
    assert_int_equal(view.restarts, 3);
    assert_int_equal(view_of(pod_with_status(kReadyStatus)).restarts, 0);
}

void an_unschedulable_pod_has_failed(void **) {
    const PodView view = view_of(pod_with_status(R"({
    "phase": "Pending",
    "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
      "message": "0/3 nodes are available: 3 Insufficient memory.",
      "lastTransitionTime": "2026-11-26T08:00:00Z"}],
    "qosClass": "Burstable"
  })"));
    assert_int_equal(static_cast<int>(view.condition), static_cast<int>(PodCondition::kFailed));
    assert_string_view_equal(view.reason,
                             "Unschedulable: 0/3 nodes are available: 3 Insufficient memory.");

    // not scheduled yet, for another reason: still starting
    const PodView waiting = view_of(pod_with_status(R"({
    "phase": "Pending",
    "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulerError"}]
  })"));
    assert_int_equal(static_cast<int>(waiting.condition),
                     static_cast<int>(PodCondition::kStarting));
    assert_string_view_equal(waiting.reason, "scheduling");
}

void a_pod_that_ended_has_failed(void **) {
    const PodView evicted = view_of(pod_with_status(R"({
    "phase": "Failed", "reason": "Evicted",
    "message": "The node was low on resource: memory."
  })"));
    assert_int_equal(static_cast<int>(evicted.condition), static_cast<int>(PodCondition::kFailed));
    assert_string_view_equal(evicted.reason, "Evicted: The node was low on resource: memory.");

    const PodView failed = view_of(pod_with_status(R"({"phase": "Failed"})"));
    assert_int_equal(static_cast<int>(failed.condition), static_cast<int>(PodCondition::kFailed));
    assert_string_view_equal(failed.reason, "pod Failed");

    const PodView succeeded = view_of(pod_with_status(R"({"phase": "Succeeded",
      "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}]})"));
    assert_int_equal(static_cast<int>(succeeded.condition),
                     static_cast<int>(PodCondition::kFailed));
    assert_string_view_equal(succeeded.reason, "pod Succeeded");
}

void a_pod_being_deleted_is_terminating_even_when_ready(void **) {
    std::string text = pod_with_status(kReadyStatus);
    const std::string created = R"("creationTimestamp": "2026-11-26T08:00:00Z",)";
    text.replace(text.find(created), created.size(),
                 created + R"( "deletionTimestamp": "2026-11-26T09:00:00Z",)"
                           R"( "deletionGracePeriodSeconds": 30,)");
    const PodView view = view_of(text);
    assert_int_equal(static_cast<int>(view.condition),
                     static_cast<int>(PodCondition::kTerminating));
    assert_string_view_equal(view.identity, "Alice");
}

void a_starting_pod_names_its_stage(void **) {
    const PodView just_created = view_of(pod_with_status(R"({"phase": "Pending"})"));
    assert_int_equal(static_cast<int>(just_created.condition),
                     static_cast<int>(PodCondition::kStarting));
    assert_string_view_equal(just_created.reason, "scheduling");

    const PodView scheduled = view_of(pod_with_status(R"({"phase": "Pending",
      "conditions": [{"type": "PodScheduled", "status": "True"}]})"));
    assert_int_equal(static_cast<int>(scheduled.condition),
                     static_cast<int>(PodCondition::kStarting));
    assert_string_view_equal(scheduled.reason, "scheduled");

    const PodView creating = view_of(pod_with_status(waiting_status("ContainerCreating", "")));
    assert_int_equal(static_cast<int>(creating.condition),
                     static_cast<int>(PodCondition::kStarting));
    assert_string_view_equal(creating.reason, "ContainerCreating");

    const PodView not_ready = view_of(pod_with_status(R"({"phase": "Running",
      "podIP": "10.244.1.17",
      "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
      "containerStatuses": [{"name": "web", "state": {"running": {}}}]})"));
    assert_int_equal(static_cast<int>(not_ready.condition),
                     static_cast<int>(PodCondition::kStarting));
    assert_string_view_equal(not_ready.reason, "starting");

    // What the waiting user is shown for each.
    assert_string_view_equal(spawn_stage_of(just_created), "creating");
    assert_string_view_equal(spawn_stage_of(scheduled), "scheduled");
    assert_string_view_equal(spawn_stage_of(creating), "pulling image");
    assert_string_view_equal(spawn_stage_of(not_ready), "starting");
    assert_string_view_equal(spawn_stage_of(view_of(pod_with_status(kReadyStatus))), "ready");
    assert_string_view_equal(
        spawn_stage_of(view_of(pod_with_status(waiting_status("ErrImagePull", "no")))), "failed");
}

void a_pod_serves_the_session_its_labels_name(void **) {
    // A cold pod serves the session named after it.
    const PodView cold = view_of(pod_with_status(kReadyStatus));
    assert_false(cold.pool);
    assert_string_view_equal(cold.session, "user-alice---3bc51062973c458d");

    // A free pool pod serves nobody; a claimed, labelled one its user.
    const Json pool = parse(R"({"kind": "Pod", "metadata": {"name": "user--pool-0a1b2c3d4e5f",
      "labels": {"app.kubernetes.io/managed-by": "pod-router", "pod-router.io/pool": "true"}}})");
    const auto free = view_pod(pool.get());
    assert_true(free.has_value() && free->pool);
    assert_string_view_equal(free->session, "");
    json_object_set_new(json_object_get(json_object_get(pool.get(), "metadata"), "labels"),
                        "pod-router.io/session", json_string("user-alice"));
    const auto claimed = view_pod(pool.get());
    assert_true(claimed.has_value() && claimed->pool);
    assert_string_view_equal(claimed->session, "user-alice");
}

void a_pod_without_annotations_has_no_identity(void **) {
    const Json pod = parse(R"({"kind": "Pod", "metadata": {"name": "user-bob"}})");
    const auto view = view_pod(pod.get());
    assert_true(view.has_value());
    assert_string_view_equal(view->identity, "");
    assert_int_equal(view->created_ms, 0);
    assert_int_equal(view->port, 80);
    assert_int_equal(static_cast<int>(view->condition), static_cast<int>(PodCondition::kStarting));
}

void objects_without_a_name_are_not_pods(void **) {
    assert_false(view_pod(nullptr).has_value());
    for (const char *text : {
             R"([1, 2, 3])",
             R"({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "reason": "Expired", "code": 410})",
             R"({"kind": "Pod", "metadata": {"name": ""}})",
             R"({"kind": "Pod", "metadata": {"name": 7}})",
             R"({"kind": "Pod", "metadata": "user-alice"})",
         }) {
        const Json json = parse(text);
        if (view_pod(json.get()).has_value()) {
            fail_msg("taken for a pod: %s", text);
        }
    }
}

void rfc3339_in_utc_with_or_without_fractions(void **) {
    assert_int_equal(*parse_rfc3339_ms("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(*parse_rfc3339_ms("2026-11-26T08:00:00Z"), 1795680000000);
    assert_int_equal(*parse_rfc3339_ms("2026-11-26T08:00:00.5Z"), 1795680000500);
    assert_int_equal(*parse_rfc3339_ms("2026-11-26T08:00:00.123Z"), 1795680000123);
    // microseconds (MicroTime, as in Leases and Events) are truncated to ms
    assert_int_equal(*parse_rfc3339_ms("2026-11-26T08:00:00.123456Z"), 1795680000123);
    assert_int_equal(*parse_rfc3339_ms("2000-02-29T23:59:59Z"), 951868799000);
}

void rfc3339_refuses_offsets_and_garbage(void **) {
    for (const char *text : {"2026-11-26T08:00:00+01:00", "2026-11-26T08:00:00-05:00",
                             "2026-11-26T08:00:00", "2026-11-26T08:00:00.123", "2026-11-26", "",
                             "yesterday", "2026-11-26 08:00:00Z", "2026-13-26T08:00:00Z"}) {
        const auto parsed = parse_rfc3339_ms(text);
        if (parsed.has_value()) {
            fail_msg("accepted \"%s\" as %lld", text, static_cast<long long>(*parsed));
        }
    }
    assert_false(parse_rfc3339_ms(nullptr).has_value());
}

} // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_ready_pod_is_ready_with_its_address_and_port),
        cmocka_unit_test(the_first_container_port_counts_and_80_is_the_default),
        cmocka_unit_test(ready_needs_an_ip),
        cmocka_unit_test(waiting_reasons_that_never_clear_are_failures),
        cmocka_unit_test(failure_reasons_are_one_line_of_at_most_300_bytes),
        cmocka_unit_test(a_failing_second_container_fails_the_pod),
        cmocka_unit_test(restarts_are_summed_over_containers),
        cmocka_unit_test(an_unschedulable_pod_has_failed),
        cmocka_unit_test(a_pod_that_ended_has_failed),
        cmocka_unit_test(a_pod_being_deleted_is_terminating_even_when_ready),
        cmocka_unit_test(a_starting_pod_names_its_stage),
        cmocka_unit_test(a_pod_serves_the_session_its_labels_name),
        cmocka_unit_test(a_pod_without_annotations_has_no_identity),
        cmocka_unit_test(objects_without_a_name_are_not_pods),
        cmocka_unit_test(rfc3339_in_utc_with_or_without_fractions),
        cmocka_unit_test(rfc3339_refuses_offsets_and_garbage),
    };
    return cmocka_run_group_tests_name("pod_status", tests, nullptr, nullptr);
}
