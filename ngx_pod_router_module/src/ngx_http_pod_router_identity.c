
/*
 * Whose request it is, and what the pod learns of it (docs/security.md).
 *
 * The identity is pod_router_identity's value: trusted as it is (behind
 * pod_router_trusted_proxies, or set by auth_request), or, with
 * pod_router_identity_secret, a signed token that the core verifies.
 *
 * Before the request is proxied, the header or cookie the identity came
 * from is removed (pod_router_strip_identity), so is any X-Pod-Router-Identity
 * a client sent, and pod_router_pass_identity adds one the gateway signed.
 * The proxy module sends r->headers_in.headers: that list is rebuilt without
 * those entries. The list as the client sent it is kept, marked by a pool
 * cleanup entry (an internal redirect clears module contexts, not pool
 * cleanups), and put back when the request starts again in another
 * pod_router location (error_page, named locations), which must find the
 * identity where the client put it.
 */


#include "ngx_http_pod_router.h"


static ngx_int_t ngx_http_pod_router_reject(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx, ngx_uint_t reason);
static ngx_int_t ngx_http_pod_router_www_authenticate(ngx_http_request_t *r,
    char *value);
static void ngx_http_pod_router_received_mark(void *data);
static ngx_list_t *ngx_http_pod_router_received(ngx_http_request_t *r);
static void ngx_http_pod_router_list_copy(ngx_list_t *dst, ngx_list_t *src);
static ngx_uint_t ngx_http_pod_router_header_is(ngx_table_elt_t *h,
    ngx_str_t *name);
static ngx_uint_t ngx_http_pod_router_header_fate(
    ngx_http_pod_router_loc_conf_t *prlcf, ngx_table_elt_t *h);
static ngx_uint_t ngx_http_pod_router_cookie_named(u_char *start, u_char *end,
    ngx_str_t *name);
static ngx_int_t ngx_http_pod_router_strip_cookie(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value, ngx_str_t *out);


/* ngx_http_pod_router_header_fate() */
#define NGX_HTTP_POD_ROUTER_KEEP           0
#define NGX_HTTP_POD_ROUTER_DROP           1
#define NGX_HTTP_POD_ROUTER_FILTER_COOKIE  2


static ngx_str_t  ngx_http_pod_router_identity_header_name =
    ngx_string("x_pod_router_identity");
static ngx_str_t  ngx_http_pod_router_cookie_header_name =
    ngx_string("cookie");

/*
 * The seed's identity header: a pod written for the seed's gateway trusts
 * it as the user's name, so a client must not be able to send it past an
 * identity read from anywhere else (a token, a cookie, auth_request).
 */
static ngx_str_t  ngx_http_pod_router_seed_header_name =
    ngx_string("x_user_id");


/*
 * NGX_OK: *identity is the request's; anything else is its answer, counted
 * already.
 */

ngx_int_t
ngx_http_pod_router_identity(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx, ngx_str_t *identity)
{
    size_t                           len;
    u_char                          *buf;
    ngx_str_t                        value;
    ngx_list_t                      *received;
    pr_token_check_t                 check;
    ngx_http_pod_router_loc_conf_t  *prlcf;

    prlcf = ngx_http_get_module_loc_conf(r, ngx_http_pod_router_module);

    /* an earlier pod_router location of this request removed it */
    received = ngx_http_pod_router_received(r);
    if (received) {
        ngx_http_pod_router_list_copy(&r->headers_in.headers, received);
    }

    if (prlcf->trusted_proxies
        && ngx_cidr_match(r->connection->sockaddr, prlcf->trusted_proxies)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pod_router: identity not accepted from this address, "
                      "which is outside pod_router_trusted_proxies");
        return ngx_http_pod_router_reject(r, ctx,
                                          NGX_HTTP_POD_ROUTER_REJECT_UNTRUSTED);
    }

    if (ngx_http_complex_value(r, prlcf->identity, &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (value.len == 0) {
        return ngx_http_pod_router_reject(r, ctx,
                                          NGX_HTTP_POD_ROUTER_REJECT_MISSING);
    }

    if (prlcf->identity_keys == NULL) {
        *identity = value;
        return NGX_OK;
    }

    /* "Authorization: Bearer <token>" (RFC 6750), or the token alone */
    if (value.len >= 6
        && ngx_strncasecmp(value.data, (u_char *) "Bearer", 6) == 0
        && (value.len == 6 || value.data[6] == ' '))
    {
        value.data += 6;
        value.len -= 6;

        while (value.len && value.data[0] == ' ') {
            value.data++;
            value.len--;
        }
    }

    if (value.len == 0 || value.len > PR_TOKEN_MAX_BYTES) {
        check = PR_TOKEN_MALFORMED;

    } else {
        /* the identity is shorter than its encoding in the token */
        buf = ngx_pnalloc(r->pool, value.len);
        if (buf == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        check = pr_token_verify(prlcf->identity_keys, (char *) value.data,
                                value.len, (int64_t) ngx_time(),
                                (int64_t) prlcf->identity_skew, (char *) buf,
                                value.len, &len);

        if (check == PR_TOKEN_VALID) {
            identity->data = buf;
            identity->len = len;
            return NGX_OK;
        }
    }

    /* the reason, never the token: it may still be valid elsewhere */
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "pod_router: identity token refused: %s",
                  pr_token_check_name(check));

    switch (check) {

    case PR_TOKEN_EXPIRED:
        return ngx_http_pod_router_reject(r, ctx,
                                          NGX_HTTP_POD_ROUTER_REJECT_EXPIRED);

    case PR_TOKEN_FORGED:
        return ngx_http_pod_router_reject(r, ctx,
                                          NGX_HTTP_POD_ROUTER_REJECT_FORGED);

    default:
        return ngx_http_pod_router_reject(r, ctx,
                                          NGX_HTTP_POD_ROUTER_REJECT_MALFORMED);
    }
}


static ngx_int_t
ngx_http_pod_router_reject(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx, ngx_uint_t reason)
{
    ngx_str_t                        text;
    ngx_uint_t                       status;
    ngx_http_pod_router_loc_conf_t  *prlcf;

    static ngx_str_t  reasons[] = {
        ngx_null_string,
        ngx_string("malformed token"),
        ngx_string("invalid token signature"),
        ngx_string("expired token"),
        ngx_string("identity not accepted from this address")
    };

    prlcf = ngx_http_get_module_loc_conf(r, ngx_http_pod_router_module);

    ngx_http_pod_router_count(NGX_HTTP_POD_ROUTER_M_REJECTED + reason, 1);

    switch (reason) {

    case NGX_HTTP_POD_ROUTER_REJECT_MISSING:
        ctx->outcome = NGX_HTTP_POD_ROUTER_NO_IDENTITY;
        ngx_http_pod_router_count(ctx->outcome, 1);

        /* RFC 6750 3: no error code when no credentials were sent */
        if (prlcf->identity_keys
            && prlcf->missing_identity_status == NGX_HTTP_UNAUTHORIZED
            && ngx_http_pod_router_www_authenticate(r, "Bearer") != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return prlcf->missing_identity_status;

    case NGX_HTTP_POD_ROUTER_REJECT_UNTRUSTED:
        ctx->outcome = NGX_HTTP_POD_ROUTER_UNTRUSTED;
        status = NGX_HTTP_FORBIDDEN;
        break;

    default:
        ctx->outcome = NGX_HTTP_POD_ROUTER_INVALID_TOKEN;
        status = NGX_HTTP_UNAUTHORIZED;

        if (ngx_http_pod_router_www_authenticate(r,
                                         "Bearer error=\"invalid_token\"")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_http_pod_router_count(ctx->outcome, 1);

    text = reasons[reason];

    return ngx_http_pod_router_respond(r,
               ngx_http_pod_router_send_text(r, status, &text));
}


static ngx_int_t
ngx_http_pod_router_www_authenticate(ngx_http_request_t *r, char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(h, sizeof(ngx_table_elt_t));

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


/* what the pod receives */


/*
 * Called once the pod is chosen, before the content phase (proxy_pass)
 * builds the upstream request from r->headers_in.headers.
 */

ngx_int_t
ngx_http_pod_router_upstream_headers(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx)
{
    ngx_str_t                        cookie;
    ngx_int_t                        rc;
    ngx_uint_t                       i, n, change, fate;
    ngx_list_t                      *received;
    ngx_list_part_t                 *part;
    ngx_table_elt_t                 *header, *h;
    ngx_pool_cleanup_t              *cln;
    ngx_http_pod_router_loc_conf_t  *prlcf;

    prlcf = ngx_http_get_module_loc_conf(r, ngx_http_pod_router_module);

    if (prlcf->pass_keys
        && ngx_http_pod_router_pass_token(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* most requests carry nothing to remove: leave their list alone */

    n = 0;
    change = (prlcf->pass_keys != NULL);

    part = &r->headers_in.headers.part;
    header = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            header = part->elts;
            i = 0;
        }

        n++;

        if (ngx_http_pod_router_header_fate(prlcf, &header[i])
            != NGX_HTTP_POD_ROUTER_KEEP)
        {
            change = 1;
        }
    }

    if (!change) {
        return NGX_OK;
    }

    received = ngx_http_pod_router_received(r);

    if (received == NULL) {
        cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_list_t));
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_pod_router_received_mark;
        received = cln->data;
        ngx_http_pod_router_list_copy(received, &r->headers_in.headers);
    }

    /* the elements stay where they are: headers_in's pointers remain valid */
    if (ngx_list_init(&r->headers_in.headers, r->pool, n + 1,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &received->part;
    header = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            header = part->elts;
            i = 0;
        }

        fate = ngx_http_pod_router_header_fate(prlcf, &header[i]);

        if (fate == NGX_HTTP_POD_ROUTER_DROP) {
            continue;
        }

        cookie = header[i].value;

        if (fate == NGX_HTTP_POD_ROUTER_FILTER_COOKIE) {
            rc = ngx_http_pod_router_strip_cookie(r, &prlcf->identity_name,
                                                  &header[i].value, &cookie);
            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (cookie.len == 0) {
                continue;
            }
        }

        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = header[i];
        h->value = cookie;
    }

    if (prlcf->pass_keys) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(h, sizeof(ngx_table_elt_t));

        ngx_str_set(&h->key, "X-Pod-Router-Identity");
        h->lowcase_key = (u_char *) "x-pod-router-identity";
        /* as the parser computes it, so that proxy_set_header overrides it */
        h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
        h->value = ctx->pass_token;
    }

    return NGX_OK;
}


/* the token for X-Pod-Router-Identity and $pod_router_identity_token */

ngx_int_t
ngx_http_pod_router_pass_token(ngx_http_request_t *r,
    ngx_http_pod_router_ctx_t *ctx)
{
    size_t                           size, len;
    u_char                           err[PR_ERROR_SIZE];
    u_char                          *p;
    pr_status_t                      rc;
    ngx_http_pod_router_loc_conf_t  *prlcf;

    if (ctx->pass_token.len) {
        return NGX_OK;
    }

    prlcf = ngx_http_get_module_loc_conf(ctx->request,
                                         ngx_http_pod_router_module);

    if (prlcf->pass_keys == NULL || ctx->identity.len == 0) {
        return NGX_DECLINED;
    }

    /* "v1." base64url(identity) "." expiry "." base64url(32-byte MAC) */
    size = sizeof("v1.") - 1 + (ctx->identity.len + 2) / 3 * 4
           + 1 + NGX_INT64_LEN + 1 + 44;

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    rc = pr_token_sign(prlcf->pass_keys, (char *) ctx->identity.data,
                       ctx->identity.len,
                       (int64_t) ngx_time() + (int64_t) prlcf->pass_ttl,
                       (char *) p, size, &len, (char *) err, sizeof(err));

    if (rc != PR_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "pod_router: signing the pod's identity token "
                      "failed: %s", err);
        return NGX_ERROR;
    }

    ctx->pass_token.data = p;
    ctx->pass_token.len = len;

    return NGX_OK;
}


/*
 * pod_router_strip_identity can only remove what it can name: a value that
 * is exactly one $http_NAME or $cookie_NAME variable.
 */

ngx_int_t
ngx_http_pod_router_identity_source(ngx_conf_t *cf,
    ngx_http_pod_router_loc_conf_t *prlcf)
{
    u_char     *p, *end;
    ngx_str_t   name;
    ngx_uint_t  source;

    prlcf->identity_source = NGX_HTTP_POD_ROUTER_SOURCE_OTHER;
    ngx_str_null(&prlcf->identity_name);

    if (prlcf->identity == NULL) {
        return NGX_OK;
    }

    name = prlcf->identity->value;

    if (name.len < 2 || name.data[0] != '$') {
        return NGX_OK;
    }

    name.data++;
    name.len--;

    if (name.data[0] == '{') {
        if (name.len < 3 || name.data[name.len - 1] != '}') {
            return NGX_OK;
        }

        name.data++;
        name.len -= 2;
    }

    for (p = name.data, end = name.data + name.len; p < end; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '_'))
        {
            return NGX_OK;
        }
    }

    if (name.len > sizeof("http_") - 1
        && ngx_strncasecmp(name.data, (u_char *) "http_",
                           sizeof("http_") - 1) == 0)
    {
        source = NGX_HTTP_POD_ROUTER_SOURCE_HEADER;
        name.data += sizeof("http_") - 1;
        name.len -= sizeof("http_") - 1;

    } else if (name.len > sizeof("cookie_") - 1
               && ngx_strncasecmp(name.data, (u_char *) "cookie_",
                                  sizeof("cookie_") - 1) == 0)
    {
        source = NGX_HTTP_POD_ROUTER_SOURCE_COOKIE;
        name.data += sizeof("cookie_") - 1;
        name.len -= sizeof("cookie_") - 1;

    } else {
        return NGX_OK;
    }

    /* nginx looks variables up in lower case */
    prlcf->identity_name.data = ngx_pnalloc(cf->pool, name.len);
    if (prlcf->identity_name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(prlcf->identity_name.data, name.data, name.len);
    prlcf->identity_name.len = name.len;
    prlcf->identity_source = source;

    return NGX_OK;
}


static void
ngx_http_pod_router_received_mark(void *data)
{
    /* pool memory, nothing to free: the handler only marks the entry */
}


static ngx_list_t *
ngx_http_pod_router_received(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_pod_router_received_mark) {
            return cln->data;
        }
    }

    return NULL;
}


static void
ngx_http_pod_router_list_copy(ngx_list_t *dst, ngx_list_t *src)
{
    *dst = *src;

    /* a list of one part points at the part inside the list itself */
    if (src->last == &src->part) {
        dst->last = &dst->part;
    }
}


/* whether the header is the one $http_NAME reads, the way nginx compares */

/*
 * What becomes of a client's header on the way to the pod: any
 * X-Pod-Router-Identity and the identity's own header are dropped, so is
 * X-User-ID unless it is the identity's own header kept by
 * "pod_router_strip_identity off"; the Cookie header loses the identity's
 * cookie; the rest is kept.
 */

static ngx_uint_t
ngx_http_pod_router_header_fate(ngx_http_pod_router_loc_conf_t *prlcf,
    ngx_table_elt_t *h)
{
    if (ngx_http_pod_router_header_is(h,
                                 &ngx_http_pod_router_identity_header_name))
    {
        return NGX_HTTP_POD_ROUTER_DROP;
    }

    /* the identity's own header: what pod_router_strip_identity says */
    if (prlcf->identity_source == NGX_HTTP_POD_ROUTER_SOURCE_HEADER
        && ngx_http_pod_router_header_is(h, &prlcf->identity_name))
    {
        return prlcf->strip_identity ? NGX_HTTP_POD_ROUTER_DROP
                                     : NGX_HTTP_POD_ROUTER_KEEP;
    }

    /* the seed's header, when the identity came from elsewhere */
    if (ngx_http_pod_router_header_is(h,
                                      &ngx_http_pod_router_seed_header_name))
    {
        return NGX_HTTP_POD_ROUTER_DROP;
    }

    if (!prlcf->strip_identity) {
        return NGX_HTTP_POD_ROUTER_KEEP;
    }

    switch (prlcf->identity_source) {

    case NGX_HTTP_POD_ROUTER_SOURCE_COOKIE:
        return ngx_http_pod_router_header_is(h,
                                  &ngx_http_pod_router_cookie_header_name)
               ? NGX_HTTP_POD_ROUTER_FILTER_COOKIE : NGX_HTTP_POD_ROUTER_KEEP;

    default:
        return NGX_HTTP_POD_ROUTER_KEEP;
    }
}


static ngx_uint_t
ngx_http_pod_router_header_is(ngx_table_elt_t *h, ngx_str_t *name)
{
    u_char      ch;
    ngx_uint_t  n;

    if (h->key.len != name->len) {
        return 0;
    }

    for (n = 0; n < name->len; n++) {
        ch = h->key.data[n];

        if (ch >= 'A' && ch <= 'Z') {
            ch |= 0x20;

        } else if (ch == '-') {
            ch = '_';
        }

        if (ch != name->data[n]) {
            return 0;
        }
    }

    return 1;
}


/*
 * Whether $cookie_NAME could read NAME from this part of a Cookie value:
 * nginx starts a cookie after a ';' or a ',' and matches its name without
 * regard to case, spaces allowed before the '='.
 */

static ngx_uint_t
ngx_http_pod_router_cookie_named(u_char *start, u_char *end, ngx_str_t *name)
{
    u_char  *p;

    for (p = start; p < end; p++) {

        while (p < end && *p == ' ') {
            p++;
        }

        if ((size_t) (end - p) > name->len
            && ngx_strncasecmp(p, name->data, name->len) == 0)
        {
            p += name->len;

            while (p < end && *p == ' ') {
                p++;
            }

            if (p < end && *p == '=') {
                return 1;
            }
        }

        p = ngx_strlchr(p, end, ',');
        if (p == NULL) {
            return 0;
        }
    }

    return 0;
}


/*
 * The Cookie value without the cookies named NAME. The unit removed is a
 * ';'-separated pair, everything up to the ';' that ends the value nginx
 * would read, so that no part of it reaches the pod. NGX_DECLINED: there
 * was none, *out is the value as it was.
 */

static ngx_int_t
ngx_http_pod_router_strip_cookie(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value, ngx_str_t *out)
{
    u_char      *p, *pair, *pair_end, *last, *end, *dst;
    ngx_uint_t   found, separators;

    end = value->data + value->len;
    found = 0;
    separators = 0;

    for (p = value->data; /* void */; p = pair_end + 1) {
        pair_end = ngx_strlchr(p, end, ';');

        if (ngx_http_pod_router_cookie_named(p, pair_end ? pair_end : end,
                                             name))
        {
            found = 1;
        }

        if (pair_end == NULL) {
            break;
        }

        separators++;
    }

    if (!found) {
        *out = *value;
        return NGX_DECLINED;
    }

    /* each "; " written replaces at least one ';' */
    dst = ngx_pnalloc(r->pool, value->len + separators);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    out->data = dst;

    for (p = value->data; /* void */; p = pair_end + 1) {
        pair_end = ngx_strlchr(p, end, ';');
        last = (pair_end == NULL) ? end : pair_end;

        for (pair = p; pair < last && *pair == ' '; pair++) {
            /* void */
        }

        if (pair < last
            && !ngx_http_pod_router_cookie_named(pair, last, name))
        {
            if (dst != out->data) {
                *dst++ = ';';
                *dst++ = ' ';
            }

            dst = ngx_cpymem(dst, pair, last - pair);
        }

        if (pair_end == NULL) {
            break;
        }
    }

    out->len = dst - out->data;

    return NGX_OK;
}
