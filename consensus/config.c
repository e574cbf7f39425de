#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/err.h"

int config_parse_addr(const char *s, char *errmsg)
{
    const char *colon = strrchr(s, ':');
    char host[CONS_ADDR_MAX];
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof(host) ||
        strlen(s) >= CONS_ADDR_MAX) {
        snprintf(errmsg, RFS_ERRMSG_SZ,
                 "bad address '%.100s': expected IPv4:PORT, e.g. "
                 "10.0.0.1:7100", s);
        return -EINVAL;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    struct in_addr in;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (inet_pton(AF_INET, host, &in) != 1) {
        snprintf(errmsg, RFS_ERRMSG_SZ,
                 "bad address '%.100s': '%.64s' is not an IPv4 address", s,
                 host);
        return -EINVAL;
    }
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || port <= 0 ||
        port > 65535) {
        snprintf(errmsg, RFS_ERRMSG_SZ,
                 "bad address '%.100s': the port must be 1 to 65535", s);
        return -EINVAL;
    }
    return 0;
}

int config_parse_id(const char *s, rfs_nodeid_t *id, char *errmsg)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v == 0 ||
        v > (unsigned long long)INT64_MAX) {
        snprintf(errmsg, RFS_ERRMSG_SZ,
                 "bad node id '%.60s': expected a number from 1 to 2^63-1",
                 s);
        return -EINVAL;
    }
    *id = v;
    return 0;
}

int config_parse_peers(const char *s, struct cons_conf *c, char *errmsg)
{
    memset(c, 0, sizeof(*c));
    char copy[CONS_MAX_SERVERS * (CONS_ADDR_MAX + 24)];
    if (strlen(s) >= sizeof(copy)) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "peer list too long");
        return -EINVAL;
    }
    snprintf(copy, sizeof(copy), "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL) {
            snprintf(errmsg, RFS_ERRMSG_SZ,
                     "bad peer '%.100s': expected ID=IPv4:PORT", tok);
            return -EINVAL;
        }
        if (c->n >= CONS_MAX_SERVERS) {
            snprintf(errmsg, RFS_ERRMSG_SZ, "more than %d peers",
                     CONS_MAX_SERVERS);
            return -EINVAL;
        }
        *eq = '\0';
        struct cons_server *sv = &c->servers[c->n];
        if (config_parse_id(tok, &sv->id, errmsg) != 0 ||
            config_parse_addr(eq + 1, errmsg) != 0) {
            return -EINVAL;
        }
        for (unsigned i = 0; i < c->n; i++) {
            if (c->servers[i].id == sv->id ||
                strcmp(c->servers[i].addr, eq + 1) == 0) {
                snprintf(errmsg, RFS_ERRMSG_SZ,
                         "peer %.24s=%.64s repeats an id or address", tok,
                         eq + 1);
                return -EINVAL;
            }
        }
        sv->role = CONS_VOTER;
        snprintf(sv->addr, CONS_ADDR_MAX, "%s", eq + 1);
        c->n++;
    }
    if (c->n == 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "empty peer list");
        return -EINVAL;
    }
    return 0;
}
