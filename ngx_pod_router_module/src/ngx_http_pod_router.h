
/*
 * Types and cross-file prototypes of ngx_http_pod_router_module, grouped by
 * the file that defines them. A request's journey:
 *
 *   ngx_http_pod_router_identity.c  whose request it is (trusted proxies,
 *                                   signed tokens); what the pod gets of it
 *   ngx_http_pod_router_handler.c   route decision, parking, waking
 *   ngx_http_pod_router_redis.c     hiredis on nginx's event loop, pub/sub
 *   ngx_http_pod_router_amqp.c      publishing creation events in a thread pool
 *   ngx_http_pod_router_upstream.c  the pod as an upstream peer; variables
 *   ngx_http_pod_router_status.c    Prometheus metrics in shared memory
 *   ngx_http_pod_router_module.c    directives and lifecycle
 */


#ifndef _NGX_HTTP_POD_ROUTER_H_INCLUDED_
#define _NGX_HTTP_POD_ROUTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <pod_router/amqp_publisher.h>
#include <pod_router/pod_router_core.h>
#include <pod_router/route_reply.h>


#define NGX_HTTP_POD_ROUTER_WAIT_HOLD   0
#define NGX_HTTP_POD_ROUTER_WAIT_PAGE   1
#define NGX_HTTP_POD_ROUTER_WAIT_AUTO   2


/* what happened to a request: $pod_router_status and the metrics' label */
typedef enum {
    NGX_HTTP_POD_ROUTER_NONE = 0,
    NGX_HTTP_POD_ROUTER_HIT,
    NGX_HTTP_POD_ROUTER_CACHE_HIT,
    NGX_HTTP_POD_ROUTER_MISS,
    NGX_HTTP_POD_ROUTER_CLAIMED,
    NGX_HTTP_POD_ROUTER_WAIT,
    NGX_HTTP_POD_ROUTER_STARTING,
    NGX_HTTP_POD_ROUTER_TIMEOUT,
    NGX_HTTP_POD_ROUTER_FAILED,
    NGX_HTTP_POD_ROUTER_UNAVAILABLE,
    NGX_HTTP_POD_ROUTER_OVERLOAD,
    NGX_HTTP_POD_ROUTER_NO_IDENTITY,
    NGX_HTTP_POD_ROUTER_BAD_IDENTITY,
    NGX_HTTP_POD_ROUTER_FORBIDDEN,
    NGX_HTTP_POD_ROUTER_CONFLICT,
    NGX_HTTP_POD_ROUTER_INVALID_TOKEN,
    NGX_HTTP_POD_ROUTER_UNTRUSTED,
    NGX_HTTP_POD_ROUTER_OUTCOMES
} ngx_http_pod_router_outcome_e;


/* why an identity was refused: pod_router_identity_rejected_total{reason} */
typedef enum {
    NGX_HTTP_POD_ROUTER_REJECT_MISSING = 0,
    NGX_HTTP_POD_ROUTER_REJECT_MALFORMED,
    NGX_HTTP_POD_ROUTER_REJECT_FORGED,
    NGX_HTTP_POD_ROUTER_REJECT_EXPIRED,
    NGX_HTTP_POD_ROUTER_REJECT_UNTRUSTED,
    NGX_HTTP_POD_ROUTER_REJECTS
} ngx_http_pod_router_reject_e;


/* what pod_router_identity is: what pod_router_strip_identity removes */
#define NGX_HTTP_POD_ROUTER_SOURCE_OTHER    0
#define NGX_HTTP_POD_ROUTER_SOURCE_HEADER   1   /* exactly $http_NAME */
#define NGX_HTTP_POD_ROUTER_SOURCE_COOKIE   2   /* exactly $cookie_NAME */


typedef struct {
    ngx_str_t                   pod_name_prefix;
    size_t                      max_identity_length;
    pr_naming_t                *naming;

    ngx_str_t                   redis_host;
    in_port_t                   redis_port;
    ngx_uint_t                  redis_db;
    ngx_str_t                   redis_password;
    ngx_msec_t                  redis_connect_timeout;
    ngx_msec_t                  redis_timeout;
    ngx_str_t                   redis_key_prefix;

    ngx_str_t                   amqp_host;
    in_port_t                   amqp_port;
    ngx_str_t                   amqp_vhost;
    ngx_str_t                   amqp_username;
    ngx_str_t                   amqp_password;
    ngx_str_t                   amqp_exchange;
    ngx_str_t                   amqp_routing_key;
    ngx_str_t                   amqp_queue;
    ngx_msec_t                  amqp_timeout;
    ngx_thread_pool_t          *thread_pool;
    ngx_str_t                   thread_pool_name;

    ngx_uint_t                  max_waiting;
    ngx_msec_t                  cache_ttl;
    ngx_uint_t                  cache_size;
    ngx_msec_t                  touch_interval;
    ngx_msec_t                  lock_ttl;
    ngx_msec_t                  pending_ttl;
    ngx_msec_t                  recheck_interval;
    ngx_flag_t                  subscribe;

    ngx_shm_zone_t             *metrics_zone;
    ngx_int_t                   request_id_index;
    ngx_flag_t                  configured;
} ngx_http_pod_router_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_http_complex_value_t   *identity;
    ngx_uint_t                  pod_port;
    ngx_array_t                *allow_cidrs;        /* of ngx_cidr_t */
    ngx_msec_t                  wait_timeout;
    ngx_uint_t                  missing_identity_status;
    ngx_uint_t                  wait_mode;

    pr_token_keys_t            *identity_keys;      /* signed mode, or NULL */
    time_t                      identity_skew;
    ngx_array_t                *trusted_proxies;    /* of ngx_cidr_t */
    ngx_flag_t                  strip_identity;
    ngx_uint_t                  identity_source;
    ngx_str_t                   identity_name;      /* lower case */
    pr_token_keys_t            *pass_keys;          /* for the pod, or NULL */
    time_t                      pass_ttl;
} ngx_http_pod_router_loc_conf_t;


typedef struct ngx_http_pod_router_op_s  ngx_http_pod_router_op_t;

typedef struct {
    ngx_http_request_t         *request;
    ngx_str_t                   identity;
    u_char                      pod[PR_POD_NAME_SIZE];
    size_t                      pod_len;
    ngx_str_t                   request_id;

    ngx_uint_t                  phase;
    ngx_int_t                   status;
    ngx_http_pod_router_outcome_e  outcome;
    ngx_str_t                   reason;
    ngx_msec_t                  started_at;
    const char                 *stage;      /* a spawn stage, static */

    ngx_addr_t                  peer;
    u_char                      peer_text[NGX_SOCKADDR_STRLEN];
    ngx_sockaddr_t              peer_sockaddr;
    /* error_page recovery: the address that just refused this request */
    ngx_sockaddr_t              refused_sockaddr;
    socklen_t                   refused_socklen;

    ngx_http_pod_router_op_t   *op;
    ngx_event_t                 deadline;
    ngx_event_t                 recheck;
    ngx_queue_t                 waiting;    /* in the worker's listeners */
    ngx_uint_t                  news_seen;  /* notifications when routed */
    ngx_msec_t                  parked_at;
    ngx_queue_t                 active;
    ngx_msec_t                  proxied_at;

    ngx_str_t                   pass_token;         /* X-Pod-Router-Identity */

    unsigned                    parked:1;   /* held: counts in max_waiting */
    unsigned                    listening:1;
    unsigned                    notified:1; /* news came during a route */
    unsigned                    in_active_queue:1;
    unsigned                    upstream_headers:1; /* rewritten for the pod */
    unsigned                    pod_refused:1; /* its address refused to connect */
} ngx_http_pod_router_ctx_t;


/* ctx->phase */
#define NGX_HTTP_POD_ROUTER_PHASE_START    0
#define NGX_HTTP_POD_ROUTER_PHASE_BUSY     1
#define NGX_HTTP_POD_ROUTER_PHASE_PROXY    2
#define NGX_HTTP_POD_ROUTER_PHASE_FINAL    3


/*
 * An asynchronous operation (a Redis command, a publish) outlives the
 * request that started it if the client goes away; ops live in a per-worker
 * free list and forget their request (ctx = NULL) when it is freed.
 */
struct ngx_http_pod_router_op_s {
    ngx_http_pod_router_ctx_t  *ctx;
    ngx_http_pod_router_op_t   *next_free;
    ngx_uint_t                  kind;
    unsigned                    retried:1;
    unsigned                    touch:1;     /* route: record activity */
};


extern ngx_module_t  ngx_http_pod_router_module;


/* ngx_http_pod_router_module.c */
ngx_http_pod_router_main_conf_t *ngx_http_pod_router_main_conf(void);

/* ngx_http_pod_router_identity.c */
ngx_int_t ngx_http_pod_router_identity(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx, ngx_str_t *identity);
ngx_int_t ngx_http_pod_router_upstream_headers(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx);
ngx_int_t ngx_http_pod_router_pass_token(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx);
ngx_int_t ngx_http_pod_router_identity_source(ngx_conf_t *cf,
    ngx_http_pod_router_loc_conf_t *prlcf);

/* ngx_http_pod_router_handler.c */
ngx_int_t ngx_http_pod_router_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_pod_router_request_id(ngx_http_pod_router_ctx_t *ctx);
void ngx_http_pod_router_route_done(ngx_http_pod_router_ctx_t *ctx,
    pr_status_t rc, pr_route_result_t *result, const char *err);
void ngx_http_pod_router_publish_done(ngx_http_pod_router_ctx_t *ctx,
    ngx_int_t ok, const char *err);
void ngx_http_pod_router_notify(ngx_uint_t kind, u_char *pod, size_t len);
void ngx_http_pod_router_wake_all(void);
void ngx_http_pod_router_dead_pod(ngx_http_pod_router_ctx_t *ctx);
void ngx_http_pod_router_handler_init_worker(ngx_cycle_t *cycle);
void ngx_http_pod_router_handler_exit_worker(ngx_cycle_t *cycle);
ngx_int_t ngx_http_pod_router_send_buffer(ngx_http_request_t *r,
    ngx_uint_t status, char *content_type, ngx_buf_t *b);
ngx_int_t ngx_http_pod_router_send_text(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *text);
ngx_int_t ngx_http_pod_router_respond(ngx_http_request_t *r, ngx_int_t rc);
ngx_http_pod_router_op_t *ngx_http_pod_router_op_get(
    ngx_http_pod_router_ctx_t *ctx, ngx_uint_t kind);
void ngx_http_pod_router_op_free(ngx_http_pod_router_op_t *op);

/* ngx_http_pod_router_redis.c */
ngx_int_t ngx_http_pod_router_redis_init_worker(ngx_cycle_t *cycle);
void ngx_http_pod_router_redis_exit_worker(ngx_cycle_t *cycle);
ngx_int_t ngx_http_pod_router_redis_route(ngx_http_pod_router_ctx_t *ctx,
    ngx_uint_t touch);
void ngx_http_pod_router_redis_abandon(u_char *pod, size_t pod_len,
    u_char *request_id, size_t request_id_len);
void ngx_http_pod_router_redis_touch(u_char *pod, size_t len);
void ngx_http_pod_router_redis_mark_stale(u_char *pod, size_t pod_len,
    ngx_str_t *ip, ngx_str_t *port);
void ngx_http_pod_router_redis_cancel(ngx_http_pod_router_op_t *op,
    ngx_uint_t timed_out);

/* ngx_http_pod_router_amqp.c */
ngx_int_t ngx_http_pod_router_amqp_publish(ngx_http_pod_router_ctx_t *ctx);

/* ngx_http_pod_router_upstream.c */
char *ngx_http_pod_router_balancer(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_pod_router_add_variables(ngx_conf_t *cf);

/* ngx_http_pod_router_status.c */

/* pod_router_new_pod_seconds{path}: a warm pool pod, or a cold start */
#define NGX_HTTP_POD_ROUTER_NEW_POD_WARM     0
#define NGX_HTTP_POD_ROUTER_NEW_POD_COLD     1
#define NGX_HTTP_POD_ROUTER_NEW_POD_PATHS    2
#define NGX_HTTP_POD_ROUTER_NEW_POD_BUCKETS  14
#define NGX_HTTP_POD_ROUTER_NEW_POD_SLOTS                                     \
    (2 + NGX_HTTP_POD_ROUTER_NEW_POD_BUCKETS + 1)

typedef enum {
    NGX_HTTP_POD_ROUTER_M_CACHE_HITS = NGX_HTTP_POD_ROUTER_OUTCOMES,
    NGX_HTTP_POD_ROUTER_M_CACHE_MISSES,
    NGX_HTTP_POD_ROUTER_M_REDIS_ERRORS,
    NGX_HTTP_POD_ROUTER_M_EVENTS_PUBLISHED,
    NGX_HTTP_POD_ROUTER_M_EVENTS_FAILED,
    NGX_HTTP_POD_ROUTER_M_NOTIFICATIONS,
    NGX_HTTP_POD_ROUTER_M_WAITING,
    /* a histogram: count, sum in ms, then each bucket and +Inf */
    NGX_HTTP_POD_ROUTER_M_WAIT_COUNT,
    NGX_HTTP_POD_ROUTER_M_WAIT_SUM_MS,
    NGX_HTTP_POD_ROUTER_M_WAIT_BUCKETS,
    NGX_HTTP_POD_ROUTER_M_POOL_CLAIMS = NGX_HTTP_POD_ROUTER_M_WAIT_BUCKETS + 10,
    NGX_HTTP_POD_ROUTER_M_POOL_EMPTY,
    /* a histogram like the one above for each path */
    NGX_HTTP_POD_ROUTER_M_NEW_POD,
    NGX_HTTP_POD_ROUTER_M_REJECTED = NGX_HTTP_POD_ROUTER_M_NEW_POD
                                     + NGX_HTTP_POD_ROUTER_NEW_POD_PATHS
                                       * NGX_HTTP_POD_ROUTER_NEW_POD_SLOTS,
    NGX_HTTP_POD_ROUTER_M_COUNT = NGX_HTTP_POD_ROUTER_M_REJECTED
                                  + NGX_HTTP_POD_ROUTER_REJECTS
} ngx_http_pod_router_metric_e;

ngx_int_t ngx_http_pod_router_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
void ngx_http_pod_router_metrics_bind(ngx_shm_zone_t *zone);
void ngx_http_pod_router_count(ngx_uint_t metric, ngx_atomic_int_t delta);
void ngx_http_pod_router_observe_wait(ngx_msec_t ms);
void ngx_http_pod_router_observe_new_pod(ngx_uint_t path, ngx_msec_t ms);
char *ngx_http_pod_router_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_POD_ROUTER_H_INCLUDED_ */
