// ONE watch over every managed pod (label app.kubernetes.io/managed-by=
// pod-router), as client-go's informers do it, rather than one per pod:
// list, then watch from the list's resourceVersion; resume from the last
// resourceVersion seen (bookmarks included) when the stream ends; list again
// when the server says that version is too old (410 Gone). What it sees goes
// to a PodObserver (the creation flow's cache).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kube/kube_client.hpp"
#include "lifecycle/pod_status.hpp"
#include "lifecycle/seams.hpp"
#include "ops/log.hpp"
#include "ops/metrics.hpp"

namespace pod_router::controller {

class PodWatcher {
  public:
    // Each watch asks the server to end it after a random time between
    // watch_timeout and twice that (client-go: 5 to 10 minutes), so that
    // replicas do not reconnect in step.
    PodWatcher(std::unique_ptr<KubeClient> client, std::string pod_namespace,
               std::chrono::seconds watch_timeout, PodObserver &observer, Logger &logger,
               ControllerMetrics &metrics);

    void run() noexcept; // the watch thread's body; returns after stop()
    void stop() noexcept;
    // Listed at least once and the stream is open (for /readyz).
    bool healthy() const noexcept { return healthy_.load(); }

  private:
    enum class StreamEnd { kResume, kRelist, kBackoff };

    bool list(); // sets resource_version_
    StreamEnd watch();
    bool handle_line(std::string_view line, StreamEnd &verdict);
    void pause(std::chrono::milliseconds duration);

    std::unique_ptr<KubeClient> client_;
    std::string namespace_;
    std::chrono::seconds watch_timeout_;
    PodObserver &observer_;
    ComponentLog log_;
    ControllerMetrics &metrics_;
    std::string resource_version_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> healthy_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
};

} // namespace pod_router::controller
