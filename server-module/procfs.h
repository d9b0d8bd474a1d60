/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The /proc files of udp_server (proc.c), one of its two entry
 * points beside the transport: /proc/ht runs text commands, the others show
 * the table and the history and register the backup daemon.
 */
#ifndef KUDP_PROCFS_H
#define KUDP_PROCFS_H

int kudp_proc_init(void);
void kudp_proc_exit(void);

#endif /* KUDP_PROCFS_H */
