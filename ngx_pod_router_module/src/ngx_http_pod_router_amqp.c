
/*
 * Publishing creation events. librabbitmq-c blocks, so it never runs on the
 * event loop: each publish is a task for an nginx thread pool, and each pool
 * thread keeps its own AMQP connection (thread-specific data), never shared,
 * reconnecting on the next publish after any failure. The publisher waits
 * for the broker's confirm, so "published" means the event is on a durable
 * queue.
 */


#include "ngx_http_pod_router.h"

#include <pthread.h>


#define NGX_HTTP_POD_ROUTER_EVENT_SIZE  (16 * 1024)


typedef struct {
    /* in: everything the thread needs, copied; the request may go away */
    ngx_http_pod_router_op_t   *op;
    u_char                      body[NGX_HTTP_POD_ROUTER_EVENT_SIZE];
    size_t                      body_len;
    u_char                      message_id[64];
    size_t                      message_id_len;
    u_char                      pod[PR_POD_NAME_SIZE];
    size_t                      pod_len;
    pr_amqp_config_t            config;

    /* out */
    pr_status_t                 rc;
    char                        err[PR_ERROR_SIZE];
} ngx_http_pod_router_publish_t;


static void ngx_http_pod_router_publish_thread(void *data, ngx_log_t *log);
static void ngx_http_pod_router_publish_event(ngx_event_t *ev);
static void ngx_http_pod_router_free_publisher(void *data);
static void ngx_http_pod_router_make_key(void);


static pthread_key_t   ngx_http_pod_router_publisher_key;
static pthread_once_t  ngx_http_pod_router_key_once = PTHREAD_ONCE_INIT;


ngx_int_t
ngx_http_pod_router_amqp_publish(ngx_http_pod_router_ctx_t *ctx)
{
    char                              err[PR_ERROR_SIZE];
    size_t                            len;
    ngx_thread_task_t                *task;
    ngx_http_request_t               *r;
    ngx_http_pod_router_op_t         *op;
    ngx_http_pod_router_publish_t    *publish;
    ngx_http_pod_router_main_conf_t  *prmcf;

    r = ctx->request;
    prmcf = ngx_http_pod_router_main_conf();

    /*
     * Not from the request pool: the task may finish after the request is
     * gone. One allocation per creation event, not per request.
     */
    task = ngx_calloc(sizeof(ngx_thread_task_t)
                      + sizeof(ngx_http_pod_router_publish_t),
                      r->connection->log);
    if (task == NULL) {
        return NGX_ERROR;
    }

    publish = (ngx_http_pod_router_publish_t *) (task + 1);
    task->ctx = publish;
    task->handler = ngx_http_pod_router_publish_thread;
    task->event.handler = ngx_http_pod_router_publish_event;
    task->event.data = task;
    task->event.log = ngx_cycle->log;

    if (pr_creation_event_encode(prmcf->naming, (char *) ctx->identity.data,
                                 ctx->identity.len,
                                 (char *) ctx->request_id.data,
                                 ctx->request_id.len,
                                 (int64_t) ngx_time() * 1000
                                     + (int64_t) ngx_timeofday()->msec,
                                 (char *) publish->body,
                                 sizeof(publish->body), &len, err,
                                 sizeof(err))
        != PR_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pod_router: cannot encode the creation event: %s",
                      err);
        ngx_free(task);
        return NGX_ERROR;
    }

    publish->body_len = len;

    len = ngx_min(ctx->request_id.len, sizeof(publish->message_id) - 1);
    ngx_memcpy(publish->message_id, ctx->request_id.data, len);
    publish->message_id_len = len;

    ngx_memcpy(publish->pod, ctx->pod, ctx->pod_len);
    publish->pod_len = ctx->pod_len;

    /* the configuration lives in the cycle's pool, which outlives the task */
    publish->config.host = (char *) prmcf->amqp_host.data;
    publish->config.port = prmcf->amqp_port;
    publish->config.vhost = (char *) prmcf->amqp_vhost.data;
    publish->config.username = (char *) prmcf->amqp_username.data;
    publish->config.password = (char *) prmcf->amqp_password.data;
    publish->config.exchange = (char *) prmcf->amqp_exchange.data;
    publish->config.routing_key = (char *) prmcf->amqp_routing_key.data;
    publish->config.queue = (char *) prmcf->amqp_queue.data;
    publish->config.connect_timeout_ms = (int) prmcf->amqp_timeout;
    publish->config.io_timeout_ms = (int) prmcf->amqp_timeout;

    op = ngx_http_pod_router_op_get(ctx, 0);
    if (op == NULL) {
        ngx_free(task);
        return NGX_ERROR;
    }

    publish->op = op;

    if (ngx_thread_task_post(prmcf->thread_pool, task) != NGX_OK) {
        /* the pool's queue is full: the caller answers 503 */
        ngx_http_pod_router_op_free(op);
        ngx_free(task);
        return NGX_DECLINED;
    }

    ctx->op = op;

    return NGX_OK;
}


static void
ngx_http_pod_router_make_key(void)
{
    (void) pthread_key_create(&ngx_http_pod_router_publisher_key,
                              ngx_http_pod_router_free_publisher);
}


static void
ngx_http_pod_router_free_publisher(void *data)
{
    pr_amqp_publisher_destroy(data);
}


/* runs in a pool thread: no nginx event, pool or log-buffer calls here */

static void
ngx_http_pod_router_publish_thread(void *data, ngx_log_t *log)
{
    ngx_http_pod_router_publish_t  *publish = data;

    pr_amqp_publisher_t  *publisher;

    (void) pthread_once(&ngx_http_pod_router_key_once,
                        ngx_http_pod_router_make_key);

    publisher = pthread_getspecific(ngx_http_pod_router_publisher_key);

    if (publisher == NULL) {
        publish->rc = pr_amqp_publisher_create(&publish->config, &publisher,
                                               publish->err,
                                               sizeof(publish->err));
        if (publish->rc != PR_OK) {
            return;
        }

        if (pthread_setspecific(ngx_http_pod_router_publisher_key,
                                publisher)
            != 0)
        {
            pr_amqp_publisher_destroy(publisher);
            publish->rc = PR_INTERNAL_ERROR;
            ngx_cpystrn((u_char *) publish->err,
                        (u_char *) "pthread_setspecific() failed",
                        sizeof(publish->err));
            return;
        }
    }

    publish->rc = pr_amqp_publish(publisher, (char *) publish->body,
                                  publish->body_len,
                                  (char *) publish->message_id,
                                  publish->message_id_len, publish->err,
                                  sizeof(publish->err));
}


/* back on the event loop */

static void
ngx_http_pod_router_publish_event(ngx_event_t *ev)
{
    ngx_thread_task_t              *task = ev->data;
    ngx_http_pod_router_op_t       *op;
    ngx_http_pod_router_ctx_t      *ctx;
    ngx_http_pod_router_publish_t  *publish;

    publish = task->ctx;
    op = publish->op;
    ctx = op->ctx;

    if (publish->rc == PR_OK) {
        ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_EVENTS_PUBLISHED, 1);

    } else {
        ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_EVENTS_FAILED, 1);
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "pod_router: publishing a creation event failed: %s",
                      publish->err);

        /*
         * Give the creation lock back, even if the request has gone, so
         * that the next request for this pod retries at once.
         */
        ngx_http_pod_router_redis_abandon(publish->pod, publish->pod_len,
                                          publish->message_id,
                                          publish->message_id_len);
    }

    ngx_http_pod_router_op_free(op);

    if (ctx != NULL) {
        ctx->op = NULL;
        ngx_http_pod_router_publish_done(ctx, publish->rc == PR_OK,
                                         publish->err);
    }

    ngx_free(task);
}
