/*
 * raftfs watch and raftfs put (coord.c): argc/argv after the command
 * name; each returns the process's exit status.
 */
#ifndef RAFTFS_MOUNT_TOOLS_COORD_H
#define RAFTFS_MOUNT_TOOLS_COORD_H

int cmd_watch(int argc, char **argv);
int cmd_put(int argc, char **argv);

#endif /* RAFTFS_MOUNT_TOOLS_COORD_H */
