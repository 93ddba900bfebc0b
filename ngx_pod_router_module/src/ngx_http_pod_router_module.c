
/*
 * ngx_http_pod_router_module: routes each user's requests to the user's own
 * Kubernetes pod. This file holds the directives and the module's lifecycle;
 * the naming, Redis schema and event rules come from the shared C++ core
 * through pod_router_core.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <pod_router/pod_router_core.h>


typedef struct {
    ngx_str_t      pod_name_prefix;
    size_t         max_identity_length;
    pr_naming_t   *naming;
} ngx_http_pod_router_main_conf_t;


static ngx_int_t ngx_http_pod_router_init_module(ngx_cycle_t *cycle);
static void *ngx_http_pod_router_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_pod_router_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_http_pod_router_pod_name_prefix(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_pod_router_max_identity_length(ngx_conf_t *cf,
    void *post, void *data);
static void ngx_http_pod_router_cleanup_naming(void *data);


static ngx_conf_post_handler_pt  ngx_http_pod_router_max_identity_length_p =
    ngx_http_pod_router_max_identity_length;


static ngx_command_t  ngx_http_pod_router_commands[] = {

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
      &ngx_http_pod_router_max_identity_length_p },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_pod_router_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_pod_router_create_main_conf,  /* create main configuration */
    ngx_http_pod_router_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_pod_router_module = {
    NGX_MODULE_V1,
    &ngx_http_pod_router_module_ctx,       /* module context */
    ngx_http_pod_router_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_pod_router_init_module,       /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_pod_router_init_module(ngx_cycle_t *cycle)
{
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

    return NGX_OK;
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
     *     prmcf->naming = NULL;
     */

    prmcf->max_identity_length = NGX_CONF_UNSET_SIZE;

    return prmcf;
}


static char *
ngx_http_pod_router_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_pod_router_main_conf_t *prmcf = conf;

    u_char               err[PR_ERROR_SIZE];
    pr_status_t          rc;
    ngx_pool_cleanup_t  *cln;

    if (prmcf->pod_name_prefix.data == NULL) {
        ngx_str_set(&prmcf->pod_name_prefix, PR_DEFAULT_POD_NAME_PREFIX);
    }

    ngx_conf_init_size_value(prmcf->max_identity_length,
                             PR_DEFAULT_MAX_IDENTITY_BYTES);

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

    return NGX_CONF_OK;
}


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
ngx_http_pod_router_max_identity_length(ngx_conf_t *cf, void *post,
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


static void
ngx_http_pod_router_cleanup_naming(void *data)
{
    pr_naming_destroy(data);
}
