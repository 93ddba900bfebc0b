// The operator's endpoint (cpp-httplib, on its own threads):
//   GET /healthz  200 while the process's loops are alive (liveness)
//   GET /readyz   200 when consuming from RabbitMQ, Redis answers and the
//                 pod watch is open; 503 with the failing checks otherwise
//   GET /metrics  Prometheus text format
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ops/log.hpp"
#include "ops/metrics.hpp"

namespace httplib {
class Server;
}

namespace pod_router::controller {

struct ReadinessCheck {
    std::string name;
    std::function<bool()> passing;
};

class OpsServer {
  public:
    OpsServer(ControllerMetrics &metrics, std::vector<ReadinessCheck> checks, Logger &logger);
    ~OpsServer();
    OpsServer(const OpsServer &) = delete;
    OpsServer &operator=(const OpsServer &) = delete;

    // Binds host:port (port 0: any free port) and serves on a thread of its
    // own. Returns the bound port, or an error message.
    std::pair<int, std::string> start(const std::string &host, int port);
    void stop() noexcept;

  private:
    ControllerMetrics &metrics_;
    std::vector<ReadinessCheck> checks_;
    ComponentLog log_;
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
};

} // namespace pod_router::controller
