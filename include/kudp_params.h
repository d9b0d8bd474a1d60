/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kudp_params.h - range-checked module parameters for both modules.
 *
 * A value outside the range makes insmod fail with -EINVAL, the way
 * net/sunrpc/xprtsock.c checks its port parameters. The type is recorded for
 * modinfo by hand, since module_param_cb() does not do it; ./run reads it
 * together with the "(range MIN-MAX, default D)" convention of the
 * descriptions.
 *
 * checkpatch notes MACRO_ARG_REUSE here: `name` is pasted into identifiers,
 * never evaluated, so reusing it has no side effects.
 */
#ifndef KUDP_PARAMS_H
#define KUDP_PARAMS_H

#include <linux/moduleparam.h>
#include <linux/stringify.h>

/*
 * "(range MIN-MAX, default D)": the form ./run reads from modinfo -p to check
 * values before insmod. MIN, MAX and D must be plain literals (or macros that
 * expand to them) so that they are pasted as numbers.
 */
#define KUDP_RANGE(min, max, def)					\
	"(range " __stringify(min) "-" __stringify(max)			\
	", default " __stringify(def) ")"

#define KUDP_PARAM_UINT_RANGE(name, min, max)				\
	KUDP_PARAM_UINT_RANGE_NAMED(name, name, min, max)

/* The same, for parameter @name kept in the variable @var. */
#define KUDP_PARAM_UINT_RANGE_NAMED(name, var, min, max)		\
static int name##_set(const char *val, const struct kernel_param *kp)	\
{									\
	return param_set_uint_minmax(val, kp, min, max);		\
}									\
static const struct kernel_param_ops name##_ops = {			\
	.set = name##_set,						\
	.get = param_get_uint,						\
};									\
module_param_cb(name, &name##_ops, &(var), 0444);			\
__MODULE_PARM_TYPE(name, "uint")

#endif /* KUDP_PARAMS_H */
