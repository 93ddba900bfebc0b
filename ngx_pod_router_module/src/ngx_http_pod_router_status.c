
/*
 * Prometheus metrics. Counters live in a shared memory zone so that the
 * numbers add up across workers and survive "nginx -s reload" (a zone with
 * the same name and size is reused). "pod_router_status" serves them in
 * the text exposition format.
 */


#include "ngx_http_pod_router.h"


static ngx_int_t ngx_http_pod_router_status_handler(ngx_http_request_t *r);


static ngx_atomic_t  *ngx_http_pod_router_metrics;

static ngx_msec_t  ngx_http_pod_router_buckets[] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
};

static char  *ngx_http_pod_router_outcome_labels[] = {
    "", "hit", "cache_hit", "miss", "wait", "starting", "timeout", "failed",
    "unavailable", "overload", "no_identity", "bad_identity", "forbidden",
    "conflict", "invalid_token", "untrusted_address"
};

static char  *ngx_http_pod_router_reject_labels[] = {
    "missing", "malformed", "forged", "expired", "untrusted_address"
};


ngx_int_t
ngx_http_pod_router_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        /* a reload: keep counting where the previous cycle left off */
        shm_zone->data = data;
        ngx_http_pod_router_metrics = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        ngx_http_pod_router_metrics = shpool->data;
        return NGX_OK;
    }

    ngx_http_pod_router_metrics = ngx_slab_calloc(shpool,
                         NGX_HTTP_POD_ROUTER_M_COUNT * sizeof(ngx_atomic_t));
    if (ngx_http_pod_router_metrics == NULL) {
        return NGX_ERROR;
    }

    shpool->data = (void *) ngx_http_pod_router_metrics;
    shm_zone->data = (void *) ngx_http_pod_router_metrics;

    return NGX_OK;
}


void
ngx_http_pod_router_metrics_bind(ngx_shm_zone_t *zone)
{
    ngx_http_pod_router_metrics = zone ? zone->data : NULL;
}


void
ngx_http_pod_router_count(ngx_uint_t metric, ngx_atomic_int_t delta)
{
    if (ngx_http_pod_router_metrics && metric < NGX_HTTP_POD_ROUTER_M_COUNT) {
        (void) ngx_atomic_fetch_add(&ngx_http_pod_router_metrics[metric],
                                    delta);
    }
}


void
ngx_http_pod_router_observe_wait(ngx_msec_t ms)
{
    ngx_uint_t  i;

    ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_WAIT_COUNT, 1);
    ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_WAIT_SUM_MS, ms);

    for (i = 0; i < sizeof(ngx_http_pod_router_buckets)
                    / sizeof(ngx_http_pod_router_buckets[0]); i++)
    {
        if (ms <= ngx_http_pod_router_buckets[i]) {
            break;
        }
    }

    /* stored per bucket; the handler sums them into cumulative buckets */
    ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_WAIT_BUCKETS + i, 1);
}


char *
ngx_http_pod_router_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_pod_router_status_handler;

    return NGX_CONF_OK;
}


#define ngx_http_pod_router_value(m)                                          \
    (ngx_http_pod_router_metrics ? ngx_http_pod_router_metrics[m] : 0)


static ngx_int_t
ngx_http_pod_router_status_handler(ngx_http_request_t *r)
{
    size_t        size;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_uint_t    i, n;
    ngx_atomic_uint_t  cumulative;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    size = 8192;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last,
        "# HELP pod_router_requests_total Requests in pod_router locations, "
        "by outcome.\n"
        "# TYPE pod_router_requests_total counter\n");

    for (i = 1; i < NGX_HTTP_POD_ROUTER_OUTCOMES; i++) {
        b->last = ngx_sprintf(b->last,
                              "pod_router_requests_total{outcome=\"%s\"} %uA\n",
                              ngx_http_pod_router_outcome_labels[i],
                              ngx_http_pod_router_value(i));
    }

    b->last = ngx_sprintf(b->last,
        "# HELP pod_router_cache_hits_total Lookups answered by the worker's "
        "cache.\n"
        "# TYPE pod_router_cache_hits_total counter\n"
        "pod_router_cache_hits_total %uA\n"
        "# HELP pod_router_cache_misses_total Lookups the cache could not "
        "answer.\n"
        "# TYPE pod_router_cache_misses_total counter\n"
        "pod_router_cache_misses_total %uA\n"
        "# HELP pod_router_redis_errors_total Failed Redis connections and "
        "commands.\n"
        "# TYPE pod_router_redis_errors_total counter\n"
        "pod_router_redis_errors_total %uA\n"
        "# HELP pod_router_events_published_total Creation events the broker "
        "confirmed.\n"
        "# TYPE pod_router_events_published_total counter\n"
        "pod_router_events_published_total %uA\n"
        "# HELP pod_router_events_failed_total Creation events that could not "
        "be published.\n"
        "# TYPE pod_router_events_failed_total counter\n"
        "pod_router_events_failed_total %uA\n"
        "# HELP pod_router_notifications_total Ready/failed/gone "
        "notifications received.\n"
        "# TYPE pod_router_notifications_total counter\n"
        "pod_router_notifications_total %uA\n"
        "# HELP pod_router_waiting_requests Requests parked now, waiting for "
        "their pod.\n"
        "# TYPE pod_router_waiting_requests gauge\n"
        "pod_router_waiting_requests %uA\n"
        "# HELP pod_router_wait_seconds How long parked requests waited.\n"
        "# TYPE pod_router_wait_seconds histogram\n",
        ngx_http_pod_router_value(NGX_HTTP_POD_ROUTER_M_CACHE_HITS),
        ngx_http_pod_router_value(NGX_HTTP_POD_ROUTER_M_CACHE_MISSES),
        ngx_http_pod_router_value(NGX_HTTP_POD_ROUTER_M_REDIS_ERRORS),
        ngx_http_pod_router_value(NGX_HTTP_POD_ROUTER_M_EVENTS_PUBLISHED),
        ngx_http_pod_router_value(NGX_HTTP_POD_ROUTER_M_EVENTS_FAILED),
        ngx_http_pod_router_value(NGX_HTTP_POD_ROUTER_M_NOTIFICATIONS),
        ngx_http_pod_router_value(NGX_HTTP_POD_ROUTER_M_WAITING));

    n = sizeof(ngx_http_pod_router_buckets)
        / sizeof(ngx_http_pod_router_buckets[0]);
    cumulative = 0;

    for (i = 0; i < n; i++) {
        cumulative += ngx_http_pod_router_value(
                                      NGX_HTTP_POD_ROUTER_M_WAIT_BUCKETS + i);
        b->last = ngx_sprintf(b->last,
                              "pod_router_wait_seconds_bucket{le=\"%.3f\"} "
                              "%uA\n",
                              (double) ngx_http_pod_router_buckets[i] / 1000,
                              cumulative);
    }

    b->last = ngx_sprintf(b->last,
                          "pod_router_wait_seconds_bucket{le=\"+Inf\"} %uA\n"
                          "pod_router_wait_seconds_sum %.3f\n"
                          "pod_router_wait_seconds_count %uA\n",
                          ngx_http_pod_router_value(
                                        NGX_HTTP_POD_ROUTER_M_WAIT_COUNT),
                          (double) ngx_http_pod_router_value(
                                   NGX_HTTP_POD_ROUTER_M_WAIT_SUM_MS) / 1000,
                          ngx_http_pod_router_value(
                                        NGX_HTTP_POD_ROUTER_M_WAIT_COUNT));

    b->last = ngx_sprintf(b->last,
        "# HELP pod_router_identity_rejected_total Requests refused before "
        "routing, by why their identity was not accepted.\n"
        "# TYPE pod_router_identity_rejected_total counter\n");

    for (i = 0; i < NGX_HTTP_POD_ROUTER_REJECTS; i++) {
        b->last = ngx_sprintf(b->last,
                              "pod_router_identity_rejected_total"
                              "{reason=\"%s\"} %uA\n",
                              ngx_http_pod_router_reject_labels[i],
                              ngx_http_pod_router_value(
                                        NGX_HTTP_POD_ROUTER_M_REJECTED + i));
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    return ngx_http_pod_router_send_buffer(r, NGX_HTTP_OK,
                              "text/plain; version=0.0.4; charset=utf-8", b);
}
