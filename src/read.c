/*-------------------------------------------------------------------------
 *
 * read.c
 *	  eventbus.read(): events of one partition in position order, never
 *	  beyond the safe read horizon (position.c explains the horizon).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/sysattr.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "storage/procarray.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "settings.h"
#include "compat.h"
#include "catalog.h"
#include "position.h"
#include "read.h"
#include "util.h"

PG_FUNCTION_INFO_V1(eb_read);

#define EB_READ_MAX_EVENTS 100000

void
eb_check_read_privilege(EbTopic *topic)
{
	if (pg_class_aclcheck(topic->relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read topic \"%s\"", topic->name),
				 errhint("The topic owner can grant it with: GRANT SELECT ON %s.%s TO role;",
						 EB_DATA_SCHEMA, quote_identifier(topic->name))));
}

void
eb_check_partition_arg(EbTopic *topic, int32 partition)
{
	if (partition < 0 || partition >= topic->partitions)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partition %d does not exist in topic \"%s\"",
						partition, topic->name),
				 errdetail("Topic \"%s\" has partitions 0 to %d.",
						   topic->name, topic->partitions - 1)));
}

/*
 * Can the inserter of this row, which the reader's snapshot does not see,
 * still make it visible to a later read?  Yes if it is our own transaction
 * (a later command will see it), or if the snapshot counts it as running and
 * it has not aborted since (it may be running still, or have committed after
 * the snapshot was taken).  Otherwise it aborted: the position is a gap.
 */
static bool
eb_row_may_commit(TupleTableSlot *slot, Snapshot snapshot)
{
	bool		isnull;
	TransactionId xmin;

	xmin = DatumGetTransactionId(slot_getsysattr(slot, MinTransactionIdAttributeNumber,
												 &isnull));
	if (TransactionIdIsCurrentTransactionId(xmin))
		return true;
	if (!XidInMVCCSnapshot(xmin, snapshot))
		return false;
	if (TransactionIdIsInProgress(xmin))
		return true;
	return TransactionIdDidCommit(xmin);
}

/*
 * Reads up to max_events events of a partition with positions above after,
 * in position order, passing each to emit.  Stops at the read horizon.
 * Returns the number of events emit took.  Segment relations stay locked
 * until the end of the transaction, so emitted values remain readable.
 */
int
eb_read_partition(EbTopic *topic, int32 partition, int64 after,
				  int max_events, Snapshot snapshot, EbEmitFn emit, void *arg)
{
	return eb_read_range(topic, partition, after, PG_INT64_MAX, max_events,
						 snapshot, emit, arg);
}

/*
 * The same for positions above after and below before only.  A narrow
 * range is cheaper than a limit: the index scan stops at the first entry
 * past before instead of checking the rest of its leaf page (for one
 * event at a known position, before = position + 1).
 */
int
eb_read_range(EbTopic *topic, int32 partition, int64 after, int64 before,
			  int max_events, Snapshot snapshot, EbEmitFn emit, void *arg)
{
	return eb_read_range_blocked(topic, partition, after, before, max_events,
								 snapshot, emit, arg, NULL);
}

/*
 * The same; *blocked (if not NULL) says whether reading stopped at a row
 * the snapshot does not see and that may still commit, or has committed
 * since the snapshot was taken (the positions after it were not visited).
 */
int
eb_read_range_blocked(EbTopic *topic, int32 partition, int64 after, int64 before,
					  int max_events, Snapshot snapshot, EbEmitFn emit, void *arg,
					  bool *blocked)
{
	int64		horizon;
	int			count = 0;
	bool		stop = false;
	int			i;

	horizon = eb_read_horizon(topic, partition, NULL);
	if (before < horizon)
		horizon = before;
	if (after + 1 >= horizon)
		return 0;

	for (i = 0; i < topic->nsegments && !stop && count < max_events; i++)
	{
		EbSegment  *seg = &topic->segments[i];
		Relation	rel;
		Relation	idx;
		ScanKeyData keys[3];
		IndexScanDesc scan;
		TupleTableSlot *slot;

		/* Segment i holds only positions below the next segment's start. */
		if (i + 1 < topic->nsegments && topic->segments[i + 1].nstart > 0)
		{
			EbSegment  *next = &topic->segments[i + 1];
			int64		next_start = partition < next->nstart ? next->start[partition] : 0;

			if (next_start <= after + 1)
				continue;
		}

		rel = try_relation_open(seg->relid, AccessShareLock);
		if (rel == NULL)
			continue;			/* dropped by retention */
		eb_segment_resolve_indexes(seg, rel);
		idx = index_open(seg->pk_index, AccessShareLock);

		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ,
					Int32GetDatum(partition));
		ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT,
					Int64GetDatum(after));
		ScanKeyInit(&keys[2], 2, BTLessStrategyNumber, F_INT8LT,
					Int64GetDatum(horizon));
		scan = eb_index_beginscan(rel, idx, SnapshotAny, 3, 0);
		index_rescan(scan, keys, 3, NULL, 0);
		slot = table_slot_create(rel, NULL);

		while (count < max_events &&
			   index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			CHECK_FOR_INTERRUPTS();
			if (!table_tuple_satisfies_snapshot(rel, slot, snapshot))
			{
				if (eb_row_may_commit(slot, snapshot))
				{
					stop = true;
					if (blocked != NULL)
						*blocked = true;
					break;
				}
				continue;		/* aborted: a gap */
			}
			switch (emit(arg, topic, slot))
			{
				case EB_EMIT_TAKEN:
					count++;
					break;
				case EB_EMIT_SKIPPED:
					break;
				case EB_EMIT_STOP:
					stop = true;
					break;
			}
			if (stop)
				break;
		}

		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		index_close(idx, NoLock);
		relation_close(rel, NoLock);
	}
	return count;
}

typedef struct EbReadState
{
	ReturnSetInfo *rsinfo;
	text	   *topic_name;
} EbReadState;

static EbEmitResult
eb_read_emit(void *arg, EbTopic *topic, TupleTableSlot *slot)
{
	EbReadState *st = (EbReadState *) arg;
	Datum		values[8];
	bool		nulls[8];

	slot_getallattrs(slot);
	values[0] = PointerGetDatum(st->topic_name);
	nulls[0] = false;
	values[1] = slot->tts_values[Anum_ev_partition - 1];
	nulls[1] = false;
	values[2] = slot->tts_values[Anum_ev_position - 1];
	nulls[2] = false;
	values[3] = slot->tts_values[Anum_ev_event_id - 1];
	nulls[3] = false;
	values[4] = slot->tts_values[Anum_ev_key - 1];
	nulls[4] = slot->tts_isnull[Anum_ev_key - 1];
	values[5] = slot->tts_values[Anum_ev_value - 1];
	nulls[5] = false;
	values[6] = slot->tts_values[Anum_ev_headers - 1];
	nulls[6] = slot->tts_isnull[Anum_ev_headers - 1];
	values[7] = slot->tts_values[Anum_ev_created_at - 1];
	nulls[7] = false;
	tuplestore_putvalues(st->rsinfo->setResult, st->rsinfo->setDesc, values, nulls);
	return EB_EMIT_TAKEN;
}

/*
 * read(topic text, partition int, after_position bigint, max_events int)
 * returns setof eventbus.event
 */
Datum
eb_read(PG_FUNCTION_ARGS)
{
	char	   *name = eb_arg_name(fcinfo, 0, "topic");
	EbTopic    *topic;
	int32		partition;
	int64		after = -1;
	int32		max_events = 100;
	EbReadState st;

	topic = eb_topic_get(name, false);
	eb_check_read_privilege(topic);
	eb_require_primary();
	eb_arg_not_null(fcinfo, 1, "partition");
	partition = PG_GETARG_INT32(1);
	eb_check_partition_arg(topic, partition);
	if (!PG_ARGISNULL(2))
		after = PG_GETARG_INT64(2);
	if (after < -1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_position must be -1 or more"),
				 errdetail("Positions start at 0; -1 reads from the beginning.")));
	if (!PG_ARGISNULL(3))
		max_events = PG_GETARG_INT32(3);
	if (max_events < 1 || max_events > EB_READ_MAX_EVENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be between 1 and %d", EB_READ_MAX_EVENTS)));

	InitMaterializedSRF(fcinfo, 0);
	st.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	st.topic_name = cstring_to_text(topic->name);
	eb_read_partition(topic, partition, after, max_events, GetActiveSnapshot(),
					  eb_read_emit, &st);
	return (Datum) 0;
}
