#include "ops/ops_server.hpp"

#include <httplib.h>

namespace pod_router::controller {

OpsServer::OpsServer(ControllerMetrics &metrics, std::vector<ReadinessCheck> checks, Logger &logger)
    : metrics_(metrics), checks_(std::move(checks)), log_(logger, "ops"),
      server_(std::make_unique<httplib::Server>()) {
    server_->Get("/healthz", [](const httplib::Request &, httplib::Response &response) {
        response.set_content("ok\n", "text/plain");
    });
    server_->Get("/readyz", [this](const httplib::Request &, httplib::Response &response) {
        std::string body;
        bool ready = true;
        for (const ReadinessCheck &check : checks_) {
            const bool passing = check.passing();
            ready = ready && passing;
            body += (passing ? "[+] " : "[-] ") + check.name + (passing ? " ok\n" : " failed\n");
        }
        body += ready ? "ready\n" : "not ready\n";
        response.status = ready ? 200 : 503;
        response.set_content(body, "text/plain");
    });
    server_->Get("/metrics", [this](const httplib::Request &, httplib::Response &response) {
        response.set_content(metrics_.render(), "text/plain; version=0.0.4");
    });
    // Bounded like every other socket of ours: a slow scraper cannot hold a
    // thread of the pool.
    server_->set_read_timeout(5, 0);
    server_->set_write_timeout(5, 0);
    server_->set_keep_alive_timeout(5);
}

OpsServer::~OpsServer() {
    stop();
}

std::pair<int, std::string> OpsServer::start(const std::string &host, int port) {
    int bound = port;
    if (port == 0) {
        bound = server_->bind_to_any_port(host);
    } else if (!server_->bind_to_port(host, port)) {
        bound = -1;
    }
    if (bound <= 0) {
        return {0, "cannot listen on " + host + ":" + std::to_string(port)};
    }
    thread_ = std::thread([this] {
        if (!server_->listen_after_bind()) {
            log_.debug("ops endpoint stopped");
        }
    });
    return {bound, {}};
}

void OpsServer::stop() noexcept {
    if (server_) {
        server_->stop();
    }
    if (thread_.joinable()) {
        thread_.join();
    }
}

} // namespace pod_router::controller
