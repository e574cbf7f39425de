/* Snapshot image files. See snapfiles.h. */
#include "snapfiles.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/endian.h"
#include "../common/err.h"
#include "../common/heap.h"

int snapfiles_init(struct snapfiles *f, const char *datadir, char *errmsg)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s/snapshots", datadir);
    if (mkdir(f->dir, 0700) != 0 && errno != EEXIST) {
        int rv = -errno;
        snprintf(errmsg, RFS_ERRMSG_SZ, "cannot create %.150s: %.60s", f->dir,
                 strerror(errno));
        return rv;
    }
    return 0;
}

void snapfiles_path(const struct snapfiles *f, rfs_index_t index, char *buf,
                    size_t len)
{
    snprintf(buf, len, "%s/snap-%" PRIu64 ".img", f->dir, index);
}

static void named(const struct snapfiles *f, const char *name, char *buf,
                  size_t len)
{
    snprintf(buf, len, "%s/%s", f->dir, name);
}

/* After a rename, the folder's entry must reach the disk too, or a power
 * loss can bring back the old name (etcd-io/etcd#6368). */
static int sync_dir(const struct snapfiles *f)
{
    int fd = open(f->dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return -errno;
    }
    int rv = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rv;
}

/* Give a finished image its name, durably. */
static int keep(struct snapfiles *f, const char *from, rfs_index_t index,
                char *errmsg)
{
    char to[1200];
    snapfiles_path(f, index, to, sizeof(to));
    if (rename(from, to) != 0 || sync_dir(f) != 0) {
        int rv = errno == ENOSPC ? -ENOSPC : -EIO;
        snprintf(errmsg, RFS_ERRMSG_SZ, "keeping %.150s: %.60s", to,
                 strerror(errno));
        return rv;
    }
    return 0;
}

int snapfiles_receive(struct snapfiles *f, struct store *s,
                      const struct cons_snap_meta *meta, uint64_t offset,
                      const void *data, size_t len, bool last, bool fetched,
                      char *errmsg)
{
    if (meta->index == f->installed) {
        return 0; /* A retried batch: this image is in already. */
    }
    char path[1200];
    named(f, fetched ? "fetching.img" : "receiving.img", path, sizeof(path));
    int fd = open(path, O_CREAT | O_WRONLY | (offset == 0 ? O_TRUNC : 0),
                  0600);
    int rv = 0;
    if (fd < 0 || pwrite(fd, data, len, (off_t)offset) != (ssize_t)len ||
        (last && fsync(fd) != 0)) {
        rv = errno == ENOSPC ? -ENOSPC : -EIO;
        snprintf(errmsg, RFS_ERRMSG_SZ, "writing %.150s: %.60s", path,
                 strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    if (rv != 0 || !last) {
        return rv;
    }
    struct store_snap_meta sm;
    rv = snapfiles_meta_to_store(meta, &sm);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "installing %.150s: %s", path,
                 rfs_strerror(rv));
        return rv;
    }
    rv = store_snapshot_install(s, path, &sm);
    rfs_free(sm.conf.base);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", store_errmsg(s));
        return rv;
    }
    f->installed = meta->index;
    rfs_index_t at = 0;
    f->installed_chain_ok = store_chain(s, &at, f->installed_chain) == 0 &&
                            at == meta->index;
    /* The state is in; the image is only kept to serve other followers.
     * If keeping it fails, the next snapshot taken here makes a new one. */
    char ignored[RFS_ERRMSG_SZ];
    (void)keep(f, path, meta->index, ignored);
    /* Every other image is older than this state: the node's previous
     * snapshot, and any image installed earlier in a merged batch, which
     * nothing else would delete. */
    (void)snapfiles_sweep(f, meta->index, false);
    return 0;
}

int snapfiles_receive_part(const struct snapfiles *f, uint64_t offset,
                           const void *data, size_t len, char *errmsg)
{
    char path[1200];
    named(f, "fetching.img", path, sizeof(path));
    int fd = open(path, O_CREAT | O_WRONLY | (offset == 0 ? O_TRUNC : 0),
                  0600);
    int rv = 0;
    if (fd < 0 || pwrite(fd, data, len, (off_t)offset) != (ssize_t)len) {
        rv = errno == ENOSPC ? -ENOSPC : -EIO;
        snprintf(errmsg, RFS_ERRMSG_SZ, "writing %.150s: %.60s", path,
                 strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return rv;
}

int snapfiles_sweep(const struct snapfiles *f, rfs_index_t keep, bool all)
{
    char want[64], want_stmt[64];
    snprintf(want, sizeof(want), "snap-%" PRIu64 ".img", keep);
    snprintf(want_stmt, sizeof(want_stmt), "snap-%" PRIu64 ".stmt", keep);
    DIR *d = opendir(f->dir);
    if (d == NULL) {
        return 0;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool image = strncmp(e->d_name, "snap-", 5) == 0;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            (keep != 0 && (strcmp(e->d_name, want) == 0 ||
                           strcmp(e->d_name, want_stmt) == 0)) ||
            (!image && !all)) {
            continue;
        }
        n += unlinkat(dirfd(d), e->d_name, 0) == 0;
    }
    closedir(d);
    return n;
}

int snapfiles_take(struct snapfiles *f, struct store *s, rfs_index_t *index,
                   uint64_t *size, struct store_snap_sums *sums,
                   char *errmsg)
{
    char tmp[1200];
    named(f, "taking.img", tmp, sizeof(tmp));
    int rv = store_snapshot_write_sums(s, tmp, index, size, sums);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%s", store_errmsg(s));
        return rv;
    }
    return keep(f, tmp, *index, errmsg);
}

int snapfiles_read(const struct snapfiles *f, rfs_index_t index, uint64_t off,
                   void *buf, size_t len)
{
    char path[1200];
    snapfiles_path(f, index, path, sizeof(path));
    int fd = open(path, O_RDONLY);
    int rv = fd >= 0 && pread(fd, buf, len, (off_t)off) == (ssize_t)len
                 ? 0
                 : -EIO;
    if (fd >= 0) {
        close(fd);
    }
    return rv;
}

static void stmt_path(const struct snapfiles *f, rfs_index_t index,
                      char *buf, size_t len)
{
    snprintf(buf, len, "%s/snap-%" PRIu64 ".stmt", f->dir, index);
}

void snapfiles_drop(const struct snapfiles *f, rfs_index_t index)
{
    char path[1200];
    /* The statement first: one left without its image would vouch for
     * nothing, but an image left without its statement is only not
     * served to peers. */
    stmt_path(f, index, path, sizeof(path));
    unlink(path);
    snapfiles_path(f, index, path, sizeof(path));
    unlink(path);
}

int snapfiles_stmt_put(const struct snapfiles *f, rfs_index_t index,
                       const void *data, size_t len, char *errmsg)
{
    char tmp[1200], to[1200], name[64];
    /* One temporary per index: two statements kept at once (two quick
     * snapshots) must not truncate or rename each other's. */
    snprintf(name, sizeof(name), "stmt-%" PRIu64 ".tmp", index);
    named(f, name, tmp, sizeof(tmp));
    stmt_path(f, index, to, sizeof(to));
    int fd = open(tmp, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    int rv = 0;
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) != 0) {
        rv = errno == ENOSPC ? -ENOSPC : -EIO;
    }
    if (fd >= 0) {
        close(fd);
    }
    if (rv == 0 && (rename(tmp, to) != 0 || sync_dir(f) != 0)) {
        rv = errno == ENOSPC ? -ENOSPC : -EIO;
    }
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "writing %.150s: %.60s", to,
                 strerror(errno));
        unlink(tmp);
    }
    return rv;
}

int snapfiles_stmt_get(const struct snapfiles *f, rfs_index_t index,
                       void *buf, size_t cap, size_t *len)
{
    char path[1200];
    stmt_path(f, index, path, sizeof(path));
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return errno == ENOENT ? -ENOENT : -EIO;
    }
    struct stat st;
    int rv = 0;
    if (fstat(fd, &st) != 0) {
        rv = -EIO;
    } else if ((uint64_t)st.st_size > cap) {
        rv = -EFBIG;
    } else if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
        rv = -EIO;
    } else {
        *len = (size_t)st.st_size;
    }
    close(fd);
    return rv;
}

rfs_index_t snapfiles_image_index(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY);
    uint8_t hdr[16];
    struct stat st;
    rfs_index_t index = 0;
    if (fd >= 0 && read(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) &&
        memcmp(hdr, "RFSSNAP", 7) == 0 && fstat(fd, &st) == 0) {
        index = rfs_get_le64(hdr + 8);
        *size = (uint64_t)st.st_size;
    }
    if (fd >= 0) {
        close(fd);
    }
    return index;
}

int snapfiles_restore(struct snapfiles *f, struct store *s, const char *path,
                      struct cons_snap_meta *meta, char *errmsg)
{
    uint64_t size = 0;
    rfs_index_t index = snapfiles_image_index(path, &size);
    if (index == 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%.150s: not a raftfs snapshot image",
                 path);
        return -EINVAL;
    }
    meta->index = index;
    meta->size = size;
    struct store_snap_meta sm;
    int rv = snapfiles_meta_to_store(meta, &sm);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%.150s: %s", path, rfs_strerror(rv));
        return rv;
    }
    rv = store_snapshot_install(s, path, &sm);
    rfs_free(sm.conf.base);
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "%.150s: %s", path, store_errmsg(s));
        return rv;
    }
    /* The node serves the image to followers that need it. */
    char tmp[1200];
    named(f, "taking.img", tmp, sizeof(tmp));
    int in = open(path, O_RDONLY);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char buf[1 << 16];
    ssize_t n = 0;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    }
    rv = in < 0 || out < 0 || n < 0 || fsync(out) != 0 ? -EIO : 0;
    if (rv != 0) {
        snprintf(errmsg, RFS_ERRMSG_SZ, "copying %.90s to %.90s: %.60s",
                 path, tmp, strerror(errno));
    }
    if (in >= 0) {
        close(in);
    }
    if (out >= 0) {
        close(out);
    }
    return rv == 0 ? keep(f, tmp, index, errmsg) : rv;
}

int snapfiles_meta_to_store(const struct cons_snap_meta *m,
                            struct store_snap_meta *out)
{
    out->index = m->index;
    out->term = m->term;
    out->size = m->size;
    return cons_conf_encode(&m->conf, &out->conf);
}

int snapfiles_meta_from_store(const struct store_snap_meta *m,
                              struct cons_snap_meta *out)
{
    memset(out, 0, sizeof(*out));
    out->index = m->index;
    out->term = m->term;
    out->size = m->size;
    /* No record, no configuration: a node that never took a snapshot. */
    if (m->conf.base != NULL && cons_conf_decode(&m->conf, &out->conf) != 0) {
        return RFS_ECORRUPT;
    }
    return 0;
}
