// A value or an error, without exceptions crossing API boundaries.
//
// C++17 has no std::expected; this is the small subset the core needs. Every
// fallible core function returns one of these so that callers (the nginx glue
// through the C API, the controller directly) must look at the error before
// they can reach the value.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace pod_router {

enum class ErrorCode {
    kInvalidIdentity,    // the identity breaks the name rule (empty, too long, control bytes)
    kInvalidConfig,      // an operator-supplied setting (prefix, limit) is unusable
    kMalformedEvent,     // a creation event is not the JSON we expect
    kUnsupportedVersion, // a creation event of a version this build does not speak
    kInternal,           // a library failed (allocation, OpenSSL, jansson)
    kUnavailable,        // a server (Redis, RabbitMQ, the Kubernetes API) gave no usable answer
};

struct Error {
    ErrorCode code;
    std::string message; // one line, safe to log: never echoes raw input bytes
};

template <typename T> class Expected {
  public:
    Expected(T value) : storage_(std::move(value)) {} // NOLINT(google-explicit-constructor)
    Expected(Error error) : storage_(std::move(error)) {}

    bool has_value() const noexcept { return std::holds_alternative<T>(storage_); }
    explicit operator bool() const noexcept { return has_value(); }

    const T &value() const & {
        assert(has_value());
        return std::get<T>(storage_);
    }
    T &&value() && {
        assert(has_value());
        return std::get<T>(std::move(storage_));
    }
    const Error &error() const {
        assert(!has_value());
        return std::get<Error>(storage_);
    }

  private:
    std::variant<T, Error> storage_;
};

// For operations that yield nothing but may fail.
struct Ok {};
using Status = Expected<Ok>;

} // namespace pod_router
