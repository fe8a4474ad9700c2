/*-------------------------------------------------------------------------
 *
 * position.c
 *	  Assigning positions to events and computing how far a reader may read.
 *
 * A position is taken from the partition's counter in shared memory at
 * publish time, so producers never wait for each other's commit.  Under the
 * same partition lock that hands out a transaction's first position in a
 * partition, that position is registered (shmem.c); the registration stays
 * until the top-level transaction commits, aborts or, once prepared, is
 * committed or rolled back.  The read horizon of a partition is the lowest
 * registered position, or the next position to be handed out if none: no
 * open transaction holds a position below it, so it is also Kafka's last
 * stable offset ('latest' for consumer groups, retention's sealing).
 *
 * A reader (read.c):
 *
 *	1. computes the horizon;
 *	2. scans the partition's index below the horizon with SnapshotAny and,
 *	   for each row, returns it if visible to the reader's snapshot, skips
 *	   it if its inserter aborted, and stops if its inserter is still in
 *	   progress as far as the reader's snapshot is concerned (a transaction
 *	   that committed after the snapshot was taken counts as in progress).
 *
 * Every position below the horizon belongs to a transaction that has ended:
 * committed (its row was inserted before the commit, so the scan finds it)
 * or aborted (a gap).  Registrations end only after the commit is visible,
 * and a transaction that finished after the reader's snapshot is stopped at
 * by step 2.  Hence a reader never returns a position while a lower one may
 * still commit.  A rolled-back subtransaction's positions stay registered
 * until the top-level transaction ends; they become gaps.
 *
 * Locking: the topic lock (shared) is taken before the partition lock
 * (exclusive) to assign; computing the horizon takes the partition lock
 * only, shared (exclusive for a moment when a prepared transaction at the
 * head of the list may have finished).  See shmem.c for the full protocol.
 *
 * After a restart the counters are rebuilt from the tables the first time a
 * partition is used: one past the highest position physically present
 * (committed or not), and never below a segment's recorded start.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/xlog.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "compat.h"
#include "catalog.h"
#include "position.h"
#include "shmem.h"

/* Column types of a segment table, in order. */
static const Oid eb_event_types[Natts_ev] = {
	EB_EVENT_TYPE_OIDS
};

/*
 * Checks that a segment table still has the columns pg_eventbus writes and
 * reads by position (its owner could have altered the topic's parent), and
 * finds its usable (partition, position) and idempotency key indexes.  Looked
 * up each time from the relcache, which follows index changes such as
 * REINDEX CONCURRENTLY.
 */
void
eb_segment_resolve_indexes(EbSegment *seg, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes;
	ListCell   *lc;
	int			i;
	bool		ok = desc->natts == Natts_ev;

	for (i = 0; ok && i < Natts_ev; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != eb_event_types[i])
			ok = false;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("segment table \"%s\" does not have the columns of an event table",
						RelationGetRelationName(rel)),
				 errdetail("Its columns were changed, probably by ALTER TABLE on the topic's table."),
				 errhint("Do not alter the tables in schema %s by hand.", EB_DATA_SCHEMA)));

	seg->pk_index = InvalidOid;
	seg->idem_index = InvalidOid;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup;
		Form_pg_index ix;

		tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		if (!HeapTupleIsValid(tup))
			continue;
		ix = (Form_pg_index) GETSTRUCT(tup);
		if (ix->indisvalid && ix->indisready && ix->indislive)
		{
			if (ix->indnatts == 2 && ix->indisunique &&
				ix->indkey.values[0] == Anum_ev_partition &&
				ix->indkey.values[1] == Anum_ev_position &&
				heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
				heap_attisnull(tup, Anum_pg_index_indpred, NULL))
				seg->pk_index = indexoid;
			else if (ix->indnatts == 1 &&
					 ix->indkey.values[0] == Anum_ev_idempotency_key &&
					 heap_attisnull(tup, Anum_pg_index_indexprs, NULL))
				seg->idem_index = indexoid;
		}
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	if (!OidIsValid(seg->pk_index))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("segment table \"%s\" has no (partition, position) index",
						RelationGetRelationName(rel)),
				 errhint("Do not alter the tables in schema %s by hand.", EB_DATA_SCHEMA)));
}

/*
 * Highest (BackwardScanDirection) or lowest (ForwardScanDirection) position
 * of a partition physically present in a segment, whether committed, in
 * progress or aborted; -1 if none.
 */
int64
eb_segment_edge_position(Relation rel, Oid pk_index, int32 partition,
						 ScanDirection dir)
{
	Relation	idx;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		result = -1;

	idx = index_open(pk_index, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(partition));
	scan = eb_index_beginscan(rel, idx, SnapshotAny, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	slot = table_slot_create(rel, NULL);
	if (index_getnext_slot(scan, dir, slot))
	{
		bool		isnull;

		result = DatumGetInt64(slot_getattr(slot, Anum_ev_position, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	return result;
}

/* Lowest position of a partition still retained; -1 if none. */
int64
eb_first_position(EbTopic *topic, int32 partition)
{
	int			i;

	for (i = 0; i < topic->nsegments; i++)
	{
		EbSegment  *seg = &topic->segments[i];
		Relation	rel = try_relation_open(seg->relid, AccessShareLock);
		int64		result;

		if (rel == NULL)
			continue;
		eb_segment_resolve_indexes(seg, rel);
		result = eb_segment_edge_position(rel, seg->pk_index, partition,
										  ForwardScanDirection);
		relation_close(rel, AccessShareLock);
		if (result >= 0)
			return result;
	}
	return -1;
}

/*
 * First position of a partition whose event was published at or after ts,
 * committed or not; -1 if none.  A linear scan: for seeking, not hot paths.
 */
int64
eb_position_at_time(EbTopic *topic, int32 partition, TimestampTz ts)
{
	int			i;

	for (i = 0; i < topic->nsegments; i++)
	{
		EbSegment  *seg = &topic->segments[i];
		Relation	rel;
		Relation	idx;
		ScanKeyData key;
		IndexScanDesc scan;
		TupleTableSlot *slot;
		int64		result = -1;

		rel = try_relation_open(seg->relid, AccessShareLock);
		if (rel == NULL)
			continue;
		eb_segment_resolve_indexes(seg, rel);
		idx = index_open(seg->pk_index, AccessShareLock);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(partition));
		scan = eb_index_beginscan(rel, idx, SnapshotAny, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		slot = table_slot_create(rel, NULL);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;

			CHECK_FOR_INTERRUPTS();
			if (DatumGetTimestampTz(slot_getattr(slot, Anum_ev_created_at, &isnull)) >= ts)
			{
				result = DatumGetInt64(slot_getattr(slot, Anum_ev_position, &isnull));
				break;
			}
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		index_close(idx, AccessShareLock);
		relation_close(rel, AccessShareLock);
		if (result >= 0)
			return result;
	}
	return -1;
}

/*
 * The segment that receives new events after a restart: the newest one that
 * was activated or already holds rows.
 */
static EbSegment *
eb_pick_current_segment(EbTopic *topic)
{
	int			i;

	if (topic->nsegments == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("topic \"%s\" has no segment table", topic->name)));
	for (i = topic->nsegments - 1; i > 0; i--)
	{
		EbSegment  *seg = &topic->segments[i];
		Relation	rel;
		bool		has_rows = false;

		if (seg->activated)
			return seg;
		rel = try_relation_open(seg->relid, AccessShareLock);
		if (rel != NULL)
		{
			has_rows = RelationGetNumberOfBlocks(rel) > 0;
			relation_close(rel, AccessShareLock);
		}
		if (has_rows)
			return seg;
	}
	return &topic->segments[0];
}

/*
 * A standby cannot know which positions the primary is still writing (that
 * is not in WAL), and state cached during recovery would outlive promotion.
 */
void
eb_require_primary(void)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_eventbus topics cannot be read or written on a standby"),
				 errdetail("A standby does not know which positions the primary is still writing, so it cannot tell which events are safe to read."),
				 errhint("Connect to the primary.")));
}

/* The topic's shared slot, with its current segment known. */
EbTopicShared *
eb_topic_state(EbTopic *topic)
{
	EbTopicShared *t = topic->tshared;

	eb_require_primary();

	for (;;)
	{
		bool		ready;
		bool		stale;
		EbSegment  *cur;

		if (t == NULL)
			t = eb_topic_shared(MyDatabaseId, topic->uid, true);
		LWLockAcquire(&t->lock, LW_SHARED);
		if (!eb_topic_key_matches(t, MyDatabaseId, topic->uid))
		{
			LWLockRelease(&t->lock);
			t = NULL;
			continue;
		}
		ready = t->initialized && t->parent_relid == topic->relid;
		stale = t->initialized && !ready;
		LWLockRelease(&t->lock);
		if (ready)
		{
			topic->tshared = t;
			return t;
		}
		if (stale)
		{
			/*
			 * Initialized for another incarnation of this topic (same uid,
			 * another parent table: dropped and restored from a dump).  Its
			 * segment tables are gone; rebuild from the current ones.
			 */
			LWLockAcquire(&t->lock, LW_EXCLUSIVE);
			if (eb_topic_key_matches(t, MyDatabaseId, topic->uid) &&
				t->initialized && t->parent_relid != topic->relid)
				t->initialized = false;
			LWLockRelease(&t->lock);
		}

		/* No backend can publish while it is uninitialized: compute freely. */
		cur = eb_pick_current_segment(topic);
		LWLockAcquire(&t->lock, LW_EXCLUSIVE);
		if (eb_topic_key_matches(t, MyDatabaseId, topic->uid) && !t->initialized)
		{
			t->parent_relid = topic->relid;
			t->seg_relid = cur->relid;
			t->seg_no = cur->seg_no;
			strlcpy(t->name, topic->name, NAMEDATALEN);
			/* eb_notify_database reads name after initialized, unlocked */
			pg_write_barrier();
			t->initialized = true;
		}
		LWLockRelease(&t->lock);
	}
}

/*
 * Highest position of a partition that a consumer group has stored
 * (committed, or handed to a lease holder), -1 if none.  Groups may store
 * positions of events that rolled back and were vacuumed away ('latest',
 * seek, commit), so counters never restart below them.
 */
static int64
eb_group_position_floor(EbTopic *topic, int32 partition)
{
	static SPIPlanPtr plan = NULL;
	EbSpi		spi;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	int64		floor = -1;
	bool		isnull;
	Datum		d;

	eb_spi_begin(&spi, true);
	eb_spi_plan(&plan,
				"SELECT max(greatest(gp.committed_position, gp.fetched_position)) "
				"FROM eventbus.group_partition gp "
				"JOIN eventbus.consumer_group g USING (group_id) "
				"WHERE g.topic_id = $1 AND gp.partition = $2",
				2, argtypes);
	values[0] = Int32GetDatum(topic->topic_id);
	values[1] = Int32GetDatum(partition);
	eb_spi_run(plan, values, NULL, true);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		floor = DatumGetInt64(d);
	eb_spi_end(&spi);
	return floor;
}

/*
 * Rebuilds a partition's counter from the tables: *next is one past the
 * highest position present anywhere, and not below any recorded segment
 * start or any position a group stored; *seg_start is where segment cur_no
 * begins for this partition.
 */
static void
eb_part_rebuild(EbTopic *topic, int32 partition, int32 cur_no,
				int64 *next, int64 *seg_start)
{
	int64		max_all = -1;
	int64		max_before = -1;
	int64		known_start = 0;
	int64		cur_start = -1;
	int			i;

	for (i = topic->nsegments - 1; i >= 0; i--)
	{
		EbSegment  *seg = &topic->segments[i];
		Relation	rel;
		int64		m;

		if (seg->nstart > partition)
		{
			known_start = Max(known_start, seg->start[partition]);
			if (seg->seg_no == cur_no)
				cur_start = seg->start[partition];
		}
		rel = try_relation_open(seg->relid, AccessShareLock);
		if (rel == NULL)
			continue;
		eb_segment_resolve_indexes(seg, rel);
		m = eb_segment_edge_position(rel, seg->pk_index, partition,
									 BackwardScanDirection);
		relation_close(rel, AccessShareLock);
		if (m < 0)
			continue;
		max_all = Max(max_all, m);
		if (seg->seg_no < cur_no)
		{
			/* Older segments only hold lower positions. */
			max_before = m;
			break;
		}
	}
	/* Segments older than the one we stopped at may still carry starts. */
	for (; i >= 0; i--)
	{
		EbSegment  *seg = &topic->segments[i];

		if (seg->nstart > partition)
			known_start = Max(known_start, seg->start[partition]);
	}
	*next = Max(max_all + 1, known_start);
	*next = Max(*next, eb_group_position_floor(topic, partition) + 1);
	*seg_start = cur_start >= 0 ? cur_start : max_before + 1;
}

/* The partition's shared slot, with its counter initialized. */
EbPartShared *
eb_part_state(EbTopic *topic, int32 partition)
{
	EbPartShared *p;

	Assert(partition >= 0 && partition < topic->partitions);
	eb_require_primary();
	p = topic->pshared[partition];
	for (;;)
	{
		bool		ready;
		bool		stale;
		EbTopicShared *t;
		int32		cur_no;
		int64		next;
		int64		seg_start;

		if (p == NULL)
			p = eb_part_shared(MyDatabaseId, topic->uid, partition, true);
		LWLockAcquire(&p->lock, LW_SHARED);
		if (!eb_part_key_matches(p, MyDatabaseId, topic->uid, partition))
		{
			LWLockRelease(&p->lock);
			p = NULL;
			continue;
		}
		ready = p->initialized && p->parent_relid == topic->relid;
		stale = p->initialized && !ready;
		LWLockRelease(&p->lock);
		if (ready)
		{
			topic->pshared[partition] = p;
			return p;
		}
		/* initialized for a dropped incarnation of the topic: rebuild */
		if (stale && !eb_part_reset_if_stale(p, MyDatabaseId, topic->uid,
											 partition, topic->relid))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("topic \"%s\" was dropped and created again while this transaction publishes to it",
							topic->name),
					 errhint("Commit or roll back the transaction first.")));

		t = eb_topic_state(topic);
		LWLockAcquire(&t->lock, LW_SHARED);
		cur_no = t->seg_no;
		LWLockRelease(&t->lock);

		/* Nobody can assign positions here yet, so the tables hold still. */
		eb_part_rebuild(topic, partition, cur_no, &next, &seg_start);

		LWLockAcquire(&t->lock, LW_SHARED);
		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		if (eb_part_key_matches(p, MyDatabaseId, topic->uid, partition) &&
			!p->initialized &&
			eb_topic_key_matches(t, MyDatabaseId, topic->uid) &&
			t->seg_no == cur_no)
		{
			p->parent_relid = topic->relid;
			p->next_position = next;
			p->seg_no = cur_no;
			p->seg_start = seg_start;
			p->initialized = true;
		}
		LWLockRelease(&p->lock);
		LWLockRelease(&t->lock);
	}
}

/*
 * The segment each topic's current segment was, as this backend last saw
 * it: a hint for eb_assign_positions(), checked under the topic lock
 * before use.  Direct-mapped by topic slot.
 */
#define EB_SEG_HINTS 64

typedef struct EbSegHint
{
	EbTopicShared *t;
	int64		uid;
	Oid			parent_relid;
	Oid			seg_relid;
} EbSegHint;

static EbSegHint seg_hints[EB_SEG_HINTS];

static EbSegHint *
eb_seg_hint(EbTopicShared *t)
{
	return &seg_hints[(t - eb_shared->topics) % EB_SEG_HINTS];
}

/*
 * The fast path of eb_assign_positions(): with the topic's and the
 * partition's slots known and the current segment as last seen, one
 * acquisition of the topic lock (shared) and one of the partition lock.
 * Returns NULL, holding nothing it took, when anything has changed (or the
 * segment's relation lock is not free at once): the caller takes the slow
 * path, which finds everything again.
 */
static Relation
eb_assign_fast(EbTopic *topic, int32 partition, int n, int64 *first)
{
	EbTopicShared *t = topic->tshared;
	EbPartShared *p = topic->pshared[partition];
	EbSegHint  *h;
	Oid			segrelid;
	Relation	rel;
	int32		reg;

	if (t == NULL || p == NULL)
		return NULL;
	h = eb_seg_hint(t);
	if (h->t != t || h->uid != topic->uid || h->parent_relid != topic->relid)
		return NULL;
	segrelid = h->seg_relid;

	/*
	 * Take the relation lock before any LWLock.  Not waiting for it: only
	 * a segment being dropped (a stale hint) would make us wait.
	 */
	if (!ConditionalLockRelationOid(segrelid, RowExclusiveLock))
		return NULL;
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(segrelid)))
	{
		UnlockRelationOid(segrelid, RowExclusiveLock);
		return NULL;
	}
	rel = relation_open(segrelid, NoLock);

	/* may fail (pool exhausted): before any LWLock */
	reg = eb_pending_reserve(p);

	LWLockAcquire(&t->lock, LW_SHARED);
	if (!eb_topic_key_matches(t, MyDatabaseId, topic->uid) || !t->initialized ||
		t->parent_relid != topic->relid || t->seg_relid != segrelid)
	{
		LWLockRelease(&t->lock);
		relation_close(rel, RowExclusiveLock);
		return NULL;
	}
	LWLockAcquire(&p->lock, LW_EXCLUSIVE);
	if (!eb_part_key_matches(p, MyDatabaseId, topic->uid, partition) ||
		!p->initialized || p->parent_relid != topic->relid)
	{
		LWLockRelease(&p->lock);
		LWLockRelease(&t->lock);
		relation_close(rel, RowExclusiveLock);
		return NULL;
	}
	*first = p->next_position;
	p->next_position += n;
	eb_pending_set(p, reg, *first);
	LWLockRelease(&p->lock);
	LWLockRelease(&t->lock);
	return rel;
}

/*
 * Opens the topic's current segment for insertion and takes n consecutive
 * positions in a partition.  The transaction's first position in the
 * partition is registered under the same lock and stays registered until
 * the top-level transaction ends (see the file header).
 *
 * LWLock acquisitions: on the fast path (eb_assign_fast), the topic lock
 * once (shared) and the partition lock once (exclusive), plus the
 * partition lock once more when the transaction ends (shmem.c).  The slow
 * path, taken the first time a backend publishes to a topic and after a
 * segment switch, checks the slots (eb_topic_state, eb_part_state) and
 * reads the current segment under the topic lock first.
 */
Relation
eb_assign_positions(EbTopic *topic, int32 partition, int n, int64 *first)
{
	Relation	rel;

	Assert(n > 0);
	eb_require_primary();
	rel = eb_assign_fast(topic, partition, n, first);
	if (rel != NULL)
		return rel;
	for (;;)
	{
		EbTopicShared *t = eb_topic_state(topic);
		EbPartShared *p = eb_part_state(topic, partition);
		Oid			segrelid;
		int32		reg;
		EbSegHint  *h;

		LWLockAcquire(&t->lock, LW_SHARED);
		if (!eb_topic_key_matches(t, MyDatabaseId, topic->uid))
		{
			LWLockRelease(&t->lock);
			topic->tshared = NULL;
			continue;
		}
		segrelid = t->seg_relid;
		LWLockRelease(&t->lock);

		/* Take the relation lock before any LWLock. */
		rel = try_relation_open(segrelid, RowExclusiveLock);
		if (rel == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the current segment table of topic \"%s\" does not exist",
							topic->name),
					 errhint("The topic may have been dropped concurrently.")));

		/* may fail (pool exhausted): before any LWLock */
		reg = eb_pending_reserve(p);

		LWLockAcquire(&t->lock, LW_SHARED);
		if (!eb_topic_key_matches(t, MyDatabaseId, topic->uid) ||
			t->parent_relid != topic->relid || t->seg_relid != segrelid)
		{
			/* a segment switch happened in between: retry */
			LWLockRelease(&t->lock);
			relation_close(rel, RowExclusiveLock);
			continue;
		}
		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		if (!eb_part_key_matches(p, MyDatabaseId, topic->uid, partition) ||
			!p->initialized || p->parent_relid != topic->relid)
		{
			LWLockRelease(&p->lock);
			LWLockRelease(&t->lock);
			relation_close(rel, RowExclusiveLock);
			topic->pshared[partition] = NULL;
			continue;
		}
		*first = p->next_position;
		p->next_position += n;
		eb_pending_set(p, reg, *first);
		LWLockRelease(&p->lock);
		LWLockRelease(&t->lock);

		h = eb_seg_hint(t);
		h->t = t;
		h->uid = topic->uid;
		h->parent_relid = topic->relid;
		h->seg_relid = segrelid;
		return rel;
	}
}

/*
 * The position the next event of a partition will get.  On a standby it is
 * computed from the tables each time and not cached.
 */
int64
eb_end_position(EbTopic *topic, int32 partition)
{
	int64		next;
	int64		seg_start;

	if (!RecoveryInProgress())
	{
		(void) eb_read_horizon(topic, partition, &next);
		return next;
	}
	eb_part_rebuild(topic, partition, eb_pick_current_segment(topic)->seg_no,
					&next, &seg_start);
	return next;
}

/*
 * The read horizon of a partition (see the file header): the lowest
 * position an open transaction holds, else the next position to be handed
 * out; Kafka's last stable offset.  *end_position, if given, receives the
 * next position to be handed out.
 */
int64
eb_read_horizon(EbTopic *topic, int32 partition, int64 *end_position)
{
	Assert(partition >= 0 && partition < topic->partitions);
	eb_require_primary();

	/* a known slot: eb_part_horizon checks it under its own lock */
	if (topic->pshared[partition] != NULL)
	{
		int64		h = eb_part_horizon(topic->pshared[partition], MyDatabaseId,
										topic->uid, partition, topic->relid,
										end_position);

		if (h >= 0)
			return h;
		topic->pshared[partition] = NULL;
	}
	for (;;)
	{
		EbPartShared *p = eb_part_state(topic, partition);
		int64		h;

		h = eb_part_horizon(p, MyDatabaseId, topic->uid, partition, topic->relid,
							end_position);
		if (h >= 0)
			return h;
		topic->pshared[partition] = NULL;
	}
}
