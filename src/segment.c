/*-------------------------------------------------------------------------
 *
 * segment.c
 *	  Segment tables of a topic: creation, rotation and retention.
 *
 * A topic's events live in tables eventbus_data."<topic>$<n>", children of
 * the topic's parent table eventbus_data."<topic>".  Exactly one segment
 * receives new events (the current one, recorded in shared memory); one
 * newer, empty "spare" segment always exists, created in an earlier
 * transaction, so that switching is a change in shared memory only and
 * every backend already knows the segment it will be told to write to.
 *
 * Switching takes the topic lock exclusively, so every position handed out
 * before the switch is in an older segment and every later one in the new
 * segment; the counters at that moment are the new segment's start
 * positions, which readers use to skip segments.
 *
 * A segment is sealed (eventbus.segment.sealed_at) by the first maintenance
 * pass that finds every partition's read horizon at or past the next
 * segment's start positions: from then on no open transaction holds a
 * position in it, and every committed event in it is readable.  Retention
 * drops a whole segment once it was sealed longer ago than the topic's
 * retention, so events are kept at least that long after readers could
 * first see them, however long a producer transaction held them back: no
 * per-row deletes, no vacuum debt.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "settings.h"
#include "catalog.h"
#include "position.h"
#include "privileged.h"
#include "segment.h"
#include "shmem.h"

typedef struct EbMaintSeg
{
	int32		seg_no;
	Oid			relid;
	bool		activated;
	bool		has_start;
	bool		rotation_due;	/* activated longer ago than retention / 8 */
	bool		expired;		/* sealed longer ago than retention */
	bool		sealed;			/* sealed_at is set */
	int			nstart;			/* start positions, 0 if unknown */
	int64	   *start;
} EbMaintSeg;

static Datum
eb_int8_array(int64 *values, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/*
 * Creates segment seg_no of a topic (its table belongs to the extension
 * owner, see privileged.c) and records it.  The first segment of a topic is
 * created activated, starting every partition at position 0.
 */
void
eb_segment_create(int32 topic_id, const char *topic, int32 seg_no,
				  bool activated, int32 partitions)
{
	EbSpi		spi;
	Oid			relid;
	Oid			argtypes[5] = {INT4OID, INT4OID, OIDOID, BOOLOID, INT4OID};
	Datum		values[5];

	relid = eb_priv_create_segment(topic, seg_no);

	eb_spi_begin(&spi, true);
	values[0] = Int32GetDatum(topic_id);
	values[1] = Int32GetDatum(seg_no);
	values[2] = ObjectIdGetDatum(relid);
	values[3] = BoolGetDatum(activated);
	values[4] = Int32GetDatum(partitions);
	eb_spi_exec("INSERT INTO eventbus.segment "
				"(topic_id, segment, table_oid, activated_at, start_positions) "
				"VALUES ($1, $2, $3::regclass, "
				"CASE WHEN $4 THEN now() END, "
				"CASE WHEN $4 THEN array_fill(0::bigint, ARRAY[$5]) END)",
				5, argtypes, values, NULL, false);
	eb_spi_end(&spi);
	eb_catalog_topic_changed(topic);
}

/* Names of all topics, in the caller's memory context. */
List *
eb_topic_names(void)
{
	EbSpi		spi;
	MemoryContext upper = CurrentMemoryContext;
	List	   *names = NIL;
	uint64		i;

	eb_spi_begin(&spi, true);
	eb_spi_exec("SELECT topic FROM eventbus.topic ORDER BY topic", 0, NULL, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		MemoryContext old = MemoryContextSwitchTo(upper);

		names = lappend(names, pstrdup(name));
		MemoryContextSwitchTo(old);
	}
	eb_spi_end(&spi);
	return names;
}

/* Was the relation created by a transaction other than ours (so committed)? */
static bool
eb_relation_committed(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	bool		committed;

	if (!HeapTupleIsValid(tup))
		return false;
	committed = !TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tup->t_data));
	ReleaseSysCache(tup);
	return committed;
}

static bool
eb_relation_has_blocks(Oid relid)
{
	Relation	rel = try_relation_open(relid, AccessShareLock);
	bool		result = false;

	if (rel != NULL)
	{
		result = RelationGetNumberOfBlocks(rel) > 0;
		relation_close(rel, AccessShareLock);
	}
	return result;
}

/* Start positions of the current segment as recorded in shared memory. */
static int64 *
eb_current_starts(EbTopic *topic, int32 cur_no)
{
	int64	   *starts = palloc(sizeof(int64) * topic->partitions);
	int32		p;

	for (p = 0; p < topic->partitions; p++)
	{
		EbPartShared *part = eb_part_state(topic, p);
		bool		ok;

		LWLockAcquire(&part->lock, LW_SHARED);
		ok = part->seg_no == cur_no;
		starts[p] = part->seg_start;
		LWLockRelease(&part->lock);
		if (!ok)
			return NULL;
	}
	return starts;
}

/*
 * Makes the spare segment current.  Returns its start positions, or NULL if
 * the current segment changed under us.
 */
static int64 *
eb_switch_segment(EbTopic *topic, int32 cur_no, EbMaintSeg *spare)
{
	int32		n = topic->partitions;
	int64	   *starts = palloc(sizeof(int64) * n);
	EbPartShared **parts = palloc(sizeof(EbPartShared *) * n);
	EbTopicShared *t = eb_topic_state(topic);
	int32		p;

	for (p = 0; p < n; p++)
		parts[p] = eb_part_state(topic, p);

	LWLockAcquire(&t->lock, LW_EXCLUSIVE);
	if (!eb_topic_key_matches(t, MyDatabaseId, topic->uid) || t->seg_no != cur_no)
	{
		LWLockRelease(&t->lock);
		return NULL;
	}
	/* No position can be handed out while we hold the topic lock. */
	for (p = 0; p < n; p++)
	{
		bool		ok;

		LWLockAcquire(&parts[p]->lock, LW_SHARED);
		ok = eb_part_key_matches(parts[p], MyDatabaseId, topic->uid, p) &&
			parts[p]->initialized;
		starts[p] = parts[p]->next_position;
		LWLockRelease(&parts[p]->lock);
		if (!ok)
		{
			LWLockRelease(&t->lock);
			return NULL;
		}
	}
	for (p = 0; p < n; p++)
	{
		LWLockAcquire(&parts[p]->lock, LW_EXCLUSIVE);
		parts[p]->seg_no = spare->seg_no;
		parts[p]->seg_start = starts[p];
		LWLockRelease(&parts[p]->lock);
	}
	t->seg_relid = spare->relid;
	t->seg_no = spare->seg_no;
	LWLockRelease(&t->lock);
	return starts;
}

/*
 * Has every partition's read horizon reached next's start positions, so
 * that no open transaction holds a position in the segment before it?
 * Partitions added after next started have no event before it.
 */
static bool
eb_segment_passed(EbTopic *topic, EbMaintSeg *next)
{
	int32		p;

	if (next->nstart == 0)
		return false;
	for (p = 0; p < topic->partitions && p < next->nstart; p++)
	{
		if (eb_read_horizon(topic, p, NULL) < next->start[p])
			return false;
	}
	return true;
}

static void
eb_record_start(int32 topic_id, int32 seg_no, int64 *starts, int n, bool activate_now)
{
	Oid			argtypes[4] = {INT4OID, INT4OID, INT8ARRAYOID, BOOLOID};
	Datum		values[4];

	values[0] = Int32GetDatum(topic_id);
	values[1] = Int32GetDatum(seg_no);
	values[2] = eb_int8_array(starts, n);
	values[3] = BoolGetDatum(activate_now);
	/* recorded start positions are never overwritten */
	eb_spi_exec("UPDATE eventbus.segment "
				"SET activated_at = CASE WHEN $4 THEN now() ELSE coalesce(activated_at, now()) END, "
				"start_positions = coalesce(start_positions, $3) "
				"WHERE topic_id = $1 AND segment = $2",
				4, argtypes, values, NULL, false);
}

/*
 * The versions of a topic's rows in eventbus.topic and eventbus.segment
 * that the active snapshot sees, as text: two snapshots that see the same
 * versions give the same text.
 */
static char *
eb_topic_rows_seen(int32 topic_id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	char	   *seen = NULL;
	EbSpi		spi;
	MemoryContext upper = CurrentMemoryContext;

	eb_spi_begin(&spi, true);
	values[0] = Int32GetDatum(topic_id);
	eb_spi_exec("SELECT (SELECT ctid::text || ':' || xmin::text FROM eventbus.topic "
				"        WHERE topic_id = $1) || ' ' || "
				"coalesce((SELECT string_agg(ctid::text || ':' || xmin::text, ' ' ORDER BY segment) "
				"          FROM eventbus.segment WHERE topic_id = $1), '')",
				1, argtypes, values, NULL, true);
	if (SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v != NULL)
			seen = MemoryContextStrdup(upper, v);
	}
	eb_spi_end(&spi);
	return seen;
}

static void eb_maintain_locked(const char *name, EbMaintReport report, void *arg);

/*
 * One maintenance pass over a topic: record the current segment's start
 * positions if missing, rotate when due, keep a spare segment, and drop
 * segments past retention.  Each step is reported.  Skips the topic if
 * another session is maintaining or altering it.
 *
 * Passes over one topic are serialized by a SHARE UPDATE EXCLUSIVE lock on
 * its parent table, taken without waiting and held to the end of the
 * transaction.  A pass must then see what the pass before it committed:
 * its snapshot may be older than that commit (the worker's transaction, or
 * the statement that called run_maintenance(), began before the lock was
 * free).  At READ COMMITTED the pass takes a new snapshot once it holds the
 * lock; at REPEATABLE READ or SERIALIZABLE, where the snapshot is the
 * transaction's, it skips the topic if the topic's rows changed since.
 */
void
eb_maintain_topic(const char *name, EbMaintReport report, void *arg)
{
	EbTopic    *topic = eb_topic_get(name, true);
	Oid			relid;
	int32		topic_id;

	if (topic == NULL)
		return;
	relid = topic->relid;
	topic_id = topic->topic_id;
	if (!ConditionalLockRelationOid(relid, ShareUpdateExclusiveLock))
	{
		report(arg, name, "skipped", 0, "the topic is being maintained or altered by another session");
		return;
	}
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		return;					/* dropped meanwhile */

	if (!IsolationUsesXactSnapshot())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		eb_maintain_locked(name, report, arg);
		PopActiveSnapshot();
		return;
	}
	else
	{
		char	   *mine = eb_topic_rows_seen(topic_id);
		char	   *latest;

		PushActiveSnapshot(GetLatestSnapshot());
		latest = eb_topic_rows_seen(topic_id);
		PopActiveSnapshot();
		if (mine == NULL || latest == NULL || strcmp(mine, latest) != 0)
		{
			report(arg, name, "skipped", 0,
				   "the topic changed after this transaction's snapshot was taken (another maintenance pass or ALTER); run it in a new transaction");
			return;
		}
		eb_maintain_locked(name, report, arg);
	}
}

/* eb_maintain_topic(), once the topic is locked and the snapshot current */
static void
eb_maintain_locked(const char *name, EbMaintReport report, void *arg)
{
	EbTopic    *topic;
	Oid			relid;
	EbTopicShared *t;
	int32		cur_no;
	EbSpi		spi;
	Oid			argtypes[1] = {INT4OID};
	Oid			seal_types[2] = {INT4OID, INT4OID};
	Datum		values[2];
	EbMaintSeg *segs;
	int			nsegs;
	int			i;
	int			cur_idx = -1;
	int			spare_idx = -1;
	bool		has_retention = false;
	bool		changed = false;

	topic = eb_topic_get(name, true);
	if (topic == NULL)
		return;
	relid = topic->relid;
	/* read it again under the lock and this snapshot; the others stay cached */
	eb_topic_cache_forget(name);
	topic = eb_topic_get(name, true);
	if (topic == NULL || topic->relid != relid)
		return;

	t = eb_topic_state(topic);
	LWLockAcquire(&t->lock, LW_SHARED);
	cur_no = t->seg_no;
	LWLockRelease(&t->lock);

	eb_spi_begin(&spi, true);
	values[0] = Int32GetDatum(topic->topic_id);
	eb_spi_exec("SELECT s.segment, s.table_oid::oid, s.activated_at IS NOT NULL, "
				"s.start_positions IS NOT NULL, "
				"coalesce(s.activated_at < now() - t.retention / 8, false), "
				"coalesce(s.sealed_at < now() - t.retention, false), "
				"t.retention IS NOT NULL, s.sealed_at IS NOT NULL, s.start_positions "
				"FROM eventbus.segment s JOIN eventbus.topic t USING (topic_id) "
				"WHERE s.topic_id = $1 ORDER BY s.segment",
				1, argtypes, values, NULL, true);
	nsegs = (int) SPI_processed;
	segs = palloc0(sizeof(EbMaintSeg) * (nsegs + 1));
	for (i = 0; i < nsegs; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		segs[i].seg_no = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		segs[i].relid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		segs[i].activated = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		segs[i].has_start = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		segs[i].rotation_due = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		segs[i].expired = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
		has_retention = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
		segs[i].sealed = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));
		{
			Datum		d = SPI_getbinval(tup, desc, 9, &isnull);

			if (!isnull)
				segs[i].start = eb_int8_array_values(d, &segs[i].nstart);
		}
		if (segs[i].seg_no == cur_no)
			cur_idx = i;
		else if (segs[i].seg_no > cur_no && spare_idx < 0)
			spare_idx = i;
	}
	if (cur_idx < 0)
		elog(ERROR, "current segment %d of topic \"%s\" is not in eventbus.segment",
			 cur_no, name);

	/* 1. After a restart or a failed switch: record what shared memory knows. */
	if (!segs[cur_idx].activated || !segs[cur_idx].has_start)
	{
		int64	   *starts = eb_current_starts(topic, cur_no);

		if (starts != NULL)
		{
			eb_record_start(topic->topic_id, cur_no, starts, topic->partitions, false);
			segs[cur_idx].activated = segs[cur_idx].has_start = true;
			report(arg, name, "recorded", cur_no, "start positions of the current segment");
			changed = true;
		}
	}

	/*
	 * 2. Rotate when the current segment is old enough and not empty.  A
	 * spare that was already activated means shared memory is behind the
	 * catalog, which must not happen: refuse rather than reuse positions.
	 */
	if (spare_idx >= 0 && segs[spare_idx].activated)
	{
		report(arg, name, "skipped", segs[spare_idx].seg_no,
			   "the next segment is already active; shared memory is behind the catalog");
		spare_idx = -2;
	}
	if (has_retention && segs[cur_idx].rotation_due && spare_idx >= 0 &&
		eb_relation_has_blocks(segs[cur_idx].relid) &&
		eb_relation_committed(segs[spare_idx].relid))
	{
		int64	   *starts = eb_switch_segment(topic, cur_no, &segs[spare_idx]);

		if (starts != NULL)
		{
			eb_record_start(topic->topic_id, segs[spare_idx].seg_no, starts,
							topic->partitions, true);
			segs[spare_idx].activated = segs[spare_idx].has_start = true;
			segs[spare_idx].expired = false;
			segs[spare_idx].start = starts;
			segs[spare_idx].nstart = topic->partitions;
			cur_no = segs[spare_idx].seg_no;
			cur_idx = spare_idx;
			spare_idx = cur_idx + 1 < nsegs ? cur_idx + 1 : -1;
			report(arg, name, "rotated", cur_no, NULL);
			changed = true;
		}
	}

	/* 3. Keep one spare segment ahead of the current one. */
	if (spare_idx == -1)
	{
		int32		seg_no = segs[nsegs - 1].seg_no + 1;

		eb_segment_create(topic->topic_id, name, seg_no, false, topic->partitions);
		report(arg, name, "created", seg_no, "spare segment");
		changed = true;
	}

	/*
	 * 3b. Seal the older segments that no open transaction holds a position
	 * in any more (the read horizon passed the next segment's start in every
	 * partition).  Horizons only grow, so segments are sealed in order.
	 */
	for (i = 0; i < cur_idx; i++)
	{
		if (segs[i].sealed)
			continue;
		if (!eb_segment_passed(topic, &segs[i + 1]))
			break;
		values[0] = Int32GetDatum(topic->topic_id);
		values[1] = Int32GetDatum(segs[i].seg_no);
		eb_spi_exec("UPDATE eventbus.segment SET sealed_at = now() "
					"WHERE topic_id = $1 AND segment = $2 AND sealed_at IS NULL",
					2, seal_types, values, NULL, false);
		segs[i].sealed = true;
	}

	/*
	 * 4. Drop segments sealed longer ago than the retention: every event in
	 * them has been readable at least that long.
	 */
	for (i = 0; has_retention && i < cur_idx; i++)
	{
		Datum		dvalues[2];
		Oid			dtypes[2] = {INT4OID, INT4OID};

		if (!segs[i].sealed || !segs[i].expired)
			break;
		if (!ConditionalLockRelationOid(segs[i].relid, AccessExclusiveLock))
		{
			report(arg, name, "skipped", segs[i].seg_no,
				   "segment past retention is in use; will retry");
			break;
		}
		eb_priv_drop_segment(name, segs[i].seg_no, segs[i].relid, topic->relid);
		dvalues[0] = Int32GetDatum(topic->topic_id);
		dvalues[1] = Int32GetDatum(segs[i].seg_no);
		eb_spi_exec("DELETE FROM eventbus.segment WHERE topic_id = $1 AND segment = $2",
					2, dtypes, dvalues, NULL, false);
		report(arg, name, "dropped", segs[i].seg_no, "past retention");
		changed = true;
	}

	eb_spi_end(&spi);
	if (changed)
		eb_catalog_topic_changed(name);
}
