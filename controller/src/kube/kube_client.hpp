// A Kubernetes API client over libcurl: TLS verified against the
// kubeconfig's CA, bearer token (re-read when its file changes), a timeout
// on every call, retries with backoff and jitter on 429/5xx/transport errors
// honouring Retry-After, and client-go's client-side rate limit (its own, or
// one shared with other clients). JSON bodies through jansson. One client per
// thread: a curl handle is not shareable.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include <curl/curl.h>
#include <jansson.h>

#include "kube/kube_config.hpp"
#include "kube/rate_limiter.hpp"
#include "kube/retry_policy.hpp"

namespace pod_router::controller {

struct JsonDecref {
    void operator()(json_t *json) const noexcept { json_decref(json); }
};
using JsonPtr = std::unique_ptr<json_t, JsonDecref>;

struct CurlCleanup {
    void operator()(CURL *curl) const noexcept { curl_easy_cleanup(curl); }
};
struct SlistFree {
    void operator()(curl_slist *list) const noexcept { curl_slist_free_all(list); }
};
using Headers = std::unique_ptr<curl_slist, SlistFree>;

struct ClientOptions {
    double qps = 5.0; // client-go's defaults
    int burst = 10;
    // When set, the client takes its tokens from this limiter, which other
    // clients share, and qps and burst above are not used.
    std::shared_ptr<RateLimiter> shared_limiter;
    std::chrono::milliseconds connect_timeout{5'000};
    std::chrono::milliseconds request_timeout{30'000};
    RetryPolicy retry;
};

struct ApiResponse {
    long status = 0;   // HTTP status; 0 when no answer came
    JsonPtr body;      // the decoded body, when it was JSON
    std::string error; // transport error, or the Status message
    int attempts = 0;

    bool ok() const noexcept { return status >= 200 && status < 300; }
    // kube-apiserver's Status.reason (AlreadyExists, NotFound, Conflict, ...)
    std::string reason() const;
};

class KubeClient {
  public:
    KubeClient(KubeConfig config, ClientOptions options = {});

    // method: GET, POST, PUT, PATCH, DELETE; path: "/api/v1/..."; body may be
    // null. Retries what is worth retrying; returns the last answer.
    ApiResponse request(const std::string &method, const std::string &path,
                        const json_t *body = nullptr,
                        const std::string &content_type = "application/json");

    // A streaming GET (a watch): each complete line of the body goes to
    // on_line as it arrives; returning false from it ends the stream. Ends
    // when the server closes it, after max_duration, or within a second of
    // stop becoming true. Not retried: the caller decides (relist, resume).
    // status is the HTTP status (0: none came); error is set when the stream
    // broke rather than ended.
    using LineHandler = std::function<bool(std::string_view line)>;
    ApiResponse stream(const std::string &path, std::chrono::seconds max_duration,
                       const LineHandler &on_line, const std::atomic<bool> &stop);

    const KubeConfig &config() const noexcept { return config_; }

  private:
    ApiResponse attempt(const std::string &method, const std::string &url,
                        const std::string &payload, const std::string &content_type,
                        std::optional<std::chrono::seconds> &retry_after);
    bool prepare(CURL *curl, const std::string &method, const std::string &url,
                 const std::string &content_type, bool has_payload, Headers &headers,
                 std::string &error);
    static void decode(ApiResponse &response, const std::string &raw, const std::string &url);
    std::string bearer_token();

    KubeConfig config_;
    ClientOptions options_;
    std::shared_ptr<RateLimiter> limiter_; // never null
    std::mt19937_64 random_;
    std::unique_ptr<CURL, CurlCleanup> curl_;
    std::string file_token_;
    struct timespec token_mtime_ {};
};

} // namespace pod_router::controller
