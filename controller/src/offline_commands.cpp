#include "offline_commands.hpp"

#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <sstream>

#include "pod_router/creation_event.hpp"
#include "pod_router/identity_token.hpp"
#include "pod_router/pod_name.hpp"
#include "pod_router/redis_schema.hpp"
#include "run/settings.hpp"

namespace pod_router::controller {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitInvalidInput = 1;
constexpr int kExitUsage = 2;

// Identities come from users: show them escaped, never raw.
std::string escape_for_terminal(const std::string &text) {
    std::ostringstream escaped;
    for (const unsigned char c : text) {
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            escaped << static_cast<char>(c);
        } else {
            escaped << "\\x" << std::hex << std::setw(2) << std::setfill('0')
                    << static_cast<unsigned>(c) << std::dec;
        }
    }
    return escaped.str();
}

Expected<NamingPolicy> make_policy(const NamingOptions &naming) {
    return NamingPolicy::create(naming.prefix, naming.max_identity_bytes);
}

} // namespace

int print_pod_names(const NamingOptions &naming, const std::vector<std::string> &identities,
                    std::ostream &out, std::ostream &err) {
    Expected<NamingPolicy> policy = make_policy(naming);
    if (!policy) {
        err << "pod-router-controller: " << policy.error().message << "\n";
        return kExitUsage;
    }
    int status = kExitOk;
    for (const std::string &identity : identities) {
        Expected<std::string> name = policy.value().pod_name(identity);
        if (name) {
            out << name.value() << "\n";
        } else {
            err << "pod-router-controller: \"" << escape_for_terminal(identity)
                << "\": " << name.error().message << "\n";
            status = kExitInvalidInput;
        }
    }
    return status;
}

int check_creation_event(const NamingOptions &naming, const std::string &path, std::istream &in,
                         std::ostream &out, std::ostream &err) {
    Expected<NamingPolicy> policy = make_policy(naming);
    if (!policy) {
        err << "pod-router-controller: " << policy.error().message << "\n";
        return kExitUsage;
    }
    std::string text;
    if (path == "-") {
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } else {
        std::ifstream file(path, std::ios::binary);
        if (!file) {
            err << "pod-router-controller: cannot open " << path << "\n";
            return kExitUsage;
        }
        text.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    }
    Expected<CreationEvent> event = decode_creation_event(text, policy.value());
    if (!event) {
        err << "invalid creation event: " << event.error().message << "\n";
        return kExitInvalidInput;
    }
    const CreationEvent &valid = event.value();
    out << "valid creation event: version=" << valid.version << " pod=" << valid.pod
        << " request_id=" << valid.request_id << " timestamp_ms=" << valid.timestamp_ms
        << " identity=\"" << escape_for_terminal(valid.identity) << "\"\n";
    return kExitOk;
}

int print_redis_scripts(const std::string &source_of, std::ostream &out, std::ostream &err) {
    for (const ScriptSpec &spec : all_scripts()) {
        if (!source_of.empty()) {
            if (spec.name == source_of) {
                out << spec.source;
                return kExitOk;
            }
            continue;
        }
        out << spec.name << "\t" << (spec.sha1.empty() ? "(sha1 unavailable)" : spec.sha1)
            << "\tKEYS: " << spec.keys << "\tARGV: " << spec.arguments << "\n";
    }
    if (!source_of.empty()) {
        err << "pod-router-controller: no Redis script named \"" << escape_for_terminal(source_of)
            << "\"\n";
        return kExitUsage;
    }
    return kExitOk;
}

int sign_identity_tokens(const NamingOptions &naming, const SignOptions &options,
                         long long now_seconds, std::ostream &out, std::ostream &err) {
    const auto ttl = parse_duration(options.ttl);
    if (!ttl || ttl->count() < 1000) {
        err << "pod-router-controller sign: --ttl must be a duration of at least 1s, such as "
               "90s, 15m or 1h\n";
        return kExitUsage;
    }
    std::ifstream file(options.secret_file, std::ios::binary);
    if (!file) {
        err << "pod-router-controller sign: cannot read the secret file " << options.secret_file
            << "\n";
        return kExitUsage;
    }
    Expected<TokenKeys> keys = TokenKeys::create(
        {std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>())});
    if (!keys) {
        err << "pod-router-controller sign: " << keys.error().message << "\n";
        return kExitUsage;
    }
    Expected<NamingPolicy> policy = make_policy(naming);
    if (!policy) {
        err << "pod-router-controller sign: " << policy.error().message << "\n";
        return kExitUsage;
    }
    const long long expiry = now_seconds + ttl->count() / 1000;
    int status = kExitOk;
    for (const std::string &identity : options.identities) {
        // A token the gateway would then refuse with 400 helps no one.
        Expected<std::string> name = policy.value().pod_name(identity);
        Expected<std::string> token =
            name ? keys.value().sign(identity, expiry) : Expected<std::string>(name.error());
        if (token) {
            out << token.value() << "\n";
        } else {
            err << "pod-router-controller sign: \"" << escape_for_terminal(identity)
                << "\": " << token.error().message << "\n";
            status = kExitInvalidInput;
        }
    }
    return status;
}

} // namespace pod_router::controller
