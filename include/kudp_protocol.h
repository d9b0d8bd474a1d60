/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kudp_protocol.h - the kernel-udp wire protocol, in one place.
 *
 * Both modules include this header, and the TypeScript side
 * (user-client/protocol.ts) is unit-tested against these very lines, so a
 * change here that is not mirrored there fails the tests.  PROTOCOL.md
 * describes the format in prose.
 *
 * Keep every value a plain literal on one #define line: the TypeScript
 * test parses them with a regular expression.
 */
#ifndef KUDP_PROTOCOL_H
#define KUDP_PROTOCOL_H

/* Module parameter defaults and bounds. */
#define KUDP_DEFAULT_PORT	3000
#define KUDP_DEFAULT_LEN	50
/* Room for every fixed reply; the longest is "ERR unexpected argument\n". */
#define KUDP_MIN_LEN		32
/* The largest UDP payload over IPv4: 65535 - 20 (IP) - 8 (UDP). */
#define KUDP_MAX_LEN		65507

/*
 * Reflection: to a sender that is not on the server's own host, a reply is
 * at most KUDP_REFLECT_RATIO times the request's size, or KUDP_MIN_LEN bytes
 * when that is more (every fixed reply fits in KUDP_MIN_LEN). A longer reply
 * is replaced by "ERR pad to N": the same request padded with spaces to N
 * bytes gets it.
 */
#define KUDP_REFLECT_RATIO	3

/* Limits of the key-value table. */
#define KUDP_MAX_KEY		250
#define KUDP_MAX_VALUE		4096

/* The greeting. */
#define KUDP_HELLO		"HELLO"
#define KUDP_GOT_IT		"GOT IT"

/* Commands: lower case, separated from their arguments by spaces. */
#define KUDP_CMD_INSERT		"insert"
#define KUDP_CMD_LOOKUP		"lookup"
#define KUDP_CMD_DELETE		"delete"
#define KUDP_CMD_STATS		"stats"

/* Reply words.  Every reply is one line ending in "\n". */
#define KUDP_OK			"OK"
#define KUDP_NOT_FOUND		"NOT FOUND"
#define KUDP_ERR		"ERR"

/* Reasons after "ERR ". */
#define KUDP_ERR_EMPTY		"empty"
#define KUDP_ERR_TOO_LONG	"too long"
#define KUDP_ERR_UNKNOWN	"unknown command"
#define KUDP_ERR_NO_KEY		"missing key"
#define KUDP_ERR_NO_VALUE	"missing value"
#define KUDP_ERR_EXTRA		"unexpected argument"
#define KUDP_ERR_KEY_LONG	"key too long"
#define KUDP_ERR_VALUE_LONG	"value too long"
#define KUDP_ERR_CONTROL	"control bytes"
#define KUDP_ERR_FULL		"full"
#define KUDP_ERR_BUSY		"busy"
#define KUDP_ERR_NOMEM		"out of memory"
#define KUDP_ERR_PAD		"pad to"
#define KUDP_ERR_NO_BACKUP	"no backup"

#endif /* KUDP_PROTOCOL_H */
