
/*
 * A request's journey through pod_router, in the precontent phase (after
 * access checks, so "satisfy any" and allow/deny keep their meaning):
 *
 *   identity (_identity.c) -> pod name -> cache? -> Redis "route" ->
 *     ready:          check the allow-list, hand the address to the
 *                     balancer or $pod_router_upstream, rewrite the headers
 *                     the pod gets (_identity.c), let proxy_pass run;
 *     claimed:        a new user took a warm pool pod: as ready, no event;
 *     create:         publish the creation event (thread pool), then park;
 *     pending/terminating: park;
 *     failed:         502 with the controller's reason.
 *
 * A parked request waits for a notification ("ready <pod>") on the worker's
 * subscriber link, or for its periodic re-check, then routes again; it
 * gives up with 503 and Retry-After at pod_router_wait_timeout. A
 * notification that arrives while the request's route or its creation
 * event is under way (the controller can record a pod that already runs
 * within milliseconds) makes it route again at once instead of parking
 * until the next re-check. The phase
 * handler is re-entered after each asynchronous step and reads ctx->phase.
 * Each answer to a waiting request (the page, the 503, the failure) names
 * the creation's latest spawn stage in X-Pod-Router-Stage.
 */


#include "ngx_http_pod_router.h"


#define NGX_HTTP_POD_ROUTER_RETRY_AFTER  "2"

/*
 * Ways per set of the per-worker table. Direct-mapped, 10,000 users in the
 * default 16,384 entries leave 25% of them sharing a slot with another and
 * evicting each other on every request (make bench saw the cache save
 * little at 10,000 users); with four ways, 6% find their set full (both
 * figures simulated).
 */
#define NGX_HTTP_POD_ROUTER_CACHE_WAYS   4


/* what a set's scan reads comes first: one cache line per way */
typedef struct {
    unsigned                    valid:1;
    unsigned                    has_address:1;
    size_t                      pod_len;
    ngx_msec_t                  used;        /* the least recent goes first */
    ngx_msec_t                  expires;
    ngx_msec_t                  touched;
    u_char                      pod[PR_POD_NAME_SIZE];
    ngx_sockaddr_t              sockaddr;
    socklen_t                   socklen;
} ngx_http_pod_router_cache_entry_t;


static ngx_int_t ngx_http_pod_router_start(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx);
static ngx_int_t ngx_http_pod_router_lookup(ngx_http_pod_router_ctx_t *ctx);
static void ngx_http_pod_router_resume(ngx_http_pod_router_ctx_t *ctx);
static void ngx_http_pod_router_fail(ngx_http_pod_router_ctx_t *ctx,
    ngx_int_t status, ngx_http_pod_router_outcome_e outcome);
static void ngx_http_pod_router_park(ngx_http_pod_router_ctx_t *ctx);
static ngx_uint_t ngx_http_pod_router_wants_page(ngx_http_request_t *r);
static ngx_int_t ngx_http_pod_router_hold(ngx_http_pod_router_ctx_t *ctx);
static void ngx_http_pod_router_unpark(ngx_http_pod_router_ctx_t *ctx);
static void ngx_http_pod_router_deadline_handler(ngx_event_t *ev);
static void ngx_http_pod_router_recheck_handler(ngx_event_t *ev);
static void ngx_http_pod_router_cleanup_request(void *data);
static ngx_int_t ngx_http_pod_router_set_peer(ngx_http_pod_router_ctx_t *ctx,
    struct sockaddr *sockaddr, socklen_t socklen);
static ngx_int_t ngx_http_pod_router_send_page(ngx_http_request_t *r,
    const char *stage);
static ngx_int_t ngx_http_pod_router_retry_after(ngx_http_request_t *r);
static ngx_int_t ngx_http_pod_router_stage_header(ngx_http_request_t *r,
    const char *stage);
static void ngx_http_pod_router_watch_client(ngx_http_request_t *r);
static void ngx_http_pod_router_schedule_wake(ngx_http_pod_router_ctx_t *ctx);
static void ngx_http_pod_router_hear(ngx_http_pod_router_ctx_t *ctx);
static void ngx_http_pod_router_listen(ngx_http_pod_router_ctx_t *ctx);
static ngx_http_pod_router_cache_entry_t *ngx_http_pod_router_cache_find(
    u_char *pod, size_t len);
static ngx_http_pod_router_cache_entry_t *ngx_http_pod_router_cache_slot(
    u_char *pod, size_t len);
static ngx_uint_t ngx_http_pod_router_touch_due(
    ngx_http_pod_router_cache_entry_t *entry);
static void ngx_http_pod_router_active_handler(ngx_event_t *ev);


/* requests that hear their pod's notifications: those told to wait */
static ngx_queue_t                         ngx_http_pod_router_listening;
/* notifications heard by this worker, any pod's: see listen() */
static ngx_uint_t                          ngx_http_pod_router_news;
/* of them, the parked ones: what pod_router_max_waiting bounds */
static ngx_uint_t                          ngx_http_pod_router_nparked;
static ngx_queue_t                         ngx_http_pod_router_active;
static ngx_event_t                         ngx_http_pod_router_active_timer;
static ngx_http_pod_router_op_t           *ngx_http_pod_router_free_ops;
static ngx_http_pod_router_cache_entry_t  *ngx_http_pod_router_cache;
static ngx_uint_t                          ngx_http_pod_router_cache_mask;


/* worker lifecycle */


void
ngx_http_pod_router_handler_init_worker(ngx_cycle_t *cycle)
{
    ngx_uint_t                        size;
    ngx_http_pod_router_main_conf_t  *prmcf;

    prmcf = ngx_http_pod_router_main_conf();

    ngx_queue_init(&ngx_http_pod_router_listening);
    ngx_queue_init(&ngx_http_pod_router_active);
    ngx_http_pod_router_nparked = 0;

    /*
     * The per-worker table: the cached address of a ready pod (when
     * pod_router_cache_ttl is on) and when this worker last reported the
     * pod's activity. Set-associative and fixed in size, so bounded in
     * memory: a pod pushed out only costs one Redis lookup.
     */
    for (size = NGX_HTTP_POD_ROUTER_CACHE_WAYS;
         size < prmcf->cache_size;
         size <<= 1)
    { /* void */ }

    ngx_http_pod_router_cache = ngx_calloc(
                        size * sizeof(ngx_http_pod_router_cache_entry_t),
                        cycle->log);
    ngx_http_pod_router_cache_mask = ngx_http_pod_router_cache
                                   ? size / NGX_HTTP_POD_ROUTER_CACHE_WAYS - 1
                                   : 0;

    ngx_http_pod_router_active_timer.handler =
                                        ngx_http_pod_router_active_handler;
    ngx_http_pod_router_active_timer.log = cycle->log;
    ngx_http_pod_router_active_timer.data = NULL;
    ngx_http_pod_router_active_timer.cancelable = 1;
}


void
ngx_http_pod_router_handler_exit_worker(ngx_cycle_t *cycle)
{
    ngx_http_pod_router_op_t  *op;

    if (ngx_http_pod_router_active_timer.timer_set) {
        ngx_del_timer(&ngx_http_pod_router_active_timer);
    }

    while (ngx_http_pod_router_free_ops) {
        op = ngx_http_pod_router_free_ops;
        ngx_http_pod_router_free_ops = op->next_free;
        ngx_free(op);
    }

    if (ngx_http_pod_router_cache) {
        ngx_free(ngx_http_pod_router_cache);
        ngx_http_pod_router_cache = NULL;
    }
}


ngx_http_pod_router_op_t *
ngx_http_pod_router_op_get(ngx_http_pod_router_ctx_t *ctx, ngx_uint_t kind)
{
    ngx_http_pod_router_op_t  *op;

    op = ngx_http_pod_router_free_ops;

    if (op) {
        ngx_http_pod_router_free_ops = op->next_free;

    } else {
        op = ngx_alloc(sizeof(ngx_http_pod_router_op_t), ngx_cycle->log);
        if (op == NULL) {
            return NULL;
        }
    }

    op->ctx = ctx;
    op->kind = kind;
    op->retried = 0;
    op->touch = 0;
    op->next_free = NULL;

    return op;
}


void
ngx_http_pod_router_op_free(ngx_http_pod_router_op_t *op)
{
    op->ctx = NULL;
    op->next_free = ngx_http_pod_router_free_ops;
    ngx_http_pod_router_free_ops = op;
}


/*
 * A request that error_page sent on to a pod_router location after its pod
 * failed: nginx cleared the modules' contexts, but this request's earlier
 * one is still among its pool's cleanups (the most recent first).
 */

static ngx_http_pod_router_ctx_t *
ngx_http_pod_router_previous(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_pod_router_cleanup_request) {
            return cln->data;
        }
    }

    return NULL;
}


/* how long a recovering request waits out its dead pod's address */
#define NGX_HTTP_POD_ROUTER_REFUSED_WAIT  10000


/* the phase handler */


ngx_int_t
ngx_http_pod_router_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_pod_router_ctx_t       *ctx, *previous;
    ngx_http_pod_router_loc_conf_t  *prlcf;

    prlcf = ngx_http_get_module_loc_conf(r, ngx_http_pod_router_module);

    if (!prlcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_pod_router_module);

    if (ctx == NULL) {
        previous = ngx_http_pod_router_previous(r);

        /*
         * Routing again is a cold start when the pod refused the
         * connection (it is dead and was dropped); after a pod that took
         * the connection and then failed (closed it, answered nothing
         * valid) it would send the same request to the same pod a second
         * time, which may not be safe to repeat: that keeps its 502.
         */
        if (previous
            && previous->phase == NGX_HTTP_POD_ROUTER_PHASE_PROXY
            && !previous->pod_refused)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "pod_router: pod \"%*s\" failed after taking the "
                          "request; it is not sent again",
                          previous->pod_len, previous->pod);
            return NGX_HTTP_BAD_GATEWAY;
        }

        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_pod_router_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (previous && previous->pod_refused) {
            ngx_memcpy(&ctx->refused_sockaddr, previous->peer.sockaddr,
                       previous->peer.socklen);
            ctx->refused_socklen = previous->peer.socklen;
        }

        ctx->request = r;
        ngx_http_set_ctx(r, ctx, ngx_http_pod_router_module);

        rc = ngx_http_pod_router_start(r, ctx);
        if (rc != NGX_AGAIN) {
            return rc;
        }
    }

    switch (ctx->phase) {

    case NGX_HTTP_POD_ROUTER_PHASE_PROXY:
        if (!ctx->upstream_headers) {
            if (ngx_http_pod_router_upstream_headers(r, ctx) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ctx->upstream_headers = 1;
        }

        return NGX_DECLINED;

    case NGX_HTTP_POD_ROUTER_PHASE_FINAL:
        ngx_http_pod_router_count(ctx->outcome, 1);

        if (ctx->outcome == NGX_HTTP_POD_ROUTER_FAILED
            && ngx_http_pod_router_stage_header(r, "failed") != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ctx->reason.len) {
            return ngx_http_pod_router_respond(r,
                       ngx_http_pod_router_send_text(r, ctx->status,
                                                     &ctx->reason));
        }

        if (ctx->status == NGX_HTTP_SERVICE_UNAVAILABLE
            && ngx_http_pod_router_retry_after(r) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if ((ctx->outcome == NGX_HTTP_POD_ROUTER_STARTING
             || ctx->outcome == NGX_HTTP_POD_ROUTER_TIMEOUT)
            && ngx_http_pod_router_stage_header(r, ctx->stage) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ctx->outcome == NGX_HTTP_POD_ROUTER_STARTING) {
            return ngx_http_pod_router_respond(r,
                       ngx_http_pod_router_send_page(r, ctx->stage));
        }

        return ctx->status;

    default:
        /* still waiting for Redis, the broker or a notification */
        return NGX_DONE;
    }
}


/*
 * NGX_AGAIN: go on as ctx->phase says (proxy, or wait for Redis); anything
 * else is the request's answer.
 */

static ngx_int_t
ngx_http_pod_router_start(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx)
{
    u_char                             err[PR_ERROR_SIZE];
    ngx_int_t                          ret;
    ngx_str_t                          identity, text;
    pr_status_t                        rc;
    ngx_pool_cleanup_t                *cln;
    ngx_http_pod_router_main_conf_t   *prmcf;
    ngx_http_pod_router_cache_entry_t *entry;

    prmcf = ngx_http_pod_router_main_conf();

    ret = ngx_http_pod_router_identity(r, ctx, &identity);
    if (ret != NGX_OK) {
        return ret;
    }

    rc = pr_pod_name(prmcf->naming, (char *) identity.data, identity.len,
                     (char *) ctx->pod, sizeof(ctx->pod), &ctx->pod_len,
                     (char *) err, sizeof(err));

    if (rc == PR_INVALID_IDENTITY) {
        /* the reason names offsets and code points, never the bytes */
        ctx->outcome = NGX_HTTP_POD_ROUTER_BAD_IDENTITY;
        ngx_http_pod_router_count(ctx->outcome, 1);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pod_router: rejected identity: %s", err);
        text.data = err;
        text.len = ngx_strlen(err);
        return ngx_http_pod_router_respond(r,
                   ngx_http_pod_router_send_text(r, NGX_HTTP_BAD_REQUEST, &text));
    }

    if (rc != PR_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pod_router: deriving the pod name failed: %s", err);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the complex value may point into buffers that change: keep a copy */
    ctx->identity.data = ngx_pstrdup(r->pool, &identity);
    if (ctx->identity.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ctx->identity.len = identity.len;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    cln->handler = ngx_http_pod_router_cleanup_request;
    cln->data = ctx;

    ctx->started_at = ngx_current_msec;

    ctx->deadline.handler = ngx_http_pod_router_deadline_handler;
    ctx->deadline.data = ctx;
    ctx->deadline.log = r->connection->log;
    ctx->recheck.handler = ngx_http_pod_router_recheck_handler;
    ctx->recheck.data = ctx;
    ctx->recheck.log = r->connection->log;

    if (prmcf->cache_ttl) {
        entry = ngx_http_pod_router_cache_slot(ctx->pod, ctx->pod_len);

        if (entry && entry->valid && entry->has_address
            && entry->expires > ngx_current_msec)
        {
            ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_CACHE_HITS, 1);

            if (ngx_http_pod_router_set_peer(ctx, &entry->sockaddr.sockaddr,
                                             entry->socklen)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* the entry in hand: one scan of its set per cached request */
            if (ngx_http_pod_router_touch_due(entry)) {
                ngx_http_pod_router_redis_touch(ctx->pod, ctx->pod_len);
            }

            ctx->outcome = NGX_HTTP_POD_ROUTER_CACHE_HIT;
            ngx_http_pod_router_count(ctx->outcome, 1);
            ctx->phase = NGX_HTTP_POD_ROUTER_PHASE_PROXY;
            return NGX_AGAIN;
        }

        ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_CACHE_MISSES, 1);
    }

    if (ngx_http_pod_router_lookup(ctx) != NGX_OK) {
        ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_UNAVAILABLE, 1);
        if (ngx_http_pod_router_retry_after(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ctx->outcome = NGX_HTTP_POD_ROUTER_UNAVAILABLE;
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_pod_router_lookup(ngx_http_pod_router_ctx_t *ctx)
{
    ngx_uint_t                        touch;
    ngx_http_pod_router_main_conf_t  *prmcf;

    prmcf = ngx_http_pod_router_main_conf();

    touch = ngx_http_pod_router_touch_due(
                ngx_http_pod_router_cache_slot(ctx->pod, ctx->pod_len));

    if (ngx_http_pod_router_redis_route(ctx, touch) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->phase = NGX_HTTP_POD_ROUTER_PHASE_BUSY;

    ctx->notified = 0;
    ctx->news_seen = ngx_http_pod_router_news;

    /* Redis answers in milliseconds; a hung one must not hold requests */
    if (ctx->recheck.timer_set) {
        ngx_del_timer(&ctx->recheck);
    }
    ngx_add_timer(&ctx->recheck, prmcf->redis_timeout);

    return NGX_OK;
}


/*
 * nginx's $request_id (16 random bytes from OpenSSL) names a creation: the
 * owner of its lock and the event's message id. Only the route script and
 * what follows it use one, so a ready user's request never pays for it.
 */

ngx_int_t
ngx_http_pod_router_request_id(ngx_http_pod_router_ctx_t *ctx)
{
    ngx_http_variable_value_t        *vv;
    ngx_http_pod_router_main_conf_t  *prmcf;

    if (ctx->request_id.len) {
        return NGX_OK;
    }

    prmcf = ngx_http_pod_router_main_conf();

    vv = ngx_http_get_indexed_variable(ctx->request, prmcf->request_id_index);
    if (vv == NULL || vv->not_found || vv->len == 0) {
        return NGX_ERROR;
    }

    ctx->request_id.data = vv->data;
    ctx->request_id.len = vv->len;

    return NGX_OK;
}


void
ngx_http_pod_router_route_done(ngx_http_pod_router_ctx_t *ctx,
    pr_status_t rc, pr_route_result_t *result, const char *err)
{
    ngx_int_t                          ret;
    ngx_addr_t                         addr;
    ngx_http_request_t                *r;
    ngx_http_pod_router_loc_conf_t    *prlcf;
    ngx_http_pod_router_main_conf_t   *prmcf;
    ngx_http_pod_router_cache_entry_t *entry;

    r = ctx->request;
    prlcf = ngx_http_get_module_loc_conf(r, ngx_http_pod_router_module);
    prmcf = ngx_http_pod_router_main_conf();

    if (ctx->phase == NGX_HTTP_POD_ROUTER_PHASE_FINAL) {
        return;
    }

    if (ctx->recheck.timer_set) {
        ngx_del_timer(&ctx->recheck);
    }

    if (rc != PR_OK) {
        ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_REDIS_ERRORS, 1);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pod_router: redis route for \"%*s\" failed: %s",
                      ctx->pod_len, ctx->pod, err);
        ngx_http_pod_router_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 NGX_HTTP_POD_ROUTER_UNAVAILABLE);
        return;
    }

    switch (result->outcome) {

    case PR_OUTCOME_CLAIMED:
        /*
         * The route script gave this new user a free warm pool pod and
         * wrote the session ready at its address, in one step: no event to
         * publish, no wait. A parked request can claim too (its session
         * was reaped meanwhile). The pool pod's name is logged, as the
         * session keeps its own name: it is how an operator finds the pod.
         */
        ctx->outcome = NGX_HTTP_POD_ROUTER_CLAIMED;
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pod_router: \"%*s\" claimed the warm pod \"%s\"",
                      ctx->pod_len, ctx->pod, result->pool_pod);

        /* fall through */

    case PR_OUTCOME_READY:
        if (ngx_parse_addr(r->pool, &addr, (u_char *) result->ip,
                           ngx_strlen(result->ip))
            != NGX_OK)
        {
            ngx_http_pod_router_fail(ctx, NGX_HTTP_BAD_GATEWAY,
                                     NGX_HTTP_POD_ROUTER_FORBIDDEN);
            return;
        }

        ngx_inet_set_port(addr.sockaddr, (in_port_t) result->port);

        /* a poisoned Redis must not turn the gateway into an open proxy */
        if (prlcf->allow_cidrs == NULL
            || ngx_cidr_match(addr.sockaddr, prlcf->allow_cidrs) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "pod_router: pod \"%*s\" address %s is outside "
                          "pod_router_allow_cidr", ctx->pod_len, ctx->pod,
                          result->ip);
            ngx_http_pod_router_fail(ctx, NGX_HTTP_BAD_GATEWAY,
                                     NGX_HTTP_POD_ROUTER_FORBIDDEN);
            return;
        }

        /*
         * After a refused connect the session can name the dead address
         * again: the controller recorded the pod ready from an API that
         * has not heard of the death yet (the kubelet notices within its
         * relist, a second). Wait as for a pending pod: once the kubelet
         * reports it, the controller replaces the pod and the session
         * moves on. Only for a while: a new pod may get a freed address
         * back, which some IPAMs do after a cool-down.
         */
        if (ctx->refused_socklen
            && ngx_current_msec - ctx->started_at
               < NGX_HTTP_POD_ROUTER_REFUSED_WAIT
            && result->outcome == PR_OUTCOME_READY
            && ngx_cmp_sockaddr(addr.sockaddr, addr.socklen,
                                (struct sockaddr *) &ctx->refused_sockaddr,
                                ctx->refused_socklen, 1)
               == NGX_OK)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "pod_router: pod \"%*s\" is still recorded at "
                          "%s, which refused the connection; waiting",
                          ctx->pod_len, ctx->pod, result->ip);
            if (ctx->outcome == NGX_HTTP_POD_ROUTER_NONE) {
                ctx->outcome = NGX_HTTP_POD_ROUTER_WAIT;
            }
            ngx_http_pod_router_park(ctx);
            return;
        }

        if (ngx_http_pod_router_set_peer(ctx, addr.sockaddr, addr.socklen)
            != NGX_OK)
        {
            ngx_http_pod_router_fail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     NGX_HTTP_POD_ROUTER_UNAVAILABLE);
            return;
        }

        entry = ngx_http_pod_router_cache_slot(ctx->pod, ctx->pod_len);
        if (entry && prmcf->cache_ttl) {
            ngx_memcpy(&entry->sockaddr, addr.sockaddr, addr.socklen);
            entry->socklen = addr.socklen;
            entry->expires = ngx_current_msec + prmcf->cache_ttl;
            entry->has_address = 1;
        }

        if (ctx->outcome == NGX_HTTP_POD_ROUTER_NONE) {
            ctx->outcome = NGX_HTTP_POD_ROUTER_HIT;
        }

        if (ctx->parked_at) {
            ngx_http_pod_router_observe_wait(ngx_current_msec
                                             - ctx->parked_at);
        }

        /*
         * A new user's pod: taken from the pool, or created for this
         * request. A claim counts once it is usable; a parked request that
         * claimed waited for other reasons first, so its time is not the
         * pool's.
         */
        if (ctx->outcome == NGX_HTTP_POD_ROUTER_CLAIMED) {
            ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_POOL_CLAIMS, 1);

            if (ctx->parked_at == 0) {
                ngx_http_pod_router_observe_new_pod(
                    NGX_HTTP_POD_ROUTER_NEW_POD_WARM,
                    ngx_current_msec - ctx->started_at);
            }

        } else if (ctx->outcome == NGX_HTTP_POD_ROUTER_MISS) {
            ngx_http_pod_router_observe_new_pod(
                NGX_HTTP_POD_ROUTER_NEW_POD_COLD,
                ngx_current_msec - ctx->started_at);
        }

        ngx_http_pod_router_count(ctx->outcome, 1);
        ctx->phase = NGX_HTTP_POD_ROUTER_PHASE_PROXY;
        ngx_http_pod_router_resume(ctx);
        return;

    case PR_OUTCOME_CREATE:
        ctx->outcome = NGX_HTTP_POD_ROUTER_MISS;

        if (result->pool_empty) {
            ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_POOL_EMPTY, 1);
        }

        ngx_http_pod_router_listen(ctx);

        /*
         * A request that will be held takes its place among the waiting
         * ones before its pod is asked for: one turned away must not
         * leave a creation behind it. The lock goes back, so the user's
         * next request (here or on another gateway) can create.
         */
        if (!ngx_http_pod_router_wants_page(r)
            && ngx_http_pod_router_hold(ctx) != NGX_OK)
        {
            ngx_http_pod_router_redis_abandon(ctx->pod, ctx->pod_len,
                                              ctx->request_id.data,
                                              ctx->request_id.len);
            ngx_http_pod_router_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     NGX_HTTP_POD_ROUTER_OVERLOAD);
            return;
        }

        /* publishing counts against the wait, and the client may leave */
        if (!ctx->deadline.timer_set) {
            ngx_add_timer(&ctx->deadline, prlcf->wait_timeout);
        }
        ngx_http_pod_router_watch_client(r);

        ret = ngx_http_pod_router_amqp_publish(ctx);

        if (ret == NGX_OK) {
            return;
        }

        ngx_http_pod_router_redis_abandon(ctx->pod, ctx->pod_len,
                                          ctx->request_id.data,
                                          ctx->request_id.len);
        ngx_http_pod_router_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 ret == NGX_DECLINED
                                 ? NGX_HTTP_POD_ROUTER_OVERLOAD
                                 : NGX_HTTP_POD_ROUTER_UNAVAILABLE);
        return;

    case PR_OUTCOME_PENDING:
        /* rechecks route again: the stage follows the creation */
        ctx->stage = result->stage;

        /* fall through */

    case PR_OUTCOME_TERMINATING:
        if (ctx->outcome == NGX_HTTP_POD_ROUTER_NONE) {
            ctx->outcome = NGX_HTTP_POD_ROUTER_WAIT;
        }
        ngx_http_pod_router_park(ctx);
        return;

    case PR_OUTCOME_FAILED:
        ctx->reason.len = ngx_strlen(result->reason);
        ctx->reason.data = ngx_pnalloc(r->pool, ctx->reason.len);
        if (ctx->reason.data == NULL) {
            ctx->reason.len = 0;
        } else {
            ngx_memcpy(ctx->reason.data, result->reason, ctx->reason.len);
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pod_router: pod \"%*s\" failed: %s", ctx->pod_len,
                      ctx->pod, result->reason);
        ngx_http_pod_router_fail(ctx, NGX_HTTP_BAD_GATEWAY,
                                 NGX_HTTP_POD_ROUTER_FAILED);
        return;

    default: /* PR_OUTCOME_CONFLICT */
        /*
         * The session under this identity's pod name records another
         * identity: a hash collision (docs/pod-names.md) or a Redis written
         * by hand. Not the gateway's fault, and no retry will help: 409,
         * saying so, never naming the other identity.
         */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pod_router: pod \"%*s\" belongs to another identity",
                      ctx->pod_len, ctx->pod);
        ngx_str_set(&ctx->reason, "this identity's pod name is held by "
                                  "another identity; an operator must "
                                  "resolve it");
        ngx_http_pod_router_fail(ctx, NGX_HTTP_CONFLICT,
                                 NGX_HTTP_POD_ROUTER_CONFLICT);
        return;
    }
}


void
ngx_http_pod_router_publish_done(ngx_http_pod_router_ctx_t *ctx,
    ngx_int_t ok, const char *err)
{
    if (!ok) {
        /* the publisher has given the lock back already */
        ngx_http_pod_router_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 NGX_HTTP_POD_ROUTER_UNAVAILABLE);
        return;
    }

    /* what the route script wrote as the session's stage */
    ctx->stage = "queued";

    ngx_http_pod_router_park(ctx);
}


static void
ngx_http_pod_router_fail(ngx_http_pod_router_ctx_t *ctx, ngx_int_t status,
    ngx_http_pod_router_outcome_e outcome)
{
    ngx_http_pod_router_unpark(ctx);

    /* the answer is final: nothing may wake or route this request again */
    if (ctx->recheck.timer_set) {
        ngx_del_timer(&ctx->recheck);
    }

    if (ctx->recheck.posted) {
        ngx_delete_posted_event(&ctx->recheck);
    }

    if (ctx->op) {
        ngx_http_pod_router_redis_cancel(ctx->op, 0);
        ctx->op = NULL;
    }

    ctx->status = status;
    ctx->outcome = outcome;
    ctx->phase = NGX_HTTP_POD_ROUTER_PHASE_FINAL;

    ngx_http_pod_router_resume(ctx);
}


static void
ngx_http_pod_router_resume(ngx_http_pod_router_ctx_t *ctx)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ngx_http_pod_router_unpark(ctx);

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/* parking */


static void
ngx_http_pod_router_park(ngx_http_pod_router_ctx_t *ctx)
{
    ngx_http_request_t               *r;
    ngx_http_pod_router_main_conf_t  *prmcf;

    r = ctx->request;
    prmcf = ngx_http_pod_router_main_conf();

    ngx_http_pod_router_listen(ctx);

    if (!ctx->parked) {
        if (ngx_http_pod_router_wants_page(r)) {
            /* a browser gets a page that reloads itself instead of a hang */
            ctx->outcome = NGX_HTTP_POD_ROUTER_STARTING;
            ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
            ctx->phase = NGX_HTTP_POD_ROUTER_PHASE_FINAL;
            ngx_http_pod_router_resume(ctx);
            return;
        }

        if (ngx_http_pod_router_hold(ctx) != NGX_OK) {
            ngx_http_pod_router_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     NGX_HTTP_POD_ROUTER_OVERLOAD);
            return;
        }
    }

    ctx->phase = NGX_HTTP_POD_ROUTER_PHASE_BUSY;

    if (ctx->recheck.timer_set) {
        ngx_del_timer(&ctx->recheck);
    }

    if (ctx->notified) {
        /* the news came while the answer was on its way: it may be stale */
        ngx_http_pod_router_schedule_wake(ctx);

    } else {
        /* pub/sub is fire-and-forget: re-check now and then regardless */
        ngx_add_timer(&ctx->recheck, prmcf->recheck_interval);
    }

    ngx_http_pod_router_watch_client(r);
}


/* whether this request gets the page that reloads itself instead of a hold */

static ngx_uint_t
ngx_http_pod_router_wants_page(ngx_http_request_t *r)
{
    ngx_table_elt_t                 *accept;
    ngx_http_pod_router_loc_conf_t  *prlcf;

    prlcf = ngx_http_get_module_loc_conf(r, ngx_http_pod_router_module);

    if (prlcf->wait_mode == NGX_HTTP_POD_ROUTER_WAIT_PAGE) {
        return 1;
    }

    accept = r->headers_in.accept;

    return prlcf->wait_mode == NGX_HTTP_POD_ROUTER_WAIT_AUTO
           && accept
           && ngx_strlcasestrn(accept->value.data,
                               accept->value.data + accept->value.len,
                               (u_char *) "text/html", 9 - 1)
              != NULL;
}


/*
 * Counts the request among the worker's held ones, bounded by
 * pod_router_max_waiting: NGX_DECLINED when they are all taken.
 */

static ngx_int_t
ngx_http_pod_router_hold(ngx_http_pod_router_ctx_t *ctx)
{
    ngx_http_request_t              *r;
    ngx_http_pod_router_loc_conf_t  *prlcf;

    r = ctx->request;

    if (ngx_http_pod_router_nparked
        >= ngx_http_pod_router_main_conf()->max_waiting)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "pod_router: %ui requests already wait in this worker "
                      "(pod_router_max_waiting)", ngx_http_pod_router_nparked);
        return NGX_DECLINED;
    }

    prlcf = ngx_http_get_module_loc_conf(r, ngx_http_pod_router_module);

    ctx->parked = 1;
    ctx->parked_at = ngx_current_msec;
    ngx_http_pod_router_nparked++;

    if (!ctx->deadline.timer_set) {
        ngx_add_timer(&ctx->deadline, prlcf->wait_timeout);
    }

    ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_WAITING, 1);

    return NGX_OK;
}


/*
 * Notice a client that gives up while it waits. With edge-triggered
 * events, a FIN that arrived with the request has already been reported:
 * look at it now rather than wait for an edge that will not come.
 */

static void
ngx_http_pod_router_watch_client(ngx_http_request_t *r)
{
    ngx_event_t  *rev;

    r->read_event_handler = ngx_http_test_reading;

    rev = r->connection->read;

    if ((rev->ready || rev->pending_eof) && !rev->posted) {
        ngx_post_event(rev, &ngx_posted_events);
    }
}


static void
ngx_http_pod_router_unpark(ngx_http_pod_router_ctx_t *ctx)
{
    if (ctx->listening) {
        ngx_queue_remove(&ctx->waiting);
        ctx->listening = 0;
    }

    if (ctx->parked) {
        ctx->parked = 0;
        ngx_http_pod_router_nparked--;
        ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_WAITING, -1);
    }

    if (ctx->deadline.timer_set) {
        ngx_del_timer(&ctx->deadline);
    }
}


static void
ngx_http_pod_router_wake(ngx_http_pod_router_ctx_t *ctx)
{
    if (ctx->phase == NGX_HTTP_POD_ROUTER_PHASE_FINAL) {
        return;
    }

    if (ctx->op) {
        ctx->notified = 1;  /* routes again when the answer says wait */
        return;
    }

    if (ngx_http_pod_router_lookup(ctx) != NGX_OK) {
        ngx_http_pod_router_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 NGX_HTTP_POD_ROUTER_UNAVAILABLE);
    }
}


void
ngx_http_pod_router_notify(ngx_uint_t kind, u_char *pod, size_t len)
{
    ngx_queue_t                *q, *next;
    ngx_http_pod_router_ctx_t  *ctx;

    ngx_http_pod_router_news++;

    /* the address may have changed: drop what this worker cached */
    if (kind != PR_NOTIFY_READY) {
        ngx_http_pod_router_cache_entry_t  *entry;

        entry = ngx_http_pod_router_cache_find(pod, len);
        if (entry) {
            entry->has_address = 0;
        }
    }

    for (q = ngx_queue_head(&ngx_http_pod_router_listening);
         q != ngx_queue_sentinel(&ngx_http_pod_router_listening);
         q = next)
    {
        next = ngx_queue_next(q);
        ctx = ngx_queue_data(q, ngx_http_pod_router_ctx_t, waiting);

        if (ctx->pod_len == len && ngx_memcmp(ctx->pod, pod, len) == 0) {
            ngx_http_pod_router_hear(ctx);
        }
    }
}


/*
 * The upstream could not connect to the pod's recorded address: the pod is
 * dead. The session is forgotten (if it still points there), so the next
 * route creates a pod; with "error_page 502 = @location" pointing at a
 * pod_router location, this very request takes that cold path instead of
 * answering 502 (docs/directives.md).
 */

void
ngx_http_pod_router_dead_pod(ngx_http_pod_router_ctx_t *ctx)
{
    u_char                             ip_text[NGX_SOCKADDR_STRLEN];
    u_char                             port_text[NGX_INT_T_LEN];
    ngx_str_t                          ip, port;
    ngx_http_pod_router_cache_entry_t *entry;

    ip.data = ip_text;
    ip.len = ngx_sock_ntop(ctx->peer.sockaddr, ctx->peer.socklen, ip_text,
                           sizeof(ip_text), 0);
    port.data = port_text;
    port.len = ngx_sprintf(port_text, "%d",
                           (int) ngx_inet_get_port(ctx->peer.sockaddr))
               - port_text;

    ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                  "pod_router: pod \"%*s\" at %V refused the connection; "
                  "its session is dropped", ctx->pod_len, ctx->pod,
                  &ctx->peer.name);

    ctx->pod_refused = 1;

    entry = ngx_http_pod_router_cache_find(ctx->pod, ctx->pod_len);
    if (entry) {
        entry->has_address = 0;
    }

    ngx_http_pod_router_redis_mark_stale(ctx->pod, ctx->pod_len, &ip, &port);
}


void
ngx_http_pod_router_wake_all(void)
{
    ngx_queue_t                *q, *next;
    ngx_http_pod_router_ctx_t  *ctx;

    ngx_http_pod_router_news++;

    for (q = ngx_queue_head(&ngx_http_pod_router_listening);
         q != ngx_queue_sentinel(&ngx_http_pod_router_listening);
         q = next)
    {
        next = ngx_queue_next(q);
        ctx = ngx_queue_data(q, ngx_http_pod_router_ctx_t, waiting);
        ngx_http_pod_router_hear(ctx);
    }
}


/*
 * A request told to wait hears its pod's notifications from now on. Until
 * now it was not listening (a ready user's request never pays for that);
 * if any notification came while its first route was under way, that one
 * may have been its own: it counts as heard, and costs at most one more
 * route.
 */

static void
ngx_http_pod_router_listen(ngx_http_pod_router_ctx_t *ctx)
{
    if (ctx->listening) {
        return;
    }

    ngx_queue_insert_tail(&ngx_http_pod_router_listening, &ctx->waiting);
    ctx->listening = 1;

    if (ctx->news_seen != ngx_http_pod_router_news) {
        ctx->notified = 1;
    }
}


/*
 * News of the request's pod. A request whose route or creation event is
 * under way remembers it: the answer it gets may predate the news, so it
 * routes again instead of parking. A parked one routes again now.
 */

static void
ngx_http_pod_router_hear(ngx_http_pod_router_ctx_t *ctx)
{
    if (ctx->op) {
        ctx->notified = 1;
        return;
    }

    ngx_http_pod_router_schedule_wake(ctx);
}


/*
 * Woken by a notification: route again from the posted-events queue, not
 * from inside this loop over the waiting queue, where finalizing one request
 * (and under HTTP/2 its siblings) could free the entry visited next.
 */

static void
ngx_http_pod_router_schedule_wake(ngx_http_pod_router_ctx_t *ctx)
{
    if (ctx->recheck.timer_set) {
        ngx_del_timer(&ctx->recheck);
    }

    if (!ctx->recheck.posted) {
        ngx_post_event(&ctx->recheck, &ngx_posted_events);
    }
}


static void
ngx_http_pod_router_deadline_handler(ngx_event_t *ev)
{
    ngx_http_pod_router_ctx_t  *ctx = ev->data;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "pod_router: gave up waiting for pod \"%*s\"",
                  ctx->pod_len, ctx->pod);

    if (ctx->op) {
        ngx_http_pod_router_redis_cancel(ctx->op, 0);
        ctx->op = NULL;
    }

    if (ctx->parked_at) {
        ngx_http_pod_router_observe_wait(ngx_current_msec - ctx->parked_at);
    }

    ngx_http_pod_router_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                             NGX_HTTP_POD_ROUTER_TIMEOUT);
}


static void
ngx_http_pod_router_recheck_handler(ngx_event_t *ev)
{
    ngx_http_pod_router_ctx_t  *ctx = ev->data;

    if (ctx->op) {
        /* the recheck timer doubles as the Redis timeout while a lookup runs */
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "pod_router: redis did not answer in time");
        ngx_http_pod_router_redis_cancel(ctx->op, 1);
        ctx->op = NULL;
        ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_REDIS_ERRORS, 1);
        ngx_http_pod_router_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 NGX_HTTP_POD_ROUTER_UNAVAILABLE);
        return;
    }

    ngx_http_pod_router_wake(ctx);
}


static void
ngx_http_pod_router_cleanup_request(void *data)
{
    ngx_http_pod_router_ctx_t  *ctx = data;

    if (ctx->op) {
        ngx_http_pod_router_redis_cancel(ctx->op, 0);
        ctx->op = NULL;
    }

    ngx_http_pod_router_unpark(ctx);

    if (ctx->recheck.timer_set) {
        ngx_del_timer(&ctx->recheck);
    }

    if (ctx->recheck.posted) {
        ngx_delete_posted_event(&ctx->recheck);
    }

    if (ctx->in_active_queue) {
        ngx_queue_remove(&ctx->active);
        ctx->in_active_queue = 0;

        /*
         * A long-lived connection just ended: that was activity up to now,
         * whatever this worker reported last. A short request has been
         * reported by its lookup already.
         */
        if (ngx_current_msec - ctx->proxied_at
            >= ngx_http_pod_router_main_conf()->touch_interval)
        {
            ngx_http_pod_router_redis_touch(ctx->pod, ctx->pod_len);
        }
    }
}


/* the chosen pod */


static ngx_int_t
ngx_http_pod_router_set_peer(ngx_http_pod_router_ctx_t *ctx,
    struct sockaddr *sockaddr, socklen_t socklen)
{
    ngx_memcpy(&ctx->peer_sockaddr, sockaddr, socklen);
    ctx->peer.sockaddr = &ctx->peer_sockaddr.sockaddr;
    ctx->peer.socklen = socklen;

    ctx->peer.name.data = ctx->peer_text;
    ctx->peer.name.len = ngx_sock_ntop(ctx->peer.sockaddr, ctx->peer.socklen,
                                       ctx->peer_text, NGX_SOCKADDR_STRLEN,
                                       1);

    /*
     * Long-lived proxied connections (WebSocket, SSE, downloads) keep their
     * user active: the worker's active list is touched every
     * pod_router_touch_interval while they last.
     */
    if (!ctx->in_active_queue) {
        ngx_queue_insert_tail(&ngx_http_pod_router_active, &ctx->active);
        ctx->in_active_queue = 1;
        ctx->proxied_at = ngx_current_msec;

        if (!ngx_http_pod_router_active_timer.timer_set) {
            ngx_add_timer(&ngx_http_pod_router_active_timer,
                          ngx_http_pod_router_main_conf()->touch_interval);
        }
    }

    return NGX_OK;
}


static void
ngx_http_pod_router_active_handler(ngx_event_t *ev)
{
    ngx_queue_t                *q;
    ngx_http_pod_router_ctx_t  *ctx;

    for (q = ngx_queue_head(&ngx_http_pod_router_active);
         q != ngx_queue_sentinel(&ngx_http_pod_router_active);
         q = ngx_queue_next(q))
    {
        ctx = ngx_queue_data(q, ngx_http_pod_router_ctx_t, active);

        if (ngx_http_pod_router_touch_due(
                ngx_http_pod_router_cache_slot(ctx->pod, ctx->pod_len)))
        {
            ngx_http_pod_router_redis_touch(ctx->pod, ctx->pod_len);
        }
    }

    if (!ngx_queue_empty(&ngx_http_pod_router_active) && !ngx_exiting) {
        ngx_add_timer(ev, ngx_http_pod_router_main_conf()->touch_interval);
    }
}


/* the worker's table */


static ngx_http_pod_router_cache_entry_t *
ngx_http_pod_router_cache_set(u_char *pod, size_t len)
{
    return &ngx_http_pod_router_cache[(ngx_crc32_short(pod, len)
                                       & ngx_http_pod_router_cache_mask)
                                      * NGX_HTTP_POD_ROUTER_CACHE_WAYS];
}


/* the pod's entry, or NULL: what is not in the table is not put there */

static ngx_http_pod_router_cache_entry_t *
ngx_http_pod_router_cache_find(u_char *pod, size_t len)
{
    ngx_uint_t                          i;
    ngx_http_pod_router_cache_entry_t  *set;

    if (ngx_http_pod_router_cache == NULL) {
        return NULL;
    }

    set = ngx_http_pod_router_cache_set(pod, len);

    for (i = 0; i < NGX_HTTP_POD_ROUTER_CACHE_WAYS; i++) {
        if (set[i].valid && set[i].pod_len == len
            && ngx_memcmp(set[i].pod, pod, len) == 0)
        {
            return &set[i];
        }
    }

    return NULL;
}


/* the pod's entry, taking over its set's least recently used one if new */

static ngx_http_pod_router_cache_entry_t *
ngx_http_pod_router_cache_slot(u_char *pod, size_t len)
{
    ngx_uint_t                          i;
    ngx_http_pod_router_cache_entry_t  *set, *entry;

    if (ngx_http_pod_router_cache == NULL) {
        return NULL;
    }

    set = ngx_http_pod_router_cache_set(pod, len);
    entry = &set[0];

    for (i = 0; i < NGX_HTTP_POD_ROUTER_CACHE_WAYS; i++) {
        if (!set[i].valid) {
            if (entry->valid) {
                entry = &set[i];
            }
            continue;
        }

        if (set[i].pod_len == len && ngx_memcmp(set[i].pod, pod, len) == 0) {
            set[i].used = ngx_current_msec;
            return &set[i];
        }

        if (entry->valid && set[i].used < entry->used) {
            entry = &set[i];
        }
    }

    /* the pod pushed out costs one lookup later */
    ngx_memcpy(entry->pod, pod, len);
    entry->pod_len = len;
    entry->valid = 1;
    entry->has_address = 0;
    entry->touched = 0;
    entry->expires = 0;
    entry->used = ngx_current_msec;

    return entry;
}


/* whether this worker should report activity for the pod now */

static ngx_uint_t
ngx_http_pod_router_touch_due(ngx_http_pod_router_cache_entry_t *entry)
{
    ngx_http_pod_router_main_conf_t  *prmcf;

    prmcf = ngx_http_pod_router_main_conf();

    if (entry == NULL) {
        return 1;
    }

    if (entry->touched
        && ngx_current_msec - entry->touched < prmcf->touch_interval)
    {
        return 0;
    }

    entry->touched = ngx_current_msec;
    return 1;
}


/* responses */


/*
 * A body sent from a phase handler: finalize here and stop the phases, as
 * a content handler's caller would; returning the filter's NGX_OK to the
 * phase engine would run the content phase (proxy_pass) after it.
 */

ngx_int_t
ngx_http_pod_router_respond(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_finalize_request(r, rc);
    return NGX_DONE;
}


static ngx_int_t
ngx_http_pod_router_retry_after(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    ngx_str_set(&h->value, NGX_HTTP_POD_ROUTER_RETRY_AFTER);

    return NGX_OK;
}


ngx_int_t
ngx_http_pod_router_send_text(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *text)
{
    ngx_buf_t  *b;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_create_temp_buf(r->pool, text->len + sizeof("pod-router: \n"));
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, "pod-router: ", sizeof("pod-router: ") - 1);
    b->last = ngx_cpymem(b->last, text->data, text->len);
    *b->last++ = '\n';
    b->last_buf = 1;
    b->last_in_chain = 1;

    return ngx_http_pod_router_send_buffer(r, status, "text/plain", b);
}


/*
 * The waiting page: the stage in the heading, a sentence for it, and a
 * reload. The stage is one of the core's own words, never text from Redis;
 * it is escaped all the same.
 */

static ngx_int_t
ngx_http_pod_router_send_page(ngx_http_request_t *r, const char *stage)
{
    size_t            len;
    u_char           *p;
    ngx_str_t         word, sentence;
    ngx_buf_t        *b;
    ngx_uint_t        i;
    ngx_table_elt_t  *h;

    static ngx_str_t  head = ngx_string(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"refresh\" content=\""
        NGX_HTTP_POD_ROUTER_RETRY_AFTER "\">"
        "<title>Starting your environment</title></head>\n"
        "<body><h1>Starting your environment&hellip;");

    static ngx_str_t  tail = ngx_string(
        "<p>This page reloads itself when it is ready.</p></body></html>\n");

    static ngx_str_t  sentences[][2] = {
        { ngx_string("queued"),
          ngx_string("Your request is queued.") },
        { ngx_string("creating"),
          ngx_string("Your environment is being created.") },
        { ngx_string("scheduled"),
          ngx_string("A machine has been found for it.") },
        { ngx_string("pulling image"),
          ngx_string("Its image is being downloaded; the first start on a "
                     "machine takes longest.") },
        { ngx_string("starting"),
          ngx_string("It is starting up.") }
    };

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    ngx_str_null(&word);
    ngx_str_null(&sentence);

    if (stage) {
        word.data = (u_char *) stage;
        word.len = ngx_strlen(stage);

        for (i = 0; i < sizeof(sentences) / sizeof(sentences[0]); i++) {
            if (sentences[i][0].len == word.len
                && ngx_strncmp(sentences[i][0].data, word.data, word.len) == 0)
            {
                sentence = sentences[i][1];
                break;
            }
        }
    }

    len = head.len + sizeof(" ()</h1>") - 1
          + word.len + ngx_escape_html(NULL, word.data, word.len)
          + sizeof("<p></p>") - 1 + sentence.len + tail.len;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, head.data, head.len);

    if (word.len) {
        p = ngx_cpymem(p, " (", 2);
        p = (u_char *) ngx_escape_html(p, word.data, word.len);
        *p++ = ')';
    }

    p = ngx_cpymem(p, "</h1>", sizeof("</h1>") - 1);

    if (sentence.len) {
        p = ngx_cpymem(p, "<p>", 3);
        p = ngx_cpymem(p, sentence.data, sentence.len);
        p = ngx_cpymem(p, "</p>", 4);
    }

    b->last = ngx_cpymem(p, tail.data, tail.len);
    b->last_buf = 1;
    b->last_in_chain = 1;

    return ngx_http_pod_router_send_buffer(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "text/html", b);
}


/* X-Pod-Router-Stage: how far the creation got; nothing if not known */

static ngx_int_t
ngx_http_pod_router_stage_header(ngx_http_request_t *r, const char *stage)
{
    ngx_table_elt_t  *h;

    if (stage == NULL) {
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Pod-Router-Stage");
    h->value.data = (u_char *) stage;
    h->value.len = ngx_strlen(stage);

    return NGX_OK;
}


ngx_int_t
ngx_http_pod_router_send_buffer(ngx_http_request_t *r, ngx_uint_t status,
    char *content_type, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.content_type.data = (u_char *) content_type;
    r->headers_out.content_type.len = ngx_strlen(content_type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
