#include "ops/log.hpp"

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <memory>

#include <jansson.h>

namespace pod_router::controller {

namespace {

struct JsonFree {
    void operator()(json_t *json) const noexcept { json_decref(json); }
};
struct CharFree {
    void operator()(char *text) const noexcept { std::free(text); } // NOLINT
};

std::string timestamp_now() {
    using namespace std::chrono;
    const auto now = system_clock::now();
    const auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
    const std::time_t seconds = system_clock::to_time_t(now);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[32];
    const std::size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    char full[48];
    static_cast<void>(std::snprintf(full, sizeof full, "%.*s.%03dZ", static_cast<int>(length), text,
                                    static_cast<int>(millis)));
    return full;
}

// jansson needs valid UTF-8; an identity in a log field may not be (it is
// validated, but a log line must never be the thing that fails).
json_t *string_value(std::string_view text) {
    json_t *value = json_stringn(text.data(), text.size());
    if (value != nullptr) {
        return value;
    }
    std::string escaped;
    for (const unsigned char byte : text) {
        if (byte < 0x80) {
            escaped += static_cast<char>(byte);
        } else {
            char hex[8];
            static_cast<void>(std::snprintf(hex, sizeof hex, "\\x%02x", byte));
            escaped += hex;
        }
    }
    return json_stringn(escaped.data(), escaped.size());
}

} // namespace

std::optional<LogLevel> parse_log_level(std::string_view name) noexcept {
    if (name == "debug") {
        return LogLevel::kDebug;
    }
    if (name == "info") {
        return LogLevel::kInfo;
    }
    if (name == "warn" || name == "warning") {
        return LogLevel::kWarn;
    }
    if (name == "error") {
        return LogLevel::kError;
    }
    return std::nullopt;
}

std::string_view log_level_name(LogLevel level) noexcept {
    switch (level) {
    case LogLevel::kDebug:
        return "debug";
    case LogLevel::kInfo:
        return "info";
    case LogLevel::kWarn:
        return "warn";
    case LogLevel::kError:
        return "error";
    }
    return "info";
}

void Logger::log(LogLevel level, std::string_view component, std::string_view message,
                 LogFields fields) noexcept {
    if (!enabled(level)) {
        return;
    }
    try {
        std::unique_ptr<json_t, JsonFree> line(json_object());
        if (!line) {
            return;
        }
        json_object_set_new(line.get(), "ts", string_value(timestamp_now()));
        json_object_set_new(line.get(), "level", string_value(log_level_name(level)));
        json_object_set_new(line.get(), "component", string_value(component));
        json_object_set_new(line.get(), "msg", string_value(message));
        for (const LogField &field : fields) {
            const std::string key(field.key);
            json_t *value = std::visit(
                [](const auto &v) -> json_t * {
                    using T = std::decay_t<decltype(v)>;
                    if constexpr (std::is_same_v<T, std::string_view>) {
                        return string_value(v);
                    } else if constexpr (std::is_same_v<T, std::int64_t>) {
                        return json_integer(static_cast<json_int_t>(v));
                    } else if constexpr (std::is_same_v<T, double>) {
                        return json_real(v);
                    } else {
                        return json_boolean(v);
                    }
                },
                field.value);
            json_object_set_new(line.get(), key.c_str(), value);
        }
        // JSON_PRESERVE_ORDER keeps ts, level, component, msg first.
        std::unique_ptr<char, CharFree> text(
            json_dumps(line.get(), JSON_COMPACT | JSON_PRESERVE_ORDER));
        if (!text) {
            return;
        }
        std::string out(text.get());
        out += '\n';
        const std::lock_guard<std::mutex> lock(mutex_);
        // A log line that cannot be written is lost; nothing better to do.
        static_cast<void>(std::fwrite(out.data(), 1, out.size(), out_));
        static_cast<void>(std::fflush(out_));
    } catch (...) {
        // Out of memory while logging: drop the line.
    }
}

} // namespace pod_router::controller
