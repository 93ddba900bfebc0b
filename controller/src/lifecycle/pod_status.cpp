#include "lifecycle/pod_status.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string_view>

#include "pod_router/redis_schema.hpp"
#include "pod_template.hpp"

namespace pod_router::controller {

namespace {

const char *string_at(const json_t *object, const char *key) {
    const json_t *value = json_object_get(object, key);
    return json_is_string(value) ? json_string_value(value) : nullptr;
}

std::string string_or_empty(const json_t *object, const char *key) {
    const char *value = string_at(object, key);
    return value != nullptr ? value : "";
}

// A waiting reason that the kubelet keeps reporting until someone changes
// the pod: waiting longer would only hold the user's request to its timeout.
bool is_terminal_waiting_reason(std::string_view reason) {
    constexpr std::array<std::string_view, 7> kTerminal = {
        "ErrImagePull",     "ImagePullBackOff",           "InvalidImageName",
        "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError",
        "RunContainerError"};
    for (const std::string_view terminal : kTerminal) {
        if (reason == terminal) {
            return true;
        }
    }
    return false;
}

std::string with_message(const std::string &reason, const std::string &message) {
    constexpr std::size_t kMaxReason = 300; // it ends up in a 502 body and a log line
    std::string text = message.empty() ? reason : reason + ": " + message;
    for (char &c : text) {
        if (c == '\n' || c == '\r' || c == '\t') {
            c = ' ';
        }
    }
    if (text.size() > kMaxReason) {
        text.resize(kMaxReason);
    }
    return text;
}

int first_container_port(const json_t *spec) {
    const json_t *containers = json_object_get(spec, "containers");
    const json_t *first = json_array_get(containers, 0);
    const json_t *ports = json_object_get(first, "ports");
    const json_t *port = json_object_get(json_array_get(ports, 0), "containerPort");
    if (json_is_integer(port) && json_integer_value(port) > 0 &&
        json_integer_value(port) <= 65535) {
        return static_cast<int>(json_integer_value(port));
    }
    return 80;
}

// The condition of the given type, or null.
const json_t *condition_of(const json_t *status, std::string_view type) {
    const json_t *conditions = json_object_get(status, "conditions");
    std::size_t index;
    const json_t *condition;
    json_array_foreach(conditions, index, condition) {
        const char *kind = string_at(condition, "type");
        if (kind != nullptr && type == kind) {
            return condition;
        }
    }
    return nullptr;
}

void classify(const json_t *status, PodView &view) {
    std::size_t counted;
    const json_t *counted_container;
    json_array_foreach(json_object_get(status, "containerStatuses"), counted, counted_container) {
        const json_t *count = json_object_get(counted_container, "restartCount");
        if (json_is_integer(count) && json_integer_value(count) > 0) {
            view.restarts +=
                static_cast<int>(std::min<json_int_t>(json_integer_value(count), 1000));
        }
    }
    const std::string phase = string_or_empty(status, "phase");
    if (phase == "Failed" || phase == "Succeeded") {
        const std::string reason = string_or_empty(status, "reason");
        view.condition = PodCondition::kFailed;
        view.reason = with_message(reason.empty() ? "pod " + phase : reason,
                                   string_or_empty(status, "message"));
        return;
    }
    const json_t *statuses = json_object_get(status, "containerStatuses");
    std::size_t index;
    const json_t *container;
    json_array_foreach(statuses, index, container) {
        const json_t *waiting = json_object_get(json_object_get(container, "state"), "waiting");
        const std::string reason = string_or_empty(waiting, "reason");
        if (is_terminal_waiting_reason(reason)) {
            view.condition = PodCondition::kFailed;
            view.reason = with_message(reason, string_or_empty(waiting, "message"));
            return;
        }
    }
    const json_t *scheduled = condition_of(status, "PodScheduled");
    if (scheduled != nullptr && string_or_empty(scheduled, "status") == "False" &&
        string_or_empty(scheduled, "reason") == "Unschedulable") {
        view.condition = PodCondition::kFailed;
        view.reason = with_message("Unschedulable", string_or_empty(scheduled, "message"));
        return;
    }
    const json_t *ready = condition_of(status, "Ready");
    view.ip = string_or_empty(status, "podIP");
    if (ready != nullptr && string_or_empty(ready, "status") == "True" && !view.ip.empty()) {
        view.condition = PodCondition::kReady;
        return;
    }
    view.condition = PodCondition::kStarting;
    if (scheduled == nullptr || string_or_empty(scheduled, "status") != "True") {
        view.reason = "scheduling";
    } else if (json_array_size(statuses) == 0) {
        view.reason = "scheduled";
    } else {
        const json_t *first = json_array_get(statuses, 0);
        const json_t *waiting = json_object_get(json_object_get(first, "state"), "waiting");
        const std::string reason = string_or_empty(waiting, "reason");
        view.reason = reason.empty() ? "starting" : reason;
    }
}

} // namespace

std::string start_timeout_reason(std::chrono::milliseconds timeout, const std::string &stage) {
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout).count();
    std::string reason = "StartTimeout: not ready within " + std::to_string(seconds) + " s";
    if (!stage.empty()) {
        reason += " (" + stage + ")";
    }
    return reason;
}

std::int64_t wall_clock_ms() noexcept {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::optional<std::int64_t> parse_rfc3339_ms(const char *text) noexcept {
    if (text == nullptr) {
        return std::nullopt;
    }
    std::tm parts{};
    const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &parts);
    if (rest == nullptr) {
        return std::nullopt;
    }
    std::int64_t millis = 0;
    if (*rest == '.') {
        int digits = 0;
        for (++rest; *rest >= '0' && *rest <= '9'; ++rest, ++digits) {
            if (digits < 3) {
                millis = millis * 10 + (*rest - '0');
            }
        }
        for (; digits < 3; ++digits) {
            millis *= 10;
        }
    }
    if (*rest != 'Z') {
        return std::nullopt; // the API writes UTC
    }
    return static_cast<std::int64_t>(timegm(&parts)) * 1000 + millis;
}

std::string_view spawn_stage_of(const PodView &pod) noexcept {
    if (pod.condition == PodCondition::kReady) {
        return spawn_stage::kReady;
    }
    if (pod.condition != PodCondition::kStarting) {
        return spawn_stage::kFailed;
    }
    if (pod.reason == "scheduling") {
        return spawn_stage::kCreating;
    }
    if (pod.reason == "scheduled") {
        return spawn_stage::kScheduled;
    }
    if (pod.reason == "ContainerCreating" || pod.reason == "PodInitializing") {
        return spawn_stage::kPullingImage;
    }
    return spawn_stage::kStarting;
}

std::optional<PodView> view_pod(const json_t *pod) {
    const json_t *metadata = json_object_get(pod, "metadata");
    const char *name = string_at(metadata, "name");
    if (name == nullptr || *name == '\0') {
        return std::nullopt;
    }
    PodView view;
    view.name = name;
    view.uid = string_or_empty(metadata, "uid");
    view.resource_version = string_or_empty(metadata, "resourceVersion");
    view.identity = string_or_empty(json_object_get(metadata, "annotations"), kIdentityAnnotation);
    const json_t *labels = json_object_get(metadata, "labels");
    view.pool = string_or_empty(labels, kPoolLabel) == kPoolLabelValue;
    view.session = string_or_empty(labels, kSessionLabel);
    if (view.session.empty() && !view.pool) {
        view.session = view.name;
    }
    view.created_ms = parse_rfc3339_ms(string_at(metadata, "creationTimestamp")).value_or(0);
    view.port = first_container_port(json_object_get(pod, "spec"));
    if (string_at(metadata, "deletionTimestamp") != nullptr) {
        view.condition = PodCondition::kTerminating;
        view.reason = "deleted";
        return view;
    }
    classify(json_object_get(pod, "status"), view);
    return view;
}

} // namespace pod_router::controller
