
/*
 * Prometheus metrics. Counters live in a shared memory zone so that the
 * numbers add up across workers and survive "nginx -s reload" (a zone with
 * the same name and size is reused). "pod_router_status" serves them in
 * the text exposition format.
 */


#include "ngx_http_pod_router.h"


static void ngx_http_pod_router_observe(ngx_uint_t base,
    ngx_msec_t *buckets, ngx_uint_t n, ngx_msec_t ms);
static u_char *ngx_http_pod_router_histogram(u_char *p, char *name,
    char *label, ngx_uint_t base, ngx_msec_t *buckets, ngx_uint_t n);
static ngx_int_t ngx_http_pod_router_status_handler(ngx_http_request_t *r);


static ngx_atomic_t  *ngx_http_pod_router_metrics;

static ngx_msec_t  ngx_http_pod_router_buckets[] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
};

/* a warm pod answers in milliseconds, a cold start takes up to minutes */
static ngx_msec_t  ngx_http_pod_router_new_pod_buckets[
                                     NGX_HTTP_POD_ROUTER_NEW_POD_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    120000
};

static char  *ngx_http_pod_router_new_pod_labels[] = {
    "path=\"warm\"", "path=\"cold\""
};

static char  *ngx_http_pod_router_outcome_labels[] = {
    "", "hit", "cache_hit", "miss", "claimed", "wait", "starting", "timeout",
    "failed", "unavailable", "overload", "no_identity", "bad_identity",
    "forbidden", "conflict", "invalid_token", "untrusted_address"
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
    ngx_http_pod_router_observe(NGX_HTTP_POD_ROUTER_M_WAIT_COUNT,
                                ngx_http_pod_router_buckets,
                                sizeof(ngx_http_pod_router_buckets)
                                / sizeof(ngx_http_pod_router_buckets[0]),
                                ms);
}


void
ngx_http_pod_router_observe_new_pod(ngx_uint_t path, ngx_msec_t ms)
{
    ngx_http_pod_router_observe(NGX_HTTP_POD_ROUTER_M_NEW_POD
                                + path * NGX_HTTP_POD_ROUTER_NEW_POD_SLOTS,
                                ngx_http_pod_router_new_pod_buckets,
                                NGX_HTTP_POD_ROUTER_NEW_POD_BUCKETS, ms);
}


/* a histogram's metrics from base on: count, sum in ms, n buckets, +Inf */

static void
ngx_http_pod_router_observe(ngx_uint_t base, ngx_msec_t *buckets,
    ngx_uint_t n, ngx_msec_t ms)
{
    ngx_uint_t  i;

    ngx_http_pod_router_count(base, 1);
    ngx_http_pod_router_count(base + 1, ms);

    for (i = 0; i < n; i++) {
        if (ms <= buckets[i]) {
            break;
        }
    }

    /* stored per bucket; the handler sums them into cumulative buckets */
    ngx_http_pod_router_count(base + 2 + i, 1);
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
    ngx_uint_t    i;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    /* about 5.5 KB with every value 0, 7 KB with every value at its widest */
    size = 16384;

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

    b->last = ngx_http_pod_router_histogram(b->last,
                                  "pod_router_wait_seconds", NULL,
                                  NGX_HTTP_POD_ROUTER_M_WAIT_COUNT,
                                  ngx_http_pod_router_buckets,
                                  sizeof(ngx_http_pod_router_buckets)
                                  / sizeof(ngx_http_pod_router_buckets[0]));

    b->last = ngx_sprintf(b->last,
        "# HELP pod_router_pool_claims_total New users who took a warm pool "
        "pod.\n"
        "# TYPE pod_router_pool_claims_total counter\n"
        "pod_router_pool_claims_total %uA\n"
        "# HELP pod_router_pool_empty_total New users who found the warm pool "
        "empty and wait for a cold start.\n"
        "# TYPE pod_router_pool_empty_total counter\n"
        "pod_router_pool_empty_total %uA\n"
        "# HELP pod_router_new_pod_seconds How long a new user's request "
        "waited for its pod, from a warm pool or a cold start.\n"
        "# TYPE pod_router_new_pod_seconds histogram\n",
        ngx_http_pod_router_value(NGX_HTTP_POD_ROUTER_M_POOL_CLAIMS),
        ngx_http_pod_router_value(NGX_HTTP_POD_ROUTER_M_POOL_EMPTY));

    for (i = 0; i < NGX_HTTP_POD_ROUTER_NEW_POD_PATHS; i++) {
        b->last = ngx_http_pod_router_histogram(b->last,
                                  "pod_router_new_pod_seconds",
                                  ngx_http_pod_router_new_pod_labels[i],
                                  NGX_HTTP_POD_ROUTER_M_NEW_POD
                                  + i * NGX_HTTP_POD_ROUTER_NEW_POD_SLOTS,
                                  ngx_http_pod_router_new_pod_buckets,
                                  NGX_HTTP_POD_ROUTER_NEW_POD_BUCKETS);
    }

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


/* one histogram's lines; label (or NULL) goes before "le" */

static u_char *
ngx_http_pod_router_histogram(u_char *p, char *name, char *label,
    ngx_uint_t base, ngx_msec_t *buckets, ngx_uint_t n)
{
    char               *comma;
    double              sum;
    ngx_uint_t          i;
    ngx_atomic_uint_t   count, cumulative;

    comma = label ? "," : "";
    label = label ? label : "";
    cumulative = 0;

    for (i = 0; i < n; i++) {
        cumulative += ngx_http_pod_router_value(base + 2 + i);
        p = ngx_sprintf(p, "%s_bucket{%s%sle=\"%.3f\"} %uA\n",
                        name, label, comma, (double) buckets[i] / 1000,
                        cumulative);
    }

    /*
     * Read after the buckets, and once: observe() counts before it fills a
     * bucket, so "+Inf" is never below another bucket and equals "_count".
     */
    count = ngx_http_pod_router_value(base);
    sum = (double) ngx_http_pod_router_value(base + 1) / 1000;

    p = ngx_sprintf(p, "%s_bucket{%s%sle=\"+Inf\"} %uA\n",
                    name, label, comma, count);

    if (*label) {
        return ngx_sprintf(p, "%s_sum{%s} %.3f\n%s_count{%s} %uA\n",
                           name, label, sum, name, label, count);
    }

    return ngx_sprintf(p, "%s_sum %.3f\n%s_count %uA\n",
                       name, sum, name, count);
}
