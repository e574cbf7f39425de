/*
 * snapfiles: the snapshot images of one data folder, DATADIR/snapshots/.
 *
 * The only code that knows their names and how they come and go:
 *   snap-INDEX.img  the image of the state at INDEX, served to followers;
 *   taking.img      an image being written from the local state;
 *   receiving.img   an image arriving from the leader, chunk by chunk;
 *   fetching.img    an image an observer fetches from a peer
 *                   (docs/protocol.md), chunk by chunk: its own file, so
 *                   a leader's snapshot arriving meanwhile mixes nothing;
 *   snap-INDEX.stmt a voter's signed statement that snap-INDEX.img is the
 *                   committed state at INDEX (consensus/gimage.h), kept
 *                   beside the image and gone with it;
 *   stmt-INDEX.tmp  a statement being written.
 * An image becomes snap-INDEX.img by a rename followed by an fsync of the
 * folder, so a power loss never leaves a name without its bytes. The node
 * runtime and `raftfs init --restore` both go through here.
 *
 * Caveats:
 * - Blocking file I/O: call from a worker thread, never the loop thread
 *   (snapfiles_dir_open and snapfiles_drop excepted: they are cheap).
 * - One writer at a time per folder (the runtime writes one batch at a
 *   time); reads of snap-INDEX.img may run meanwhile.
 */
#ifndef RAFTFS_CONSENSUS_SNAPFILES_H
#define RAFTFS_CONSENSUS_SNAPFILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "../common/types.h"
#include "../store/store.h"
#include "core/core.h"

struct snapfiles {
    char dir[1024]; /* DATADIR/snapshots */
    /* The image installed last: a batch retried after ENOSPC holds the
     * chunks of an image already installed, and must not write them into a
     * new receiving.img (the old one was renamed away). */
    rfs_index_t installed;
    /* chain(installed), read right after the install, before anything
     * applies past it (an image fetched from a peer is checked against
     * its statement's). Valid when installed_chain_ok; written by the
     * thread that installs, read after that job completed. */
    uint8_t installed_chain[STORE_CHAIN_BYTES];
    bool installed_chain_ok;
};

/* Make DATADIR/snapshots if missing. 0 or -errno, errmsg naming it. */
int snapfiles_init(struct snapfiles *f, const char *datadir, char *errmsg);
/* The name of image index (snap-INDEX.img). */
void snapfiles_path(const struct snapfiles *f, rfs_index_t index, char *buf,
                    size_t len);

/* Store one received chunk (in receiving.img; fetched: in fetching.img,
 * see snapfiles_receive_part); on the last one, install the image into s
 * and keep it as snap-INDEX.img. 0, -EIO, -ENOSPC, or the store's code,
 * with errmsg naming the file. */
int snapfiles_receive(struct snapfiles *f, struct store *s,
                      const struct cons_snap_meta *meta, uint64_t offset,
                      const void *data, size_t len, bool last, bool fetched,
                      char *errmsg);
/* Write len bytes at offset of fetching.img, not synced (an image fetched
 * from a peer, chunk by chunk; offset 0 starts a new file). The core's
 * install (cons_node_install_image) then hands snapfiles_receive an empty
 * last chunk marked fetched, which syncs and installs it. A leader's
 * snapshot may arrive at the same time: it fills receiving.img, so neither
 * transfer truncates or mixes the other's bytes, and whichever image is
 * installed first wins (the other one's install is refused as older, or
 * its transfer restarts). 0, -EIO or -ENOSPC, errmsg naming the file. */
int snapfiles_receive_part(const struct snapfiles *f, uint64_t offset,
                           const void *data, size_t len, char *errmsg);
/* Write an image of s's state (at whatever index it has applied: *index
 * says which) and keep it as snap-INDEX.img. sums (NULL: not wanted) gets
 * the image's hash and its chain hash, computed as it is written
 * (store_snapshot_write_sums). */
int snapfiles_take(struct snapfiles *f, struct store *s, rfs_index_t *index,
                   uint64_t *size, struct store_snap_sums *sums,
                   char *errmsg);
/* Keep data (an encoded statement, opaque here) as snap-INDEX.stmt,
 * atomically: written to stmt-INDEX.tmp, synced, renamed, the folder synced. 0,
 * -EIO or -ENOSPC, errmsg naming the file. */
int snapfiles_stmt_put(const struct snapfiles *f, rfs_index_t index,
                       const void *data, size_t len, char *errmsg);
/* Read snap-INDEX.stmt into buf[0..cap): 0 with *len set; -ENOENT (none);
 * -EFBIG (over cap); -EIO. */
int snapfiles_stmt_get(const struct snapfiles *f, rfs_index_t index,
                       void *buf, size_t cap, size_t *len);
/* Read len bytes at off of image index. 0 or -EIO. */
int snapfiles_read(const struct snapfiles *f, rfs_index_t index, uint64_t off,
                   void *buf, size_t len);
/* Delete every snap-* file in the folder (images and their statements)
 * but snap-KEEP.img and snap-KEEP.stmt (best effort; keep 0 keeps none),
 * and with all set every other file too (a partial receiving.img or
 * fetching.img, taking.img or stmt-INDEX.tmp). At start (all), a crash can have left any
 * of them; after an install, the image the node had before (and any
 * installed earlier in the same batch) is superseded. Returns how many
 * files were deleted. */
int snapfiles_sweep(const struct snapfiles *f, rfs_index_t keep, bool all);
/* Delete image index and its statement (best effort). */
void snapfiles_drop(const struct snapfiles *f, rfs_index_t index);
/* `raftfs init --restore`: install the image at path into s with meta
 * (meta->index and size taken from the image) and keep a copy as
 * snap-INDEX.img. 0 or a code, errmsg naming the file. */
int snapfiles_restore(struct snapfiles *f, struct store *s, const char *path,
                      struct cons_snap_meta *meta, char *errmsg);
/* The applied index an image holds (its header), or 0 if not an image. */
rfs_index_t snapfiles_image_index(const char *path, uint64_t *size);

/*
 * The store keeps a snapshot's configuration as bytes it never reads; these
 * two translate between the core's snapshot metadata and the store's with
 * the core's own codec, so the bytes on disk are a CONF entry's payload.
 * snapfiles_meta_to_store allocates out->conf.base: the caller frees it
 * with rfs_free. 0 or -ENOMEM. snapfiles_meta_from_store: 0, or
 * RFS_ECORRUPT if the bytes are not a configuration (a damaged record).
 */
int snapfiles_meta_to_store(const struct cons_snap_meta *m,
                            struct store_snap_meta *out);
int snapfiles_meta_from_store(const struct store_snap_meta *m,
                              struct cons_snap_meta *out);

#endif /* RAFTFS_CONSENSUS_SNAPFILES_H */
