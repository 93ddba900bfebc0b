// Leveled, structured logs: one JSON object per line on stderr, so that a
// log pipeline (or jq) reads them without a parser of ours. Every line has
// "ts" (RFC 3339, UTC, milliseconds), "level", "component" and "msg", then
// the caller's fields. Thread-safe: a line is written with one fwrite under
// a mutex, so lines from different threads never interleave.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace pod_router::controller {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

std::optional<LogLevel> parse_log_level(std::string_view name) noexcept;
std::string_view log_level_name(LogLevel level) noexcept;

struct LogField {
    using Value = std::variant<std::string_view, std::int64_t, double, bool>;
    LogField(std::string_view key_, std::string_view value_) : key(key_), value(value_) {}
    LogField(std::string_view key_, const std::string &value_)
        : key(key_), value(std::string_view(value_)) {}
    LogField(std::string_view key_, const char *value_)
        : key(key_), value(std::string_view(value_)) {}
    LogField(std::string_view key_, int value_) : key(key_), value(std::int64_t{value_}) {}
    LogField(std::string_view key_, long value_) : key(key_), value(std::int64_t{value_}) {}
    LogField(std::string_view key_, long long value_) : key(key_), value(std::int64_t{value_}) {}
    LogField(std::string_view key_, unsigned value_) : key(key_), value(std::int64_t{value_}) {}
    LogField(std::string_view key_, unsigned long value_)
        : key(key_), value(static_cast<std::int64_t>(value_)) {}
    LogField(std::string_view key_, double value_) : key(key_), value(value_) {}
    LogField(std::string_view key_, bool value_) : key(key_), value(value_) {}

    std::string_view key;
    Value value;
};

using LogFields = std::initializer_list<LogField>;

class Logger {
  public:
    explicit Logger(LogLevel minimum = LogLevel::kInfo, std::FILE *out = stderr) noexcept
        : minimum_(minimum), out_(out) {}
    Logger(const Logger &) = delete;
    Logger &operator=(const Logger &) = delete;

    bool enabled(LogLevel level) const noexcept { return level >= minimum_; }

    // Never throws: a log line that cannot be built is dropped, not fatal.
    void log(LogLevel level, std::string_view component, std::string_view message,
             LogFields fields = {}) noexcept;

  private:
    LogLevel minimum_;
    std::FILE *out_;
    std::mutex mutex_;
};

// A logger bound to one component ("consumer", "watch", "reaper", ...).
class ComponentLog {
  public:
    ComponentLog(Logger &logger, std::string_view component) noexcept
        : logger_(logger), component_(component) {}

    void debug(std::string_view message, LogFields fields = {}) const noexcept {
        logger_.log(LogLevel::kDebug, component_, message, fields);
    }
    void info(std::string_view message, LogFields fields = {}) const noexcept {
        logger_.log(LogLevel::kInfo, component_, message, fields);
    }
    void warn(std::string_view message, LogFields fields = {}) const noexcept {
        logger_.log(LogLevel::kWarn, component_, message, fields);
    }
    void error(std::string_view message, LogFields fields = {}) const noexcept {
        logger_.log(LogLevel::kError, component_, message, fields);
    }

  private:
    Logger &logger_;
    std::string_view component_; // a literal
};

} // namespace pod_router::controller
