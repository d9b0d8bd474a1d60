/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kudp_kthread.h - the end of a kthread that kthread_stop() will reap.
 *
 * A kthread that returns on its own is freed, and a later kthread_stop() on
 * it is a use-after-free. Our threads finish their work (the socket is shut
 * down, or the client is done) and then wait here until module_exit stops
 * them.
 */
#ifndef KUDP_KTHREAD_H
#define KUDP_KTHREAD_H

#include <linux/kthread.h>
#include <linux/sched.h>

static inline void kudp_idle_until_stopped(void)
{
	for (;;) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (kthread_should_stop())
			break;
		schedule();
	}
	__set_current_state(TASK_RUNNING);
}

#endif /* KUDP_KTHREAD_H */
