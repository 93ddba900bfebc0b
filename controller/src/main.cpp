// pod-router-controller: the command line. Each subcommand lives in its own
// file; this one only parses flags and maps outcomes to exit codes.
#include <chrono>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "offline_commands.hpp"
#include "pod_router/pod_name.hpp"
#include "run/controller.hpp"
#include "run/settings.hpp"

namespace {

void add_naming_flags(CLI::App &command, pod_router::controller::NamingOptions &naming) {
    command
        .add_option("--pod-name-prefix", naming.prefix,
                    "Prefix of every user pod's name; must match the gateway's")
        ->capture_default_str();
    command
        .add_option("--max-identity-bytes", naming.max_identity_bytes,
                    "Longest identity accepted, in bytes")
        ->capture_default_str()
        ->check(CLI::Range(std::size_t{1}, pod_router::kMaxIdentityBytesLimit));
}

int run(int argc, char **argv) {
    CLI::App app{"pod-router-controller: creates a Kubernetes pod for each user on demand, "
                 "and reaps idle ones.\n`run` is the controller itself; the other subcommands "
                 "answer questions from the shared naming and Redis schema rules, or sign "
                 "identity tokens, without touching any server.",
                 "pod-router-controller"};
    app.set_version_flag("--version", std::string("pod-router-controller ") + POD_ROUTER_VERSION);
    app.require_subcommand(1);

    pod_router::controller::NamingOptions naming{std::string(pod_router::kDefaultPodNamePrefix),
                                                 pod_router::kDefaultMaxIdentityBytes};

    pod_router::controller::RunFlags run_flags;
    pod_router::controller::NamingOptions run_naming = naming;
    CLI::App *run_command = app.add_subcommand(
        "run", "Consume creation events, create and watch pods, reap idle ones and repair drift. "
               "Every flag can also come from its environment variable or from the --config "
               "file (TOML or INI: a [run] section of name = value lines, names without the "
               "leading dashes); a flag wins over the file, which wins over the environment.");
    // The file is read by the top-level app, where CLI11 handles it; the
    // run subcommand lets --config fall through to it, and the file's [run]
    // section sets run's options.
    app.set_config("--config", "", "Read run's settings from this TOML or INI file");
    run_command->fallthrough();
    add_naming_flags(*run_command, run_naming);
    pod_router::controller::add_run_flags(*run_command, run_flags);

    std::vector<std::string> identities;
    CLI::App *pod_name =
        app.add_subcommand("pod-name", "Print the pod name the gateway derives for each identity");
    add_naming_flags(*pod_name, naming);
    pod_name->add_option("identity", identities, "One or more user identities")->required();

    std::string event_path = "-";
    CLI::App *check_event = app.add_subcommand(
        "check-event", "Validate a creation event (JSON) as the consumer would, and explain why "
                       "it would be rejected");
    add_naming_flags(*check_event, naming);
    check_event->add_option("file", event_path, "File holding the event, or - for stdin")
        ->capture_default_str();

    std::string script_name;
    CLI::App *scripts = app.add_subcommand(
        "redis-scripts", "List the Redis Lua scripts with their SHA1, KEYS and ARGV");
    scripts->add_option("--source", script_name, "Print the Lua source of the named script");

    pod_router::controller::SignOptions sign_options;
    CLI::App *sign = app.add_subcommand(
        "sign", "Print a signed identity token for each identity, for the gateway's "
                "pod_router_identity_secret mode (tests, demos, an authenticating proxy)");
    add_naming_flags(*sign, naming);
    sign->add_option("--secret-file", sign_options.secret_file,
                     "File holding the secret (at least 32 bytes): the first of the gateway's "
                     "pod_router_identity_secret files")
        ->required();
    sign->add_option("--ttl", sign_options.ttl, "How long the token is valid, such as 15m or 1h")
        ->capture_default_str();
    sign->add_option("identity", sign_options.identities, "One or more user identities")
        ->required();

    CLI11_PARSE(app, argc, argv);

    if (run_command->parsed()) {
        run_flags.pod_name_prefix = run_naming.prefix;
        run_flags.max_identity_bytes = run_naming.max_identity_bytes;
        auto settings = pod_router::controller::resolve_run_settings(run_flags);
        if (!settings) {
            std::cerr << "pod-router-controller run: " << settings.error().message << "\n";
            return 78; // EX_CONFIG
        }
        return pod_router::controller::run_controller(settings.value());
    }
    if (pod_name->parsed()) {
        return pod_router::controller::print_pod_names(naming, identities, std::cout, std::cerr);
    }
    if (check_event->parsed()) {
        return pod_router::controller::check_creation_event(naming, event_path, std::cin, std::cout,
                                                            std::cerr);
    }
    if (sign->parsed()) {
        const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
        return pod_router::controller::sign_identity_tokens(naming, sign_options, now, std::cout,
                                                            std::cerr);
    }
    if (scripts->parsed()) {
        return pod_router::controller::print_redis_scripts(script_name, std::cout, std::cerr);
    }
    return 2;
}

} // namespace

int main(int argc, char **argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception &error) {
        std::cerr << "pod-router-controller: " << error.what() << "\n";
    } catch (...) {
        std::cerr << "pod-router-controller: unexpected error\n";
    }
    return 70; // EX_SOFTWARE
}
