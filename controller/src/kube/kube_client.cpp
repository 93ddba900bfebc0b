#include "kube/kube_client.hpp"

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

namespace pod_router::controller {
namespace {

struct FreeText {
    void operator()(char *text) const noexcept { std::free(text); } // NOLINT: jansson's malloc
};

std::size_t collect_body(char *data, std::size_t size, std::size_t count, void *target) {
    static_cast<std::string *>(target)->append(data, size * count);
    return size * count;
}

std::size_t collect_retry_after(char *data, std::size_t size, std::size_t count, void *target) {
    const std::size_t length = size * count;
    static constexpr char kName[] = "retry-after:";
    if (length > sizeof kName - 1 && strncasecmp(data, kName, sizeof kName - 1) == 0) {
        std::string value(data + sizeof kName - 1, length - (sizeof kName - 1));
        *static_cast<std::optional<std::chrono::seconds> *>(target) =
            parse_retry_after(value.c_str() + value.find_first_not_of(' '));
    }
    return length;
}

bool add_header(Headers &headers, const std::string &line) {
    curl_slist *grown = curl_slist_append(headers.get(), line.c_str());
    if (grown == nullptr) {
        return false;
    }
    (void)headers.release();
    headers.reset(grown);
    return true;
}

curl_blob blob_of(const std::string &pem) {
    curl_blob blob{};
    blob.data = const_cast<char *>(pem.data()); // curl copies it (CURL_BLOB_COPY)
    blob.len = pem.size();
    blob.flags = CURL_BLOB_COPY;
    return blob;
}

} // namespace

std::string ApiResponse::reason() const {
    const json_t *reason = body ? json_object_get(body.get(), "reason") : nullptr;
    return json_is_string(reason) ? json_string_value(reason) : std::string();
}

KubeClient::KubeClient(KubeConfig config, ClientOptions options)
    : config_(std::move(config)), options_(std::move(options)),
      limiter_(options_.shared_limiter
                   ? options_.shared_limiter
                   : std::make_shared<RateLimiter>(options_.qps, options_.burst)),
      random_(std::random_device{}()), curl_(curl_easy_init()) {
}

std::string KubeClient::bearer_token() {
    if (config_.token_file.empty()) {
        return config_.token;
    }
    // A projected service-account token rotates: re-read it when it changes.
    struct stat info {};
    if (stat(config_.token_file.c_str(), &info) == 0 &&
        (info.st_mtim.tv_sec != token_mtime_.tv_sec ||
         info.st_mtim.tv_nsec != token_mtime_.tv_nsec || file_token_.empty())) {
        std::ifstream file(config_.token_file, std::ios::binary);
        std::string token((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
            token.pop_back();
        }
        if (!token.empty()) {
            file_token_ = std::move(token);
            token_mtime_ = info.st_mtim;
        }
    }
    return file_token_;
}

ApiResponse KubeClient::request(const std::string &method, const std::string &path,
                                const json_t *body, const std::string &content_type) {
    std::string payload;
    if (body != nullptr) {
        std::unique_ptr<char, FreeText> text(json_dumps(body, JSON_COMPACT));
        if (!text) {
            ApiResponse failed;
            failed.error = "cannot serialise the request body";
            return failed;
        }
        payload = text.get();
    }
    const std::string url = config_.server + path;
    ApiResponse response;
    for (int attempt_number = 1;; ++attempt_number) {
        const auto wait = limiter_->reserve(RateLimiter::Clock::now());
        if (wait.count() > 0) {
            std::this_thread::sleep_for(wait);
        }
        std::optional<std::chrono::seconds> retry_after;
        response = attempt(method, url, payload, content_type, retry_after);
        response.attempts = attempt_number;
        if (!RetryPolicy::is_retryable(response.status) ||
            attempt_number >= options_.retry.max_attempts) {
            return response;
        }
        std::this_thread::sleep_for(options_.retry.delay(attempt_number, retry_after, random_));
    }
}

bool KubeClient::prepare(CURL *curl, const std::string &method, const std::string &url,
                         const std::string &content_type, bool has_payload, Headers &headers,
                         std::string &error) {
    curl_easy_reset(curl);
    const std::string token = bearer_token();
    if (!add_header(headers, "Accept: application/json") ||
        (has_payload && !add_header(headers, "Content-Type: " + content_type)) ||
        (!token.empty() && !add_header(headers, "Authorization: Bearer " + token))) {
        error = "out of memory building request headers";
        return false;
    }
    curl_blob ca = blob_of(config_.ca_pem);
    curl_blob cert = blob_of(config_.client_cert_pem);
    curl_blob key = blob_of(config_.client_key_pem);

    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https,http");
    if (!config_.ca_pem.empty()) {
        curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca);
    }
    if (!config_.client_cert_pem.empty() && !config_.client_key_pem.empty()) {
        curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &key);
    }
    const long verify = config_.insecure_skip_tls_verify ? 0L : 1L;
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, verify);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, verify * 2);
    return true;
}

void KubeClient::decode(ApiResponse &response, const std::string &raw, const std::string &url) {
    json_error_t parse_error;
    response.body.reset(json_loadb(raw.data(), raw.size(), 0, &parse_error));
    if (!response.ok()) {
        const json_t *message =
            response.body ? json_object_get(response.body.get(), "message") : nullptr;
        response.error = json_is_string(message)
                             ? std::string(json_string_value(message))
                             : "HTTP " + std::to_string(response.status) + " from " + url;
    }
}

ApiResponse KubeClient::attempt(const std::string &method, const std::string &url,
                                const std::string &payload, const std::string &content_type,
                                std::optional<std::chrono::seconds> &retry_after) {
    ApiResponse response;
    CURL *curl = curl_.get();
    if (curl == nullptr) {
        response.error = "curl_easy_init() failed";
        return response;
    }
    Headers headers;
    if (!prepare(curl, method, url, content_type, !payload.empty(), headers, response.error)) {
        return response;
    }
    std::string raw;
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.request_timeout.count()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &raw);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect_retry_after);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &retry_after);
    if (!payload.empty()) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.data());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
    }
    const CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        // The URL, never the token, goes into the message.
        response.error = url + ": " + curl_easy_strerror(rc);
        return response;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
    decode(response, raw, url);
    return response;
}

namespace {

// The state of one watch stream while curl feeds it.
struct StreamState {
    const KubeClient::LineHandler *on_line;
    const std::atomic<bool> *stop;
    std::string pending;    // bytes after the last newline
    std::string error_body; // the whole body, when the status is not 200
    long status = 0;
    CURL *curl = nullptr;
    bool handler_stopped = false;
};

std::size_t stream_body(char *data, std::size_t size, std::size_t count, void *target) {
    auto *state = static_cast<StreamState *>(target);
    const std::size_t length = size * count;
    if (state->status == 0) {
        curl_easy_getinfo(state->curl, CURLINFO_RESPONSE_CODE, &state->status);
    }
    if (state->status != 200) {
        state->error_body.append(data, length);
        return length;
    }
    state->pending.append(data, length);
    // A watch event is one JSON object per line; one never spans beyond the
    // newline, so each complete line is handed over as it arrives.
    std::size_t start = 0;
    for (std::size_t end; (end = state->pending.find('\n', start)) != std::string::npos;
         start = end + 1) {
        if (end > start &&
            !(*state->on_line)(std::string_view(state->pending).substr(start, end - start))) {
            state->handler_stopped = true;
            return 0; // aborts the transfer
        }
    }
    state->pending.erase(0, start);
    constexpr std::size_t kMaxEventBytes = 16 << 20;
    if (state->pending.size() > kMaxEventBytes) {
        return 0; // a line this long is not a watch event
    }
    return length;
}

int stream_progress(void *target, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    const auto *state = static_cast<StreamState *>(target);
    return state->stop->load(std::memory_order_relaxed) ? 1 : 0;
}

} // namespace

ApiResponse KubeClient::stream(const std::string &path, std::chrono::seconds max_duration,
                               const LineHandler &on_line, const std::atomic<bool> &stop) {
    ApiResponse response;
    CURL *curl = curl_.get();
    if (curl == nullptr) {
        response.error = "curl_easy_init() failed";
        return response;
    }
    const auto wait = limiter_->reserve(RateLimiter::Clock::now());
    if (wait.count() > 0) {
        std::this_thread::sleep_for(wait);
    }
    const std::string url = config_.server + path;
    Headers headers;
    if (!prepare(curl, "GET", url, "", false, headers, response.error)) {
        return response;
    }
    StreamState state{&on_line, &stop, {}, {}, 0, curl, false};
    // The server ends the watch after timeoutSeconds; this is the backstop
    // for a connection that died without a word.
    const auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(max_duration);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(limit.count()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, stream_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, stream_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &state);
    const CURLcode rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
    if (state.status != 0 && state.status != 200) {
        decode(response, state.error_body, url);
        return response;
    }
    if (rc != CURLE_OK && !state.handler_stopped &&
        !(rc == CURLE_ABORTED_BY_CALLBACK && stop.load())) {
        response.error = url + ": " + curl_easy_strerror(rc);
    }
    return response;
}

} // namespace pod_router::controller
