// Subcommands that need no cluster, broker or Redis: they answer operators'
// questions from the shared core alone ("which pod is alice's?", "why was
// this dead-lettered event rejected?", "which script has this SHA?").
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

namespace pod_router::controller {

struct NamingOptions {
    std::string prefix;
    std::size_t max_identity_bytes;
};

// Each returns the process exit code; only main() exits.
int print_pod_names(const NamingOptions &naming, const std::vector<std::string> &identities,
                    std::ostream &out, std::ostream &err);
int check_creation_event(const NamingOptions &naming, const std::string &path, std::istream &in,
                         std::ostream &out, std::ostream &err);
int print_redis_scripts(const std::string &source_of, std::ostream &out, std::ostream &err);

struct SignOptions {
    std::string secret_file; // the gateway's current (first) secret
    std::string ttl = "1h";
    std::vector<std::string> identities;
};
// One signed identity token per identity (docs/security.md), for tests,
// demos and an authenticating proxy's scripts; now_seconds is Unix time.
int sign_identity_tokens(const NamingOptions &naming, const SignOptions &options,
                         long long now_seconds, std::ostream &out, std::ostream &err);

} // namespace pod_router::controller
