// What a managed Pod's status means for its session: still starting, ready
// to serve (with its address), failed for good (with a reason a user can
// read), or going away. Pure functions over the API's JSON, so that every
// status a real cluster reports can be tested without one.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <jansson.h>

namespace pod_router::controller {

enum class PodCondition {
    kStarting,    // scheduled or not, pulling, creating containers, not Ready yet
    kReady,       // Ready condition True and an IP: route to it
    kFailed,      // will not become Ready without help: ErrImagePull, CrashLoopBackOff, ...
    kTerminating, // deletionTimestamp set: it is going away
};

struct PodView {
    std::string name;
    std::string uid;
    std::string identity; // the pod-router.io/identity annotation
    // The session it serves: the pod-router.io/session label of a claimed
    // pool pod, else the pod's own name; empty for a free pool pod.
    std::string session;
    bool pool = false; // carries the pool label: created for the warm pool
    std::string resource_version;
    PodCondition condition = PodCondition::kStarting;
    std::string ip;
    int port = 80;               // first container's first containerPort
    std::string reason;          // kFailed: why, one line; kStarting: the stage
    std::int64_t created_ms = 0; // metadata.creationTimestamp, 0 if absent
    int restarts = 0;            // restartCount summed over its containers
};

// nullopt when the object is not a Pod with a name.
std::optional<PodView> view_pod(const json_t *pod);

// The spawn stage (redis_schema.hpp) a starting pod has reached, for the
// waiting user: "creating" until it is scheduled, then "scheduled",
// "pulling image" while its containers are created (the kubelet reports
// ContainerCreating while it pulls), "starting" once they run.
std::string_view spawn_stage_of(const PodView &pod) noexcept;

// The failure reason of a pod not Ready within the start timeout, with the
// stage it was stuck at: "StartTimeout: not ready within 120 s (ErrImagePull)".
std::string start_timeout_reason(std::chrono::milliseconds timeout, const std::string &stage);

// Now, in ms since the epoch: the clock pod timestamps and events use.
std::int64_t wall_clock_ms() noexcept;

// "2026-11-26T08:00:00Z" (and fractional seconds) to ms since the epoch.
std::optional<std::int64_t> parse_rfc3339_ms(const char *text) noexcept;

} // namespace pod_router::controller
