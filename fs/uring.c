/*
 * FUSE over io_uring for a libfuse 3.14 session (see fs.h, fs_uring_*).
 *
 * libfuse 3.14 knows nothing of io_uring, so this file speaks the kernel
 * interface itself (fs/fuse/dev_uring.c) and borrows only two public hooks
 * of libfuse: fuse_session_custom_io() to see every message that crosses
 * /dev/fuse, and fuse_session_process_buf() to have a request that came
 * through a ring decoded and dispatched to fs_ops like any other.
 *
 * How a mount switches over:
 * 1. INIT still arrives by read(/dev/fuse). custom_read() notes whether the
 *    kernel offered FUSE_OVER_IO_URING in its flags2 (it does when the fuse
 *    module's enable_uring is Y).
 * 2. libfuse's INIT reply cannot carry that bit (its flags are 32-bit), so
 *    custom_writev() sets it on the way out, but only after every ring was
 *    created: once the kernel accepts the bit it holds back every request
 *    until each CPU's queue has an entry registered, so failing to register
 *    after saying yes would hang the mount (a failed REGISTER does clear the
 *    kernel's io_uring mode, which is the fallback when the kernel refuses).
 * 3. One thread per queue (the kernel makes one queue per possible CPU and
 *    queues a request on the queue of the CPU it was made on) owns one
 *    io_uring with 128-byte SQEs, registers FS_URING_DEPTH entries, and
 *    waits for completions. A completion means the kernel put a request in
 *    an entry's buffers: the thread lays it out as /dev/fuse would have
 *    (in header, per-opcode struct, payload) and runs it through
 *    fuse_session_process_buf() on the spot.
 * 4. Replies come back through custom_writev(), matched to their entry by
 *    unique. The reply is copied into the entry's buffers and committed with
 *    COMMIT_AND_FETCH, which also makes the entry ready for the next
 *    request. A reply made on the queue's own thread (most of them) goes
 *    straight into its submission queue. A reply made later on another
 *    thread (raftfs answers changes from the node's loop thread once they
 *    commit) is handed over through a list and an eventfd the ring reads,
 *    because only the ring's thread may fill its submission queue, and
 *    because a command dies with the thread that submitted it.
 * 5. Everything else keeps using /dev/fuse: the kernel still sends FORGET
 *    and INTERRUPT there, and notifications (unique 0) are written there.
 *
 * Caveats:
 * - One session per process (the state is static): raftfs mounts once.
 * - The payload buffers are sized from the INIT reply (max_write,
 *   max_pages); each entry holds one, so memory is queues x depth x that.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/assert.h"
#include "../common/heap.h"
#include "../common/log.h"
#include "fs.h"
#include "fs_i.h"
#include "uring_i.h"

/* Entries registered per queue: requests parked while a change commits
 * hold theirs until the reply, so this bounds the requests of one CPU in
 * flight at once; more wait in the kernel's queue. */
#define FS_URING_DEPTH 16u
#define WAKE_TAG 1u /* user_data of the eventfd read; entries are pointers. */

/* A minimal io_uring, driven by raw system calls: liburing 2.3 (Debian 12)
 * would bring a dependency for the few lines below. */
struct ring {
    int fd;
    unsigned entries;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes; /* 128 bytes each (SQE128): index * 2. */
    struct io_uring_cqe *cqes;
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len, sqes_len;
    unsigned unsubmitted;
};

struct uq;

struct uent {
    struct fs_fuse_uring_req_header *hdr;
    char *payload;
    struct iovec iov[2]; /* Read by the kernel at REGISTER. */
    struct uq *q;
    uint64_t unique;    /* Of the request it holds, while in userspace. */
    struct uent *hnext; /* In the unique hash, while in userspace. */
    struct uent *cnext; /* In its queue's commit list. */
};

struct uq {
    unsigned qid;
    struct ring r;
    int wakefd;
    uint64_t wakeval;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* Guards commits and stop. */
    struct uent *commits, **commits_tail;
    bool stop;
    struct uent ents[FS_URING_DEPTH];
    char *buf; /* One request laid out as /dev/fuse would give it. */
    size_t buf_len;
};

static struct {
    enum fs_uring_mode mode;
    struct fuse_session *se;
    int devfd;
    pthread_mutex_t lock; /* Guards init_*, hash. */
    atomic_bool init_seen; /* Read without the lock on every reply. */
    uint64_t init_unique;
    bool offered;
    unsigned nq;
    struct uq *qs;
    size_t payload_len;
    struct uent **hash;
    unsigned hmask;
    atomic_bool active;    /* The INIT reply accepted io_uring. */
    atomic_uint_fast64_t served; /* Requests that came through a ring. */
    atomic_uint_fast64_t failed; /* Entries the kernel refused or ended. */
    char why[160];         /* Why /dev/fuse is used, when it is. */
} U = {.devfd = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local struct uq *tls_q;

/* FUSE_HANDLE_KILLPRIV_V2: the kernel offered it at INIT (offered), and our
 * INIT reply, which libfuse 3.14 cannot make carry it, took it (on). From
 * then on the kernel leaves setuid, setgid and security.capability to the
 * daemon on write, truncate and chown, and says in each WRITE, SETATTR,
 * OPEN and CREATE whether the caller lacked CAP_FSETID, as the kernel's
 * capable() sees it: in the initial user namespace, on the thread that
 * made the call. */
static atomic_bool killpriv_offered, killpriv_on;
/* That verdict for the request this thread is dispatching: 1 (the kernel
 * says kill), 0 (it says keep), -1 (the opcode carries none). Set just
 * before fuse_session_process_buf() on the same thread, so the op handler
 * called from it reads its own request's. */
static _Thread_local int tls_kill = -1;

/* Note the kernel's kill verdict of the request in buf (laid out as a read
 * of /dev/fuse gives it). libfuse 3.14 drops these flags while decoding
 * (its fuse_file_info has no field for them, and it masks SETATTR's valid
 * to the bits it knows), hence reading them here. */
static void note_kill(const void *buf, size_t len)
{
    tls_kill = -1;
    if (len < sizeof(struct fuse_in_header)) {
        return;
    }
    const struct fuse_in_header *in = buf;
    size_t off;
    uint32_t bit;
    switch (in->opcode) {
    case FUSE_WRITE:
        off = offsetof(struct fuse_write_in, write_flags);
        bit = FUSE_WRITE_KILL_SUIDGID;
        break;
    case FUSE_SETATTR:
        off = offsetof(struct fuse_setattr_in, valid);
        bit = FATTR_KILL_SUIDGID;
        break;
    case FUSE_OPEN:
        off = offsetof(struct fuse_open_in, open_flags);
        bit = FUSE_OPEN_KILL_SUIDGID;
        break;
    case FUSE_CREATE:
        off = offsetof(struct fuse_create_in, open_flags);
        bit = FUSE_OPEN_KILL_SUIDGID;
        break;
    default:
        return;
    }
    uint32_t v;
    if (len < sizeof(*in) + off + sizeof(v)) {
        return; /* An older kernel's shorter struct: no verdict. */
    }
    memcpy(&v, (const char *)(in + 1) + off, sizeof(v));
    tls_kill = (v & bit) != 0;
}

int fs__kernel_kill_priv(void)
{
    return atomic_load(&killpriv_on) ? tls_kill : -1;
}

/* ------------------------------------------------------------------------ */
/* The ring                                                                  */

static int ring_open(struct ring *r, unsigned entries)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SQE128;
    memset(r, 0, sizeof(*r));
    r->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (r->fd < 0) {
        return -errno;
    }
    r->entries = p.sq_entries;
    r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_map_len > r->sq_map_len) {
            r->sq_map_len = r->cq_map_len;
        }
        r->cq_map_len = r->sq_map_len;
    }
    r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED) {
        goto err_after_setup;
    }
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_map = r->sq_map;
    } else {
        r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED) {
            goto err_after_sq;
        }
    }
    r->sqes_len = (size_t)p.sq_entries * 2 * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) {
        goto err_after_cq;
    }
    char *sq = r->sq_map, *cq = r->cq_map;
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;

err_after_cq:
    if (r->cq_map != r->sq_map) {
        munmap(r->cq_map, r->cq_map_len);
    }
err_after_sq:
    munmap(r->sq_map, r->sq_map_len);
err_after_setup:;
    int e = errno;
    close(r->fd);
    r->fd = -1;
    return -e;
}

static void ring_close(struct ring *r)
{
    if (r->fd < 0) {
        return;
    }
    munmap(r->sqes, r->sqes_len);
    if (r->cq_map != r->sq_map) {
        munmap(r->cq_map, r->cq_map_len);
    }
    munmap(r->sq_map, r->sq_map_len);
    close(r->fd);
    r->fd = -1;
}

/* A zeroed SQE to fill, or NULL if the queue is full (never, by sizing:
 * at most DEPTH commands and one eventfd read are ever outstanding). */
static struct io_uring_sqe *ring_sqe(struct ring *r)
{
    unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    unsigned tail = *r->sq_tail;
    if (tail - head >= r->entries) {
        return NULL;
    }
    unsigned i = tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[i * 2];
    memset(sqe, 0, 2 * sizeof(*sqe));
    r->sq_array[i] = i;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    r->unsubmitted++;
    return sqe;
}

/* Submit what was queued and wait for at least one completion. */
static int ring_enter(struct ring *r)
{
    int n = (int)syscall(__NR_io_uring_enter, r->fd, r->unsubmitted, 1,
                         IORING_ENTER_GETEVENTS, NULL, 0);
    if (n < 0) {
        return -errno;
    }
    r->unsubmitted -= (unsigned)n < r->unsubmitted ? (unsigned)n
                                                   : r->unsubmitted;
    return 0;
}

void fs__uring_flush(void)
{
    struct uq *q = tls_q;
    while (q != NULL && q->r.unsubmitted > 0) {
        int n = (int)syscall(__NR_io_uring_enter, q->r.fd, q->r.unsubmitted,
                             0, 0, NULL, 0);
        if (n <= 0) {
            /* EINTR: try again; anything else, the queue loop's own
             * io_uring_enter reports it and submits the rest. */
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return;
        }
        q->r.unsubmitted -= (unsigned)n < q->r.unsubmitted
                                ? (unsigned)n : q->r.unsubmitted;
    }
}

/* ------------------------------------------------------------------------ */
/* Entries                                                                   */

static unsigned hslot(uint64_t unique)
{
    return (unsigned)((unique * UINT64_C(0x9E3779B97F4A7C15)) >> 40) &
           U.hmask;
}

static void hash_put(struct uent *e)
{
    pthread_mutex_lock(&U.lock);
    unsigned s = hslot(e->unique);
    e->hnext = U.hash[s];
    U.hash[s] = e;
    pthread_mutex_unlock(&U.lock);
}

static struct uent *hash_take(uint64_t unique)
{
    struct uent *e = NULL;
    if (!atomic_load(&U.active)) {
        return NULL; /* The fallback's cost per reply: this load. */
    }
    pthread_mutex_lock(&U.lock);
    if (atomic_load(&U.active) && U.hash != NULL) {
        for (struct uent **p = &U.hash[hslot(unique)]; *p;
             p = &(*p)->hnext) {
            if ((*p)->unique == unique) {
                e = *p;
                *p = e->hnext;
                break;
            }
        }
    }
    pthread_mutex_unlock(&U.lock);
    return e;
}

static void prep_cmd(struct uent *e, uint32_t op)
{
    struct io_uring_sqe *sqe = ring_sqe(&e->q->r);
    if (RFS_NEVER(sqe == NULL)) {
        atomic_fetch_add(&U.failed, 1);
        return;
    }
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = U.devfd;
    sqe->cmd_op = op;
    sqe->addr = (uint64_t)(uintptr_t)e->iov;
    sqe->len = 2;
    sqe->user_data = (uint64_t)(uintptr_t)e;
    struct fs_fuse_uring_cmd_req *c = (void *)sqe->cmd;
    c->qid = (uint16_t)e->q->qid;
    c->commit_id = op == FS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH ? e->unique : 0;
}

static void prep_wake(struct uq *q)
{
    struct io_uring_sqe *sqe = ring_sqe(&q->r);
    if (RFS_NEVER(sqe == NULL)) {
        return;
    }
    sqe->opcode = IORING_OP_READ;
    sqe->fd = q->wakefd;
    sqe->addr = (uint64_t)(uintptr_t)&q->wakeval;
    sqe->len = sizeof(q->wakeval);
    sqe->user_data = WAKE_TAG;
}

/* The request in e, laid out in q->buf as a read of /dev/fuse returns it,
 * then decoded and dispatched by libfuse. */
static void serve(struct uq *q, struct uent *e)
{
    struct fuse_in_header in;
    memcpy(&in, e->hdr->in_out, sizeof(in));
    size_t payload = e->hdr->ring_ent_in_out.payload_sz;
    size_t op = in.len >= sizeof(in) + payload ? in.len - sizeof(in) - payload
                                               : SIZE_MAX;
    if (op > FS_FUSE_URING_OP_IN_OUT_SZ || payload > U.payload_len) {
        RFS_LOG(RFS_LOG_ERROR,
                "FUSE over io_uring: request %" PRIu64 " (opcode %u) has "
                "sizes %u/%zu that do not add up; answering EIO",
                (uint64_t)in.unique, in.opcode, in.len, payload);
        struct fuse_out_header *out = (void *)e->hdr->in_out;
        memset(out, 0, sizeof(*out));
        out->len = sizeof(*out);
        out->error = -EIO;
        out->unique = in.unique;
        e->hdr->ring_ent_in_out.payload_sz = 0;
        e->unique = in.unique;
        prep_cmd(e, FS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
        return;
    }
    memcpy(q->buf, &in, sizeof(in));
    memcpy(q->buf + sizeof(in), e->hdr->op_in, op);
    memcpy(q->buf + sizeof(in) + op, e->payload, payload);
    e->unique = in.unique;
    hash_put(e);
    atomic_fetch_add(&U.served, 1);
    struct fuse_buf fb = {.mem = q->buf, .size = in.len};
    note_kill(q->buf, in.len);
    fuse_session_process_buf(U.se, &fb);
}

/* Commit the replies that other threads handed over. */
static bool take_commits(struct uq *q)
{
    pthread_mutex_lock(&q->lock);
    struct uent *list = q->commits;
    q->commits = NULL;
    q->commits_tail = &q->commits;
    bool stop = q->stop;
    pthread_mutex_unlock(&q->lock);
    while (list) {
        struct uent *next = list->cnext;
        prep_cmd(list, FS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
        list = next;
    }
    return stop;
}

static void *queue_main(void *arg)
{
    struct uq *q = arg;
    tls_q = q;
    /* The kernel queues a request on the queue of the CPU its caller ran
     * on: on that CPU, this thread runs as soon as the caller blocks, and
     * the request's data is still in that CPU's cache. Best effort (a
     * cpuset may forbid it). */
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(q->qid, &cpus);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
    for (unsigned i = 0; i < FS_URING_DEPTH; i++) {
        prep_cmd(&q->ents[i], FS_FUSE_IO_URING_CMD_REGISTER);
    }
    prep_wake(q);
    for (;;) {
        int rv = ring_enter(&q->r);
        if (rv == -EINTR || rv == -EAGAIN || rv == -EBUSY) {
            continue;
        }
        if (rv != 0) {
            RFS_LOG(RFS_LOG_ERROR, "FUSE over io_uring: queue %u: "
                    "io_uring_enter: %s; the queue stops", q->qid,
                    strerror(-rv));
            return NULL;
        }
        bool stop = false;
        for (;;) {
            unsigned head = *q->r.cq_head;
            if (head == __atomic_load_n(q->r.cq_tail, __ATOMIC_ACQUIRE)) {
                break;
            }
            struct io_uring_cqe c = q->r.cqes[head & *q->r.cq_mask];
            __atomic_store_n(q->r.cq_head, head + 1, __ATOMIC_RELEASE);
            if (c.user_data == WAKE_TAG) {
                stop |= take_commits(q);
                if (!stop) {
                    prep_wake(q);
                }
                continue;
            }
            struct uent *e = (void *)(uintptr_t)c.user_data;
            if (c.res == 0) {
                serve(q, e);
                continue;
            }
            /* ENOTCONN and friends: the mount is going away. Anything
             * else the first time is the kernel turning the ring down. */
            if (atomic_fetch_add(&U.failed, 1) == 0 && c.res != -ENOTCONN &&
                c.res != -ECONNABORTED && c.res != -ECANCELED) {
                RFS_LOG(RFS_LOG_WARN,
                        "FUSE over io_uring: the kernel refused an entry of "
                        "queue %u: %s; requests go through /dev/fuse reads",
                        q->qid, strerror(-c.res));
                pthread_mutex_lock(&U.lock);
                snprintf(U.why, sizeof(U.why),
                         "the kernel refused a ring entry: %s",
                         strerror(-c.res));
                pthread_mutex_unlock(&U.lock);
            }
        }
        if (stop) {
            return NULL;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Setting up and tearing down                                               */

static void queues_free(void)
{
    for (unsigned i = 0; U.qs && i < U.nq; i++) {
        struct uq *q = &U.qs[i];
        ring_close(&q->r);
        if (q->wakefd >= 0) {
            close(q->wakefd);
        }
        for (unsigned k = 0; k < FS_URING_DEPTH; k++) {
            rfs_free(q->ents[k].hdr);
            rfs_free(q->ents[k].payload);
        }
        rfs_free(q->buf);
        pthread_mutex_destroy(&q->lock);
    }
    rfs_free(U.qs);
    U.qs = NULL;
    rfs_free(U.hash);
    U.hash = NULL;
}

/* The kernel's count of queues: one per possible CPU (num_possible_cpus,
 * ids 0..N-1), online or not. Registering fewer would leave the ring never
 * ready and the mount hung, so read what the kernel reads. */
static unsigned possible_cpus(void)
{
    long conf = sysconf(_SC_NPROCESSORS_CONF);
    unsigned n = conf > 0 ? (unsigned)conf : 1;
    FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
    if (f == NULL) {
        return n;
    }
    char line[256];
    if (fgets(line, sizeof(line), f) != NULL) {
        /* "0-3" or "0,2-5": the highest id is after the last - or ,. */
        char *last = strrchr(line, '-');
        char *comma = strrchr(line, ',');
        char *p = last && (!comma || last > comma) ? last + 1
                  : comma                          ? comma + 1
                                                   : line;
        unsigned long top = strtoul(p, NULL, 10);
        if (top + 1 > n && top < 65536) {
            n = (unsigned)top + 1;
        }
    }
    fclose(f);
    return n;
}

/* Rings and buffers for every queue, before the INIT reply says yes.
 * 0; or -ENOMEM, io_uring_setup's or eventfd's negated errno, with why
 * saying which. */
static int queues_new(size_t payload_len, char *why, size_t why_len)
{
    int code = -ENOMEM;
    U.nq = possible_cpus();
    U.payload_len = payload_len;
    U.qs = rfs_calloc(U.nq, sizeof(*U.qs));
    unsigned nh = 1;
    while (nh < U.nq * FS_URING_DEPTH) {
        nh <<= 1;
    }
    U.hash = rfs_calloc(nh, sizeof(*U.hash));
    U.hmask = nh - 1;
    if (U.qs == NULL || U.hash == NULL) {
        snprintf(why, why_len, "out of memory");
        goto err;
    }
    for (unsigned i = 0; i < U.nq; i++) {
        struct uq *q = &U.qs[i];
        q->qid = i;
        q->r.fd = -1;
        q->wakefd = -1;
        pthread_mutex_init(&q->lock, NULL);
        q->commits_tail = &q->commits;
    }
    for (unsigned i = 0; i < U.nq; i++) {
        struct uq *q = &U.qs[i];
        int rv = ring_open(&q->r, FS_URING_DEPTH + 2);
        if (rv != 0) {
            snprintf(why, why_len, "io_uring_setup: %s", strerror(-rv));
            code = rv;
            goto err;
        }
        q->wakefd = eventfd(0, EFD_CLOEXEC);
        if (q->wakefd < 0) {
            code = -errno;
        }
        q->buf_len = sizeof(struct fuse_in_header) +
                     FS_FUSE_URING_OP_IN_OUT_SZ + payload_len;
        q->buf = rfs_malloc(q->buf_len);
        if (q->wakefd < 0 || q->buf == NULL) {
            snprintf(why, why_len, "out of memory or descriptors");
            goto err;
        }
        for (unsigned k = 0; k < FS_URING_DEPTH; k++) {
            struct uent *e = &q->ents[k];
            e->q = q;
            e->hdr = rfs_calloc(1, sizeof(*e->hdr));
            e->payload = rfs_malloc(payload_len);
            if (e->hdr == NULL || e->payload == NULL) {
                snprintf(why, why_len, "out of memory");
                goto err;
            }
            e->iov[0] = (struct iovec){e->hdr, sizeof(*e->hdr)};
            e->iov[1] = (struct iovec){e->payload, payload_len};
        }
    }
    return 0;

err:
    queues_free();
    return code;
}

static void fall_back(const char *why)
{
    pthread_mutex_lock(&U.lock);
    snprintf(U.why, sizeof(U.why), "%s", why);
    pthread_mutex_unlock(&U.lock);
    RFS_LOG(U.mode == FS_URING_ON ? RFS_LOG_WARN : RFS_LOG_INFO,
            "FUSE over io_uring: %s; requests go through /dev/fuse reads",
            why);
}

/* ------------------------------------------------------------------------ */
/* The session's I/O                                                         */

static ssize_t custom_read(int fd, void *buf, size_t len, void *userdata)
{
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    if (n < (ssize_t)sizeof(struct fuse_in_header)) {
        tls_kill = -1;
        return n;
    }
    const struct fuse_in_header *in = buf;
    if (in->opcode != FUSE_INIT) {
        note_kill(buf, (size_t)n);
        return n;
    }
    const struct fuse_init_in *ii = (const void *)(in + 1);
    if ((size_t)n >= sizeof(*in) + offsetof(struct fuse_init_in, flags) +
                         sizeof(ii->flags)) {
        atomic_store(&killpriv_offered,
                     (ii->flags & FUSE_HANDLE_KILLPRIV_V2) != 0);
    }
    bool offered = false;
    if ((size_t)n >= sizeof(*in) + offsetof(struct fuse_init_in, unused) &&
        ii->major == 7 && ii->minor >= 42 && (ii->flags & FUSE_INIT_EXT)) {
        offered = ((uint64_t)ii->flags2 << 32) & FS_FUSE_OVER_IO_URING;
    }
    pthread_mutex_lock(&U.lock);
    U.init_seen = true;
    U.init_unique = in->unique;
    U.offered = offered;
    pthread_mutex_unlock(&U.lock);
    return n;
}

/* The INIT reply (2 iovecs, checked by the caller) as libfuse made it, with
 * FUSE_HANDLE_KILLPRIV_V2 added if the kernel offered it. Why we want it:
 * without it, a write by a caller without CAP_FSETID to a setuid file
 * makes the kernel fetch fresh attributes and send a SETATTR of the mode
 * first (one more entry), and the daemon learns of CAP_FSETID only by
 * reading /proc/PID/status (fs__caller_has_cap: twice per `echo v > f`),
 * which also sees the capabilities of the caller's own user namespace
 * rather than the initial one. The store already clears the bits at
 * apply on every path (see STORE_KILL_PRIV), so the daemon can take the
 * job. */
static ssize_t killpriv_reply(int fd, struct iovec *iov)
{
    struct fuse_init_out out;
    memset(&out, 0, sizeof(out));
    memcpy(&out, iov[1].iov_base, iov[1].iov_len);
    bool want = atomic_load(&killpriv_offered);
    if (want) {
        out.flags |= FUSE_HANDLE_KILLPRIV_V2;
    }
    struct iovec v[2] = {iov[0], {&out, iov[1].iov_len}};
    ssize_t n = writev(fd, v, 2);
    if (n >= 0) {
        atomic_store(&killpriv_on, want);
    }
    return n;
}

/* The INIT reply, with FUSE_OVER_IO_URING set if the rings are ready. */
static ssize_t init_reply(int fd, struct iovec *iov, int count)
{
    char why[128] = "";
    struct fuse_init_out out;
    if (count != 2 || iov[1].iov_len > sizeof(out) ||
        iov[1].iov_len < offsetof(struct fuse_init_out, unused)) {
        snprintf(why, sizeof(why), "unexpected INIT reply layout");
    } else if (((const struct fuse_out_header *)iov[0].iov_base)->error) {
        return writev(fd, iov, count);
    } else if (U.mode == FS_URING_OFF) {
        return killpriv_reply(fd, iov);
    } else if (!U.offered) {
        bool on = false;
        FILE *f = fopen("/sys/module/fuse/parameters/enable_uring", "r");
        if (f) {
            on = fgetc(f) == 'Y';
            fclose(f);
        }
        snprintf(why, sizeof(why), "%s",
                 f == NULL ? "the kernel lacks it (no enable_uring parameter)"
                 : !on     ? "the fuse module's enable_uring is N"
                           : "the kernel's INIT did not offer it");
    }
    if (why[0] == '\0') {
        memset(&out, 0, sizeof(out));
        memcpy(&out, iov[1].iov_base, iov[1].iov_len);
        long page = sysconf(_SC_PAGESIZE);
        size_t pages = (out.flags & FUSE_MAX_PAGES) && out.max_pages
                           ? out.max_pages
                           : 32; /* The kernel's default, per request. */
        size_t len = FUSE_MIN_READ_BUFFER;
        len = out.max_write > len ? out.max_write : len;
        len = pages * (size_t)page > len ? pages * (size_t)page : len;
        if (queues_new(len, why, sizeof(why)) == 0) {
            out.flags |= FUSE_INIT_EXT;
            if (atomic_load(&killpriv_offered)) {
                out.flags |= FUSE_HANDLE_KILLPRIV_V2;
            }
            out.flags2 |= (uint32_t)(FS_FUSE_OVER_IO_URING >> 32);
            struct iovec v[2] = {iov[0], {&out, iov[1].iov_len}};
            ssize_t n = writev(fd, v, 2);
            if (n < 0) {
                int e = errno;
                queues_free();
                errno = e;
                return n;
            }
            /* The kernel is now initialized (its INIT end ran in this
             * write), which REGISTER needs; it holds requests back until
             * every queue has an entry. */
            atomic_store(&killpriv_on, atomic_load(&killpriv_offered));
            U.active = true;
            for (unsigned i = 0; i < U.nq; i++) {
                if (pthread_create(&U.qs[i].thread, NULL, queue_main,
                                   &U.qs[i]) != 0) {
                    /* Nothing sensible is left: without this queue the
                     * kernel waits for ever. Say so and stop the mount. */
                    RFS_LOG(RFS_LOG_ERROR, "FUSE over io_uring: cannot "
                            "start the thread of queue %u", i);
                    fuse_session_exit(U.se);
                    break;
                }
                U.qs[i].started = true;
            }
            RFS_LOG(RFS_LOG_INFO,
                    "FUSE over io_uring: %u queues of %u entries (%zu-byte "
                    "payloads)", U.nq, FS_URING_DEPTH, len);
            return n;
        }
    }
    fall_back(why);
    if (count == 2 && iov[1].iov_len <= sizeof(out) &&
        iov[1].iov_len >= offsetof(struct fuse_init_out, unused)) {
        return killpriv_reply(fd, iov);
    }
    return writev(fd, iov, count);
}

static ssize_t custom_writev(int fd, struct iovec *iov, int count,
                             void *userdata)
{
    (void)userdata;
    if (count < 1 || iov[0].iov_len < sizeof(struct fuse_out_header)) {
        return writev(fd, iov, count);
    }
    const struct fuse_out_header *oh = iov[0].iov_base;
    if (oh->unique == 0) {
        return writev(fd, iov, count); /* A notification. */
    }
    bool is_init = false;
    if (atomic_load(&U.init_seen)) {
        pthread_mutex_lock(&U.lock);
        is_init = U.init_seen && oh->unique == U.init_unique;
        if (is_init) {
            U.init_seen = false;
        }
        pthread_mutex_unlock(&U.lock);
    }
    if (is_init) {
        return init_reply(fd, iov, count);
    }
    struct uent *e = hash_take(oh->unique);
    if (e == NULL) {
        return writev(fd, iov, count); /* It came by /dev/fuse. */
    }
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        total += iov[i].iov_len;
    }
    struct fuse_out_header out = *oh;
    size_t payload = 0;
    if (total - iov[0].iov_len > U.payload_len) {
        /* Cannot happen: a reply is never larger than max_pages pages. */
        out.error = -EIO;
        out.len = sizeof(out);
    } else {
        for (int i = 1; i < count; i++) {
            memcpy(e->payload + payload, iov[i].iov_base, iov[i].iov_len);
            payload += iov[i].iov_len;
        }
        out.len = (uint32_t)(sizeof(out) + payload);
    }
    memcpy(e->hdr->in_out, &out, sizeof(out));
    memset(&e->hdr->ring_ent_in_out, 0, sizeof(e->hdr->ring_ent_in_out));
    e->hdr->ring_ent_in_out.payload_sz = (uint32_t)payload;
    struct uq *q = e->q;
    if (tls_q == q) {
        prep_cmd(e, FS_FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
    } else {
        pthread_mutex_lock(&q->lock);
        e->cnext = NULL;
        *q->commits_tail = e;
        q->commits_tail = &e->cnext;
        pthread_mutex_unlock(&q->lock);
        uint64_t one = 1;
        if (write(q->wakefd, &one, sizeof(one)) != sizeof(one)) {
            RFS_LOG(RFS_LOG_ERROR, "FUSE over io_uring: cannot wake queue "
                    "%u: %s", q->qid, strerror(errno));
        }
    }
    return (ssize_t)total;
}

/* ------------------------------------------------------------------------ */
/* Front door                                                                */

int fs_uring_attach(struct fuse_session *se, enum fs_uring_mode mode)
{
    U.mode = mode;
    U.se = se;
    if (mode == FS_URING_OFF) {
        /* Still hooked: the INIT reply asks for FUSE_HANDLE_KILLPRIV_V2
         * (see killpriv_reply), and each request's kill flag is read. */
        snprintf(U.why, sizeof(U.why), "uring=off");
    }
    U.devfd = fuse_session_fd(se);
    static const struct fuse_custom_io io = {
        .read = custom_read,
        .writev = custom_writev,
    };
    int rv = fuse_session_custom_io(se, &io, U.devfd);
    if (rv != 0) {
        return rv < 0 ? rv : -EIO;
    }
    return 0;
}

void fs_uring_stop(void)
{
    if (U.qs == NULL) {
        return;
    }
    for (unsigned i = 0; i < U.nq; i++) {
        struct uq *q = &U.qs[i];
        if (!q->started) {
            continue;
        }
        pthread_mutex_lock(&q->lock);
        q->stop = true;
        pthread_mutex_unlock(&q->lock);
        uint64_t one = 1;
        if (write(q->wakefd, &one, sizeof(one)) == sizeof(one)) {
            pthread_join(q->thread, NULL);
        }
        q->started = false;
    }
    /* A reply made from now on goes to /dev/fuse, which answers ENOENT
     * for a unique it never sent (libfuse stays quiet about it). */
    pthread_mutex_lock(&U.lock);
    U.active = false;
    pthread_mutex_unlock(&U.lock);
}

void fs_uring_close(void)
{
    fs_uring_stop();
    queues_free();
}

size_t fs_uring_describe(char *buf, size_t cap)
{
    pthread_mutex_lock(&U.lock);
    int n;
    if (U.active && U.why[0] == '\0') {
        n = snprintf(buf, cap,
                     "io_uring queues=%u depth=%u requests=%" PRIu64 "\n",
                     U.nq, FS_URING_DEPTH, (uint64_t)atomic_load(&U.served));
    } else {
        n = snprintf(buf, cap, "dev_fuse (%s) requests_over_io_uring=%" PRIu64
                     "\n", U.why[0] ? U.why : "uring=off",
                     (uint64_t)atomic_load(&U.served));
    }
    pthread_mutex_unlock(&U.lock);
    return n < 0 ? 0 : (size_t)n;
}
