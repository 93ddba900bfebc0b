#include "run/controller.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "kube/pod_api.hpp"
#include "kube/pod_watcher.hpp"
#include "ops/ops_server.hpp"

namespace pod_router::controller {

namespace {

// The flow settles through the consumer, which is built after the flow
// (the consumer's handler feeds the flow): this closes the loop.
class ConsumerSettler final : public Settler {
  public:
    void attach(EventConsumer &consumer) noexcept { consumer_ = &consumer; }
    void settle(std::uint64_t connection, std::uint64_t tag, Settlement settlement) override {
        if (consumer_ != nullptr) {
            consumer_->settle(connection, tag, settlement);
        }
    }

  private:
    EventConsumer *consumer_ = nullptr;
};

// The one pod watch feeds the creation flow and the warm pool.
class FanOutObserver final : public PodObserver {
  public:
    FanOutObserver(PodObserver &first, PodObserver &second) : first_(first), second_(second) {}
    void observe(const PodView &pod) override {
        first_.observe(pod);
        second_.observe(pod);
    }
    void observe_deleted(const std::string &pod) override {
        first_.observe_deleted(pod);
        second_.observe_deleted(pod);
    }
    void observe_all(const std::vector<PodView> &pods) override {
        first_.observe_all(pods);
        second_.observe_all(pods);
    }

  private:
    PodObserver &first_;
    PodObserver &second_;
};

Expected<KubeConfig> load_kube_config(const RunSettings &settings) {
    if (settings.kubeconfig.empty()) {
        return load_in_cluster();
    }
    return load_kubeconfig(settings.kubeconfig, settings.kube_context);
}

} // namespace

int run_controller(const RunSettings &settings) {
    Logger logger(settings.log_level);
    ComponentLog log(logger, "main");
    ControllerMetrics metrics;

    // Signals are taken by sigwait() on this thread only: every thread
    // started below inherits the mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    // A closed socket is an error return, not a death.
    static_cast<void>(signal(SIGPIPE, SIG_IGN));

    auto kube_config = load_kube_config(settings);
    if (!kube_config) {
        log.error("cannot configure the Kubernetes client",
                  {{"error", kube_config.error().message}});
        return 78; // EX_CONFIG
    }
    auto pod_template = PodTemplate::load(settings.pod_template);
    if (!pod_template) {
        log.error("cannot load the pod template", {{"error", pod_template.error().message}});
        return 78;
    }
    LeaseSettings lease = settings.lease;
    if (lease.lease_namespace.empty()) {
        lease.lease_namespace = kube_config.value().namespace_name.empty()
                                    ? "pod-router-system"
                                    : kube_config.value().namespace_name;
    }
    ClientOptions client_options;
    client_options.qps = settings.kube_qps;
    client_options.burst = settings.kube_burst;
    const auto client = [&] {
        return std::make_unique<KubeClient>(kube_config.value(), client_options);
    };
    // The creation workers share one rate limit: --kube-qps bounds the
    // creations, however many workers make them. The recorder, the leader's
    // duties, the watch and the Lease keep limits of their own, so that a
    // class of new users never delays a reap, a watch or a Lease renewal.
    ClientOptions creator_options = client_options;
    creator_options.shared_limiter =
        std::make_shared<RateLimiter>(settings.kube_qps, settings.kube_burst);

    // One Redis connection and one API client per thread that uses them.
    const std::size_t workers = static_cast<std::size_t>(settings.concurrent_creations);
    std::vector<std::unique_ptr<SessionStore>> stores;
    for (std::size_t i = 0; i < workers + 2; ++i) {
        auto store = SessionStore::create(settings.redis);
        if (!store) {
            log.error("invalid Redis settings", {{"error", store.error().message}});
            return 78;
        }
        stores.push_back(std::move(store).value());
    }
    SessionStore &recorder_store = *stores[workers];
    SessionStore &duty_store = *stores[workers + 1];
    std::vector<std::unique_ptr<KubePodApi>> creator_apis;
    std::vector<CreatorSeams> creators;
    for (std::size_t i = 0; i < workers; ++i) {
        creator_apis.push_back(std::make_unique<KubePodApi>(
            std::make_unique<KubeClient>(kube_config.value(), creator_options),
            pod_template.value(), settings.pod_namespace, metrics));
        creators.push_back(CreatorSeams{*creator_apis.back(), *stores[i]});
    }
    KubePodApi recorder_api(client(), pod_template.value(), settings.pod_namespace, metrics);
    KubePodApi duty_api(client(), pod_template.value(), settings.pod_namespace, metrics);

    ConsumerSettler settler;
    CreationFlow flow(settings.flow, std::move(creators), recorder_api, recorder_store, settler,
                      logger, metrics);
    EventConsumer consumer(
        settings.amqp, [&flow](Delivery delivery) { flow.enqueue(std::move(delivery)); }, logger,
        metrics);
    settler.attach(consumer);
    // The pool is tended on the leader duties' thread, with that thread's
    // Redis connection and API client.
    WarmPool pool(settings.pool, settings.flow.naming, duty_store, duty_api, logger, metrics);
    FanOutObserver observers(flow, pool);
    PodWatcher watcher(client(), settings.pod_namespace,
                       std::chrono::duration_cast<std::chrono::seconds>(settings.watch_timeout),
                       observers, logger, metrics);
    // The elector retries every retry period by itself; a call that hangs
    // must not outlast the renew deadline, so one attempt, a short timeout.
    ClientOptions lease_options = client_options;
    lease_options.retry.max_attempts = 1;
    lease_options.request_timeout =
        std::min(std::chrono::milliseconds(5'000), settings.lease.renew_deadline / 2);
    lease_options.connect_timeout =
        std::min(lease_options.connect_timeout, lease_options.request_timeout);
    LeaseElector elector(std::make_unique<KubeClient>(kube_config.value(), lease_options), lease,
                         logger, metrics);
    LeaderDuties duties(
        settings.duties, duty_store, duty_api, [&elector] { return elector.is_leader(); }, logger,
        metrics, &pool);

    // Redis reachability for /readyz, probed at most once a second by a
    // store of its own (the probe runs on the endpoint's thread).
    auto probe_store = SessionStore::create(settings.redis);
    std::mutex probe_mutex;
    std::atomic<long long> probed_at{0};
    std::atomic<bool> redis_ok{false};
    std::vector<ReadinessCheck> checks = {
        {"rabbitmq", [&consumer] { return consumer.consuming(); }},
        {"redis",
         [&] {
             const std::lock_guard<std::mutex> lock(probe_mutex);
             const long long now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::steady_clock::now().time_since_epoch())
                                       .count();
             if (now - probed_at.load() >= 1000) {
                 redis_ok = static_cast<bool>(probe_store.value()->ping());
                 probed_at = now;
             }
             return redis_ok.load();
         }},
        {"pod-watch", [&watcher] { return watcher.healthy(); }},
    };
    OpsServer ops(metrics, std::move(checks), logger);
    const auto [port, listen_error] = ops.start(settings.listen_host, settings.listen_port);
    if (!listen_error.empty()) {
        log.error("cannot start the ops endpoint", {{"error", listen_error}});
        return 71; // EX_OSERR
    }

    std::vector<std::thread> threads;
    threads.emplace_back([&] { consumer.run(); });
    for (std::size_t worker = 0; worker < flow.creators(); ++worker) {
        threads.emplace_back([&flow, worker] { flow.run_creator(worker); });
    }
    threads.emplace_back([&] { flow.run_recorder(); });
    threads.emplace_back([&] { watcher.run(); });
    threads.emplace_back([&] { elector.run(); });
    threads.emplace_back([&] { duties.run(); });
    log.info("controller started",
             {{"version", POD_ROUTER_VERSION},
              {"listen", settings.listen_host + ":" + std::to_string(port)},
              {"namespace", settings.pod_namespace},
              {"lease", lease.lease_namespace + "/" + lease.name},
              {"identity", lease.identity},
              {"idle_timeout_s", static_cast<long>(settings.duties.idle_timeout.count() / 1000)},
              {"prefetch", settings.amqp.prefetch},
              {"concurrent_creations", settings.concurrent_creations},
              {"kube_qps", settings.kube_qps},
              {"kube_burst", settings.kube_burst},
              {"warm_pool_size", static_cast<long>(settings.pool.size)}});

    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    log.info("shutting down", {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"},
                               {"unsettled", static_cast<long>(flow.unsettled())}});

    // 1. No new events. 2. Let creations in progress record their outcome,
    // up to the timeout; what is left stays unacknowledged and the broker
    // hands it to another replica. 3. Stop everything, releasing the Lease.
    consumer.stop_consuming();
    const auto deadline = std::chrono::steady_clock::now() + settings.shutdown_timeout;
    while (flow.unsettled() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // Settlements queued by the flow reach the broker before it closes.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const std::size_t left = flow.unsettled();
    flow.stop();
    duties.stop();
    watcher.stop();
    elector.stop();
    consumer.stop();
    for (std::thread &thread : threads) {
        thread.join();
    }
    ops.stop();
    log.info("stopped", {{"left_for_redelivery", static_cast<long>(left)}});
    return 0;
}

} // namespace pod_router::controller
