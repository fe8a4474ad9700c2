/*-------------------------------------------------------------------------
 *
 * read.h
 *	  Reading a partition in position order below the safe horizon.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_READ_H
#define EB_READ_H

#include "executor/tuptable.h"
#include "utils/snapshot.h"

#include "catalog.h"

/* What an emit callback did with an event. */
typedef enum EbEmitResult
{
	EB_EMIT_TAKEN,				/* counted against max_events */
	EB_EMIT_SKIPPED,			/* not counted; go on */
	EB_EMIT_STOP				/* stop reading */
} EbEmitResult;

typedef EbEmitResult (*EbEmitFn) (void *arg, EbTopic *topic, TupleTableSlot *slot);

extern int	eb_read_partition(EbTopic *topic, int32 partition, int64 after,
							  int max_events, Snapshot snapshot,
							  EbEmitFn emit, void *arg);
extern int	eb_read_range(EbTopic *topic, int32 partition, int64 after, int64 before,
						  int max_events, Snapshot snapshot, EbEmitFn emit, void *arg);
extern int	eb_read_range_blocked(EbTopic *topic, int32 partition, int64 after,
								  int64 before, int max_events, Snapshot snapshot,
								  EbEmitFn emit, void *arg, bool *blocked);
extern void eb_check_read_privilege(EbTopic *topic);
extern void eb_check_partition_arg(EbTopic *topic, int32 partition);

#endif							/* EB_READ_H */
