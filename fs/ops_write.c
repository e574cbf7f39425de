/*
 * The operations that change the tree. Each builds one store command,
 * parks its fuse_req_t with it (struct change) and answers from the node's
 * completion on the loop thread, once the entry is applied here.
 *
 * Staging: a non-exclusive create and an O_TRUNC open change nothing yet.
 * The first write carries them in its own entry; flush, fsync and release
 * send them alone if no write came; a setattr on a staged file sends them
 * first and itself second.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "../common/assert.h"
#include "../common/endian.h"
#include "../common/err.h"
#include "../common/heap.h"
#include "fs_i.h"

enum reply {
    R_ERR,     /* fuse_reply_err(0) */
    R_WRITE,   /* fuse_reply_write(size) */
    R_ENTRY,   /* fuse_reply_entry of the created inode */
    R_ATTR,    /* fuse_reply_attr of the changed inode */
    R_CREATE,  /* fuse_reply_create with a new handle */
    R_RELEASE, /* fuse_reply_err(0); the handle's last kernel reference */
    R_CONT,    /* No reply: cont(cont_arg, 0 or the errno) decides. */
};

struct change {
    struct fs *fs;
    fuse_req_t req;
    enum reply reply;
    struct fs_handle *h;        /* A reference, or NULL. */
    size_t size;                /* R_WRITE */
    uint64_t staged_ino;        /* This command carries a staged create. */
    bool by_path;               /* ESTALE reads as ENOENT. */
    struct fuse_file_info fi;   /* R_CREATE */
    bool has_then;              /* Send then (a SETATTR or LINK) once
                                 * applied. */
    struct store_cmd then;
    char then_name[STORE_NAME_MAX + 1]; /* then's name: the request's
                                         * dies with its handler. */
    void *then_data;                    /* then's data (a SETXATTR's
                                         * value), likewise. */
    /* The change as sent (data copied): if it answers ESTALE because the
     * file lost its last name while it was in flight, and the file lives
     * on here as an orphan, it is applied to the orphan instead, as if it
     * had landed just before the unlink. */
    bool has_sent;
    struct store_cmd sent;
    void *sent_data;
    void (*cont)(void *arg, int err); /* R_CONT */
    void *cont_arg;
    /* This change took h's staged create (2) or truncate (1): other
     * changes through h wait until it ends (stage_end). */
    int stage_what;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct change *change_new(fuse_req_t req, enum reply reply,
                                 struct fs_handle *h)
{
    struct change *w = rfs_calloc(1, sizeof(*w));
    if (w == NULL) {
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    w->fs = fuse_req_userdata(req);
    w->req = req;
    w->reply = reply;
    if (h != NULL) {
        atomic_fetch_add(&h->refs, 1);
        w->h = h;
    }
    return w;
}


/*
 * w's staged create or truncate has ended, applied or not. Changes that
 * waited in unstage() go on. If it did not apply, it is still owed
 * (open(O_TRUNC) or the create returned): staged anew (a create stays
 * pending), so the next change through the handle carries it, or the last
 * close does; a write that carried it and failed leaves the file truncated
 * by that close, as on ext4 where the truncate happened at open. That
 * holds after an unknown outcome (a timeout) too: this node's requests
 * time out in the order they were submitted, so a later change goes out
 * with a first_outstanding past this one, and the store refuses this one
 * as stale should it arrive after that change applied (store/sessions.c,
 * store__session_check); arriving first, it is merely repeated. True if it
 * staged a create anew.
 */
static bool stage_end(struct change *w, bool applied)
{
    if (w->stage_what == 0 || w->h == NULL) {
        return false;
    }
    struct fs *fs = w->fs;
    bool again = !applied;
    pthread_mutex_lock(&fs->lock);
    w->h->stage_inflight = false;
    if (again && w->stage_what == 1) {
        w->h->staged_trunc = true;
    } else if (again) {
        w->h->staged_create = true;
    }
    pthread_cond_broadcast(&fs->stage_cond);
    pthread_mutex_unlock(&fs->lock);
    bool create_again = again && w->stage_what == 2;
    w->stage_what = 0;
    return create_again;
}

static void change_free(struct change *w)
{
    /* Every path ends it before this; should one not, the change is owed
     * again rather than taken for applied. */
    if (RFS_NEVER(w->stage_what != 0)) {
        stage_end(w, false);
    }
    rfs_free(w->sent_data);
    rfs_free(w->then_data);
    fs__handle_put(w->h);
    rfs_free(w);
}

/* Answer with an error; a staged create that rode on this command did not
 * happen, so it stops answering lookups. */
static void change_fail(struct change *w, int code)
{
    bool pending_again = stage_end(w, false);
    if (w->staged_ino != 0 && w->h != NULL && !pending_again) {
        pthread_mutex_lock(&w->fs->lock);
        if (w->h->pending) {
            fs__pending_remove(w->fs, w->h);
        }
        pthread_mutex_unlock(&w->fs->lock);
    }
    /* code is an apply result (positive) or a negative code: the one
     * errno it stands for is fs_errno's to decide, in fs__reply_err. */
    if (w->by_path && (code == ESTALE || code == -ESTALE)) {
        code = -ENOENT;
    }
    if (w->reply == R_CONT) {
        w->cont(w->cont_arg, code < 0 ? fs_errno(code) : code);
        change_free(w);
        return;
    }
    fs__reply_err(w->req, code);
    if (w->reply == R_RELEASE) {
        fs__handle_put(w->h); /* The kernel's reference. */
    }
    change_free(w);
}

static void submit(struct change *w, const struct store_cmd *c);

static void reply_inode(struct change *w, uint64_t ino)
{
    struct fs *fs = w->fs;
    struct store_attr a;
    int rv = store_getattr(node_store(fs->node), NULL, ino, &a);
    if (rv != 0) {
        /* Changed again (removed) by a later entry already applied. */
        fs__reply_err(w->req, rv);
        return;
    }
    if (w->reply == R_ENTRY) {
        fs__reply_entry(fs, w->req, &a);
        return;
    }
    if (w->reply == R_ATTR) {
        struct stat st;
        fs__attr_to_stat(&a, &st);
        fuse_reply_attr(w->req, &st, fs__timeout(fs));
        return;
    }
    /* R_CREATE: an exclusive create, committed before the answer. */
    struct fs_handle *h = fs__handle_new(fs, FS_H_FILE, ino);
    if (h == NULL) {
        fuse_reply_err(w->req, ENOMEM);
        return;
    }
    h->writable = (w->fi.flags & O_ACCMODE) != O_RDONLY;
    h->append = (w->fi.flags & O_APPEND) != 0;
    h->open_flags = (uint32_t)w->fi.flags;
    if (!h->writable) {
        h->view = store_view_new(node_store(fs->node));
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.ino = ino;
    fs__attr_to_stat(&a, &e.attr);
    e.attr_timeout = e.entry_timeout = fs__timeout(fs);
    w->fi.fh = (uintptr_t)h;
    fs__handle_flags(fs, h, &w->fi);
    if (fuse_reply_create(w->req, &e, &w->fi) != 0) {
        fs__handle_put(h);
    }
}

/*
 * A change through a handle whose file lost its last name while open here:
 * applied to this node's orphan only, since nobody else can name the file
 * (docs/fs.md). Answers w and frees it; false (w untouched) if the handle's
 * file is not an orphan or c is not a WRITE or SETATTR.
 */
static bool orphan_change(struct change *w, const struct store_cmd *c)
{
    struct fs *fs = w->fs;
    if (w->h == NULL ||
        (c->op != STORE_OP_WRITE && c->op != STORE_OP_SETATTR)) {
        return false;
    }
    pthread_mutex_lock(&fs->lock);
    bool orphan = w->h->orphan;
    pthread_mutex_unlock(&fs->lock);
    if (!orphan) {
        return false;
    }
    struct store_cmd oc = *c;
    oc.ino = w->h->ino;
    struct store_attr a;
    int rv = store_orphan_change(node_store(fs->node), &oc, now_ns(), &a);
    if (rv != 0) {
        change_fail(w, rv == -ENOENT ? -ESTALE : rv);
        return true;
    }
    stage_end(w, true); /* Applied, to the orphan. */
    switch (w->reply) {
    case R_CONT:
        w->cont(w->cont_arg, 0);
        break;
    case R_WRITE:
        fuse_reply_write(w->req, w->size);
        break;
    case R_ATTR: {
        struct stat st;
        a.ino = w->h->kino;
        fs__attr_to_stat(&a, &st);
        fuse_reply_attr(w->req, &st, fs__timeout(fs));
        break;
    }
    case R_RELEASE:
        fuse_reply_err(w->req, 0);
        fs__handle_put(w->h); /* The kernel's reference. */
        break;
    default:
        fuse_reply_err(w->req, 0);
        break;
    }
    change_free(w);
    return true;
}

/* The node's completion, on the loop thread. */
static void change_done(void *arg, int err, const struct store_result *r)
{
    struct change *w = arg;
    struct fs *fs = w->fs;
    if (err == 0 && r->err == ESTALE && w->has_sent && w->staged_ino == 0) {
        w->has_sent = false;
        if (orphan_change(w, &w->sent)) {
            return;
        }
    }
    if (err != 0) {
        if (err == -ETIMEDOUT) {
            pthread_mutex_lock(&fs->lock);
            fs->quorum_lost = true;
            pthread_mutex_unlock(&fs->lock);
        }
        change_fail(w, err);
        return;
    }
    pthread_mutex_lock(&fs->lock);
    fs->quorum_lost = false;
    if (w->staged_ino != 0 && w->h != NULL) {
        if (w->h->pending) {
            fs__pending_remove(fs, w->h);
        }
        if (r->err == 0) {
            w->h->ino = r->ino;
        }
    }
    pthread_mutex_unlock(&fs->lock);
    if (w->staged_ino != 0 && r->err == 0 && r->ino != w->staged_ino) {
        /* The name existed when the create applied (made elsewhere after
         * our lookup): we wrote into that file, whose id the kernel does
         * not know. */
        fs__alias_add(fs, w->staged_ino, r->ino);
    }
    if (r->err != 0) {
        change_fail(w, r->err);
        return;
    }
    stage_end(w, true);
    if (w->has_then) {
        w->has_then = false;
        w->staged_ino = 0;
        struct store_cmd then = w->then;
        if (w->h != NULL) {
            then.ino = w->h->ino;
        }
        submit(w, &then);
        return;
    }
    switch (w->reply) {
    case R_CONT:
        w->cont(w->cont_arg, 0);
        break;
    case R_ERR:
        fuse_reply_err(w->req, 0);
        break;
    case R_RELEASE:
        fuse_reply_err(w->req, 0);
        fs__handle_put(w->h); /* The kernel's reference. */
        break;
    case R_WRITE:
        fuse_reply_write(w->req, w->size);
        break;
    default:
        reply_inode(w, r->ino);
        break;
    }
    change_free(w);
}

static void submit(struct change *w, const struct store_cmd *c)
{
    struct fs *fs = w->fs;
    if (orphan_change(w, c)) {
        return; /* Local: needs no quorum either. */
    }
    if (w->h != NULL &&
        (c->op == STORE_OP_WRITE || c->op == STORE_OP_SETATTR)) {
        /* Kept for orphan_change() on ESTALE; without memory, an ESTALE
         * is answered as it is. */
        rfs_free(w->sent_data);
        w->sent_data = NULL;
        w->sent = *c;
        w->has_sent = true;
        if (c->data_len > 0) {
            w->sent_data = rfs_malloc(c->data_len);
            w->has_sent = w->sent_data != NULL;
            if (w->has_sent) {
                memcpy(w->sent_data, c->data, c->data_len);
                w->sent.data = w->sent_data;
            }
        }
    }
    int rv = fs__degraded(fs) ? fs__degraded_code(fs) : 0;
    if (rv == 0) {
        pthread_mutex_lock(&fs->lock);
        fs->cnt.changes++;
        pthread_mutex_unlock(&fs->lock);
        rv = node_submit(fs->node, c, change_done, w);
    }
    if (rv != 0) {
        change_fail(w, rv);
    }
}

/*
 * Take what h has staged into c, for w to carry: 2 for a create (c is a
 * CREATE with the id the kernel was given), 1 for a truncate (c is a
 * truncating WRITE), 0 if nothing. The caller adds data, if any.
 *
 * Waits first while another change carries h's staged create or
 * truncate: a close in a forked child (or an fsync, a lock) can take the
 * truncate as this write arrives, and two proposals from one node may be
 * ordered either way in the log; the truncate landing after the data
 * would empty the file. Never called on the loop thread, which ends the
 * wait.
 */
static int unstage(struct fs *fs, struct fs_handle *h, struct store_cmd *c,
                   struct change *w)
{
    memset(c, 0, sizeof(*c));
    int what = 0;
    pthread_mutex_lock(&fs->lock);
    while (h->stage_inflight) {
        pthread_cond_wait(&fs->stage_cond, &fs->lock);
    }
    if (h->staged_create) {
        c->op = STORE_OP_CREATE;
        c->parent = h->parent;
        c->name = h->name;
        c->name_len = h->name_len;
        c->mode = h->mode;
        c->uid = h->uid;
        c->gid = h->gid;
        c->ino = h->kino;
        c->size = h->umask;
        c->flags = STORE_UMASK;
        c->flags |= h->open_flags & O_TRUNC ? STORE_TRUNC : 0;
        c->flags |= h->kill_priv ? STORE_KILL_PRIV : 0;
        what = 2;
    } else if (h->staged_trunc) {
        c->op = STORE_OP_WRITE;
        c->ino = h->ino;
        c->flags = STORE_TRUNC | (h->kill_priv ? STORE_KILL_PRIV : 0);
        what = 1;
    } else {
        c->op = STORE_OP_WRITE;
        c->ino = h->ino;
    }
    h->staged_create = false;
    h->staged_trunc = false;
    if (what != 0) {
        fs->cnt.fused++;
        h->stage_inflight = true;
        w->stage_what = what;
    }
    pthread_mutex_unlock(&fs->lock);
    return what;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

void fs__op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
                  size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    struct fs *fs = fuse_req_userdata(req);
    struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
    if (h->kind != FS_H_FILE || !h->writable) {
        fuse_reply_err(req, EBADF);
        return;
    }
    struct change *w = change_new(req, R_WRITE, h);
    if (w == NULL) {
        return;
    }
    struct store_cmd c;
    if (unstage(fs, h, &c, w) == 2) {
        w->staged_ino = h->kino;
    } else if (c.op == STORE_OP_WRITE) {
        /* Opened while another local create of the same name was staged:
         * if that create landed in an existing file, write there too. */
        c.ino = fs__resolve(fs, c.ino);
    }
    c.offset = (uint64_t)off;
    c.data = buf;
    c.data_len = (uint32_t)size;
    /* fcntl(F_SETFL) can set O_APPEND after open: each write carries the
     * descriptor's flags as they are now. */
    if (h->append || (fi->flags & O_APPEND)) {
        c.flags |= STORE_APPEND;
    }
    /* A write by a process without CAP_FSETID clears setuid and setgid
     * (the store decides, on the mode as of apply time). */
    if (fs__caller_kills_priv(req)) {
        c.flags |= STORE_KILL_PRIV;
    }
    w->size = size;
    submit(w, &c);
}

/*
 * Whether process pid still holds a descriptor for kernel inode kino on
 * this mount. A shell's `echo v > f` opens f, dup2()s it onto stdout and
 * closes the original: that close flushes before the first write. Since
 * close() removes the descriptor before flushing, a flush from a process
 * that still has the file open is not its last; the staged change then
 * waits for the write (one entry), or for the last flush or release.
 * /proc/PID/fdinfo is read without entering any filesystem, so this cannot
 * deadlock on our own mount. Unreadable (another user's process, or one
 * exiting): assume not, and commit now.
 */
static bool still_open(struct fs *fs, pid_t pid, uint64_t kino)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL) {
        return false;
    }
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') {
            continue;
        }
        char p2[96], buf[512];
        snprintf(p2, sizeof(p2), "%s/%.20s", path, de->d_name);
        int fd = open(p2, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0) {
            continue;
        }
        buf[n] = '\0';
        const char *m = strstr(buf, "mnt_id:");
        const char *i = strstr(buf, "ino:");
        if (m == NULL || i == NULL) {
            continue;
        }
        unsigned long long mnt = strtoull(m + 7, NULL, 10);
        unsigned long long ino = strtoull(i + 4, NULL, 10);
        found = ino == kino && (fs->mnt_id == 0 || mnt == fs->mnt_id);
    }
    closedir(d);
    return found;
}

/* flush and fsync: everything acknowledged is already durable on a
 * majority; only a staged create or truncate is left to send. */
static void send_staged(fuse_req_t req, struct fuse_file_info *fi,
                        enum reply reply, bool is_flush)
{
    struct fs *fs = fuse_req_userdata(req);
    struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
    pthread_mutex_lock(&fs->lock);
    bool staged = h->staged_create || h->staged_trunc;
    bool busy = h->stage_inflight;
    pthread_mutex_unlock(&fs->lock);
    /* A close that is not the last: by a process that still holds the
     * file (the shell's redirect), or by another one while the process
     * that opened it still does (a forked child exiting, e.g. a shell that
     * system() started in a threaded program). Sending the staged change
     * then would split `open(O_TRUNC); write` into a truncate and a write
     * that other nodes could see apart: the opener's write carries it, or
     * its own last close does. */
    pid_t pid = fuse_req_ctx(req)->pid;
    if ((staged && is_flush &&
         (still_open(fs, pid, h->kino) ||
          (h->opener != 0 && h->opener != pid &&
           still_open(fs, h->opener, h->kino)))) ||
        (!staged && !busy)) {
        fuse_reply_err(req, 0);
        if (reply == R_RELEASE) {
            fs__handle_put(h);
        }
        return;
    }
    struct change *w = change_new(req, reply, h);
    if (w == NULL) {
        if (reply == R_RELEASE) {
            fs__handle_put(h);
        }
        return;
    }
    struct store_cmd c;
    int what = h->kind == FS_H_FILE ? unstage(fs, h, &c, w) : 0;
    if (what == 0) {
        fuse_reply_err(req, 0);
        if (reply == R_RELEASE) {
            fs__handle_put(h);
        }
        change_free(w);
        return;
    }
    if (what == 2) {
        w->staged_ino = h->kino;
    }
    submit(w, &c);
}

void fs__unstage_then(fuse_req_t req, struct fs_handle *h,
                      void (*cont)(void *arg, int err), void *arg)
{
    struct fs *fs = fuse_req_userdata(req);
    struct change *w = rfs_calloc(1, sizeof(*w));
    if (w == NULL) {
        cont(arg, ENOMEM);
        return;
    }
    w->fs = fs;
    w->req = req;
    w->reply = R_CONT;
    w->cont = cont;
    w->cont_arg = arg;
    atomic_fetch_add(&h->refs, 1);
    w->h = h;
    struct store_cmd c;
    int what = h->kind == FS_H_FILE ? unstage(fs, h, &c, w) : 0;
    if (what == 0) {
        change_free(w);
        cont(arg, 0);
        return;
    }
    if (what == 2) {
        w->staged_ino = h->kino;
    }
    if (fs->test_stage_delay_ms > 0) {
        /* Tests: widen the window in which a write through the same handle
         * arrives while a lock request carries its staged change (see
         * unstage()). */
        usleep((useconds_t)fs->test_stage_delay_ms * 1000);
    }
    submit(w, &c);
}

void fs__op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    struct fs *fs = fuse_req_userdata(req);
    struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
    /* Proposed, not waited for (fs/locks.c). */
    fs__locks_flush(fs, h, fi);
    send_staged(req, fi, R_ERR, true);
}

void fs__op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
                  struct fuse_file_info *fi)
{
    (void)ino, (void)datasync;
    send_staged(req, fi, R_ERR, false);
}

void fs__op_release(fuse_req_t req, fuse_ino_t ino,
                    struct fuse_file_info *fi)
{
    (void)ino;
    struct fs *fs = fuse_req_userdata(req);
    struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
    fs__locks_release(fs, h, fi);
    send_staged(req, fi, R_RELEASE, false);
}

void fs__op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                    int to_set, struct fuse_file_info *fi)
{
    struct fs *fs = fuse_req_userdata(req);
    if (ino & FS_VIRT_BIT) {
        fuse_reply_err(req, EPERM);
        return;
    }
    struct store_cmd s;
    memset(&s, 0, sizeof(s));
    s.op = STORE_OP_SETATTR;
    if (to_set & FUSE_SET_ATTR_MODE) {
        s.valid |= STORE_SET_MODE;
        s.mode = attr->st_mode & 07777;
    }
    if (to_set & FUSE_SET_ATTR_UID) {
        s.valid |= STORE_SET_UID;
        s.uid = attr->st_uid;
    }
    if (to_set & FUSE_SET_ATTR_GID) {
        s.valid |= STORE_SET_GID;
        s.gid = attr->st_gid;
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        s.valid |= STORE_SET_SIZE;
        s.size = (uint64_t)attr->st_size;
        if (fs__caller_kills_priv(req)) {
            s.flags |= STORE_KILL_PRIV;
        }
    }
    int64_t now = now_ns();
    /* UTIME_NOW: the entry's time at apply (STORE_SET_*_NOW); the value
     * sent along is what a binary without that rule would apply. */
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
        s.valid |= STORE_SET_ATIME_NOW;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
        s.valid |= STORE_SET_MTIME_NOW;
    }
    if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
        s.valid |= STORE_SET_ATIME;
        s.atime_ns = to_set & FUSE_SET_ATTR_ATIME_NOW
                         ? now
                         : (int64_t)attr->st_atim.tv_sec * 1000000000 +
                               attr->st_atim.tv_nsec;
    }
    if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
        s.valid |= STORE_SET_MTIME;
        s.mtime_ns = to_set & FUSE_SET_ATTR_MTIME_NOW
                         ? now
                         : (int64_t)attr->st_mtim.tv_sec * 1000000000 +
                               attr->st_mtim.tv_nsec;
    }
    struct fs_handle *h = NULL;
    if (fi != NULL && fi->fh != 0) {
        h = (struct fs_handle *)(uintptr_t)fi->fh;
        if (h->kind != FS_H_FILE) {
            h = NULL;
        }
    }
    bool found = false;
    if (h == NULL) {
        /* touch(1) on a file another process staged: by id. fchmod and
         * futimens name no handle either: an orphan's handle, by id. */
        pthread_mutex_lock(&fs->lock);
        h = fs__pending_by_ino(fs, ino);
        for (struct fs_handle *o = fs->all; h == NULL && o; o = o->anext) {
            if (o->orphan && (o->kino == ino || o->ino == ino)) {
                h = o;
            }
        }
        found = h != NULL && fs__handle_tryget(h);
        h = found ? h : NULL;
        pthread_mutex_unlock(&fs->lock);
    }
    struct change *w = change_new(req, R_ATTR, h);
    if (found) {
        fs__handle_put(h); /* change_new took its own. */
    }
    if (w == NULL) {
        return;
    }
    w->by_path = fi == NULL;
    s.ino = h != NULL ? h->ino : fs__resolve(fs, ino);
    struct store_cmd c;
    int what = h != NULL ? unstage(fs, h, &c, w) : 0;
    if (what == 0) {
        submit(w, &s);
        return;
    }
    /* The staged create or truncate first, then this. */
    if (what == 2) {
        w->staged_ino = h->kino;
    }
    w->has_then = true;
    w->then = s;
    submit(w, &c);
}

/* ------------------------------------------------------------------------ */
/* Names                                                                     */

/* Refuse changes under /.raftfs/ and to its name: replies and returns
 * the negated errno (-EPERM, exists_err, -ENAMETOOLONG), or returns 0 if
 * name may change. */
static int check_name(fuse_req_t req, uint64_t parent, const char *name,
                      int exists_err)
{
    int e = 0;
    if (parent == FS_VDIR_INO) {
        e = -EPERM;
    } else if (fs__is_vname(parent, name)) {
        e = exists_err;
    } else if (strlen(name) > STORE_NAME_MAX) {
        e = -ENAMETOOLONG;
    }
    if (e != 0) {
        fs__reply_err(req, e);
    }
    return e;
}

static uint64_t chosen_ino(void)
{
    uint64_t x = 0;
    while (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x)) {
        /* Interrupted; the pool never runs dry once initialised. */
    }
    return (x & ~STORE_INO_CHOSEN_MASK) | STORE_INO_CHOSEN;
}

static void name_cmd(struct store_cmd *c, uint8_t op, uint64_t parent,
                     const char *name)
{
    memset(c, 0, sizeof(*c));
    c->op = op;
    c->parent = parent;
    c->name = name;
    c->name_len = (uint16_t)strlen(name);
}

/* A command creating name, owned by the caller. The mode is as the
 * caller asked: the kernel leaves the umask to us (FUSE_CAP_DONT_MASK),
 * and apply takes it away unless the parent has a default ACL, which then
 * decides the mode instead (POSIX). */
static void owned_cmd(fuse_req_t req, struct store_cmd *c, uint8_t op,
                      uint64_t parent, const char *name, mode_t mode)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    name_cmd(c, op, parent, name);
    c->mode = mode & 07777;
    c->uid = ctx->uid;
    c->gid = ctx->gid;
    c->flags = STORE_UMASK;
    c->size = ctx->umask & 0777;
}

void fs__op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                   mode_t mode, struct fuse_file_info *fi)
{
    struct fs *fs = fuse_req_userdata(req);
    if (check_name(req, parent, name, -EEXIST) != 0) {
        return;
    }
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    if (fi->flags & O_EXCL) {
        /* A lock file: the answer must say whether we won, so it waits
         * for the apply that decides. */
        struct change *w = change_new(req, R_CREATE, NULL);
        if (w == NULL) {
            return;
        }
        w->fi = *fi;
        struct store_cmd c;
        owned_cmd(req, &c, STORE_OP_CREATE, parent, name, mode);
        c.flags |= STORE_EXCL;
        submit(w, &c);
        return;
    }
    struct fs_handle *h = fs__handle_new(fs, FS_H_FILE, chosen_ino());
    if (h == NULL) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    h->writable = (fi->flags & O_ACCMODE) != O_RDONLY;
    h->append = (fi->flags & O_APPEND) != 0;
    h->open_flags = (uint32_t)fi->flags;
    h->parent = parent;
    h->name_len = (uint16_t)strlen(name);
    memcpy(h->name, name, h->name_len);
    h->mode = mode & 07777;
    h->uid = ctx->uid;
    h->gid = ctx->gid;
    h->ctime_ns = now_ns();
    /* If the name exists by the time the create applies, O_TRUNC
     * truncates that file, and clears its setuid/setgid as an open
     * would (see op_create). */
    h->kill_priv = (fi->flags & O_TRUNC) && fs__caller_kills_priv(req);
    /* The group a setgid directory will give the file, shown until the
     * create applies (where the store decides it again). */
    struct store_attr dir;
    h->shown_gid = h->gid;
    if (store_getattr(node_store(fs->node), NULL, parent, &dir) == 0 &&
        (dir.mode & S_ISGID)) {
        h->shown_gid = dir.gid;
    }
    /* The mode, likewise: the parent's default ACL as this node has it,
     * else the umask. */
    h->umask = ctx->umask & 0777;
    h->shown_mode = h->mode & ~h->umask;
    uint8_t dacl[4 + 8 * STORE_ACL_MAX_ENTRIES];
    size_t dlen = 0;
    if (store_getxattr(node_store(fs->node), NULL, fs__resolve(fs, parent),
                       STORE_ACL_DEFAULT, strlen(STORE_ACL_DEFAULT), dacl,
                       sizeof(dacl), &dlen) == 0 &&
        dlen <= sizeof(dacl) && store_acl_check(dacl, dlen) == 0) {
        h->shown_mode = store_acl_create_mode(dacl, dlen, h->mode);
    }
    struct store_attr a;
    fs__pending_attr(h, &a);
    pthread_mutex_lock(&fs->lock);
    h->staged_create = true;
    h->opener = ctx->pid;
    h->pending = true;
    h->pnext = fs->pending;
    fs->pending = h;
    pthread_mutex_unlock(&fs->lock);
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.ino = h->kino;
    fs__attr_to_stat(&a, &e.attr);
    fi->fh = (uintptr_t)h;
    fs__handle_flags(fs, h, fi);
    if (fuse_reply_create(req, &e, fi) != 0) {
        fs__handle_put(h);
    }
}

static void simple(fuse_req_t req, enum reply reply, struct store_cmd *c)
{
    struct change *w = change_new(req, reply, NULL);
    if (w != NULL) {
        submit(w, c);
    }
}

void fs__op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                  mode_t mode)
{
    if (check_name(req, parent, name, -EEXIST) != 0) {
        return;
    }
    struct store_cmd c;
    owned_cmd(req, &c, STORE_OP_MKDIR, parent, name, mode);
    simple(req, R_ENTRY, &c);
}

void fs__op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
                    const char *name)
{
    if (check_name(req, parent, name, -EEXIST) != 0) {
        return;
    }
    size_t len = strlen(link);
    if (len > STORE_SYMLINK_MAX) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    struct store_cmd c;
    owned_cmd(req, &c, STORE_OP_SYMLINK, parent, name, 0);
    c.data = link;
    c.data_len = (uint32_t)len;
    simple(req, R_ENTRY, &c);
}

/*
 * Capabilities are the caller's effective set, as ext4 asks: CAP_MKNOD for a
 * device node, CAP_SYS_ADMIN for trusted.* attributes. The kernel asks the
 * same before it sends the request; asking again here keeps the rule
 * raftfs's own, whatever path the request took.
 */
bool fs__caller_has_cap(fuse_req_t req, int cap)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    bool allowed = ctx->uid == 0;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)ctx->pid);
    FILE *f = ctx->pid > 0 ? fopen(path, "re") : NULL;
    if (f == NULL) {
        return allowed;
    }
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "CapEff:", 7) == 0) {
            unsigned long long eff = strtoull(line + 7, NULL, 16);
            allowed = (eff >> cap) & 1;
            break;
        }
    }
    fclose(f);
    return allowed;
}

bool fs__caller_kills_priv(fuse_req_t req)
{
    int k = fs__kernel_kill_priv();
    return k >= 0 ? k == 1 : !fs__caller_has_cap(req, CAP_FSETID);
}

void fs__op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                  mode_t mode, dev_t rdev)
{
    if (check_name(req, parent, name, -EEXIST) != 0) {
        return;
    }
    struct store_cmd c;
    if (S_ISREG(mode)) {
        owned_cmd(req, &c, STORE_OP_CREATE, parent, name, mode);
        c.flags |= STORE_EXCL;
        simple(req, R_ENTRY, &c);
        return;
    }
    if (!S_ISFIFO(mode) && !S_ISSOCK(mode) && !S_ISCHR(mode) &&
        !S_ISBLK(mode)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((S_ISCHR(mode) || S_ISBLK(mode)) && !fs__caller_has_cap(req, CAP_MKNOD)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    /* Fifos and sockets: anyone who may write the directory, which the
     * kernel checked (default_permissions). */
    owned_cmd(req, &c, STORE_OP_MKNOD, parent, name, mode);
    c.mode = mode & (S_IFMT | 07777);
    c.offset = S_ISCHR(mode) || S_ISBLK(mode) ? (uint64_t)rdev : 0;
    simple(req, R_ENTRY, &c);
}

/* A wait for fs__unstage_then's continuation, on a FUSE thread. */
struct stage_sync {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int err;
};

static void stage_sync_done(void *arg, int err)
{
    struct stage_sync *s = arg;
    pthread_mutex_lock(&s->lock);
    s->done = true;
    s->err = err;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/*
 * A create this node staged (or has in flight) under parent/name, as after
 * `exec 3>f` or an open(O_CREAT) not yet written: commit it before a rename
 * or unlink names f, which would otherwise find nothing at apply (ENOENT,
 * where ext4 succeeds). 0, or the errno the create failed with. Blocks this
 * FUSE thread until the create applied (its completion runs on the loop
 * thread); only a change naming a file opened and not yet written pays it.
 */
static int commit_staged_name(fuse_req_t req, uint64_t parent,
                              const char *name)
{
    struct fs *fs = fuse_req_userdata(req);
    pthread_mutex_lock(&fs->lock);
    struct fs_handle *h =
        fs__pending_by_name(fs, parent, name, strlen(name));
    bool found = h != NULL && fs__handle_tryget(h);
    pthread_mutex_unlock(&fs->lock);
    if (!found) {
        return 0;
    }
    struct stage_sync s = {.done = false};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    fs__unstage_then(req, h, stage_sync_done, &s);
    pthread_mutex_lock(&s.lock);
    while (!s.done) {
        pthread_cond_wait(&s.cond, &s.lock);
    }
    pthread_mutex_unlock(&s.lock);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    fs__handle_put(h);
    return s.err;
}

static void remove_name(fuse_req_t req, uint8_t op, uint64_t parent,
                        const char *name)
{
    if (check_name(req, parent, name, -EPERM) != 0) {
        return;
    }
    int err = commit_staged_name(req, parent, name);
    if (err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    struct store_cmd c;
    name_cmd(&c, op, parent, name);
    simple(req, R_ERR, &c);
}

void fs__op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_name(req, STORE_OP_UNLINK, parent, name);
}

void fs__op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_name(req, STORE_OP_RMDIR, parent, name);
}

void fs__op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                   fuse_ino_t newparent, const char *newname,
                   unsigned int flags)
{
    if (check_name(req, parent, name, -EPERM) != 0 ||
        check_name(req, newparent, newname, -EPERM) != 0) {
        return;
    }
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
        fuse_reply_err(req, EINVAL); /* RENAME_WHITEOUT: overlayfs only. */
        return;
    }
    /* Both names: the source must exist at apply, and a staged target is
     * replaced as a file that exists (its handle keeps the orphan). */
    int err = commit_staged_name(req, parent, name);
    if (err == 0) {
        err = commit_staged_name(req, newparent, newname);
    }
    if (err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    struct store_cmd c;
    name_cmd(&c, STORE_OP_RENAME, parent, name);
    c.new_parent = newparent;
    c.new_name = newname;
    c.new_name_len = (uint16_t)strlen(newname);
    c.flags = (flags & RENAME_NOREPLACE ? STORE_NOREPLACE : 0) |
              (flags & RENAME_EXCHANGE ? STORE_EXCHANGE : 0);
    simple(req, R_ERR, &c);
}

/*
 * link(2). The store decides everything (EEXIST, EPERM for a directory,
 * EMLINK, ENOENT) at apply time. A file whose create is still staged on
 * this node (`exec 3>f; ln f g`) exists nowhere yet: its create is sent
 * first and the link second, naming the id the create gave it (an alias,
 * if the name existed by then).
 */
void fs__op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                 const char *newname)
{
    struct fs *fs = fuse_req_userdata(req);
    if (ino & FS_VIRT_BIT) {
        fuse_reply_err(req, EPERM); /* /.raftfs/ files: read-only. */
        return;
    }
    if (check_name(req, newparent, newname, -EEXIST) != 0) {
        return;
    }
    pthread_mutex_lock(&fs->lock);
    struct fs_handle *h = fs__pending_by_ino(fs, ino);
    bool found = h != NULL && fs__handle_tryget(h);
    h = found ? h : NULL;
    pthread_mutex_unlock(&fs->lock);
    struct change *w = change_new(req, R_ENTRY, h);
    if (found) {
        fs__handle_put(h); /* change_new took its own. */
    }
    if (w == NULL) {
        return;
    }
    struct store_cmd l;
    size_t len = strlen(newname);
    memcpy(w->then_name, newname, len);
    name_cmd(&l, STORE_OP_LINK, newparent, w->then_name);
    l.ino = h != NULL ? h->ino : fs__resolve(fs, ino);
    struct store_cmd c;
    int what = h != NULL ? unstage(fs, h, &c, w) : 0;
    if (what == 0) {
        submit(w, &l);
        return;
    }
    if (what == 2) {
        w->staged_ino = h->kino;
    }
    w->has_then = true;
    w->then = l;
    submit(w, &c);
}

/* ------------------------------------------------------------------------ */
/* Extended attributes                                                       */

/*
 * May the caller change the user.* attributes of the inode with attributes
 * a? ext4's rules, which the kernel's xattr_permission() applies before
 * FUSE sees the request (with default_permissions): files and directories
 * only (EPERM; the store says the same at apply), write permission on the
 * inode (EACCES), and in a sticky directory only its owner (EPERM). Asked
 * again here from the request's uid, gid and groups, against this node's
 * copy (its access ACL if it has one), so that the rule holds whatever
 * the mount options.
 */
static int may_write_user_xattr(fuse_req_t req, const struct store_attr *a)
{
    if (a->type != STORE_FILE && a->type != STORE_DIR) {
        return -EPERM;
    }
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    bool owner = ctx->uid == a->uid;
    if (a->type == STORE_DIR && (a->mode & S_ISVTX) && !owner &&
        !fs__caller_has_cap(req, CAP_FOWNER)) {
        return -EPERM;
    }
    /* The caller's groups: its primary one first, then the others. */
    uint32_t gids[65];
    gid_t groups[64];
    gids[0] = ctx->gid;
    size_t ngids = 1;
    int n = owner ? 0
                  : fuse_req_getgroups(req, (int)(sizeof(groups) /
                                                  sizeof(*groups)),
                                       groups);
    for (int i = 0; i < n && i < (int)(sizeof(groups) / sizeof(*groups));
         i++) {
        gids[ngids++] = groups[i];
    }
    bool may;
    /* With an access ACL the kernel checked its entries, not the mode's
     * group bits (which hold the mask): ask the same. */
    struct fs *fs = fuse_req_userdata(req);
    uint8_t acl[4 + 8 * STORE_ACL_MAX_ENTRIES];
    size_t len = 0;
    if (!owner &&
        store_getxattr(node_store(fs->node), NULL, a->ino, STORE_ACL_ACCESS,
                       strlen(STORE_ACL_ACCESS), acl, sizeof(acl),
                       &len) == 0 &&
        len <= sizeof(acl) && store_acl_check(acl, len) == 0) {
        may = store_acl_perm(acl, len, a->uid, a->gid, ctx->uid, gids,
                             ngids) &
              2;
    } else {
        bool in_group = false;
        for (size_t i = 0; i < ngids; i++) {
            in_group = in_group || gids[i] == a->gid;
        }
        uint32_t bit = owner ? S_IWUSR : in_group ? S_IWGRP : S_IWOTH;
        may = (a->mode & bit) != 0;
    }
    if (may || fs__caller_has_cap(req, CAP_DAC_OVERRIDE)) {
        return 0;
    }
    return -EACCES;
}

/* The checks setxattr and removexattr share, before anything is proposed:
 * the namespace's rules, then (user.*) the caller's permission or (ACLs)
 * ownership against the inode as this node has it, staged or stored. 0 or a negated errno;
 * unstored (negated too) is the answer for the other security.* and
 * system.* names. An inode this node cannot find is left to the store,
 * which answers ESTALE. */
static int xattr_may_change(fuse_req_t req, uint64_t ino, const char *name,
                            bool removing, int unstored)
{
    struct fs *fs = fuse_req_userdata(req);
    if (ino & FS_VIRT_BIT) {
        return -EPERM; /* /.raftfs/ files: read-only. */
    }
    size_t len = strlen(name);
    if (len == 0 || len > STORE_XATTR_NAME_MAX) {
        return -ERANGE;
    }
    enum fs_xattr_ns ns = fs__xattr_ns(name);
    switch (ns) {
    case FS_XNS_RESERVED:
        return -EPERM;
    case FS_XNS_CAPS:
        /* Setting needs CAP_SETFCAP, as the kernel's cap_convert_nscap
         * asks first. A removal is not checked here: the kernel sends one
         * itself, with the writer's identity, when a write, truncate or
         * chown takes the capabilities away (cap_inode_killpriv), and it
         * has already checked CAP_SETFCAP for a removexattr(2). */
        return !removing && !fs__caller_has_cap(req, CAP_SETFCAP) ? -EPERM
                                                                  : 0;
    case FS_XNS_UNSTORED:
        return unstored;
    case FS_XNS_OTHER:
        return -EOPNOTSUPP;
    case FS_XNS_TRUSTED:
        return fs__caller_has_cap(req, CAP_SYS_ADMIN) ? 0 : -EPERM;
    case FS_XNS_USER:
    case FS_XNS_ACL:
        break;
    }
    struct store_attr a;
    pthread_mutex_lock(&fs->lock);
    struct fs_handle *h = fs__pending_by_ino(fs, ino);
    if (h != NULL) {
        fs__pending_attr(h, &a);
    }
    pthread_mutex_unlock(&fs->lock);
    if (h == NULL &&
        store_getattr(node_store(fs->node), NULL, fs__resolve(fs, ino), &a) !=
            0) {
        return 0;
    }
    if (ns == FS_XNS_ACL) {
        /* The owner, or CAP_FOWNER: the kernel's vfs_set_acl and
         * vfs_remove_acl ask inode_owner_or_capable first. */
        return fuse_req_ctx(req)->uid == a.uid ||
                       fs__caller_has_cap(req, CAP_FOWNER)
                   ? 0
                   : -EPERM;
    }
    return may_write_user_xattr(req, &a);
}

/* Send c (a SETXATTR or REMOVEXATTR of kernel id ino), after the create
 * this node staged for ino, if any: the attribute needs the inode to
 * exist. c's name and data are borrowed from the request. */
static void xattr_submit(fuse_req_t req, uint64_t ino, struct store_cmd *c)
{
    struct fs *fs = fuse_req_userdata(req);
    pthread_mutex_lock(&fs->lock);
    struct fs_handle *h = fs__pending_by_ino(fs, ino);
    bool found = h != NULL && fs__handle_tryget(h);
    h = found ? h : NULL;
    pthread_mutex_unlock(&fs->lock);
    struct change *w = change_new(req, R_ERR, h);
    if (found) {
        fs__handle_put(h); /* change_new took its own. */
    }
    if (w == NULL) {
        return;
    }
    c->ino = h != NULL ? h->ino : fs__resolve(fs, ino);
    struct store_cmd s;
    int what = h != NULL ? unstage(fs, h, &s, w) : 0;
    if (what == 0) {
        submit(w, c);
        return;
    }
    /* The create (or truncate) first; c once it applied, from copies: the
     * request's strings die with this handler. */
    memcpy(w->then_name, c->name, c->name_len);
    c->name = w->then_name;
    if (c->data_len > 0) {
        w->then_data = rfs_malloc(c->data_len);
        if (w->then_data == NULL) {
            change_fail(w, -ENOMEM);
            return;
        }
        memcpy(w->then_data, c->data, c->data_len);
        c->data = w->then_data;
    }
    if (what == 2) {
        w->staged_ino = h->kino;
    }
    w->has_then = true;
    w->then = *c;
    submit(w, &s);
}

/*
 * raftfs put: setxattr(DIR, FS_PUT_XATTR) with the value
 *   u8 version (1), u8 flags (1: if-revision), LE u16 name length,
 *   LE u32 mode (of a new file), LE u64 revision, the name, the content,
 * becomes one STORE_OP_PUT of the name in DIR: the file created or its
 * whole content replaced, decided at apply (ECANCELED: the file's revision
 * was not the one asked for; EISDIR, EINVAL: the name is a directory or
 * another non-file). Checked here, against this node's copy: write
 * permission on DIR, and on the file if it exists (EACCES), DIR a
 * directory (ENOTDIR), the value's layout (EINVAL).
 */
#define PUT_HDR 16

static void put_submit(fuse_req_t req, fuse_ino_t ino, const char *value,
                       size_t size)
{
    struct fs *fs = fuse_req_userdata(req);
    const uint8_t *v = (const uint8_t *)value;
    size_t nl = size >= PUT_HDR ? (size_t)v[2] | (size_t)v[3] << 8 : 0;
    if ((ino & FS_VIRT_BIT) || size < PUT_HDR || v[0] != 1 ||
        (v[1] & ~1u) != 0 || nl == 0 || nl > STORE_NAME_MAX ||
        size - PUT_HDR < nl) {
        fuse_reply_err(req, ino & FS_VIRT_BIT ? EPERM : EINVAL);
        return;
    }
    char name[STORE_NAME_MAX + 1];
    memcpy(name, value + PUT_HDR, nl);
    name[nl] = '\0';
    struct store *st = node_store(fs->node);
    uint64_t dir = fs__resolve(fs, ino);
    struct store_attr a;
    int e = store_getattr(st, NULL, dir, &a);
    if (e == 0 && a.type != STORE_DIR) {
        e = -ENOTDIR;
    }
    if (e == 0) {
        e = may_write_user_xattr(req, &a);
    }
    if (e == 0 && strlen(name) == nl &&
        store_lookup(st, NULL, dir, name, nl, &a) == 0 &&
        a.type == STORE_FILE) {
        e = may_write_user_xattr(req, &a);
    }
    if (e != 0) {
        fs__reply_err(req, e == -ENOENT ? -ESTALE : e);
        return;
    }
    struct change *w = change_new(req, R_ERR, NULL);
    if (w == NULL) {
        return;
    }
    struct store_cmd c;
    owned_cmd(req, &c, STORE_OP_PUT, dir, name,
              (mode_t)rfs_get_le32(v + 4));
    c.name = value + PUT_HDR; /* name's copy dies here; the request's
                               * lives until submit has encoded it. */
    c.name_len = (uint16_t)nl;
    c.flags = v[1] & 1 ? STORE_IF_REVISION : 0;
    c.offset = rfs_get_le64(v + 8);
    c.data = value + PUT_HDR + nl;
    c.data_len = (uint32_t)(size - PUT_HDR - nl);
    if (!fs__caller_has_cap(req, CAP_FSETID)) {
        c.flags |= STORE_KILL_PRIV;
    }
    submit(w, &c);
}

/*
 * setxattr: user.* and trusted.* are stored, replicated, and decided at
 * apply (EEXIST for XATTR_CREATE of a set name, ENODATA for XATTR_REPLACE
 * of a missing one, ENOSPC when the inode's attributes are full). Refused
 * here: bad flags (EINVAL), a name of 0 or more than 255 bytes (ERANGE), a
 * value over 64 KiB (E2BIG), user.raftfs.* (EPERM: raftfs's own),
 * security.capability without CAP_SETFCAP (EPERM) or in another format
 * than Linux's (EINVAL), an ACL by other than the owner without
 * CAP_FOWNER (EPERM) or that Linux would refuse (EINVAL, E2BIG), a
 * default ACL on other than a directory (EACCES, at apply), the other
 * security.* and system.*
 * names (EOPNOTSUPP: no labels), trusted.*
 * without CAP_SYS_ADMIN (EPERM), user.* without write permission (EACCES)
 * or on other than a file or directory (EPERM).
 * Replies: fuse_reply_err (0 on success).
 */
void fs__op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                     const char *value, size_t size, int flags)
{
    int e = 0;
    if (strcmp(name, FS_PUT_XATTR) == 0 && flags == 0) {
        put_submit(req, ino, value, size);
        return;
    }
    if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) {
        e = -EINVAL;
    } else {
        e = xattr_may_change(req, ino, name, false, -EOPNOTSUPP);
    }
    if (e == 0 && size > STORE_XATTR_SIZE_MAX) {
        e = -E2BIG;
    }
    if (e == 0 && fs__xattr_ns(name) == FS_XNS_CAPS &&
        !store_caps_valid(value, size)) {
        e = -EINVAL; /* The kernel's format check, asked again. */
    }
    if (e == 0 && fs__xattr_ns(name) == FS_XNS_ACL) {
        e = -store_acl_check(value, size); /* posix_acl_valid, again. */
    }
    if (e != 0) {
        fs__reply_err(req, e);
        return;
    }
    struct store_cmd c;
    name_cmd(&c, STORE_OP_SETXATTR, 0, name);
    c.data = value;
    c.data_len = (uint32_t)size;
    c.flags = (flags & XATTR_CREATE ? STORE_XATTR_CREATE : 0) |
              (flags & XATTR_REPLACE ? STORE_XATTR_REPLACE : 0);
    xattr_submit(req, ino, &c);
}

/*
 * removexattr: as setxattr, but security.capability needs no capability
 * here (see xattr_may_change); ENODATA for a name that is not set, and for
 * the other security.* and system.* names (there are none to remove);
 * removing an ACL that is not set succeeds (the store decides), as on
 * ext4.
 * Replies: fuse_reply_err (0 on success).
 */
void fs__op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    int e = xattr_may_change(req, ino, name, true, -ENODATA);
    if (e != 0) {
        fs__reply_err(req, e);
        return;
    }
    struct store_cmd c;
    name_cmd(&c, STORE_OP_REMOVEXATTR, 0, name);
    xattr_submit(req, ino, &c);
}
