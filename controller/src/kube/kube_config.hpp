// Where the Kubernetes API is and how to authenticate: a kubeconfig file
// (kube-sim, out-of-cluster use) or the in-cluster service account.
#pragma once

#include <string>

#include "pod_router/expected.hpp"

namespace pod_router::controller {

struct KubeConfig {
    std::string server; // https://host:port, no trailing slash
    std::string ca_pem; // the CA to verify the server with; empty: system CAs
    bool insecure_skip_tls_verify = false;
    std::string token;      // a static bearer token, or
    std::string token_file; // a token file, re-read when it changes
    std::string client_cert_pem;
    std::string client_key_pem;
    std::string namespace_name; // the context's or the service account's namespace
};

inline constexpr const char *kServiceAccountDirectory =
    "/var/run/secrets/kubernetes.io/serviceaccount";

// Parses a kubeconfig (YAML or JSON): the named context, or current-context.
// Relative file paths are taken from the kubeconfig's folder.
Expected<KubeConfig> load_kubeconfig(const std::string &path, const std::string &context = "");

// KUBERNETES_SERVICE_HOST/PORT and the mounted service account files.
Expected<KubeConfig> load_in_cluster(const std::string &directory = kServiceAccountDirectory);

} // namespace pod_router::controller
