
/*
 * ngx_http_pod_router_module: routes each user's requests to the user's own
 * Kubernetes pod, creating it on the first request. This file holds the
 * directives and the module's lifecycle; ngx_http_pod_router.h maps where
 * the rest of a request's journey is handled. The naming, Redis schema and
 * event rules come from the shared C++ core through its C API.
 */


#include "ngx_http_pod_router.h"


static ngx_int_t ngx_http_pod_router_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_pod_router_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_pod_router_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_pod_router_init_process(ngx_cycle_t *cycle);
static void ngx_http_pod_router_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_pod_router_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_pod_router_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_pod_router_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_pod_router_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_pod_router_pod_name_prefix(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_pod_router_check_identity_length(ngx_conf_t *cf,
    void *post, void *data);
static char *ngx_http_pod_router_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pod_router_amqp(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pod_router_set_cidr_slot(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_pod_router_identity_secret(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_pod_router_pass_identity(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static pr_token_keys_t *ngx_http_pod_router_token_keys(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *paths, ngx_uint_t n);
static ngx_int_t ngx_http_pod_router_read_file(ngx_conf_t *cf,
    ngx_str_t *path, ngx_str_t *content);
static char *ngx_http_pod_router_check_status(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_http_pod_router_read_secret(ngx_conf_t *cf,
    ngx_str_t *path, ngx_str_t *secret);
static void ngx_http_pod_router_cleanup_naming(void *data);
static void ngx_http_pod_router_cleanup_token_keys(void *data);


static ngx_conf_post_handler_pt  ngx_http_pod_router_identity_length_p =
    ngx_http_pod_router_check_identity_length;
static ngx_conf_post_handler_pt  ngx_http_pod_router_status_p =
    ngx_http_pod_router_check_status;


static ngx_conf_enum_t  ngx_http_pod_router_wait_modes[] = {
    { ngx_string("hold"), NGX_HTTP_POD_ROUTER_WAIT_HOLD },
    { ngx_string("page"), NGX_HTTP_POD_ROUTER_WAIT_PAGE },
    { ngx_string("auto"), NGX_HTTP_POD_ROUTER_WAIT_AUTO },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_pod_router_commands[] = {

    { ngx_string("pod_router"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pod_router_loc_conf_t, enable),
      NULL },

    { ngx_string("pod_router_identity"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pod_router_loc_conf_t, identity),
      NULL },

    { ngx_string("pod_router_allow_cidr"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_pod_router_set_cidr_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pod_router_loc_conf_t, allow_cidrs),
      NULL },

    { ngx_string("pod_router_identity_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_pod_router_identity_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pod_router_identity_skew"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pod_router_loc_conf_t, identity_skew),
      NULL },

    { ngx_string("pod_router_trusted_proxies"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_pod_router_set_cidr_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pod_router_loc_conf_t, trusted_proxies),
      NULL },

    { ngx_string("pod_router_strip_identity"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pod_router_loc_conf_t, strip_identity),
      NULL },

    { ngx_string("pod_router_pass_identity"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_pod_router_pass_identity,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pod_router_wait_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pod_router_loc_conf_t, wait_timeout),
      NULL },

    { ngx_string("pod_router_wait_mode"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pod_router_loc_conf_t, wait_mode),
      &ngx_http_pod_router_wait_modes },

    { ngx_string("pod_router_missing_identity_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_pod_router_loc_conf_t, missing_identity_status),
      &ngx_http_pod_router_status_p },

    { ngx_string("pod_router_pod_name_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_pod_router_pod_name_prefix,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, pod_name_prefix),
      NULL },

    { ngx_string("pod_router_max_identity_length"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, max_identity_length),
      &ngx_http_pod_router_identity_length_p },

    { ngx_string("pod_router_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_pod_router_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pod_router_amqp"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_pod_router_amqp,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pod_router_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, thread_pool_name),
      NULL },

    { ngx_string("pod_router_max_waiting"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, max_waiting),
      NULL },

    { ngx_string("pod_router_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, cache_ttl),
      NULL },

    { ngx_string("pod_router_cache_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, cache_size),
      NULL },

    { ngx_string("pod_router_touch_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, touch_interval),
      NULL },

    { ngx_string("pod_router_lock_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, lock_ttl),
      NULL },

    { ngx_string("pod_router_recheck_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, recheck_interval),
      NULL },

    { ngx_string("pod_router_subscribe"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pod_router_main_conf_t, subscribe),
      NULL },

    { ngx_string("pod_router_balancer"),
      NGX_HTTP_UPS_CONF|NGX_CONF_NOARGS,
      ngx_http_pod_router_balancer,
      0,
      0,
      NULL },

    { ngx_string("pod_router_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_pod_router_status,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_pod_router_module_ctx = {
    ngx_http_pod_router_preconfiguration,  /* preconfiguration */
    ngx_http_pod_router_postconfiguration, /* postconfiguration */

    ngx_http_pod_router_create_main_conf,  /* create main configuration */
    ngx_http_pod_router_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_pod_router_create_loc_conf,   /* create location configuration */
    ngx_http_pod_router_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_pod_router_module = {
    NGX_MODULE_V1,
    &ngx_http_pod_router_module_ctx,       /* module context */
    ngx_http_pod_router_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_pod_router_init_module,       /* init module */
    ngx_http_pod_router_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_pod_router_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_pod_router_metrics_zone_name =
    ngx_string("pod_router_metrics");


ngx_http_pod_router_main_conf_t *
ngx_http_pod_router_main_conf(void)
{
    return ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_pod_router_module);
}


static ngx_int_t
ngx_http_pod_router_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_pod_router_add_variables(cf);
}


static ngx_int_t
ngx_http_pod_router_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* after access checks: "satisfy any" must not count pod_router as one */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_pod_router_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_pod_router_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                        connections;
    ngx_http_pod_router_main_conf_t  *prmcf;

    /*
     * The core is linked statically into this .so, so a mismatch means a
     * build mixing headers and archive from different trees.
     */
    if (pr_core_api_version() != PR_CORE_API_VERSION) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pod_router: core API version %d, module built for %d",
                      pr_core_api_version(), PR_CORE_API_VERSION);
        return NGX_ERROR;
    }

    prmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                                ngx_http_pod_router_module);
    if (prmcf == NULL) {
        return NGX_OK;
    }

    /*
     * A held request keeps its client's connection and, once its pod is
     * ready, opens one to the pod: beyond half of worker_connections the
     * worker runs out of connections before pod_router_max_waiting can
     * answer 503 (known only now, after the events block).
     */
    connections = ngx_max(cycle->connection_n / 2, 1);

    if (prmcf->max_waiting == NGX_CONF_UNSET_UINT) {
        prmcf->max_waiting = connections;

    } else if (prmcf->configured && prmcf->max_waiting > connections) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "pod_router: \"pod_router_max_waiting %ui\" is more "
                      "than half of \"worker_connections %ui\": the worker "
                      "can run out of connections before it answers 503",
                      prmcf->max_waiting, cycle->connection_n);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_pod_router_init_process(ngx_cycle_t *cycle)
{
    ngx_http_pod_router_main_conf_t  *prmcf;

    prmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                                ngx_http_pod_router_module);

    /* never a zone left over from an earlier configuration */
    ngx_http_pod_router_metrics_bind(prmcf && prmcf->configured
                                     ? prmcf->metrics_zone : NULL);

    if (prmcf == NULL || !prmcf->configured) {
        return NGX_OK;
    }

    ngx_http_pod_router_handler_init_worker(cycle);

    return ngx_http_pod_router_redis_init_worker(cycle);
}


static void
ngx_http_pod_router_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_pod_router_main_conf_t  *prmcf;

    prmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                                ngx_http_pod_router_module);

    if (prmcf == NULL || !prmcf->configured) {
        return;
    }

    ngx_http_pod_router_redis_exit_worker(cycle);
    ngx_http_pod_router_handler_exit_worker(cycle);
}


static void *
ngx_http_pod_router_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_pod_router_main_conf_t  *prmcf;

    prmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pod_router_main_conf_t));
    if (prmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     prmcf->pod_name_prefix = { 0, NULL };
     *     prmcf->redis_host = { 0, NULL };
     *     prmcf->amqp_host = { 0, NULL };
     *     prmcf->naming = NULL;
     *     prmcf->configured = 0;
     */

    prmcf->max_identity_length = NGX_CONF_UNSET_SIZE;
    prmcf->max_waiting = NGX_CONF_UNSET_UINT;
    prmcf->cache_ttl = NGX_CONF_UNSET_MSEC;
    prmcf->cache_size = NGX_CONF_UNSET_UINT;
    prmcf->touch_interval = NGX_CONF_UNSET_MSEC;
    prmcf->lock_ttl = NGX_CONF_UNSET_MSEC;
    prmcf->recheck_interval = NGX_CONF_UNSET_MSEC;
    prmcf->subscribe = NGX_CONF_UNSET;

    return prmcf;
}


static char *
ngx_http_pod_router_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_pod_router_main_conf_t *prmcf = conf;

    u_char               err[PR_ERROR_SIZE];
    ngx_str_t            name;
    pr_status_t          rc;
    ngx_pool_cleanup_t  *cln;

    if (prmcf->pod_name_prefix.data == NULL) {
        ngx_str_set(&prmcf->pod_name_prefix, PR_DEFAULT_POD_NAME_PREFIX);
    }

    ngx_conf_init_size_value(prmcf->max_identity_length,
                             PR_DEFAULT_MAX_IDENTITY_BYTES);
    ngx_conf_init_msec_value(prmcf->cache_ttl, 0);
    ngx_conf_init_uint_value(prmcf->cache_size, 16384);
    ngx_conf_init_msec_value(prmcf->touch_interval, 10000);
    ngx_conf_init_msec_value(prmcf->lock_ttl, 60000);
    ngx_conf_init_msec_value(prmcf->recheck_interval, 2000);
    ngx_conf_init_value(prmcf->subscribe, 1);
    prmcf->pending_ttl = 600000;

    if (prmcf->cache_size == 0 || prmcf->cache_size > 1048576) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pod_router_cache_size\" must be between 1 and "
                           "1048576");
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    rc = pr_naming_create((const char *) prmcf->pod_name_prefix.data,
                          prmcf->pod_name_prefix.len,
                          prmcf->max_identity_length, &prmcf->naming,
                          (char *) err, sizeof(err));
    if (rc != PR_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pod_router: cannot set up pod naming: %s", err);
        return NGX_CONF_ERROR;
    }

    /* the policy lives exactly as long as this configuration */
    cln->handler = ngx_http_pod_router_cleanup_naming;
    cln->data = prmcf->naming;

    if (prmcf->redis_host.len == 0 && prmcf->amqp_host.len == 0) {
        return NGX_CONF_OK;
    }

    if (prmcf->redis_host.len == 0 || prmcf->amqp_host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pod_router needs both \"pod_router_redis\" and "
                           "\"pod_router_amqp\"");
        return NGX_CONF_ERROR;
    }

    prmcf->configured = 1;

    name.len = sizeof("request_id") - 1;
    name.data = (u_char *) "request_id";
    prmcf->request_id_index = ngx_http_get_variable_index(cf, &name);
    if (prmcf->request_id_index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    if (prmcf->thread_pool_name.data == NULL) {
        ngx_str_set(&prmcf->thread_pool_name, "default");
    }

    prmcf->thread_pool = ngx_thread_pool_add(cf, &prmcf->thread_pool_name);
    if (prmcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    prmcf->metrics_zone = ngx_shared_memory_add(cf,
                                      &ngx_http_pod_router_metrics_zone_name,
                                      8 * ngx_pagesize,
                                      &ngx_http_pod_router_module);
    if (prmcf->metrics_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    prmcf->metrics_zone->init = ngx_http_pod_router_metrics_init_zone;

    return NGX_CONF_OK;
}


static void *
ngx_http_pod_router_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_pod_router_loc_conf_t  *prlcf;

    prlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pod_router_loc_conf_t));
    if (prlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     prlcf->identity = NULL;
     *     prlcf->identity_source = NGX_HTTP_POD_ROUTER_SOURCE_OTHER;
     *     prlcf->identity_name = { 0, NULL };
     */

    prlcf->enable = NGX_CONF_UNSET;
    prlcf->allow_cidrs = NGX_CONF_UNSET_PTR;
    prlcf->wait_timeout = NGX_CONF_UNSET_MSEC;
    prlcf->missing_identity_status = NGX_CONF_UNSET_UINT;
    prlcf->wait_mode = NGX_CONF_UNSET_UINT;
    prlcf->identity_keys = NGX_CONF_UNSET_PTR;
    prlcf->identity_skew = NGX_CONF_UNSET;
    prlcf->trusted_proxies = NGX_CONF_UNSET_PTR;
    prlcf->strip_identity = NGX_CONF_UNSET;
    prlcf->pass_keys = NGX_CONF_UNSET_PTR;
    prlcf->pass_ttl = NGX_CONF_UNSET;

    return prlcf;
}


static char *
ngx_http_pod_router_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_pod_router_loc_conf_t *prev = parent;
    ngx_http_pod_router_loc_conf_t *conf = child;

    ngx_http_pod_router_main_conf_t  *prmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->allow_cidrs, prev->allow_cidrs, NULL);
    ngx_conf_merge_msec_value(conf->wait_timeout, prev->wait_timeout, 60000);
    ngx_conf_merge_uint_value(conf->missing_identity_status,
                              prev->missing_identity_status,
                              NGX_HTTP_UNAUTHORIZED);
    ngx_conf_merge_uint_value(conf->wait_mode, prev->wait_mode,
                              NGX_HTTP_POD_ROUTER_WAIT_HOLD);
    ngx_conf_merge_ptr_value(conf->identity_keys, prev->identity_keys, NULL);
    ngx_conf_merge_sec_value(conf->identity_skew, prev->identity_skew, 30);
    ngx_conf_merge_ptr_value(conf->trusted_proxies, prev->trusted_proxies,
                             NULL);
    ngx_conf_merge_value(conf->strip_identity, prev->strip_identity, 1);
    ngx_conf_merge_ptr_value(conf->pass_keys, prev->pass_keys, NULL);
    ngx_conf_merge_sec_value(conf->pass_ttl, prev->pass_ttl, 60);

    if (conf->identity == NULL) {
        conf->identity = prev->identity;
    }

    if (ngx_http_pod_router_identity_source(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    prmcf = ngx_http_conf_get_module_main_conf(cf,
                                               ngx_http_pod_router_module);

    if (prmcf->redis_host.len == 0 || prmcf->amqp_host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pod_router\" is on, but \"pod_router_redis\" "
                           "and \"pod_router_amqp\" are not both set in the "
                           "http block");
        return NGX_CONF_ERROR;
    }

    if (conf->identity == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pod_router\" is on, but "
                           "\"pod_router_identity\" is not set");
        return NGX_CONF_ERROR;
    }

    if (conf->allow_cidrs == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pod_router\" is on, but "
                           "\"pod_router_allow_cidr\" is not set: say which "
                           "addresses pods may have");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* directive handlers */


static char *
ngx_http_pod_router_pod_name_prefix(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    u_char        err[PR_ERROR_SIZE];
    char         *rv;
    ngx_str_t    *value;
    pr_status_t   rc;
    pr_naming_t  *probe;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    value = cf->args->elts;

    /* validate here, so that the error points at this directive's line */
    rc = pr_naming_create((const char *) value[1].data, value[1].len, 1,
                          &probe, (char *) err, sizeof(err));
    if (rc != PR_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive: %s",
                           &value[1], &cmd->name, err);
        return NGX_CONF_ERROR;
    }

    pr_naming_destroy(probe);

    return NGX_CONF_OK;
}


static char *
ngx_http_pod_router_check_identity_length(ngx_conf_t *cf, void *post,
    void *data)
{
    size_t *sp = data;

    if (*sp == 0 || *sp > PR_MAX_IDENTITY_BYTES_LIMIT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"pod_router_max_identity_length\" must be "
                           "between 1 and %d bytes",
                           PR_MAX_IDENTITY_BYTES_LIMIT);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_pod_router_check_status(ngx_conf_t *cf, void *post, void *data)
{
    ngx_uint_t *np = data;

    if (*np < 400 || *np > 599) {
        return "must be an HTTP error status from 400 to 599";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_pod_router_param(ngx_str_t *arg, const char *name, ngx_str_t *value)
{
    size_t  len;

    len = ngx_strlen(name);

    if (arg->len > len && ngx_strncmp(arg->data, name, len) == 0
        && arg->data[len] == '=')
    {
        value->data = arg->data + len + 1;
        value->len = arg->len - len - 1;
        return 1;
    }

    return 0;
}


static char *
ngx_http_pod_router_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pod_router_main_conf_t *prmcf = conf;

    u_char      err[PR_ERROR_SIZE];
    ngx_int_t   n;
    ngx_str_t  *value, v, password_file;
    ngx_url_t   u;
    ngx_uint_t  i;

    if (prmcf->redis_host.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.default_port = 6379;

    /*
     * Resolved here, once: hiredis would call getaddrinfo() on every
     * reconnect, inside the event loop. A new address needs a reload.
     */
    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive: %s",
                           &value[1], &cmd->name,
                           u.err ? u.err : "expected host:port");
        return NGX_CONF_ERROR;
    }

    /* hiredis wants a NUL-terminated address */
    prmcf->redis_host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (prmcf->redis_host.data == NULL) {
        return NGX_CONF_ERROR;
    }
    prmcf->redis_host.len = ngx_sock_ntop(u.addrs[0].sockaddr,
                                          u.addrs[0].socklen,
                                          prmcf->redis_host.data,
                                          NGX_SOCKADDR_STRLEN, 0);
    prmcf->redis_host.data[prmcf->redis_host.len] = '\0';
    prmcf->redis_port = u.port;

    prmcf->redis_connect_timeout = 1000;
    prmcf->redis_timeout = 1000;
    ngx_str_set(&prmcf->redis_key_prefix, "pod-router:");
    ngx_str_null(&password_file);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_pod_router_param(&value[i], "db", &v)) {
            n = ngx_atoi(v.data, v.len);
            if (n == NGX_ERROR || n > 1023) {
                goto invalid;
            }
            prmcf->redis_db = n;

        } else if (ngx_http_pod_router_param(&value[i], "password_file", &v)) {
            password_file = v;

        } else if (ngx_http_pod_router_param(&value[i], "connect_timeout",
                                             &v))
        {
            prmcf->redis_connect_timeout = ngx_parse_time(&v, 0);
            if (prmcf->redis_connect_timeout == (ngx_msec_t) NGX_ERROR
                || prmcf->redis_connect_timeout == 0)
            {
                goto invalid;
            }

        } else if (ngx_http_pod_router_param(&value[i], "timeout", &v)) {
            prmcf->redis_timeout = ngx_parse_time(&v, 0);
            if (prmcf->redis_timeout == (ngx_msec_t) NGX_ERROR
                || prmcf->redis_timeout == 0)
            {
                goto invalid;
            }

        } else if (ngx_http_pod_router_param(&value[i], "key_prefix", &v)) {
            if (pr_redis_key_prefix_check((char *) v.data, v.len,
                                          (char *) err, sizeof(err))
                != PR_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in \"%V\" "
                                   "directive: %s", &value[i], &cmd->name,
                                   err);
                return NGX_CONF_ERROR;
            }
            prmcf->redis_key_prefix = v;

        } else {
            goto invalid;
        }
    }

    if (password_file.len
        && ngx_http_pod_router_read_secret(cf, &password_file,
                                           &prmcf->redis_password)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"%V\" directive",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_pod_router_amqp(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pod_router_main_conf_t *prmcf = conf;

    u_char      *p, *slash, *colon;
    ngx_str_t   *value, v, url, credentials_file, credentials, host;
    ngx_int_t    port;
    ngx_uint_t   i;

    if (prmcf->amqp_host.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    url = value[1];

    if (url.len < sizeof("amqp://") - 1
        || ngx_strncmp(url.data, "amqp://", sizeof("amqp://") - 1) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive: "
                           "expected amqp://host[:port][/vhost]",
                           &url, &cmd->name);
        return NGX_CONF_ERROR;
    }

    p = url.data + sizeof("amqp://") - 1;

    if (ngx_strlchr(p, url.data + url.len, '@')) {
        /* a password in nginx.conf ends up in backups, diffs and ps */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must not hold credentials in its URL: "
                           "use credentials_file=", &cmd->name);
        return NGX_CONF_ERROR;
    }

    slash = ngx_strlchr(p, url.data + url.len, '/');
    host.data = p;
    host.len = (slash ? slash : url.data + url.len) - p;
    colon = ngx_strlchr(host.data, host.data + host.len, ':');
    port = 5672;

    if (colon) {
        port = ngx_atoi(colon + 1, host.data + host.len - colon - 1);
        if (port < 1 || port > 65535) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid port in \"%V\" of the \"%V\" "
                               "directive", &url, &cmd->name);
            return NGX_CONF_ERROR;
        }
        host.len = colon - host.data;
    }

    if (host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no host in \"%V\" of the \"%V\" directive",
                           &url, &cmd->name);
        return NGX_CONF_ERROR;
    }

    prmcf->amqp_host.data = ngx_pnalloc(cf->pool, host.len + 1);
    if (prmcf->amqp_host.data == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_cpystrn(prmcf->amqp_host.data, host.data, host.len + 1);
    prmcf->amqp_host.len = host.len;
    prmcf->amqp_port = (in_port_t) port;

    if (slash && slash + 1 < url.data + url.len) {
        v.data = slash + 1;
        v.len = url.data + url.len - slash - 1;
        prmcf->amqp_vhost.data = ngx_pnalloc(cf->pool, v.len + 1);
        if (prmcf->amqp_vhost.data == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_cpystrn(prmcf->amqp_vhost.data, v.data, v.len + 1);
        prmcf->amqp_vhost.len = v.len;

    } else {
        ngx_str_set(&prmcf->amqp_vhost, "/");
    }

    ngx_str_set(&prmcf->amqp_username, "guest");
    ngx_str_set(&prmcf->amqp_password, "guest");
    prmcf->amqp_timeout = 5000;
    ngx_str_null(&credentials_file);

    for (i = 2; i < cf->args->nelts; i++) {
        ngx_str_t  *target = NULL;

        if (ngx_http_pod_router_param(&value[i], "exchange", &v)) {
            target = &prmcf->amqp_exchange;

        } else if (ngx_http_pod_router_param(&value[i], "routing_key", &v)) {
            target = &prmcf->amqp_routing_key;

        } else if (ngx_http_pod_router_param(&value[i], "queue", &v)) {
            target = &prmcf->amqp_queue;

        } else if (ngx_http_pod_router_param(&value[i], "credentials_file",
                                             &v))
        {
            credentials_file = v;
            continue;

        } else if (ngx_http_pod_router_param(&value[i], "timeout", &v)) {
            prmcf->amqp_timeout = ngx_parse_time(&v, 0);
            if (prmcf->amqp_timeout == (ngx_msec_t) NGX_ERROR
                || prmcf->amqp_timeout == 0)
            {
                goto invalid;
            }
            continue;

        } else {
            goto invalid;
        }

        if (v.len == 0) {
            goto invalid;
        }

        /* the publisher takes C strings */
        target->data = ngx_pnalloc(cf->pool, v.len + 1);
        if (target->data == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_cpystrn(target->data, v.data, v.len + 1);
        target->len = v.len;
    }

    if (credentials_file.len) {
        if (ngx_http_pod_router_read_secret(cf, &credentials_file,
                                            &credentials)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        colon = ngx_strlchr(credentials.data,
                            credentials.data + credentials.len, ':');
        if (colon == NULL || colon == credentials.data) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" must hold \"user:password\"",
                               &credentials_file);
            return NGX_CONF_ERROR;
        }

        *colon = '\0';
        prmcf->amqp_username.data = credentials.data;
        prmcf->amqp_username.len = colon - credentials.data;
        prmcf->amqp_password.data = colon + 1;
        prmcf->amqp_password.len = credentials.data + credentials.len
                                   - colon - 1;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"%V\" directive",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;
}


/* reads a one-line secret; the result is NUL-terminated */

static ngx_int_t
ngx_http_pod_router_read_secret(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *secret)
{
    u_char     *end;
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_str_t   name;
    ngx_file_t  file;
    u_char      buf[1024];

    name = *path;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name.data);
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name = name;
    file.log = cf->log;

    n = ngx_read_file(&file, buf, sizeof(buf) - 1, 0);

    (void) ngx_close_file(fd);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    end = buf + n;
    while (end > buf && (end[-1] == '\n' || end[-1] == '\r')) {
        end--;
    }

    if (end == buf) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%s\" is empty",
                           name.data);
        return NGX_ERROR;
    }

    secret->len = end - buf;
    secret->data = ngx_pnalloc(cf->pool, secret->len + 1);
    if (secret->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(secret->data, buf, secret->len);
    secret->data[secret->len] = '\0';
    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_OK;
}


static char *
ngx_http_pod_router_set_cidr_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    ngx_int_t     rc;
    ngx_str_t    *value;
    ngx_uint_t    i;
    ngx_cidr_t   *cidr;
    ngx_array_t **cidrs;

    cidrs = (ngx_array_t **) (p + cmd->offset);
    value = cf->args->elts;

    if (*cidrs == NGX_CONF_UNSET_PTR) {
        *cidrs = ngx_array_create(cf->pool, 4, sizeof(ngx_cidr_t));
        if (*cidrs == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    for (i = 1; i < cf->args->nelts; i++) {
        cidr = ngx_array_push(*cidrs);
        if (cidr == NULL) {
            return NGX_CONF_ERROR;
        }

        rc = ngx_ptocidr(&value[i], cidr);

        if (rc == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"%V\" directive: "
                               "expected an address or a CIDR block",
                               &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DONE) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "low address bits of %V are meaningless",
                               &value[i]);
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_pod_router_identity_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_pod_router_loc_conf_t *prlcf = conf;

    ngx_str_t  *value;

    if (prlcf->identity_keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* the first secret is the current one; a second is for rotation */
    prlcf->identity_keys = ngx_http_pod_router_token_keys(cf, cmd, &value[1],
                                                    cf->args->nelts - 1);
    if (prlcf->identity_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_pod_router_pass_identity(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_pod_router_loc_conf_t *prlcf = conf;

    ngx_str_t   *value, v, secret_file;
    ngx_uint_t   i;

    if (prlcf->pass_keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        prlcf->pass_keys = NULL;
        return NGX_CONF_OK;
    }

    ngx_str_null(&secret_file);
    prlcf->pass_ttl = 60;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_http_pod_router_param(&value[i], "secret_file", &v)
            && v.len)
        {
            secret_file = v;

        } else if (ngx_http_pod_router_param(&value[i], "ttl", &v)) {
            prlcf->pass_ttl = ngx_parse_time(&v, 1);
            if (prlcf->pass_ttl == (time_t) NGX_ERROR
                || prlcf->pass_ttl == 0)
            {
                goto invalid;
            }

        } else {
            goto invalid;
        }
    }

    if (secret_file.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs secret_file=", &cmd->name);
        return NGX_CONF_ERROR;
    }

    prlcf->pass_keys = ngx_http_pod_router_token_keys(cf, cmd, &secret_file,
                                                      1);
    if (prlcf->pass_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"%V\" directive",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;
}


/*
 * Keys from secret files, read here once: never in a worker's event loop.
 * Each file is checked alone first, so that the error names it.
 */

static pr_token_keys_t *
ngx_http_pod_router_token_keys(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *paths, ngx_uint_t n)
{
    u_char               err[PR_ERROR_SIZE];
    size_t               lens[PR_TOKEN_MAX_SECRETS];
    ngx_str_t            secrets[PR_TOKEN_MAX_SECRETS];
    ngx_uint_t           i;
    pr_status_t          rc;
    const char          *data[PR_TOKEN_MAX_SECRETS];
    pr_token_keys_t     *keys;
    ngx_pool_cleanup_t  *cln;

    keys = NULL;

    for (i = 0; i < n; i++) {
        ngx_str_null(&secrets[i]);
    }

    for (i = 0; i < n; i++) {
        if (ngx_http_pod_router_read_file(cf, &paths[i], &secrets[i])
            != NGX_OK)
        {
            goto done;
        }

        data[i] = (const char *) secrets[i].data;
        lens[i] = secrets[i].len;

        rc = pr_token_keys_create(&data[i], &lens[i], 1, &keys, (char *) err,
                                  sizeof(err));
        if (rc != PR_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"%V\" directive: %s",
                               &paths[i], &cmd->name, err);
            goto done;
        }

        pr_token_keys_destroy(keys);
        keys = NULL;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        goto done;
    }

    rc = pr_token_keys_create(data, lens, n, &keys, (char *) err,
                              sizeof(err));
    if (rc != PR_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: %s", &cmd->name, err);
        keys = NULL;
        goto done;
    }

    /* the keys live exactly as long as this configuration */
    cln->handler = ngx_http_pod_router_cleanup_token_keys;
    cln->data = keys;

done:

    for (i = 0; i < n; i++) {
        if (secrets[i].data) {
            ngx_explicit_memzero(secrets[i].data, secrets[i].len);
        }
    }

    return keys;
}


/* a whole small file, as it is: a secret may end in any byte */

static ngx_int_t
ngx_http_pod_router_read_file(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *content)
{
    off_t            size;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_str_t        name;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    name = *path;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name.data);
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name = name;
    file.log = cf->log;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%s\" failed", name.data);
        goto failed;
    }

    if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%s\" is not a file",
                           name.data);
        goto failed;
    }

    size = ngx_file_size(&fi);

    if (size > 4096) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" holds more than 4096 bytes: "
                           "not a secret", name.data);
        goto failed;
    }

    content->len = 0;
    content->data = ngx_pnalloc(cf->pool, (size_t) size + 1);
    if (content->data == NULL) {
        goto failed;
    }

    n = ngx_read_file(&file, content->data, (size_t) size, 0);

    if (n != size) {
        if (n != NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               ngx_read_file_n " \"%s\" returned only "
                               "%z bytes instead of %O", name.data, n, size);
        }

        ngx_explicit_memzero(content->data, (size_t) size);
        goto failed;
    }

    content->len = (size_t) n;

    (void) ngx_close_file(fd);

    return NGX_OK;

failed:

    (void) ngx_close_file(fd);

    return NGX_ERROR;
}


static void
ngx_http_pod_router_cleanup_naming(void *data)
{
    pr_naming_destroy(data);
}


static void
ngx_http_pod_router_cleanup_token_keys(void *data)
{
    pr_token_keys_destroy(data);
}
