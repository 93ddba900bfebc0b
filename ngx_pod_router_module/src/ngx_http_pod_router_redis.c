
/*
 * Redis inside nginx's event loop: hiredis's async API driven by nginx
 * events through the five adapter hooks (addRead, delRead, addWrite,
 * delWrite, cleanup). Each worker keeps two links: one for commands
 * (pipelined, shared by all its requests) and one subscribed to the
 * notification channel, so parked requests wake without polling. With
 * "pod_router_subscribe off" (a proxy in front of Redis that cannot carry
 * pub/sub) the subscriber link is never opened, so never reconnected, and
 * parked requests wake on their re-check timer alone.
 *
 * A link that fails is dropped and reconnected after a back-off (100 ms,
 * doubling to 5 s); while it is down, requests fail at once with 503 rather
 * than queue behind a dead server.
 */


#include "ngx_http_pod_router.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>


#define NGX_HTTP_POD_ROUTER_BACKOFF_MIN   100
#define NGX_HTTP_POD_ROUTER_BACKOFF_MAX   5000

#define NGX_HTTP_POD_ROUTER_OP_ROUTE      1
#define NGX_HTTP_POD_ROUTER_OP_READ       2

/* the route script's KEYS[4..8], in pr_redis_key_t's order from pool_free */
#define NGX_HTTP_POD_ROUTER_POOL_KEYS     5


typedef enum {
    NGX_HTTP_POD_ROUTER_LINK_DOWN = 0,
    NGX_HTTP_POD_ROUTER_LINK_CONNECTING,
    NGX_HTTP_POD_ROUTER_LINK_UP
} ngx_http_pod_router_link_state_e;


typedef struct {
    const char                  *name;
    redisAsyncContext           *ac;
    ngx_connection_t            *connection;
    ngx_http_pod_router_link_state_e  state;
    ngx_msec_t                   backoff;
    ngx_msec_t                   retry_at;
    ngx_event_t                  connect_timer;
    ngx_event_t                  reconnect_timer;
    ngx_flag_t                   subscriber;
} ngx_http_pod_router_link_t;


static ngx_int_t ngx_http_pod_router_link_connect(
    ngx_http_pod_router_link_t *link);
static void ngx_http_pod_router_link_failed(ngx_http_pod_router_link_t *link,
    const char *why);
static void ngx_http_pod_router_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_pod_router_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_pod_router_connect_timeout(ngx_event_t *ev);
static void ngx_http_pod_router_drop(ngx_http_pod_router_link_t *link,
    const char *why);
static void ngx_http_pod_router_reconnect(ngx_event_t *ev);
static void ngx_http_pod_router_on_setup_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_pod_router_on_route_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_pod_router_on_read_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_pod_router_on_message(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_pod_router_on_ignored_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static ngx_int_t ngx_http_pod_router_send_route(
    ngx_http_pod_router_ctx_t *ctx, ngx_http_pod_router_op_t *op);
static ngx_int_t ngx_http_pod_router_send_read(
    ngx_http_pod_router_ctx_t *ctx, ngx_http_pod_router_op_t *op);

static void ngx_http_pod_router_adapter_read(ngx_event_t *ev);
static void ngx_http_pod_router_adapter_write(ngx_event_t *ev);
static void ngx_http_pod_router_add_read(void *data);
static void ngx_http_pod_router_del_read(void *data);
static void ngx_http_pod_router_add_write(void *data);
static void ngx_http_pod_router_del_write(void *data);
static void ngx_http_pod_router_cleanup(void *data);


static ngx_http_pod_router_link_t  ngx_http_pod_router_command_link;
static ngx_http_pod_router_link_t  ngx_http_pod_router_subscriber_link;
static ngx_cycle_t                *ngx_http_pod_router_cycle;
static ngx_flag_t                  ngx_http_pod_router_exiting;

/* per worker: keys that do not depend on the request */
static char  ngx_http_pod_router_activity_key[128];
static char  ngx_http_pod_router_pool_key[NGX_HTTP_POD_ROUTER_POOL_KEYS][128];
static char  ngx_http_pod_router_channel[128];
static char  ngx_http_pod_router_lock_ttl[NGX_INT_T_LEN + 1];
static char  ngx_http_pod_router_pending_ttl[NGX_INT_T_LEN + 1];


ngx_int_t
ngx_http_pod_router_redis_init_worker(ngx_cycle_t *cycle)
{
    ngx_http_pod_router_main_conf_t  *prmcf;
    ngx_http_pod_router_link_t       *links[2];
    ngx_uint_t                        i;

    prmcf = ngx_http_pod_router_main_conf();
    ngx_http_pod_router_cycle = cycle;

    if (pr_redis_key(PR_KEY_ACTIVITY, (char *) prmcf->redis_key_prefix.data,
                     prmcf->redis_key_prefix.len, NULL, 0,
                     ngx_http_pod_router_activity_key,
                     sizeof(ngx_http_pod_router_activity_key), NULL)
        != PR_OK
        || pr_redis_key(PR_KEY_NOTIFY_CHANNEL,
                        (char *) prmcf->redis_key_prefix.data,
                        prmcf->redis_key_prefix.len, NULL, 0,
                        ngx_http_pod_router_channel,
                        sizeof(ngx_http_pod_router_channel), NULL)
           != PR_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pod_router: cannot build the Redis key names");
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_HTTP_POD_ROUTER_POOL_KEYS; i++) {
        if (pr_redis_key((pr_redis_key_t) (PR_KEY_POOL_FREE + i),
                         (char *) prmcf->redis_key_prefix.data,
                         prmcf->redis_key_prefix.len, NULL, 0,
                         ngx_http_pod_router_pool_key[i],
                         sizeof(ngx_http_pod_router_pool_key[i]), NULL)
            != PR_OK)
        {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "pod_router: cannot build the Redis key names");
            return NGX_ERROR;
        }
    }

    ngx_sprintf((u_char *) ngx_http_pod_router_lock_ttl, "%M%Z",
                prmcf->lock_ttl);
    ngx_sprintf((u_char *) ngx_http_pod_router_pending_ttl, "%M%Z",
                prmcf->pending_ttl);

    ngx_http_pod_router_command_link.name = "command";
    ngx_http_pod_router_subscriber_link.name = "subscriber";
    ngx_http_pod_router_subscriber_link.subscriber = 1;

    links[0] = &ngx_http_pod_router_command_link;
    links[1] = &ngx_http_pod_router_subscriber_link;

    for (i = 0; i < 2; i++) {
        links[i]->connect_timer.handler = ngx_http_pod_router_connect_timeout;
        links[i]->connect_timer.data = links[i];
        links[i]->connect_timer.log = cycle->log;
        links[i]->connect_timer.cancelable = 1;

        links[i]->reconnect_timer.handler = ngx_http_pod_router_reconnect;
        links[i]->reconnect_timer.data = links[i];
        links[i]->reconnect_timer.log = cycle->log;
        /* a back-off must not keep an exiting worker alive */
        links[i]->reconnect_timer.cancelable = 1;

        links[i]->backoff = NGX_HTTP_POD_ROUTER_BACKOFF_MIN;
    }

    /* connect early: the first request should not pay for it */
    (void) ngx_http_pod_router_link_connect(&ngx_http_pod_router_command_link);

    if (prmcf->subscribe) {
        (void) ngx_http_pod_router_link_connect(
                                        &ngx_http_pod_router_subscriber_link);
    }

    return NGX_OK;
}


void
ngx_http_pod_router_redis_exit_worker(ngx_cycle_t *cycle)
{
    ngx_http_pod_router_link_t  *links[2];
    ngx_uint_t                   i;

    links[0] = &ngx_http_pod_router_command_link;
    links[1] = &ngx_http_pod_router_subscriber_link;

    /* replies that hiredis fails below must not resume requests */
    ngx_http_pod_router_exiting = 1;

    for (i = 0; i < 2; i++) {
        if (links[i]->connect_timer.timer_set) {
            ngx_del_timer(&links[i]->connect_timer);
        }

        if (links[i]->reconnect_timer.timer_set) {
            ngx_del_timer(&links[i]->reconnect_timer);
        }

        if (links[i]->ac) {
            /* runs pending callbacks with NULL, then the cleanup hook */
            links[i]->ac->data = NULL;
            redisAsyncFree(links[i]->ac);
            links[i]->ac = NULL;
        }

        links[i]->state = NGX_HTTP_POD_ROUTER_LINK_DOWN;
    }
}


/* links */


static ngx_int_t
ngx_http_pod_router_link_connect(ngx_http_pod_router_link_t *link)
{
    int                               argc;
    size_t                            lens[3];
    const char                       *argv[3];
    u_char                            db[NGX_INT_T_LEN + 1];
    redisAsyncContext                *ac;
    ngx_connection_t                 *c;
    ngx_http_pod_router_main_conf_t  *prmcf;

    if (link->state != NGX_HTTP_POD_ROUTER_LINK_DOWN) {
        return NGX_OK;
    }

    if (ngx_current_msec < link->retry_at) {
        return NGX_DECLINED;
    }

    prmcf = ngx_http_pod_router_main_conf();

    ac = redisAsyncConnect((char *) prmcf->redis_host.data,
                           prmcf->redis_port);
    if (ac == NULL) {
        ngx_http_pod_router_link_failed(link, "out of memory");
        return NGX_ERROR;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, ngx_http_pod_router_cycle->log, 0,
                      "pod_router: redis %s link to %V:%d: %s", link->name,
                      &prmcf->redis_host, (int) prmcf->redis_port,
                      ac->errstr);
        redisAsyncFree(ac);
        ngx_http_pod_router_link_failed(link, NULL);
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, ngx_http_pod_router_cycle->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_pod_router_link_failed(link, "no free connections");
        return NGX_ERROR;
    }

    c->data = ac;
    c->read->handler = ngx_http_pod_router_adapter_read;
    c->write->handler = ngx_http_pod_router_adapter_write;
    c->read->log = c->log;
    c->write->log = c->log;

    ac->data = link;
    ac->ev.data = c;
    ac->ev.addRead = ngx_http_pod_router_add_read;
    ac->ev.delRead = ngx_http_pod_router_del_read;
    ac->ev.addWrite = ngx_http_pod_router_add_write;
    ac->ev.delWrite = ngx_http_pod_router_del_write;
    ac->ev.cleanup = ngx_http_pod_router_cleanup;

    link->ac = ac;
    link->connection = c;
    link->state = NGX_HTTP_POD_ROUTER_LINK_CONNECTING;

    redisAsyncSetConnectCallback(ac, ngx_http_pod_router_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_http_pod_router_on_disconnect);

    ngx_add_timer(&link->connect_timer, prmcf->redis_connect_timeout);

    /*
     * Setup commands are queued now and sent first once connected; queueing
     * any command is also what makes hiredis watch for the connect to end.
     */

    if (prmcf->redis_password.len) {
        argv[0] = "AUTH";
        lens[0] = 4;
        argv[1] = (char *) prmcf->redis_password.data;
        lens[1] = prmcf->redis_password.len;
        redisAsyncCommandArgv(ac, ngx_http_pod_router_on_setup_reply,
                              (void *) "AUTH", 2, argv, lens);
    }

    if (prmcf->redis_db) {
        argv[0] = "SELECT";
        lens[0] = 6;
        lens[1] = ngx_sprintf(db, "%ui", prmcf->redis_db) - db;
        argv[1] = (char *) db;
        redisAsyncCommandArgv(ac, ngx_http_pod_router_on_setup_reply,
                              (void *) "SELECT", 2, argv, lens);
    }

    if (link->subscriber) {
        argv[0] = "SUBSCRIBE";
        lens[0] = 9;
        argv[1] = ngx_http_pod_router_channel;
        lens[1] = ngx_strlen(ngx_http_pod_router_channel);
        argc = 2;

    } else {
        argv[0] = "PING";
        lens[0] = 4;
        argc = 1;
    }

    redisAsyncCommandArgv(ac, link->subscriber
                                  ? ngx_http_pod_router_on_message
                                  : ngx_http_pod_router_on_setup_reply,
                          link->subscriber ? NULL : (void *) "PING",
                          argc, argv, lens);

    return NGX_OK;
}


static void
ngx_http_pod_router_link_failed(ngx_http_pod_router_link_t *link,
    const char *why)
{
    ngx_http_pod_router_main_conf_t  *prmcf;

    prmcf = ngx_http_pod_router_main_conf();

    if (why) {
        ngx_log_error(NGX_LOG_ERR, ngx_http_pod_router_cycle->log, 0,
                      "pod_router: redis %s link to %V:%d failed: %s",
                      link->name, &prmcf->redis_host,
                      (int) prmcf->redis_port, why);
    }

    if (link->connect_timer.timer_set) {
        ngx_del_timer(&link->connect_timer);
    }

    link->state = NGX_HTTP_POD_ROUTER_LINK_DOWN;
    link->ac = NULL;
    link->connection = NULL;
    link->retry_at = ngx_current_msec + link->backoff;

    if (!ngx_exiting && !ngx_quit && !link->reconnect_timer.timer_set) {
        ngx_add_timer(&link->reconnect_timer, link->backoff);
    }

    link->backoff = ngx_min(link->backoff * 2,
                            NGX_HTTP_POD_ROUTER_BACKOFF_MAX);

    ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_REDIS_ERRORS, 1);
}


static void
ngx_http_pod_router_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_pod_router_link_t  *link = ac->data;

    if (link == NULL) {
        return;
    }

    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        ngx_http_pod_router_link_failed(link, ac->errstr);
        return;
    }

    if (link->connect_timer.timer_set) {
        ngx_del_timer(&link->connect_timer);
    }

    link->state = NGX_HTTP_POD_ROUTER_LINK_UP;
    link->backoff = NGX_HTTP_POD_ROUTER_BACKOFF_MIN;

    ngx_log_error(NGX_LOG_INFO, ngx_http_pod_router_cycle->log, 0,
                  "pod_router: redis %s link connected", link->name);
}


static void
ngx_http_pod_router_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_pod_router_link_t  *link = ac->data;

    if (link == NULL) {
        return;
    }

    ngx_http_pod_router_link_failed(link, status == REDIS_OK
                                          ? "closed" : ac->errstr);
}


static void
ngx_http_pod_router_connect_timeout(ngx_event_t *ev)
{
    redisAsyncContext           *ac;
    ngx_http_pod_router_link_t  *link = ev->data;

    ac = link->ac;

    if (ac == NULL) {
        return;
    }

    ac->data = NULL;
    link->ac = NULL;

    ngx_http_pod_router_link_failed(link, "connect timed out");

    /* pending commands get a NULL reply, so their requests answer 503 */
    redisAsyncFree(ac);
}


static void
ngx_http_pod_router_reconnect(ngx_event_t *ev)
{
    ngx_http_pod_router_link_t  *link = ev->data;

    if (ngx_exiting || ngx_quit) {
        return;
    }

    /* the command link reconnects on demand; the subscriber must come back */
    if (link->subscriber) {
        (void) ngx_http_pod_router_link_connect(link);
    }
}


static void
ngx_http_pod_router_drop(ngx_http_pod_router_link_t *link, const char *why)
{
    redisAsyncContext  *ac = link->ac;

    if (ac == NULL) {
        return;
    }

    ac->data = NULL;
    link->ac = NULL;
    ngx_http_pod_router_link_failed(link, why);
    redisAsyncFree(ac);
}


static void
ngx_http_pod_router_on_setup_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply                  *rr = reply;
    ngx_http_pod_router_link_t  *link = ac->data;

    if (rr == NULL || link == NULL) {
        return;
    }

    if (rr->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_http_pod_router_cycle->log, 0,
                      "pod_router: redis %s failed: %*s",
                      (char *) privdata, (size_t) ngx_min(rr->len, 200),
                      rr->str);
        /* a wrong password or database stays wrong: back off, retry later */
        ngx_http_pod_router_drop(link, "setup command refused");
    }
}


static void
ngx_http_pod_router_on_ignored_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply  *rr = reply;

    if (rr != NULL && rr->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_pod_router_cycle->log, 0,
                      "pod_router: redis %s failed: %*s", (char *) privdata,
                      (size_t) ngx_min(rr->len, 200), rr->str);
    }
}


/* commands */


ngx_int_t
ngx_http_pod_router_redis_route(ngx_http_pod_router_ctx_t *ctx,
    ngx_uint_t touch)
{
    ngx_int_t                  rc;
    ngx_http_pod_router_op_t  *op;

    rc = ngx_http_pod_router_link_connect(&ngx_http_pod_router_command_link);
    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * A user seen within pod_router_touch_interval needs nothing written:
     * a plain HMGET answers for a ready session at a fifth of the script's
     * cost in Redis (the busiest part of the hot path without the cache).
     * Anything but "ready, and this identity's" goes on to the script.
     */
    op = ngx_http_pod_router_op_get(ctx, touch ? NGX_HTTP_POD_ROUTER_OP_ROUTE
                                               : NGX_HTTP_POD_ROUTER_OP_READ);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->touch = touch ? 1 : 0;
    ctx->op = op;

    rc = touch ? ngx_http_pod_router_send_route(ctx, op)
               : ngx_http_pod_router_send_read(ctx, op);

    if (rc != NGX_OK) {
        ctx->op = NULL;
        ngx_http_pod_router_op_free(op);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a pod's key (session, creation lock) under pod_router_redis key_prefix= */

static ngx_int_t
ngx_http_pod_router_pod_key(pr_redis_key_t kind, u_char *pod, size_t pod_len,
    char *out, size_t size, size_t *len)
{
    ngx_http_pod_router_main_conf_t  *prmcf;

    prmcf = ngx_http_pod_router_main_conf();

    return pr_redis_key(kind, (char *) prmcf->redis_key_prefix.data,
                        prmcf->redis_key_prefix.len, (char *) pod, pod_len,
                        out, size, len)
           == PR_OK ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_pod_router_send_route(ngx_http_pod_router_ctx_t *ctx,
    ngx_http_pod_router_op_t *op)
{
    char         session[256], lock[256];
    size_t       lens[17];
    ngx_uint_t   i;
    const char  *argv[17], *sha;

    if (ngx_http_pod_router_pod_key(PR_KEY_SESSION, ctx->pod, ctx->pod_len,
                                    session, sizeof(session), &lens[3])
        != NGX_OK
        || ngx_http_pod_router_pod_key(PR_KEY_CREATION_LOCK, ctx->pod,
                                       ctx->pod_len, lock, sizeof(lock),
                                       &lens[4])
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    sha = pr_redis_script_sha1(PR_SCRIPT_ROUTE);
    if (sha == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_pod_router_request_id(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (op->retried) {
        /* the script cache was flushed: send the source, which reloads it */
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = pr_redis_script_source(PR_SCRIPT_ROUTE, &lens[1]);

    } else {
        argv[0] = "EVALSHA";
        lens[0] = 7;
        argv[1] = sha;
        lens[1] = 40;
    }

    argv[2] = "8";
    lens[2] = 1;
    argv[3] = session;
    argv[4] = lock;
    argv[5] = ngx_http_pod_router_activity_key;
    lens[5] = ngx_strlen(ngx_http_pod_router_activity_key);

    for (i = 0; i < NGX_HTTP_POD_ROUTER_POOL_KEYS; i++) {
        argv[6 + i] = ngx_http_pod_router_pool_key[i];
        lens[6 + i] = ngx_strlen(ngx_http_pod_router_pool_key[i]);
    }

    argv[11] = (char *) ctx->identity.data;
    lens[11] = ctx->identity.len;
    argv[12] = (char *) ctx->pod;
    lens[12] = ctx->pod_len;
    argv[13] = (char *) ctx->request_id.data;
    lens[13] = ctx->request_id.len;
    argv[14] = ngx_http_pod_router_lock_ttl;
    lens[14] = ngx_strlen(ngx_http_pod_router_lock_ttl);
    argv[15] = ngx_http_pod_router_pending_ttl;
    lens[15] = ngx_strlen(ngx_http_pod_router_pending_ttl);
    argv[16] = op->touch ? "1" : "0";
    lens[16] = 1;

    return redisAsyncCommandArgv(ngx_http_pod_router_command_link.ac,
                                 ngx_http_pod_router_on_route_reply, op, 17,
                                 argv, lens)
           == REDIS_OK ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_pod_router_send_read(ngx_http_pod_router_ctx_t *ctx,
    ngx_http_pod_router_op_t *op)
{
    char         session[256];
    size_t       lens[6];
    const char  *argv[6];

    if (ngx_http_pod_router_pod_key(PR_KEY_SESSION, ctx->pod, ctx->pod_len,
                                    session, sizeof(session), &lens[1])
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    argv[0] = "HMGET";
    lens[0] = 5;
    argv[1] = session;
    argv[2] = "state";
    lens[2] = 5;
    argv[3] = "identity";
    lens[3] = 8;
    argv[4] = "ip";
    lens[4] = 2;
    argv[5] = "port";
    lens[5] = 4;

    return redisAsyncCommandArgv(ngx_http_pod_router_command_link.ac,
                                 ngx_http_pod_router_on_read_reply, op, 6,
                                 argv, lens)
           == REDIS_OK ? NGX_OK : NGX_ERROR;
}


/*
 * The request an op was sent for, or NULL when it went away (or the worker
 * is exiting) while Redis was answering: the op is then freed here.
 */

static ngx_http_pod_router_ctx_t *
ngx_http_pod_router_op_owner(ngx_http_pod_router_op_t *op)
{
    if (op->ctx == NULL || ngx_http_pod_router_exiting) {
        ngx_http_pod_router_op_free(op);
        return NULL;
    }

    return op->ctx;
}


/*
 * A reply that should be an array of 1..max strings, as the core's parsers
 * take it: a nil or other element becomes NULL. Otherwise NGX_ERROR, with
 * why in err (no reply, Redis's error, or another shape) and *rc the status
 * to finish the request with.
 */

static ngx_int_t
ngx_http_pod_router_reply_strings(redisAsyncContext *ac, redisReply *rr,
    size_t max, const char **elements, size_t *lens, size_t *n,
    pr_status_t *rc, char *err, size_t err_size)
{
    size_t  i;

    *rc = PR_INTERNAL_ERROR;

    if (rr == NULL) {
        ngx_cpystrn((u_char *) err,
                    (u_char *) (ac->errstr[0] ? ac->errstr : "no reply"),
                    err_size);
        return NGX_ERROR;
    }

    if (rr->type == REDIS_REPLY_ERROR) {
        ngx_snprintf((u_char *) err, err_size - 1, "%*s%Z",
                     (size_t) ngx_min(rr->len, 200), rr->str);
        return NGX_ERROR;
    }

    if (rr->type != REDIS_REPLY_ARRAY || rr->elements == 0
        || rr->elements > max)
    {
        *rc = PR_BAD_REPLY;
        ngx_cpystrn((u_char *) err, (u_char *) "reply is not a short array",
                    err_size);
        return NGX_ERROR;
    }

    for (i = 0; i < rr->elements; i++) {
        if (rr->element[i]->type == REDIS_REPLY_STRING
            || rr->element[i]->type == REDIS_REPLY_STATUS)
        {
            elements[i] = rr->element[i]->str;
            lens[i] = rr->element[i]->len;

        } else {
            elements[i] = NULL;
            lens[i] = 0;
        }
    }

    *n = rr->elements;

    return NGX_OK;
}


static void
ngx_http_pod_router_on_read_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    char                        err[PR_ERROR_SIZE];
    size_t                      n, lens[4];
    const char                 *elements[4];
    pr_status_t                 rc;
    pr_route_result_t           result;
    ngx_http_pod_router_op_t   *op = privdata;
    ngx_http_pod_router_ctx_t  *ctx;

    ctx = ngx_http_pod_router_op_owner(op);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_pod_router_reply_strings(ac, reply, 4, elements, lens, &n,
                                          &rc, err, sizeof(err))
        != NGX_OK)
    {
        ctx->op = NULL;
        ngx_http_pod_router_op_free(op);
        ngx_http_pod_router_route_done(ctx, rc, NULL, err);
        return;
    }

    rc = pr_session_read_parse(elements, lens, n,
                               (const char *) ctx->identity.data,
                               ctx->identity.len, &result, err, sizeof(err));

    if (rc == PR_OK && result.outcome == PR_OUTCOME_UNKNOWN) {
        /* not ready, or not this identity's: the route script decides */
        op->kind = NGX_HTTP_POD_ROUTER_OP_ROUTE;

        if (ngx_http_pod_router_command_link.ac != NULL
            && ngx_http_pod_router_send_route(ctx, op) == NGX_OK)
        {
            return;
        }

        rc = PR_INTERNAL_ERROR;
        ngx_cpystrn((u_char *) err,
                    (u_char *) "sending the route script failed",
                    sizeof(err));
    }

    ctx->op = NULL;
    ngx_http_pod_router_op_free(op);

    ngx_http_pod_router_route_done(ctx, rc, &result, err);
}


static void
ngx_http_pod_router_on_route_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    char                        err[PR_ERROR_SIZE];
    size_t                      n, lens[4];
    redisReply                 *rr = reply;
    const char                 *elements[4];
    pr_status_t                 rc;
    pr_route_result_t           result;
    ngx_http_pod_router_op_t   *op = privdata;
    ngx_http_pod_router_ctx_t  *ctx;

    ctx = ngx_http_pod_router_op_owner(op);
    if (ctx == NULL) {
        return;
    }

    if (rr != NULL && rr->type == REDIS_REPLY_ERROR
        && rr->len >= 8 && ngx_strncmp(rr->str, "NOSCRIPT", 8) == 0
        && !op->retried)
    {
        op->retried = 1;

        if (ngx_http_pod_router_command_link.ac != NULL
            && ngx_http_pod_router_send_route(ctx, op) == NGX_OK)
        {
            return;
        }
    }

    ctx->op = NULL;
    ngx_http_pod_router_op_free(op);

    if (ngx_http_pod_router_reply_strings(ac, rr, 4, elements, lens, &n, &rc,
                                          err, sizeof(err))
        != NGX_OK)
    {
        ngx_http_pod_router_route_done(ctx, rc, NULL, err);
        return;
    }

    rc = pr_route_reply_parse(elements, lens, n, &result, err, sizeof(err));

    ngx_http_pod_router_route_done(ctx, rc, &result, err);
}


void
ngx_http_pod_router_redis_cancel(ngx_http_pod_router_op_t *op,
    ngx_uint_t timed_out)
{
    /* the reply may still come; the op forgets its request */
    op->ctx = NULL;

    if (timed_out) {
        /*
         * A command unanswered within pod_router_redis timeout= means a
         * wedged server or network: start over rather than pile up more.
         */
        ngx_http_pod_router_drop(&ngx_http_pod_router_command_link,
                                 "command timed out");
    }
}


static void
ngx_http_pod_router_send_simple(pr_script_t script, ngx_uint_t nkeys,
    const char **args, size_t *lens, ngx_uint_t nargs)
{
    size_t       alens[10];
    ngx_uint_t   i;
    const char  *argv[10];

    if (ngx_http_pod_router_link_connect(&ngx_http_pod_router_command_link)
        != NGX_OK
        || ngx_http_pod_router_command_link.ac == NULL
        || nargs + 3 > 10)
    {
        return;
    }

    argv[0] = "EVAL";
    alens[0] = 4;
    argv[1] = pr_redis_script_source(script, &alens[1]);
    argv[2] = nkeys == 1 ? "1" : "2";
    alens[2] = 1;

    for (i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        alens[3 + i] = lens[i];
    }

    /* fire and forget: nothing waits on these */
    redisAsyncCommandArgv(ngx_http_pod_router_command_link.ac,
                          ngx_http_pod_router_on_ignored_reply,
                          (void *) "script", (int) (3 + nargs), argv, alens);
}


void
ngx_http_pod_router_redis_abandon(u_char *pod, size_t pod_len,
    u_char *request_id, size_t request_id_len)
{
    char         lock[256];
    size_t       lens[2];
    const char  *args[2];

    if (ngx_http_pod_router_pod_key(PR_KEY_CREATION_LOCK, pod, pod_len,
                                    lock, sizeof(lock), &lens[0])
        != NGX_OK)
    {
        return;
    }

    args[0] = lock;
    args[1] = (char *) request_id;
    lens[1] = request_id_len;

    ngx_http_pod_router_send_simple(PR_SCRIPT_ABANDON_CREATION, 1, args,
                                    lens, 2);
}


void
ngx_http_pod_router_redis_touch(u_char *pod, size_t len)
{
    size_t       lens[2];
    const char  *args[2];

    args[0] = ngx_http_pod_router_activity_key;
    lens[0] = ngx_strlen(ngx_http_pod_router_activity_key);
    args[1] = (char *) pod;
    lens[1] = len;

    ngx_http_pod_router_send_simple(PR_SCRIPT_TOUCH, 1, args, lens, 2);
}


void
ngx_http_pod_router_redis_mark_stale(u_char *pod, size_t pod_len,
    ngx_str_t *ip, ngx_str_t *port)
{
    char         session[256];
    size_t       lens[6];
    const char  *args[6];

    if (ngx_http_pod_router_pod_key(PR_KEY_SESSION, pod, pod_len, session,
                                    sizeof(session), &lens[0])
        != NGX_OK)
    {
        return;
    }

    args[0] = session;
    args[1] = ngx_http_pod_router_activity_key;
    lens[1] = ngx_strlen(ngx_http_pod_router_activity_key);
    args[2] = (char *) pod;
    lens[2] = pod_len;
    args[3] = (char *) ip->data;
    lens[3] = ip->len;
    args[4] = (char *) port->data;
    lens[4] = port->len;
    args[5] = ngx_http_pod_router_channel;
    lens[5] = ngx_strlen(ngx_http_pod_router_channel);

    ngx_http_pod_router_send_simple(PR_SCRIPT_MARK_STALE, 2, args, lens, 6);
}


static void
ngx_http_pod_router_on_message(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    size_t               pod_len;
    redisReply          *rr = reply, *payload;
    const char          *pod;
    pr_notify_kind_t     kind;

    if (rr == NULL || rr->type != REDIS_REPLY_ARRAY || rr->elements != 3) {
        return;
    }

    if (rr->element[0]->type != REDIS_REPLY_STRING) {
        return;
    }

    if (rr->element[0]->len == 9
        && ngx_strncmp(rr->element[0]->str, "subscribe", 9) == 0)
    {
        /*
         * Subscribed only now, not when the link connected: a
         * notification published before this reply was not heard, so
         * everyone listening routes again.
         */
        ngx_http_pod_router_wake_all();
        return;
    }

    if (rr->element[0]->len != 7
        || ngx_strncmp(rr->element[0]->str, "message", 7) != 0)
    {
        return;
    }

    payload = rr->element[2];

    if (payload->type != REDIS_REPLY_STRING) {
        return;
    }

    kind = pr_parse_notification(payload->str, payload->len, &pod, &pod_len);

    if (kind == PR_NOTIFY_INVALID) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_pod_router_cycle->log, 0,
                      "pod_router: ignored a malformed notification");
        return;
    }

    ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_NOTIFICATIONS, 1);
    ngx_http_pod_router_notify(kind, (u_char *) pod, pod_len);
}


/* the five adapter hooks */


static void
ngx_http_pod_router_adapter_read(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    redisAsyncHandleRead(c->data);
}


static void
ngx_http_pod_router_adapter_write(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    redisAsyncHandleWrite(c->data);
}


/*
 * Level-triggered: hiredis reads one buffer per call, and an edge-triggered
 * event would not fire again for what is left in the socket.
 */

static void
ngx_http_pod_router_add_read(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->read->active) {
        (void) ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_pod_router_del_read(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_pod_router_add_write(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_pod_router_del_write(void *data)
{
    ngx_connection_t  *c = data;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_http_pod_router_cleanup(void *data)
{
    ngx_connection_t  *c = data;

    /* hiredis closes the socket right after: no epoll_ctl needed */

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* ngx_free_connection() looks the fd up; forget it only afterwards */
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}
