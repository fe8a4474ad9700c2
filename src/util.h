/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Small helpers: Kafka's key partitioner, time-ordered UUIDs, argument
 *	  checks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_UTIL_H
#define EB_UTIL_H

#include "fmgr.h"
#include "datatype/timestamp.h"
#include "utils/uuid.h"

extern void eb_validate_name(const char *kind, const char *name);
extern int32 eb_murmur2(const char *data, int len);
extern int32 eb_key_partition(text *key, int32 partitions);
extern void eb_uuid_v7(pg_uuid_t *uuid);

extern char *eb_arg_name(FunctionCallInfo fcinfo, int argno, const char *what);
extern void eb_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *what);
extern void eb_check_writable(const char *cmdname);
extern int	eb_interval_sign(Interval *iv);
extern ErrorData *eb_run_in_subxact(void (*fn) (void *arg), void *arg);

#endif							/* EB_UTIL_H */
