/*
 * Publishing creation events to RabbitMQ, for the nginx module.
 *
 * A publisher owns one AMQP connection and is NOT thread-safe: the module
 * keeps one per thread-pool thread and never shares it. Calls block (on the
 * calling thread, never on an nginx worker's event loop) for at most the
 * configured timeouts per broker round trip.
 *
 * The rules of pod_router_core.h apply: opaque handle, pr_status_t returns,
 * one-line NUL-terminated messages in caller-supplied buffers, no exception
 * or pointer kept across the boundary. Messages never contain the password.
 */

#ifndef POD_ROUTER_AMQP_PUBLISHER_H
#define POD_ROUTER_AMQP_PUBLISHER_H

#include <stddef.h>

#include "pod_router/pod_router_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* No exception ever leaves these functions; C++ (the implementation, the
 * tests) sees that in their types. */
#ifdef __cplusplus
#define PR_AMQP_NOEXCEPT noexcept
#else
#define PR_AMQP_NOEXCEPT
#endif

/* The topology of amqp_topology.hpp, for directive defaults. */
#define PR_AMQP_DEFAULT_PORT 5672
#define PR_AMQP_DEFAULT_VHOST "/"
#define PR_AMQP_DEFAULT_EXCHANGE "pod-router"
#define PR_AMQP_DEFAULT_ROUTING_KEY "create"
#define PR_AMQP_DEFAULT_QUEUE "pod-router.create"

typedef struct pr_amqp_publisher_s pr_amqp_publisher_t;

/*
 * All strings are NUL-terminated and copied by pr_amqp_publisher_create();
 * NULL vhost, exchange, routing_key or queue mean the defaults above; names
 * are at most 255 bytes, and only routing_key may be empty. host, username
 * and password are required; port is 1..65535; both timeouts are positive.
 * connect_timeout_ms bounds the TCP connect (not the name lookup);
 * io_timeout_ms bounds each broker round trip after it (login, each
 * declaration, the confirm).
 */
typedef struct {
    const char  *host;
    int          port;
    const char  *vhost;
    const char  *username;
    const char  *password;
    const char  *exchange;
    const char  *routing_key;
    const char  *queue;
    int          connect_timeout_ms;
    int          io_timeout_ms;
} pr_amqp_config_t;

/* Copies and checks the configuration (PR_INVALID_CONFIG); does not
 * connect. On failure *out is NULL. */
pr_status_t pr_amqp_publisher_create(const pr_amqp_config_t *config,
    pr_amqp_publisher_t **out, char *err, size_t err_size) PR_AMQP_NOEXCEPT;

/*
 * Publishes one persistent message (content type application/json) and
 * waits for the broker to confirm it. The first call, and the first after a
 * failure, connects and declares the whole topology; later calls reuse the
 * connection. The body is 1 byte to 64 KiB; message_id may be NULL or empty
 * for none, and is at most 255 bytes.
 *
 * PR_OK: the broker has taken responsibility for the message (it is in a
 * durable queue). PR_UNAVAILABLE: the broker could not be reached, refused
 * the login or the declarations, did not confirm in time, or could not route
 * or store the message; the connection is closed and the next call starts
 * over. The message may still have been enqueued if the confirm was lost,
 * so consumers must tolerate duplicates (message_id identifies them).
 * PR_MALFORMED_EVENT: the body or message id cannot be sent as given.
 */
pr_status_t pr_amqp_publish(pr_amqp_publisher_t *publisher, const char *body,
    size_t body_len, const char *message_id, size_t message_id_len, char *err,
    size_t err_size) PR_AMQP_NOEXCEPT;

/* Closes the connection politely if there is one (bounded by
 * io_timeout_ms), then frees the publisher. NULL is ignored. */
void pr_amqp_publisher_destroy(pr_amqp_publisher_t *publisher)
    PR_AMQP_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* POD_ROUTER_AMQP_PUBLISHER_H */
