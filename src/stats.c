/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Monotonic per-topic counters for monitoring: events published,
 *	  positions consumed (committed by groups), events dead-lettered by
 *	  groups, events relayed to Kafka; eventbus.topic_stats shows them.
 *
 * The counters live in the topic's and partitions' shared-memory slots as
 * atomics, so counting takes no lock.  Published, consumed and
 * dead-lettered count only what commits: a transaction notes its counts
 * here, per topic and subtransaction level (a rolled-back subtransaction's
 * counts are dropped), and adds them to the topic's slot in its commit
 * callback.  A prepared transaction's counts are dropped (it may still roll
 * back).  Relayed is added by the relay worker when Kafka acknowledges an
 * event (relay_worker.c).
 *
 * The counters start at zero when the slot is taken (at server start, the
 * first time the topic is used; again if the slot was reclaimed), and
 * stats_reset says when: a monitoring system computes rates with it (a
 * counter that goes down, or a new stats_reset, is a reset).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "settings.h"
#include "catalog.h"
#include "segment.h"
#include "shmem.h"
#include "stats.h"

PG_FUNCTION_INFO_V1(eb_topic_stats);

/* What the current transaction counted, per topic and nesting level. */
typedef struct EbStatNote
{
	EbTopicShared *t;			/* the slot, if known when counted */
	int64		uid;
	int			level;			/* transaction nesting level */
	int64		n[EB_STAT_NKINDS];
} EbStatNote;

static EbStatNote *notes = NULL;
static int	nnotes = 0;
static int	maxnotes = 0;

void
eb_stats_count(EbTopic *topic, EbStatKind kind, int64 n)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	if (n <= 0 || eb_shared == NULL)
		return;
	for (i = 0; i < nnotes; i++)
	{
		if (notes[i].uid == topic->uid && notes[i].level == level)
		{
			notes[i].n[kind] += n;
			if (notes[i].t == NULL)
				notes[i].t = topic->tshared;
			return;
		}
	}
	if (nnotes == maxnotes)
	{
		maxnotes = Max(8, maxnotes * 2);
		notes = notes == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(EbStatNote) * maxnotes) :
			repalloc(notes, sizeof(EbStatNote) * maxnotes);
	}
	memset(&notes[nnotes], 0, sizeof(EbStatNote));
	notes[nnotes].t = topic->tshared;
	notes[nnotes].uid = topic->uid;
	notes[nnotes].level = level;
	notes[nnotes].n[kind] = n;
	nnotes++;
}

/* At the end of a subtransaction: its counts go to the parent, or away. */
void
eb_stats_subxact_end(int nestlevel, bool commit)
{
	int			i;
	int			kept = 0;

	for (i = 0; i < nnotes; i++)
	{
		if (notes[i].level >= nestlevel)
		{
			if (!commit)
				continue;
			notes[i].level = nestlevel - 1;
		}
		notes[kept++] = notes[i];
	}
	nnotes = kept;
}

/* At the end of the top-level transaction: add what committed. */
void
eb_stats_xact_end(bool commit)
{
	int			i;

	for (i = 0; commit && i < nnotes; i++)
	{
		EbStatNote *note = &notes[i];
		EbTopicShared *t = note->t;

		if (t == NULL || !eb_topic_key_matches(t, MyDatabaseId, note->uid))
			t = eb_topic_shared(MyDatabaseId, note->uid, false);
		if (t == NULL)
			continue;			/* no slot: the topic was dropped */
		if (note->n[EB_STAT_PUBLISHED] > 0)
			pg_atomic_fetch_add_u64(&t->stat_published, note->n[EB_STAT_PUBLISHED]);
		if (note->n[EB_STAT_CONSUMED] > 0)
			pg_atomic_fetch_add_u64(&t->stat_consumed, note->n[EB_STAT_CONSUMED]);
		if (note->n[EB_STAT_DEAD_LETTERED] > 0)
			pg_atomic_fetch_add_u64(&t->stat_dead_lettered, note->n[EB_STAT_DEAD_LETTERED]);
	}
	nnotes = 0;
}

/*
 * topic_stats_counters(): the counters of every topic the caller may read
 * (SELECT on the topic) or monitor (pg_monitor).  Zero, with a NULL
 * stats_reset, for a topic not used since the server started.
 */
Datum
eb_topic_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *names;
	ListCell   *lc;
	bool		monitor = has_privs_of_role(GetUserId(), ROLE_PG_MONITOR);

	eb_require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	names = eb_topic_names();
	foreach(lc, names)
	{
		EbTopic    *topic = eb_topic_get((char *) lfirst(lc), true);
		EbTopicShared *t;
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		uint64		relayed = 0;
		TimestampTz reset = 0;
		int32		p;

		if (topic == NULL)
			continue;
		if (!monitor &&
			pg_class_aclcheck(topic->relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			continue;
		t = eb_topic_shared(MyDatabaseId, topic->uid, false);
		values[0] = CStringGetTextDatum(topic->name);
		values[1] = Int64GetDatum(t ? (int64) pg_atomic_read_u64(&t->stat_published) : 0);
		values[2] = Int64GetDatum(t ? (int64) pg_atomic_read_u64(&t->stat_consumed) : 0);
		values[3] = Int64GetDatum(t ? (int64) pg_atomic_read_u64(&t->stat_dead_lettered) : 0);
		for (p = 0; p < topic->partitions; p++)
		{
			EbPartShared *part = eb_part_shared(MyDatabaseId, topic->uid, p, false);

			if (part != NULL)
				relayed += pg_atomic_read_u64(&part->stat_relayed);
		}
		values[4] = Int64GetDatum((int64) relayed);
		if (t != NULL)
		{
			LWLockAcquire(&t->lock, LW_SHARED);
			if (eb_topic_key_matches(t, MyDatabaseId, topic->uid))
				reset = t->stats_reset;
			LWLockRelease(&t->lock);
		}
		values[5] = TimestampTzGetDatum(reset);
		nulls[5] = reset == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
