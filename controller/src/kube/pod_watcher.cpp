#include "kube/pod_watcher.hpp"

#include <algorithm>
#include <random>

#include "kube/pod_api.hpp"

namespace pod_router::controller {

namespace {

const char *string_at(const json_t *object, const char *key) {
    const json_t *value = json_object_get(object, key);
    return json_is_string(value) ? json_string_value(value) : nullptr;
}

} // namespace

PodWatcher::PodWatcher(std::unique_ptr<KubeClient> client, std::string pod_namespace,
                       std::chrono::seconds watch_timeout, PodObserver &observer, Logger &logger,
                       ControllerMetrics &metrics)
    : client_(std::move(client)), namespace_(std::move(pod_namespace)),
      watch_timeout_(std::max(watch_timeout, std::chrono::seconds(1))), observer_(observer),
      log_(logger, "watch"), metrics_(metrics) {
}

void PodWatcher::stop() noexcept {
    stop_.store(true);
    wake_.notify_all();
}

void PodWatcher::pause(std::chrono::milliseconds duration) {
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait_for(lock, duration, [this] { return stop_.load(); });
}

bool PodWatcher::list() {
    auto list = list_managed_pods(*client_, namespace_, metrics_);
    if (!list) {
        log_.warn("listing pods failed", {{"error", list.error().message}});
        return false;
    }
    resource_version_ = list.value().resource_version;
    observer_.observe_all(list.value().pods);
    log_.info("listed managed pods", {{"pods", static_cast<long>(list.value().pods.size())},
                                      {"resource_version", resource_version_}});
    return true;
}

bool PodWatcher::handle_line(std::string_view line, StreamEnd &verdict) {
    json_error_t error;
    JsonPtr event(json_loadb(line.data(), line.size(), 0, &error));
    const char *type = string_at(event.get(), "type");
    const json_t *object = json_object_get(event.get(), "object");
    if (type == nullptr || !json_is_object(object)) {
        log_.warn("ignoring a watch line that is not an event", {{"error", error.text}});
        return true;
    }
    const std::string kind = type;
    if (kind == "ERROR") {
        // A Status: 410 Gone means our resourceVersion is too old to resume.
        const json_t *code = json_object_get(object, "code");
        const char *message = string_at(object, "message");
        if (json_is_integer(code) && json_integer_value(code) == 410) {
            verdict = StreamEnd::kRelist;
        } else {
            verdict = StreamEnd::kBackoff;
        }
        log_.info(
            "watch ended by the server",
            {{"code", json_is_integer(code) ? static_cast<long>(json_integer_value(code)) : 0L},
             {"message", message != nullptr ? message : ""}});
        return false;
    }
    const char *version = string_at(json_object_get(object, "metadata"), "resourceVersion");
    if (version != nullptr) {
        resource_version_ = version;
    }
    if (kind == "BOOKMARK") {
        return true;
    }
    auto view = view_pod(object);
    if (!view) {
        return true;
    }
    if (kind == "DELETED") {
        observer_.observe_deleted(view->name);
    } else {
        observer_.observe(*view); // ADDED, MODIFIED
    }
    return true;
}

PodWatcher::StreamEnd PodWatcher::watch() {
    thread_local std::mt19937 random{std::random_device{}()};
    const auto shortest = static_cast<int>(watch_timeout_.count());
    const int timeout_seconds = std::uniform_int_distribution<int>(shortest, 2 * shortest)(random);
    const std::string path = "/api/v1/namespaces/" + namespace_ +
                             "/pods?watch=1&allowWatchBookmarks=true&labelSelector=" +
                             url_encode(managed_pods_selector()) +
                             "&resourceVersion=" + url_encode(resource_version_) +
                             "&timeoutSeconds=" + std::to_string(timeout_seconds);
    StreamEnd verdict = StreamEnd::kResume;
    healthy_.store(true);
    const ApiResponse response = client_->stream(
        path, std::chrono::seconds(timeout_seconds + 30),
        [this, &verdict](std::string_view line) { return handle_line(line, verdict); }, stop_);
    healthy_.store(false);
    if (response.status == 410) {
        return StreamEnd::kRelist;
    }
    if (response.status != 200 || !response.error.empty()) {
        metrics_.api_errors.add(std::to_string(response.status));
        if (!stop_.load()) {
            log_.warn("watch failed", {{"status", response.status}, {"error", response.error}});
        }
        return StreamEnd::kBackoff;
    }
    return verdict;
}

void PodWatcher::run() noexcept {
    std::mt19937_64 random{std::random_device{}()};
    int failures = 0;
    bool need_list = true;
    while (!stop_.load()) {
        try {
            if (need_list) {
                if (!list()) {
                    ++failures;
                } else {
                    failures = 0;
                    need_list = false;
                }
            }
            if (!need_list) {
                switch (watch()) {
                case StreamEnd::kResume:
                    metrics_.watch_restarts.add();
                    failures = 0;
                    continue;
                case StreamEnd::kRelist:
                    metrics_.watch_relists.add();
                    need_list = true;
                    continue;
                case StreamEnd::kBackoff:
                    metrics_.watch_restarts.add();
                    ++failures;
                    break;
                }
            }
            // 200 ms doubling to 30 s.
            pause(jittered_backoff(failures, std::chrono::milliseconds(200),
                                   std::chrono::milliseconds(30'000), random));
        } catch (const std::exception &error) {
            log_.error("watch loop error", {{"error", error.what()}});
            pause(std::chrono::seconds(1));
        }
    }
}

} // namespace pod_router::controller
