// The RabbitMQ names the gateway (publisher) and the controller (consumer)
// must agree on. Both sides declare all of it, idempotently and with the same
// arguments, so whichever starts first creates it and neither depends on the
// other having run; a declaration with different arguments fails with
// PRECONDITION_FAILED, so change these only together with a migration.
//
//   pod-router (direct) --"create"--> pod-router.create
//                                      | rejected without requeue, or expired
//   pod-router.dlx (direct) <----------+ (routing key rewritten to "dead")
//           --"dead"--> pod-router.create.dead
#pragma once

#include <string_view>

namespace pod_router {

// Where the gateway publishes creation events. Durable, so that it survives
// a broker restart; direct, so that routing is an exact key match.
inline constexpr std::string_view kAmqpExchange = "pod-router";
inline constexpr std::string_view kAmqpExchangeType = "direct";
inline constexpr std::string_view kAmqpRoutingKey = "create";

// The controller's work queue. Durable and bound at publish time, not only
// when the controller starts: events published while no controller is
// running wait here instead of being dropped by an unbound exchange.
inline constexpr std::string_view kAmqpQueue = "pod-router.create";

// Dead-lettering for pod-router.create: a message the controller rejects
// without requeueing (undecodable, unsupported version, failing every retry)
// goes to the dead-letter queue, where an operator can inspect or replay it,
// instead of being redelivered forever and blocking the queue.
inline constexpr std::string_view kAmqpDeadLetterExchange = "pod-router.dlx";
inline constexpr std::string_view kAmqpDeadLetterExchangeType = "direct";
inline constexpr std::string_view kAmqpDeadLetterRoutingKey = "dead";
inline constexpr std::string_view kAmqpDeadLetterQueue = "pod-router.create.dead";

// The queue arguments that make pod-router.create dead-letter into the above.
inline constexpr std::string_view kAmqpArgDeadLetterExchange = "x-dead-letter-exchange";
inline constexpr std::string_view kAmqpArgDeadLetterRoutingKey = "x-dead-letter-routing-key";

inline constexpr std::string_view kAmqpDefaultVhost = "/";
inline constexpr int kAmqpDefaultPort = 5672;

} // namespace pod_router
