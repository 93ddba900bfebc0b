#include "kube/kube_config.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

namespace pod_router::controller {
namespace {

Error config_error(std::string message) {
    return Error{ErrorCode::kInvalidConfig, std::move(message)};
}

Expected<std::string> read_file(const std::string &path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        return config_error("cannot read " + path);
    }
    return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

Expected<std::string> base64_decode(const std::string &text, const char *what) {
    std::string clean;
    for (const char c : text) {
        if (c != '\n' && c != '\r' && c != ' ') {
            clean.push_back(c);
        }
    }
    if (clean.size() % 4 != 0) {
        return config_error(std::string(what) + " is not valid base64");
    }
    std::string out(clean.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                                  reinterpret_cast<const unsigned char *>(clean.data()),
                                  static_cast<int>(clean.size()));
    if (n < 0) {
        return config_error(std::string(what) + " is not valid base64");
    }
    // EVP_DecodeBlock counts the padding as output bytes.
    std::size_t size = static_cast<std::size_t>(n);
    for (std::size_t i = clean.size(); i > 0 && clean[i - 1] == '=' && size > 0; --i) {
        --size;
    }
    out.resize(size);
    return out;
}

std::string resolve(const std::string &base_directory, const std::string &path) {
    if (path.empty() || path.front() == '/') {
        return path;
    }
    return base_directory + "/" + path;
}

// "<key>-data" inline (base64) or "<key>" as a file; empty when neither.
Expected<std::string> data_or_file(const YAML::Node &node, const std::string &key,
                                   const std::string &base_directory) {
    if (node[key + "-data"]) {
        return base64_decode(node[key + "-data"].as<std::string>(), (key + "-data").c_str());
    }
    if (node[key]) {
        return read_file(resolve(base_directory, node[key].as<std::string>()));
    }
    return std::string();
}

YAML::Node find_named(const YAML::Node &list, const std::string &name) {
    if (list && list.IsSequence()) {
        for (std::size_t i = 0; i < list.size(); ++i) {
            YAML::Node entry = list[i];
            if (entry["name"] && entry["name"].as<std::string>() == name) {
                return entry;
            }
        }
    }
    return YAML::Node();
}

} // namespace

Expected<KubeConfig> load_kubeconfig(const std::string &path, const std::string &context_name) {
    try {
        const YAML::Node root = YAML::LoadFile(path);
        const std::string directory =
            path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
        const std::string wanted = !context_name.empty() ? context_name
                                   : root["current-context"]
                                       ? root["current-context"].as<std::string>()
                                       : "";
        if (wanted.empty()) {
            return config_error(path + ": no context named and no current-context");
        }
        const YAML::Node context = find_named(root["contexts"], wanted)["context"];
        if (!context) {
            return config_error(path + ": no context \"" + wanted + "\"");
        }
        const YAML::Node cluster =
            find_named(root["clusters"], context["cluster"].as<std::string>(""))["cluster"];
        if (!cluster || !cluster["server"]) {
            return config_error(path + ": context \"" + wanted +
                                "\" names no cluster with a server");
        }
        KubeConfig config;
        config.server = cluster["server"].as<std::string>();
        while (!config.server.empty() && config.server.back() == '/') {
            config.server.pop_back();
        }
        config.insecure_skip_tls_verify = cluster["insecure-skip-tls-verify"].as<bool>(false);
        auto ca = data_or_file(cluster, "certificate-authority", directory);
        if (!ca) {
            return ca.error();
        }
        config.ca_pem = std::move(ca).value();
        config.namespace_name = context["namespace"].as<std::string>("default");

        const YAML::Node user =
            find_named(root["users"], context["user"].as<std::string>(""))["user"];
        if (user) {
            config.token = user["token"].as<std::string>("");
            if (user["tokenFile"]) {
                config.token_file = resolve(directory, user["tokenFile"].as<std::string>());
            }
            auto cert = data_or_file(user, "client-certificate", directory);
            auto key = data_or_file(user, "client-key", directory);
            if (!cert) {
                return cert.error();
            }
            if (!key) {
                return key.error();
            }
            config.client_cert_pem = std::move(cert).value();
            config.client_key_pem = std::move(key).value();
        }
        return config;
    } catch (const YAML::Exception &error) {
        return config_error(path + ": " + error.what());
    }
}

Expected<KubeConfig> load_in_cluster(const std::string &directory) {
    // Read once at start, before any thread that could change the environment.
    const char *host = std::getenv("KUBERNETES_SERVICE_HOST"); // NOLINT(concurrency-mt-unsafe)
    const char *port = std::getenv("KUBERNETES_SERVICE_PORT"); // NOLINT(concurrency-mt-unsafe)
    if (host == nullptr || port == nullptr || *host == '\0' || *port == '\0') {
        return config_error("not in a cluster: KUBERNETES_SERVICE_HOST and "
                            "KUBERNETES_SERVICE_PORT are not set");
    }
    KubeConfig config;
    const std::string host_text(host);
    // An IPv6 service address needs brackets in a URL.
    config.server = "https://" +
                    (host_text.find(':') != std::string::npos ? "[" + host_text + "]" : host_text) +
                    ":" + port;
    auto ca = read_file(directory + "/ca.crt");
    if (!ca) {
        return ca.error();
    }
    config.ca_pem = std::move(ca).value();
    config.token_file = directory + "/token";
    auto namespace_name = read_file(directory + "/namespace");
    config.namespace_name = namespace_name ? namespace_name.value() : "default";
    return config;
}

} // namespace pod_router::controller
