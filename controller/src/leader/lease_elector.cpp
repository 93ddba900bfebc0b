#include "leader/lease_elector.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <exception>

namespace pod_router::controller {
namespace {

// metav1.MicroTime as the apiserver parses it: exactly six fractional
// digits, UTC ("2026-11-26T08:00:00.000000Z").
std::string micro_time_now() {
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    const auto seconds = static_cast<std::time_t>(micros / 1'000'000);
    std::tm utc{};
    if (gmtime_r(&seconds, &utc) == nullptr) {
        return {};
    }
    char text[64];
    const int length =
        std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ",
                      utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                      utc.tm_sec, static_cast<long long>(micros % 1'000'000));
    return length > 0 && static_cast<std::size_t>(length) < sizeof text ? std::string(text)
                                                                        : std::string();
}

std::string string_at(const json_t *object, const char *key) {
    const char *value = json_string_value(json_object_get(object, key));
    return value != nullptr ? std::string(value) : std::string();
}

// leaseDurationSeconds is whole seconds: round up, so that we never
// promise other replicas less than we wait ourselves.
json_int_t whole_seconds(std::chrono::milliseconds duration) {
    return std::max<json_int_t>(1, (duration.count() + 999) / 1000);
}

bool set(json_t *object, const char *key, json_t *value) {
    return json_object_set_new(object, key, value) == 0; // steals value, even on failure
}

} // namespace

LeaseElector::LeaseElector(std::unique_ptr<KubeClient> client, LeaseSettings settings,
                           Logger &logger, ControllerMetrics &metrics)
    : client_(std::move(client)), settings_(std::move(settings)), log_(logger, "leader"),
      metrics_(metrics) {
}

std::string LeaseElector::lease_path() const {
    return "/apis/coordination.k8s.io/v1/namespaces/" + settings_.lease_namespace + "/leases/" +
           settings_.name;
}

void LeaseElector::run() noexcept {
    if (settings_.identity.empty()) {
        // An empty holder means "released": an elector without an identity
        // would mistake every released Lease for its own.
        log_.error("no identity: not taking part in the election", {{"lease", settings_.name}});
        while (wait_for_next_round()) {
        }
        return;
    }
    log_.info("taking part in the election", {{"identity", settings_.identity},
                                              {"namespace", settings_.lease_namespace},
                                              {"lease", settings_.name}});
    do {
        try {
            if (try_acquire_or_renew() && !last_problem_.empty()) {
                log_.info("the Lease API answers again",
                          {{"identity", settings_.identity}, {"lease", settings_.name}});
                last_problem_.clear();
            }
            if (leader_.load(std::memory_order_relaxed) && Clock::now() >= renew_deadline_) {
                step_down("not renewed within the renew deadline");
            }
        } catch (const std::exception &error) {
            log_.error("election round failed", {{"error", error.what()}});
        } catch (...) {
            log_.error("election round failed", {{"error", "unknown exception"}});
        }
    } while (wait_for_next_round());
    try {
        release();
    } catch (...) {
        log_.error("releasing the Lease failed", {{"error", "exception"}});
    }
    if (leader_.exchange(false, std::memory_order_acq_rel)) {
        metrics_.leader.set(0);
    }
}

void LeaseElector::stop() noexcept {
    try {
        const std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    } catch (...) {
        // A mutex that cannot be locked leaves nothing to do but wake the loop.
    }
    wake_.notify_all();
}

bool LeaseElector::wait_for_next_round() {
    auto next = Clock::now() + settings_.retry_period;
    if (leader_.load(std::memory_order_relaxed)) {
        // Step down on time even when renewals keep failing.
        next = std::min(next, renew_deadline_);
    }
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait_until(lock, next, [this] { return stopping_; });
    return !stopping_;
}

// One round, as client-go's tryAcquireOrRenew: read the Lease, then create
// it, renew it, take it over or leave it. Every write carries the
// resourceVersion read, so of two candidates at most one succeeds.
bool LeaseElector::try_acquire_or_renew() {
    ApiResponse read = client_->request("GET", lease_path());
    if (read.status == 404) {
        return create();
    }
    if (!read.ok() || !json_is_object(read.body.get())) {
        api_failed("read", read);
        return false;
    }
    observe(std::move(read.body), false);

    if (observed_.holder == settings_.identity) {
        return write(Write::kRenew);
    }
    if (leader_.load(std::memory_order_relaxed)) {
        step_down("the Lease names another holder");
    }
    const bool expired = Clock::now() - observed_.changed_at >= observed_.duration;
    if (!observed_.holder.empty() && !expired) {
        return true; // a live leader: follow it
    }
    return write(Write::kTakeOver);
}

bool LeaseElector::create() {
    const std::string now = micro_time_now();
    JsonPtr lease(json_pack(
        "{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:I, s:s, s:s, s:i}}", "apiVersion",
        "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", settings_.name.c_str(),
        "namespace", settings_.lease_namespace.c_str(), "spec", "holderIdentity",
        settings_.identity.c_str(), "leaseDurationSeconds", whole_seconds(settings_.lease_duration),
        "acquireTime", now.c_str(), "renewTime", now.c_str(), "leaseTransitions", 0));
    if (!lease || now.empty()) {
        log_.error("cannot build the Lease", {{"lease", settings_.name}});
        return false;
    }
    const auto sent = Clock::now();
    ApiResponse created = client_->request(
        "POST", "/apis/coordination.k8s.io/v1/namespaces/" + settings_.lease_namespace + "/leases",
        lease.get());
    if (!created.ok() || !json_is_object(created.body.get())) {
        api_failed("create", created); // 409: another candidate created it first
        return false;
    }
    observe(std::move(created.body), true);
    renewed(sent);
    return true;
}

bool LeaseElector::write(Write kind) {
    if (!lease_) {
        return false;
    }
    const std::string now = micro_time_now();
    JsonPtr lease(json_deep_copy(lease_.get()));
    json_t *spec = lease ? json_object_get(lease.get(), "spec") : nullptr;
    if (lease && !json_is_object(spec)) {
        spec = json_object();
        if (!set(lease.get(), "spec", spec)) {
            spec = nullptr;
        }
    }
    // metadata.resourceVersion stays the one read: the precondition.
    bool built =
        spec != nullptr && !now.empty() && set(spec, "renewTime", json_string(now.c_str()));
    switch (kind) {
    case Write::kRenew:
        built = built && set(spec, "leaseDurationSeconds",
                             json_integer(whole_seconds(settings_.lease_duration)));
        break;
    case Write::kTakeOver: {
        const json_int_t transitions =
            json_integer_value(json_object_get(spec, "leaseTransitions"));
        built = built && set(spec, "holderIdentity", json_string(settings_.identity.c_str())) &&
                set(spec, "leaseDurationSeconds",
                    json_integer(whole_seconds(settings_.lease_duration))) &&
                set(spec, "acquireTime", json_string(now.c_str())) &&
                set(spec, "leaseTransitions", json_integer(transitions + 1));
        break;
    }
    case Write::kRelease:
        // Another replica takes an empty holder at once.
        built = built && set(spec, "holderIdentity", json_string("")) &&
                set(spec, "leaseDurationSeconds", json_integer(1));
        break;
    }
    if (!built) {
        log_.error("cannot build the Lease", {{"lease", settings_.name}});
        return false;
    }

    const auto sent = Clock::now();
    ApiResponse written = client_->request("PUT", lease_path(), lease.get());
    if (!written.ok() || !json_is_object(written.body.get())) {
        // 409: someone wrote the Lease since we read it; the next round reads again.
        api_failed(kind == Write::kRenew      ? "renew"
                   : kind == Write::kTakeOver ? "take over"
                                              : "release",
                   written);
        return false;
    }
    observe(std::move(written.body), true);
    if (kind != Write::kRelease) {
        renewed(sent);
    }
    return true;
}

void LeaseElector::release() {
    if (settings_.identity.empty() || observed_.holder != settings_.identity) {
        return;
    }
    // Stop acting as leader before anyone else can start.
    if (leader_.exchange(false, std::memory_order_acq_rel)) {
        metrics_.leader.set(0);
    }
    if (write(Write::kRelease)) {
        log_.info("released the Lease",
                  {{"identity", settings_.identity}, {"lease", settings_.name}});
    } else {
        log_.warn("could not release the Lease: another replica takes over when it expires",
                  {{"identity", settings_.identity}, {"lease", settings_.name}});
    }
}

void LeaseElector::observe(JsonPtr lease, bool ours) {
    const json_t *spec = json_object_get(lease.get(), "spec");
    Observed seen;
    seen.holder = string_at(spec, "holderIdentity");
    seen.renew_time = string_at(spec, "renewTime");
    seen.resource_version = string_at(json_object_get(lease.get(), "metadata"), "resourceVersion");
    const json_int_t seconds = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
    // The holder's own promise, as client-go reads it; ours if it made none.
    seen.duration = seconds > 0 ? std::chrono::seconds(seconds)
                                : std::chrono::duration_cast<std::chrono::seconds>(
                                      settings_.lease_duration + std::chrono::milliseconds(999));
    const bool changed = seen.holder != observed_.holder ||
                         seen.renew_time != observed_.renew_time ||
                         seen.resource_version != observed_.resource_version;
    if (changed) {
        if (!ours && seen.holder != observed_.holder && seen.holder != settings_.identity) {
            log_.info(seen.holder.empty() ? "the Lease was released" : "the Lease has a new holder",
                      {{"identity", settings_.identity}, {"holder", seen.holder}});
        }
        seen.changed_at = Clock::now();
    } else {
        seen.changed_at = observed_.changed_at;
    }
    observed_ = std::move(seen);
    lease_ = std::move(lease);
}

void LeaseElector::renewed(Clock::time_point sent) {
    // Measured from before the request: the apiserver wrote the new
    // renewTime later, so every other replica's wait starts later than ours.
    renew_deadline_ = sent + settings_.renew_deadline;
    leader_until_.store(renew_deadline_.time_since_epoch().count(), std::memory_order_release);
    if (!leader_.exchange(true, std::memory_order_acq_rel)) {
        metrics_.leader.set(1);
        metrics_.leader_transitions.add();
        log_.info("became leader", {{"identity", settings_.identity}, {"lease", settings_.name}});
    }
}

void LeaseElector::step_down(std::string_view reason) {
    if (leader_.exchange(false, std::memory_order_acq_rel)) {
        metrics_.leader.set(0);
        log_.warn(
            "lost leadership",
            {{"identity", settings_.identity}, {"lease", settings_.name}, {"reason", reason}});
    }
}

void LeaseElector::api_failed(std::string_view operation, const ApiResponse &response) {
    metrics_.api_errors.add(std::to_string(response.status));
    // One line per kind of failure, not one every retry period.
    std::string problem(operation);
    problem += ' ';
    problem += std::to_string(response.status);
    if (problem == last_problem_) {
        return;
    }
    if (response.status == 409) {
        // A lost race, not an outage: the next round reads the winner's write.
        log_.info("another replica wrote the Lease first",
                  {{"identity", settings_.identity}, {"operation", operation}});
        return;
    }
    last_problem_ = std::move(problem);
    const std::string reason = response.reason();
    log_.warn("Lease API call failed", {{"identity", settings_.identity},
                                        {"operation", operation},
                                        {"status", response.status},
                                        {"reason", reason},
                                        {"error", response.error}});
}

} // namespace pod_router::controller
