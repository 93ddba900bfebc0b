#include "pod_template.hpp"

#include <cstring>
#include <fstream>
#include <iterator>

#include <yaml-cpp/yaml.h>

#include "pod_router/pod_name.hpp"

namespace pod_router::controller {
namespace {

Error template_error(const std::string &source, const std::string &message) {
    return Error{ErrorCode::kInvalidConfig, "pod template " + source + ": " + message};
}

// YAML 1.2's core schema for plain scalars; quoted scalars stay strings, so
// "80" and 80 keep their meaning (a port number versus a string value).
JsonPtr scalar_to_json(const YAML::Node &node) {
    const std::string &text = node.Scalar();
    if (node.Tag() != "!" && node.Tag() != "tag:yaml.org,2002:str") {
        if (text == "true" || text == "True" || text == "TRUE") {
            return JsonPtr(json_true());
        }
        if (text == "false" || text == "False" || text == "FALSE") {
            return JsonPtr(json_false());
        }
        if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") {
            return JsonPtr(json_null());
        }
        char *end = nullptr;
        const long long integer = std::strtoll(text.c_str(), &end, 10);
        if (end != text.c_str() && *end == '\0') {
            return JsonPtr(json_integer(integer));
        }
        const double real = std::strtod(text.c_str(), &end);
        if (end != text.c_str() && *end == '\0' &&
            text.find_first_of("0123456789") != std::string::npos) {
            return JsonPtr(json_real(real));
        }
    }
    return JsonPtr(json_stringn(text.data(), text.size()));
}

// Aliases let a short document name one node many times, or itself: the
// conversion counts depth and nodes, so that such a template is an error
// instead of a stack overflow or an exponential expansion.
struct ConversionBudget {
    static constexpr int kMaxDepth = 100;
    static constexpr std::size_t kMaxNodes = 100'000;
    std::size_t nodes = 0;
    bool exceeded = false;
};

JsonPtr yaml_to_json(const YAML::Node &node, int depth, ConversionBudget &budget) {
    if (depth > ConversionBudget::kMaxDepth || ++budget.nodes > ConversionBudget::kMaxNodes) {
        budget.exceeded = true;
        return nullptr;
    }
    switch (node.Type()) {
    case YAML::NodeType::Map: {
        JsonPtr object(json_object());
        for (auto it = node.begin(); it != node.end(); ++it) {
            // The key first: as<>() throws for a key that is not a scalar,
            // and must not do so after value.release() (a leak).
            const std::string key = it->first.as<std::string>();
            JsonPtr value = yaml_to_json(it->second, depth + 1, budget);
            if (!object || !value ||
                json_object_set_new(object.get(), key.c_str(), value.release()) != 0) {
                return nullptr;
            }
        }
        return object;
    }
    case YAML::NodeType::Sequence: {
        JsonPtr array(json_array());
        for (std::size_t i = 0; i < node.size(); ++i) {
            JsonPtr value = yaml_to_json(node[i], depth + 1, budget);
            if (!array || !value || json_array_append_new(array.get(), value.release()) != 0) {
                return nullptr;
            }
        }
        return array;
    }
    case YAML::NodeType::Scalar:
        return scalar_to_json(node);
    default:
        return JsonPtr(json_null());
    }
}

json_t *object_member(json_t *parent, const char *key) {
    json_t *child = json_object_get(parent, key);
    if (!json_is_object(child)) {
        child = json_object();
        if (child == nullptr || json_object_set_new(parent, key, child) != 0) {
            return nullptr;
        }
    }
    return child;
}

bool set_string(json_t *object, const char *key, const std::string &value) {
    return json_object_set_new(object, key, json_stringn(value.data(), value.size())) == 0;
}

} // namespace

Expected<PodTemplate> PodTemplate::load(const std::string &path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        return template_error(path, "cannot be read");
    }
    return parse(
        std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()), path);
}

Expected<PodTemplate> PodTemplate::parse(const std::string &text, const std::string &source) {
    JsonPtr pod;
    ConversionBudget budget;
    try {
        // JSON is YAML: one parser for both.
        pod = yaml_to_json(YAML::Load(text), 1, budget);
    } catch (const YAML::Exception &error) {
        return template_error(source, error.what());
    }
    if (budget.exceeded) {
        return template_error(source, "nests deeper than 100 levels or expands to more than "
                                      "100000 nodes (aliases?)");
    }
    if (!json_is_object(pod.get())) {
        return template_error(source, "is not a Pod object");
    }
    const json_t *kind = json_object_get(pod.get(), "kind");
    const json_t *api_version = json_object_get(pod.get(), "apiVersion");
    if (!json_is_string(kind) || std::strcmp(json_string_value(kind), "Pod") != 0 ||
        !json_is_string(api_version) || std::strcmp(json_string_value(api_version), "v1") != 0) {
        return template_error(source, "must be apiVersion v1, kind Pod");
    }
    const json_t *containers = json_object_get(json_object_get(pod.get(), "spec"), "containers");
    if (!json_is_array(containers) || json_array_size(containers) == 0) {
        return template_error(source, "spec.containers must list at least one container");
    }
    int port = 80;
    const json_t *ports = json_object_get(json_array_get(containers, 0), "ports");
    if (json_is_array(ports) && json_array_size(ports) > 0) {
        const json_t *number = json_object_get(json_array_get(ports, 0), "containerPort");
        if (!json_is_integer(number) || json_integer_value(number) < 1 ||
            json_integer_value(number) > 65535) {
            return template_error(source, "the first containerPort must be a number 1-65535");
        }
        port = static_cast<int>(json_integer_value(number));
    }
    // What the controller sets must not come from the template.
    json_t *metadata = json_object_get(pod.get(), "metadata");
    if (json_is_object(metadata)) {
        for (const char *owned :
             {"name", "generateName", "namespace", "uid", "resourceVersion", "creationTimestamp"}) {
            json_object_del(metadata, owned);
        }
    }
    json_object_del(pod.get(), "status");
    return PodTemplate(std::move(pod), port);
}

Expected<JsonPtr> PodTemplate::render(const PodRequest &request) const {
    Expected<std::string> digest =
        request.pool ? Expected<std::string>(std::string()) : identity_digest(request.identity);
    if (!digest) {
        return digest.error();
    }
    JsonPtr pod(json_deep_copy(pod_.get()));
    json_t *metadata = pod ? object_member(pod.get(), "metadata") : nullptr;
    json_t *labels = metadata ? object_member(metadata, "labels") : nullptr;
    json_t *annotations = metadata ? object_member(metadata, "annotations") : nullptr;
    if (labels == nullptr || annotations == nullptr) {
        return Error{ErrorCode::kInternal, "out of memory rendering the pod template"};
    }
    // A label value holds 63 characters: the hash of the identity is the
    // selector; the identity itself, any bytes, goes into an annotation.
    const bool common = set_string(metadata, "name", request.pod_name) &&
                        set_string(metadata, "namespace", request.namespace_name) &&
                        set_string(labels, kManagedByLabel, kManagedByValue) &&
                        set_string(annotations, kCreatedAtAnnotation, request.created_at);
    const bool built =
        common &&
        (request.pool ? set_string(labels, kPoolLabel, kPoolLabelValue)
                      : set_string(labels, kIdentityHashLabel, digest.value()) &&
                            set_string(annotations, kIdentityAnnotation, request.identity));
    if (!built) {
        return Error{ErrorCode::kInternal, "out of memory rendering the pod template"};
    }
    return pod;
}

} // namespace pod_router::controller
