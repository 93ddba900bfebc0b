// Fuzz target: the controller's pod template (YAML or JSON), parsed and
// rendered for an identity. The input is the template document, then
// optionally a last line "#@identity <bytes>" (a YAML comment, so seeds stay
// readable and a template without it still parses) naming the identity to
// render for; without it the identity is "alice".
// Properties: parse() and render() return an error or a result, never throw
// or crash; a parsed template has a port 1..65535; for a valid identity the
// rendered Pod carries the controller's name, namespace, labels and
// annotations exactly, serializes, and the template is left unchanged.
#include <jansson.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_require.hpp"
#include "pod_router/pod_name.hpp"
#include "pod_template.hpp"

namespace {

using pod_router::controller::PodRequest;
using pod_router::controller::PodTemplate;

constexpr std::string_view kIdentityMarker = "\n#@identity ";

const char *string_at(json_t *root, std::initializer_list<const char *> path) {
    json_t *node = root;
    for (const char *key : path) {
        node = json_object_get(node, key);
    }
    return json_is_string(node) ? json_string_value(node) : nullptr;
}

bool string_is(json_t *root, std::initializer_list<const char *> path, std::string_view value) {
    json_t *node = root;
    for (const char *key : path) {
        node = json_object_get(node, key);
    }
    return json_is_string(node) &&
           std::string_view(json_string_value(node), json_string_length(node)) == value;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    static const pod_router::NamingPolicy policy = pod_router::NamingPolicy::create().value();
    const std::string_view input(reinterpret_cast<const char *>(data), size);
    std::string_view document = input;
    std::string_view identity = "alice";
    const std::size_t marker = input.rfind(kIdentityMarker);
    if (marker != std::string_view::npos) {
        document = input.substr(0, marker + 1);
        identity = input.substr(marker + kIdentityMarker.size());
    }

    auto parsed = PodTemplate::parse(std::string(document), "fuzz");
    if (!parsed) {
        require(parsed.error().code == pod_router::ErrorCode::kInvalidConfig);
        require(parsed.error().message.rfind("pod template fuzz: ", 0) == 0);
        return 0;
    }
    const PodTemplate &pod_template = parsed.value();
    require(pod_template.port() >= 1 && pod_template.port() <= 65535);

    // The controller renders only for identities that passed the name rule.
    auto name = policy.pod_name(identity);
    const PodRequest request{name ? name.value() : std::string("user---0123456789abcdef"), "users",
                             std::string(identity), "2026-11-26T05:00:00Z"};
    auto first = pod_template.render(request);
    if (!name) {
        // any bytes: an error or a Pod, never a crash
        return 0;
    }
    require(first.has_value());
    json_t *pod = first.value().get();
    // compared as C strings, as parse() does: the operator's own fields
    require(string_at(pod, {"kind"}) != nullptr &&
            std::strcmp(string_at(pod, {"kind"}), "Pod") == 0);
    require(string_at(pod, {"apiVersion"}) != nullptr &&
            std::strcmp(string_at(pod, {"apiVersion"}), "v1") == 0);
    require(string_is(pod, {"metadata", "name"}, request.pod_name));
    require(string_is(pod, {"metadata", "namespace"}, "users"));
    require(string_is(pod, {"metadata", "labels", pod_router::controller::kManagedByLabel},
                      pod_router::controller::kManagedByValue));
    require(string_is(pod, {"metadata", "labels", pod_router::controller::kIdentityHashLabel},
                      pod_router::identity_digest(identity).value()));
    require(string_is(pod, {"metadata", "annotations", pod_router::controller::kIdentityAnnotation},
                      identity));
    require(string_is(pod,
                      {"metadata", "annotations", pod_router::controller::kCreatedAtAnnotation},
                      request.created_at));
    require(string_at(pod, {"metadata", "generateName"}) == nullptr);
    require(json_object_get(pod, "status") == nullptr);

    // What the controller sends to the API server.
    char *body = json_dumps(pod, JSON_COMPACT);
    require(body != nullptr);
    json_error_t error;
    json_t *back = json_loads(body, JSON_ALLOW_NUL, &error);
    require(back != nullptr && json_equal(back, pod));
    json_decref(back);
    std::free(body);

    // Rendering again, for another identity and then the same one: the
    // template is not changed by a render.
    auto other = pod_template.render({"user-bob", "others", "bob", "t"});
    require(other.has_value());
    require(string_is(other.value().get(), {"metadata", "namespace"}, "others"));
    auto again = pod_template.render(request);
    require(again.has_value());
    require(json_equal(again.value().get(), pod));
    return 0;
}
