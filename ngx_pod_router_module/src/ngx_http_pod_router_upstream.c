
/*
 * The pod as an upstream peer. "pod_router_balancer" in an upstream block
 * makes the module choose the peer: the address the request's route found.
 * The keepalive module composes with it (put "keepalive" after it), caching
 * connections per pod address, which a "proxy_pass http://$variable" could
 * not do. The variables expose the decision to logs and to operators who
 * prefer $pod_router_upstream.
 */


#include "ngx_http_pod_router.h"


typedef struct {
    ngx_http_pod_router_ctx_t  *ctx;
    ngx_http_request_t         *request;
} ngx_http_pod_router_peer_data_t;


static ngx_int_t ngx_http_pod_router_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_pod_router_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_pod_router_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_pod_router_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static ngx_int_t ngx_http_pod_router_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#define NGX_HTTP_POD_ROUTER_VAR_POD       0
#define NGX_HTTP_POD_ROUTER_VAR_STATUS    1
#define NGX_HTTP_POD_ROUTER_VAR_UPSTREAM  2
#define NGX_HTTP_POD_ROUTER_VAR_TOKEN     3


static ngx_http_variable_t  ngx_http_pod_router_vars[] = {

    { ngx_string("pod_router_pod"), NULL, ngx_http_pod_router_variable,
      NGX_HTTP_POD_ROUTER_VAR_POD, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("pod_router_status"), NULL, ngx_http_pod_router_variable,
      NGX_HTTP_POD_ROUTER_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("pod_router_upstream"), NULL, ngx_http_pod_router_variable,
      NGX_HTTP_POD_ROUTER_VAR_UPSTREAM, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("pod_router_identity_token"), NULL,
      ngx_http_pod_router_variable, NGX_HTTP_POD_ROUTER_VAR_TOKEN,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_pod_router_outcome_names[] = {
    ngx_null_string,
    ngx_string("HIT"),
    ngx_string("CACHE_HIT"),
    ngx_string("MISS"),
    ngx_string("CLAIMED"),
    ngx_string("WAIT"),
    ngx_string("STARTING"),
    ngx_string("TIMEOUT"),
    ngx_string("FAILED"),
    ngx_string("UNAVAILABLE"),
    ngx_string("OVERLOAD"),
    ngx_string("NO_IDENTITY"),
    ngx_string("BAD_IDENTITY"),
    ngx_string("FORBIDDEN"),
    ngx_string("CONFLICT"),
    ngx_string("INVALID_TOKEN"),
    ngx_string("UNTRUSTED_ADDRESS"),
};


char *
ngx_http_pod_router_balancer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_url_t                      u;
    ngx_http_upstream_server_t    *us;
    ngx_http_upstream_srv_conf_t  *uscf;

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    uscf->peer.init_upstream = ngx_http_pod_router_init_upstream;
    uscf->flags = NGX_HTTP_UPSTREAM_CREATE;

    /*
     * nginx insists on a server in every upstream block; the module picks
     * the real peer per request, so a placeholder that is never dialled
     * saves operators from writing one.
     */
    if (uscf->servers == NULL || uscf->servers->nelts == 0) {
        if (uscf->servers == NULL) {
            uscf->servers = ngx_array_create(cf->pool, 1,
                                        sizeof(ngx_http_upstream_server_t));
            if (uscf->servers == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        ngx_memzero(&u, sizeof(ngx_url_t));
        ngx_str_set(&u.url, "0.0.0.1:80");
        u.default_port = 80;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        us = ngx_array_push(uscf->servers);
        if (us == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(us, sizeof(ngx_http_upstream_server_t));
        us->addrs = u.addrs;
        us->naddrs = u.naddrs;
        us->weight = 1;
        us->max_fails = 1;
        us->fail_timeout = 10;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_pod_router_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    us->peer.init = ngx_http_pod_router_init_peer;

    return NGX_OK;
}


static ngx_int_t
ngx_http_pod_router_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_pod_router_ctx_t        *ctx;
    ngx_http_pod_router_peer_data_t  *pd;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_pod_router_module);

    if (ctx == NULL || ctx->phase != NGX_HTTP_POD_ROUTER_PHASE_PROXY) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pod_router: upstream \"%V\" uses pod_router_balancer "
                      "in a location without \"pod_router on\"", &us->host);
        return NGX_ERROR;
    }

    pd = ngx_palloc(r->pool, sizeof(ngx_http_pod_router_peer_data_t));
    if (pd == NULL) {
        return NGX_ERROR;
    }

    pd->ctx = ctx;
    pd->request = r;

    r->upstream->peer.data = pd;
    r->upstream->peer.get = ngx_http_pod_router_get_peer;
    r->upstream->peer.free = ngx_http_pod_router_free_peer;
    /* one pod per user: there is no other peer to try */
    r->upstream->peer.tries = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_pod_router_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_pod_router_peer_data_t  *pd = data;

    pc->sockaddr = pd->ctx->peer.sockaddr;
    pc->socklen = pd->ctx->peer.socklen;
    pc->name = &pd->ctx->peer.name;
    pc->cached = 0;
    pc->connection = NULL;

    return NGX_OK;
}


static void
ngx_http_pod_router_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_pod_router_peer_data_t  *pd = data;

    ngx_http_upstream_t  *u;

    u = pd->request->upstream;

    /*
     * Only a connect that never completed says the pod is gone; a timeout
     * or a bad answer after connecting is the application's business.
     */
    if ((state & NGX_PEER_FAILED) && u && u->state
        && u->state->connect_time == (ngx_msec_t) -1)
    {
        ngx_http_pod_router_dead_pod(pd->ctx);
    }

    pc->tries = 0;
}


ngx_int_t
ngx_http_pod_router_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_pod_router_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_pod_router_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_int_t                   rc;
    ngx_str_t                  *value;
    ngx_http_pod_router_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_pod_router_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_POD_ROUTER_VAR_POD:
        if (ctx->pod_len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }
        v->data = ctx->pod;
        v->len = ctx->pod_len;
        break;

    case NGX_HTTP_POD_ROUTER_VAR_STATUS:
        value = &ngx_http_pod_router_outcome_names[ctx->outcome];
        if (value->len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }
        v->data = value->data;
        v->len = value->len;
        break;

    case NGX_HTTP_POD_ROUTER_VAR_UPSTREAM:
        if (ctx->phase != NGX_HTTP_POD_ROUTER_PHASE_PROXY) {
            v->not_found = 1;
            return NGX_OK;
        }
        v->data = ctx->peer.name.data;
        v->len = ctx->peer.name.len;
        break;

    default: /* NGX_HTTP_POD_ROUTER_VAR_TOKEN */
        if (ctx->phase != NGX_HTTP_POD_ROUTER_PHASE_PROXY) {
            v->not_found = 1;
            return NGX_OK;
        }

        rc = ngx_http_pod_router_pass_token(r, ctx);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ctx->pass_token.data;
        v->len = ctx->pass_token.len;
        break;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
