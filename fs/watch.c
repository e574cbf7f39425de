/*
 * Watching (raftfs watch): the change history through the mount.
 *
 * getxattr(PATH, "user.raftfs.changes.SINCE") answers the changes under
 * PATH (PATH itself, and for a directory its whole subtree, by path as the
 * store records them) with a revision above SINCE, in log order:
 *
 *     UPTO\n
 *     REVISION OPERATION PATH[ NEW-PATH]\n ...
 *
 * Lock grants and releases are lines too: "REVISION lock PATH" and
 * "REVISION unlock PATH". getxattr(PATH, "user.raftfs.changes.holders.
 * SINCE") gives the same lines with, on lock and unlock lines, a tab and
 * the holder after the path (a tab in a path is then written "\t"):
 *
 *     node=N boot=B owner=O kind=flock|posix type=read|write
 *     range=START-END|START-eof grant=REV[ by=unlock|session]
 *
 * (one line), grant being the revision that granted the holding, and by
 * why an unlock happened: its owner unlocked (or closed), or its node
 * session ended.
 *
 * UPTO is the revision the answer covers up to: the next call passes it as
 * SINCE, and misses nothing and repeats nothing. SINCE "now" means this
 * node's applied index after the read barrier (reads=linearizable), so a
 * watch started after a write returned anywhere sees every later change.
 * In paths, '\' and a newline are written "\\" and "\n", so that one
 * change is one line.
 *
 * When there is nothing to answer yet, the request is parked here, not on
 * a thread: each entry the node applies (fs_on_apply, on the loop thread)
 * looks again for every parked request, and answers those that now have
 * changes. The kernel's INTERRUPT (a signal to the waiting process) answers
 * it with EINTR, so Ctrl-C and kill end a watch at once.
 *
 * Errors: EINVAL (SINCE not a number, or above the applied index: "in the
 * future"), EOVERFLOW (SINCE is older than the history this node keeps:
 * "compacted", the caller must re-read what it watches), ERANGE (a buffer
 * under FS_WATCH_MIN, or one line larger than the buffer), ESTALE (PATH
 * no longer has a name), BARRIER.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/err.h"
#include "../common/heap.h"
#include "fs_i.h"

struct fs_watch {
    struct fs_watch *next;
    fuse_req_t req;
    uint64_t kino;  /* The kernel's id of PATH. */
    uint64_t since; /* STORE_HISTORY_NOW until started. */
    size_t cap;     /* The caller's buffer. */
    bool holders;   /* Lock lines carry their holder (.holders.). */
    size_t plen;    /* PATH from the root, as the history writes paths. */
    char path[STORE_PATH_MAX];
};

/* The header line's largest size: a u64 and '\n'. */
#define HDR_MAX 21

/* One answer being built: lines after HDR_MAX reserved bytes. */
struct fill {
    const struct fs_watch *w;
    char *buf;
    size_t cap, len; /* len counts from buf + HDR_MAX. */
    uint64_t last;   /* The last revision whose lines are all written. */
    /* One entry can make several records (a session end removing files
     * and releasing locks, an unlock granting a waiter): an answer stops
     * only between revisions, or the next call, which starts after UPTO,
     * would skip the rest of one. */
    uint64_t cur;    /* Revision of the lines being written. */
    size_t cur_len;  /* len where its lines start. */
    bool full;
};

static bool under(const struct fs_watch *w, const char *p, size_t len)
{
    if (w->plen == 1) {
        return true; /* The root: everything. */
    }
    return len >= w->plen && memcmp(p, w->path, w->plen) == 0 &&
           (len == w->plen || p[w->plen] == '/');
}

/* Append p escaped (tab: when a tab separates the holder); false if it
 * does not fit. */
static bool put_path(char *out, size_t cap, size_t *at, const char *p,
                     size_t len, bool tab)
{
    for (size_t i = 0; i < len; i++) {
        const char *esc = p[i] == '\\'          ? "\\\\"
                          : p[i] == '\n'         ? "\\n"
                          : tab && p[i] == '\t'  ? "\\t"
                                                : NULL;
        size_t n = esc != NULL ? 2 : 1;
        if (*at + n > cap) {
            return false;
        }
        memcpy(out + *at, esc != NULL ? esc : p + i, n);
        *at += n;
    }
    return true;
}

/* Append a tab and ch's holder (the format above); false if it does not
 * fit. */
static bool put_holder(char *out, size_t cap, size_t *at,
                       const struct store_change *ch)
{
    const struct store_lock *h = &ch->holder;
    char end[24] = "eof";
    if (h->end != STORE_LK_EOF) {
        snprintf(end, sizeof(end), "%" PRIu64, h->end);
    }
    const char *by = ch->op != STORE_CH_UNLOCK              ? ""
                     : ch->lock_cause == STORE_LKC_SESSION ? " by=session"
                                                           : " by=unlock";
    int n = snprintf(out + *at, cap - *at,
                     "\tnode=%" PRIu64 " boot=%" PRIu64 " owner=%" PRIu64
                     " kind=%s type=%s range=%" PRIu64 "-%s grant=%" PRIu64
                     "%s",
                     (uint64_t)h->client, h->boot, h->owner,
                     h->kind == STORE_LK_FLOCK ? "flock" : "posix",
                     h->type == STORE_LK_WR ? "write" : "read", h->start, end,
                     h->revision, by);
    if (n <= 0 || (size_t)n >= cap - *at) {
        return false;
    }
    *at += (size_t)n;
    return true;
}

static int fill_one(void *arg, const struct store_change *ch)
{
    struct fill *f = arg;
    if (!under(f->w, ch->path, ch->path_len) &&
        (ch->path2 == NULL || !under(f->w, ch->path2, ch->path2_len))) {
        return 0;
    }
    if (ch->revision != f->cur) {
        f->last = f->cur; /* Every line of the previous one fitted. */
        f->cur = ch->revision;
        f->cur_len = f->len;
    }
    char *out = f->buf + HDR_MAX;
    size_t at = f->len, cap = f->cap - HDR_MAX;
    int n = snprintf(out + at, cap - at, "%" PRIu64 " %s ", ch->revision,
                     store_change_name(ch->op));
    bool ok = n > 0 && (size_t)n < cap - at;
    at += ok ? (size_t)n : 0;
    bool tab = f->w->holders;
    ok = ok && put_path(out, cap, &at, ch->path, ch->path_len, tab);
    if (ok && ch->path2 != NULL) {
        ok = at < cap;
        if (ok) {
            out[at++] = ' ';
        }
        ok = ok && put_path(out, cap, &at, ch->path2, ch->path2_len, tab);
    }
    if (ok && tab &&
        (ch->op == STORE_CH_LOCK || ch->op == STORE_CH_UNLOCK)) {
        ok = put_holder(out, cap, &at, ch);
    }
    ok = ok && at < cap;
    if (!ok) {
        /* The next call goes on after the last whole revision sent. */
        f->full = true;
        f->len = f->cur_len;
        return 1;
    }
    out[at++] = '\n';
    f->len = at;
    return 0;
}

/*
 * Look for w's changes. Returns 1 with the answer in *out (*out_len bytes,
 * freed by the caller) or an error in *err; 0 when there is nothing yet
 * (w->since then moved up to what was looked at).
 */
static int watch_try(struct fs *fs, struct fs_watch *w, char **out,
                     size_t *out_len, int *err)
{
    struct store *st = node_store(fs->node);
    struct fill f = {.w = w, .cap = w->cap};
    f.buf = rfs_malloc(f.cap);
    if (f.buf == NULL) {
        *err = ENOMEM;
        return 1;
    }
    uint64_t upto = 0;
    int rv = store_history(st, w->since, fill_one, &f, &upto, NULL);
    if (rv != 0 || (f.full && f.len == 0)) {
        rfs_free(f.buf);
        *err = rv == RFS_ECOMPACTED ? EOVERFLOW
               : rv == -EINVAL      ? EINVAL
               : rv != 0            ? fs_errno(rv)
                                    : ERANGE;
        return 1;
    }
    if (w->since == STORE_HISTORY_NOW || f.len == 0) {
        w->since = upto;
        rfs_free(f.buf);
        return 0;
    }
    char hdr[HDR_MAX + 1];
    int hl = snprintf(hdr, sizeof(hdr), "%" PRIu64 "\n",
                      f.full ? f.last : upto);
    memmove(f.buf + hl, f.buf + HDR_MAX, f.len);
    memcpy(f.buf, hdr, (size_t)hl);
    *out = f.buf;
    *out_len = (size_t)hl + f.len;
    *err = 0;
    return 1;
}

static void watch_answer(fuse_req_t req, char *buf, size_t len, int err)
{
    if (err != 0) {
        fuse_reply_err(req, err);
    } else {
        fuse_reply_buf(req, buf, len);
    }
    rfs_free(buf);
}

/* The kernel interrupted the request: answer EINTR, if it is still
 * parked (whoever unlinks it answers it). */
static void watch_interrupted(fuse_req_t req, void *arg)
{
    struct fs *fs = arg;
    struct fs_watch *found = NULL;
    pthread_mutex_lock(&fs->watch_lock);
    for (struct fs_watch **p = &fs->watches; *p; p = &(*p)->next) {
        if ((*p)->req == req) {
            found = *p;
            *p = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&fs->watch_lock);
    if (found != NULL) {
        fuse_reply_err(req, EINTR);
        rfs_free(found);
    }
}

static void watch_start(struct fs *fs, fuse_req_t req, void *arg)
{
    struct fs_watch *w = arg;
    uint64_t ino = fs__resolve(fs, w->kino);
    int rv = store_path(node_store(fs->node), NULL, ino, w->path,
                        sizeof(w->path), &w->plen);
    if (rv != 0) {
        rfs_free(w);
        /* A staged create or an orphan has no path yet (or any more). */
        fs__reply_err(req, rv == -ENOENT ? -ESTALE : rv);
        return;
    }
    /* Before parking: an interrupt that comes from now on finds it, or is
     * seen by fuse_req_interrupted below. */
    fuse_req_interrupt_func(req, watch_interrupted, fs);
    char *out = NULL;
    size_t len = 0;
    int err = 0;
    pthread_mutex_lock(&fs->watch_lock);
    int done = watch_try(fs, w, &out, &len, &err);
    if (!done && fuse_req_interrupted(req)) {
        done = 1;
        err = EINTR;
    }
    if (!done) {
        w->next = fs->watches;
        fs->watches = w;
    }
    pthread_mutex_unlock(&fs->watch_lock);
    if (done) {
        watch_answer(req, out, len, err);
        rfs_free(w);
    }
}

bool fs__watch_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                        size_t size)
{
    static const char prefix[] = FS_CHANGES_XATTR;
    if (strncmp(name, prefix, sizeof(prefix) - 1) != 0) {
        return false;
    }
    struct fs *fs = fuse_req_userdata(req);
    const char *arg = name + sizeof(prefix) - 1;
    static const char holders[] = "holders.";
    bool with_holders = strncmp(arg, holders, sizeof(holders) - 1) == 0;
    if (with_holders) {
        arg += sizeof(holders) - 1;
    }
    uint64_t since = STORE_HISTORY_NOW;
    if (strcmp(arg, "now") != 0) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        if (*arg < '0' || *arg > '9' || *end != '\0' || errno != 0 ||
            v == STORE_HISTORY_NOW) {
            fuse_reply_err(req, EINVAL);
            return true;
        }
        since = v;
    }
    if (size == 0) {
        /* A size probe (getfattr): the most an answer holds. */
        fuse_reply_xattr(req, FS_WATCH_MAX);
        return true;
    }
    if (ino & FS_VIRT_BIT) {
        fuse_reply_err(req, ENODATA);
        return true;
    }
    if (size < FS_WATCH_MIN) {
        fuse_reply_err(req, ERANGE);
        return true;
    }
    struct fs_watch *w = rfs_calloc(1, sizeof(*w));
    if (w == NULL) {
        fuse_reply_err(req, ENOMEM);
        return true;
    }
    w->req = req;
    w->kino = ino;
    w->since = since;
    w->holders = with_holders;
    w->cap = size < FS_WATCH_MAX ? size : FS_WATCH_MAX;
    fs__after_barrier(fs, req, watch_start, w);
    return true;
}

void fs__watch_applied(struct fs *fs)
{
    struct answer {
        fuse_req_t req;
        char *buf;
        size_t len;
        int err;
    } some[16];
    /* Answers go out after the lock is dropped (a reply may wait for the
     * session's lock, which an interrupt holds while it waits for ours),
     * a batch at a time. */
    bool more = true;
    while (more) {
        unsigned n = 0;
        more = false;
        pthread_mutex_lock(&fs->watch_lock);
        for (struct fs_watch **p = &fs->watches; *p;) {
            struct fs_watch *w = *p;
            char *out = NULL;
            size_t len = 0;
            int err = 0;
            if (n == sizeof(some) / sizeof(*some)) {
                more = true;
                break;
            }
            if (!watch_try(fs, w, &out, &len, &err)) {
                p = &w->next;
                continue;
            }
            *p = w->next;
            some[n++] = (struct answer){w->req, out, len, err};
            rfs_free(w);
        }
        pthread_mutex_unlock(&fs->watch_lock);
        for (unsigned i = 0; i < n; i++) {
            watch_answer(some[i].req, some[i].buf, some[i].len, some[i].err);
        }
    }
}

void fs__watch_free(struct fs *fs)
{
    while (fs->watches != NULL) {
        struct fs_watch *w = fs->watches;
        fs->watches = w->next;
        rfs_free(w);
    }
}
