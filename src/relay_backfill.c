/*-------------------------------------------------------------------------
 *
 * relay_backfill.c
 *	  Backfills of the Kafka relay: events committed before relay_topic()
 *	  (start_at 'earliest', a timestamp, 'last_acknowledged'), or before the
 *	  relay had a usable slot, sent from the topic's tables; then the relay
 *	  goes on from WAL with no gap and no duplicate at the seam.
 *
 * The seam.  relay_topic() and stop_relay() lock every segment table of
 * the topic in SHARE ROW EXCLUSIVE mode (eb_backfill_lock_publishers): it
 * conflicts with the ROW EXCLUSIVE lock publish takes on the segment before
 * it is given positions, so transactions publishing to the topic end first
 * and later ones wait for the caller's commit.  Then, per partition, the
 * handover is the partition's next position: every position below it
 * belongs to a transaction that ended before the mapping committed (so WAL
 * never relays it under the new mapping), every position at or above it to
 * one that commits after (so WAL relays it, decoded with a historic
 * snapshot that sees the mapping).  The backfill sends the committed events
 * of positions next_position up to handover (exclusive) from the topic's
 * tables.  The same lock makes the relay decision per transaction: a
 * transaction publishing to a topic cannot span a change of its mapping.
 *
 * Before the slot is usable (it does not exist, is being created, or was
 * invalidated), WAL cannot cover what commits after the call: relay_topic()
 * then records the rows with handover NULL (seam_position: the next
 * positions at the call).  The relay decides the handover when its slot is
 * ready, before decoding anything: it waits for every transaction that may
 * have seen the slot not ready (those that were running when the session
 * of the new slot began), takes the same locks and records the partitions'
 * next positions.  Events of positions seam_position up to handover that
 * WAL does decode (committed after the slot's consistent point) are left to
 * the backfill (eb_backfill_wal_skips), so each is sent once.
 *
 * Progress (eventbus.relay_backfill_progress) moves only after Kafka
 * acknowledged a whole batch (or refused a message for good and its
 * topic's on_error policy was applied), in a transaction of its own, so a
 * backfill survives a restart: at worst the last batch is sent again, with
 * the same event ids.  One batch (at most relay_backfill_batch messages, within
 * the worker's in-flight room) is in flight at a time, read below the read
 * horizon as the worker's (superuser) role through the segment registry by
 * OID (read.c), and handed to the producer as a transaction of its own in
 * the worker's acknowledgement FIFO, so the slot is confirmed as before.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "parser/scansup.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/latch.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "compat.h"
#include "catalog.h"
#include "position.h"
#include "privileged.h"
#include "read.h"
#include "relay.h"
#include "relay_int.h"
#include "shmem.h"
#include "util.h"

/* messages of one batch at most: eventbus.relay_backfill_batch */
int			eb_relay_backfill_batch = 10000;

/*
 * Bytes (values and keys) of one batch at most, whatever
 * relay_backfill_batch says: under exactly-once a batch is one Kafka
 * transaction, which must be delivered and committed within
 * transaction.timeout.ms (60 s), and a batch larger than the producer's
 * queue (queue.buffering.max.kbytes, 1 GiB) blocks eb_relay_send() inside
 * the batch's transaction until Kafka takes the rest.
 */
#define EB_BACKFILL_BATCH_BYTES ((int64) 64 * 1024 * 1024)
/* how long a new slot's relay waits for older transactions, at most */
#define EB_BACKFILL_BARRIER_MS 10000
/* how often the relay looks for backfill work when there was none */
#define EB_BACKFILL_CHECK_MS 1000

/* backfill rows looked at per pass for one that can go on */
#define EB_BACKFILL_CANDIDATES 256

/* a backfill row that may give the next batch */
typedef struct EbBackfillCandidate
{
	int32		topic_id;
	char	   *name;
	int32		partition;
	int64		next;
	int64		handover;
	TimestampTz started_at;
} EbBackfillCandidate;

/* A partition's positions left to the backfill: WAL skips them. */
typedef struct EbSeam
{
	int32		topic_id;
	int32		partition;
	int64		from;			/* seam_position */
	int64		upto;			/* handover */
} EbSeam;

/* The batch in flight. */
typedef struct EbBatch
{
	bool		active;
	int32		topic_id;
	int32		partition;
	TimestampTz started_at;		/* identifies the backfill's row */
	int64		old_next;
	int64		new_next;
	int64		sent;
	int64		acked;
	int64		queued;			/* of those sent, handed to the producer
								 * (not refused before sending) */
	int64		bytes;			/* of the queued messages */
} EbBatch;

typedef struct EbFillState
{
	EbRelayTarget *target;
	int64		stop_at;		/* Min(handover, horizon) */
	int64		last;
	int64		sent;
	int64		bytes;			/* of the messages sent */
	bool		full;			/* stopped at EB_BACKFILL_BATCH_BYTES */
	MemoryContext row_cxt;
} EbFillState;

static EbBatch batch;
static uint64 batch_gen = 0;
static EbSeam *seams = NULL;
static int	nseams = 0;
static TimestampTz checked_at = 0;
static bool check_now = true;
static bool save_unflushed = false;	/* a batch's row saved, not yet flushed */

/* ---------- the lock and the slot ---------- */

/*
 * Locks every segment table of the topic in SHARE ROW EXCLUSIVE mode (see
 * the file header), and the current one too if a switch made it one the
 * catalog did not list yet.  Held to the end of the transaction.
 */
void
eb_backfill_lock_publishers(EbTopic *topic)
{
	int			i;
	Oid			current;
	EbTopicShared *t;

	for (i = 0; i < topic->nsegments; i++)
		LockRelationOid(topic->segments[i].relid, ShareRowExclusiveLock);
	t = eb_topic_state(topic);
	LWLockAcquire(&t->lock, LW_SHARED);
	current = t->initialized ? t->seg_relid : InvalidOid;
	LWLockRelease(&t->lock);
	if (OidIsValid(current))
		LockRelationOid(current, ShareRowExclusiveLock);
}

/* Has the relay of this database a slot it decodes from (persistent, valid)? */
static bool
eb_backfill_slot_ready(void)
{
	char		name[NAMEDATALEN];
	ReplicationSlot *s;
	bool		ready = false;

	eb_relay_slot_name(MyDatabaseId, name);
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(name, false);
	if (s != NULL)
	{
		SpinLockAcquire(&s->mutex);
		ready = s->data.persistency == RS_PERSISTENT &&
			eb_slot_invalidation_reason(&s->data) == NULL;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return ready;
}

/* ---------- relay_topic() and stop_relay() ---------- */

/*
 * Parses relay_topic()'s start_at: 'now', 'earliest', 'last_acknowledged'
 * (in any case, with spaces around, as PostgreSQL reads its own special
 * timestamp words: 'NOW' is the keyword, not the timestamp of now) or a
 * timestamp (*ts).
 */
typedef struct EbParseTime
{
	const char *text;
	TimestampTz ts;
} EbParseTime;

static void
eb_backfill_parse_time(void *arg)
{
	EbParseTime *pt = (EbParseTime *) arg;

	pt->ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
													 CStringGetDatum(pt->text),
													 ObjectIdGetDatum(InvalidOid),
													 Int32GetDatum(-1)));
}

EbBackfillStart
eb_backfill_parse_start(const char *start_at, TimestampTz *ts)
{
	EbParseTime pt;
	const char *word = start_at;
	size_t		len;

	*ts = 0;
	while (scanner_isspace(*word))
		word++;
	len = strlen(word);
	while (len > 0 && scanner_isspace(word[len - 1]))
		len--;
	if (len == 3 && pg_strncasecmp(word, "now", len) == 0)
		return EB_START_NOW;
	if (len == 8 && pg_strncasecmp(word, "earliest", len) == 0)
		return EB_START_EARLIEST;
	if (len == 17 && pg_strncasecmp(word, "last_acknowledged", len) == 0)
		return EB_START_LAST_ACKNOWLEDGED;
	pt.text = start_at;
	pt.ts = 0;
	if (eb_run_in_subxact(eb_backfill_parse_time, &pt) == NULL &&
		!TIMESTAMP_NOT_FINITE(pt.ts))
	{
		*ts = pt.ts;
		return EB_START_TIME;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid start_at: \"%s\"", start_at),
			 errdetail("start_at is 'now' (events committed after the call), 'earliest' (first every retained event), 'last_acknowledged' (first the events after the last position Kafka acknowledged) or a finite timestamp with time zone (first the retained events published at or after it).")));
	return EB_START_NOW;		/* keep compiler quiet */
}

/*
 * relay_topic(): takes the lock of the seam and records the topic's
 * backfill, if any: with start_at 'now' and a usable slot there is none
 * (an unfinished one goes on).  Returns false when the relay's slot was not
 * usable (the handover is then decided by the relay).
 */
bool
eb_backfill_begin(EbTopic *topic, EbBackfillStart start, TimestampTz ts,
				  const char *start_at)
{
	int64	   *first = palloc(sizeof(int64) * topic->partitions);
	bool		ready;
	int32		p;
	EbSpi		spi;
	TimestampTz now = GetCurrentTimestamp();

	if (start == EB_START_TIME)
		/* a linear scan: before the lock, which makes publishers wait */
		for (p = 0; p < topic->partitions; p++)
			first[p] = eb_position_at_time(topic, p, ts);
	else if (start == EB_START_LAST_ACKNOWLEDGED)
		for (p = 0; p < topic->partitions; p++)
		{
			EbPartShared *part = eb_part_state(topic, p);
			int64		relayed;

			LWLockAcquire(&part->lock, LW_SHARED);
			relayed = part->relayed_position;
			LWLockRelease(&part->lock);
			if (relayed < 0 && eb_end_position(topic, p) > eb_first_position(topic, p))
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("the last position Kafka acknowledged of partition %d of topic \"%s\" is not known",
								p, topic->name),
						 errdetail("The relay keeps it in shared memory, from its first acknowledgement since the server started."),
						 errhint("Give start_at as a timestamp: the events published at or after it are sent again.")));
			first[p] = relayed + 1;
		}

	eb_backfill_lock_publishers(topic);
	ready = eb_backfill_slot_ready();
	if (start == EB_START_NOW && ready)
		return true;
	if (!OidIsValid(eb_relay_catalog_relid("relay_backfill_progress")))
		return ready;

	eb_spi_begin(&spi, true);
	for (p = 0; p < topic->partitions; p++)
	{
		Oid			argtypes[7] = {INT4OID, INT4OID, TEXTOID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID};
		Datum		values[7];
		char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
		int64		next;

		(void) eb_read_horizon(topic, p, &next);
		values[0] = Int32GetDatum(topic->topic_id);
		values[1] = Int32GetDatum(p);
		values[2] = CStringGetTextDatum(start_at);
		switch (start)
		{
			case EB_START_EARLIEST:
				values[3] = Int64GetDatum(0);
				break;
			case EB_START_TIME:
				values[3] = Int64GetDatum(first[p] < 0 ? next : Min(first[p], next));
				break;
			case EB_START_LAST_ACKNOWLEDGED:
				values[3] = Int64GetDatum(Max(Min(first[p], next), 0));
				break;
			default:
				values[3] = Int64GetDatum(next);
				break;
		}
		values[4] = Int64GetDatum(next);
		values[5] = Int64GetDatum(next);
		nulls[5] = ready ? ' ' : 'n';
		values[6] = TimestampTzGetDatum(now);
		/* an unfinished backfill of the topic is continued, not dropped */
		eb_spi_exec("INSERT INTO eventbus.relay_backfill_progress AS b "
					"(topic_id, partition, start_at, first_position, next_position, seam_position, handover, started_at) "
					"VALUES ($1, $2, $3, $4, $4, $5, $6, $7) "
					"ON CONFLICT (topic_id, partition) DO UPDATE SET "
					"start_at = excluded.start_at, "
					"first_position = CASE WHEN b.handover IS NULL OR b.next_position < b.handover "
					"THEN least(b.next_position, excluded.first_position) ELSE excluded.first_position END, "
					"next_position = CASE WHEN b.handover IS NULL OR b.next_position < b.handover "
					"THEN least(b.next_position, excluded.next_position) ELSE excluded.next_position END, "
					"seam_position = excluded.seam_position, handover = excluded.handover, "
					"started_at = excluded.started_at, completed_at = NULL",
					7, argtypes, values, nulls, false);
	}
	eb_spi_end(&spi);
	return ready;
}

/* stop_relay(): takes the lock of the seam and ends the topic's backfill. */
void
eb_backfill_end(EbTopic *topic)
{
	EbSpi		spi;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];

	eb_backfill_lock_publishers(topic);
	if (!OidIsValid(eb_relay_catalog_relid("relay_backfill_progress")))
		return;
	values[0] = Int32GetDatum(topic->topic_id);
	eb_spi_begin(&spi, true);
	eb_spi_exec("DELETE FROM eventbus.relay_backfill_progress WHERE topic_id = $1",
				1, argtypes, values, NULL, false);
	eb_spi_end(&spi);
}

/* ---------- the relay worker ---------- */

/* Is position of the partition left to a backfill (WAL skips it)? */
bool
eb_backfill_wal_skips(int32 topic_id, int32 partition, int64 position)
{
	int			i;

	for (i = 0; i < nseams; i++)
		if (seams[i].topic_id == topic_id && seams[i].partition == partition &&
			position >= seams[i].from && position < seams[i].upto)
			return true;
	return false;
}

/*
 * Decides the handover of backfills recorded while the relay had no usable
 * slot: locks each such topic as relay_topic() does and records the
 * partitions' next positions.  In a transaction.
 */
static void
eb_backfill_resolve_pending(void)
{
	EbSpi		spi;
	List	   *names = NIL;
	ListCell   *lc;
	uint64		i;

	eb_spi_begin(&spi, true);
	eb_spi_exec("SELECT DISTINCT t.topic FROM eventbus.relay_backfill_progress b "
				"JOIN eventbus.topic t USING (topic_id) WHERE b.handover IS NULL ORDER BY 1",
				0, NULL, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);

		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		MemoryContextSwitchTo(old);
	}
	eb_spi_end(&spi);

	foreach(lc, names)
	{
		EbTopic    *topic = eb_topic_get((char *) lfirst(lc), true);
		int32		p;

		if (topic == NULL)
			continue;
		LockRelationOid(topic->relid, ShareUpdateExclusiveLock);
		eb_backfill_lock_publishers(topic);
		eb_spi_begin(&spi, true);

		/*
		 * Partitions added (alter_topic) since relay_topic() recorded the
		 * backfill: every event of theirs was published since, so they are
		 * sent from their first positions.
		 */
		{
			Oid			argtypes[2] = {INT4OID, INT4OID};
			Datum		values[2];

			values[0] = Int32GetDatum(topic->topic_id);
			values[1] = Int32GetDatum(topic->partitions);
			eb_spi_exec("INSERT INTO eventbus.relay_backfill_progress "
						"(topic_id, partition, start_at, first_position, next_position, seam_position, handover, started_at) "
						"SELECT b.topic_id, p, b.start_at, 0, 0, 0, NULL, b.started_at "
						"FROM (SELECT topic_id, start_at, started_at FROM eventbus.relay_backfill_progress "
						"WHERE topic_id = $1 AND handover IS NULL LIMIT 1) b, generate_series(0, $2 - 1) p "
						"ON CONFLICT (topic_id, partition) DO NOTHING",
						2, argtypes, values, NULL, false);
		}
		for (p = 0; p < topic->partitions; p++)
		{
			Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
			Datum		values[3];
			int64		next;

			(void) eb_read_horizon(topic, p, &next);
			values[0] = Int32GetDatum(topic->topic_id);
			values[1] = Int32GetDatum(p);
			values[2] = Int64GetDatum(next);

			eb_spi_exec("UPDATE eventbus.relay_backfill_progress SET handover = greatest($3, seam_position) "
						"WHERE topic_id = $1 AND partition = $2 AND handover IS NULL",
						3, argtypes, values, NULL, false);
		}
		eb_spi_end(&spi);
	}
}

/* Loads the seams WAL leaves to backfills.  In a transaction. */
static void
eb_backfill_load_seams(void)
{
	EbSpi		spi;
	uint64		i;

	eb_spi_begin(&spi, true);
	eb_spi_exec("SELECT topic_id, partition, seam_position, handover FROM eventbus.relay_backfill_progress "
				"WHERE handover > seam_position",
				0, NULL, NULL, NULL, true);
	if (seams != NULL)
		pfree(seams);
	seams = MemoryContextAlloc(TopMemoryContext, sizeof(EbSeam) * (SPI_processed + 1));
	nseams = 0;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		seams[nseams].topic_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		seams[nseams].partition = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		seams[nseams].from = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		seams[nseams].upto = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		nseams++;
	}
	eb_spi_end(&spi);
}

/*
 * Did the relay create its slot for this session?  Then transactions that
 * began before may have seen it unusable (relay_topic() recorded a pending
 * backfill): wait for them to end, at most EB_BACKFILL_BARRIER_MS (a
 * pending backfill committed later still gets its handover, from
 * eb_backfill_fill(); events WAL relayed meanwhile may then be sent twice,
 * never lost).
 */
static void
eb_backfill_wait_older_transactions(void)
{
	EbRelayShared *r = eb_relay_state(MyDatabaseId);
	bool		created;
	VirtualTransactionId *vxids;
	int			n;
	int			i;
	TimestampTz deadline;

	if (r == NULL)
		return;
	SpinLockAcquire(&r->mutex);
	created = strcmp(r->state, "creating slot") == 0;
	SpinLockRelease(&r->mutex);
	if (!created)
		return;
	vxids = GetCurrentVirtualXIDs(InvalidTransactionId, false, false, 0, &n);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EB_BACKFILL_BARRIER_MS);
	for (i = 0; i < n; i++)
	{
		while (!VirtualXactLock(vxids[i], false))
		{
			if (GetCurrentTimestamp() >= deadline)
			{
				ereport(LOG,
						(errmsg("pg_eventbus relay: transactions that began before the relay's slot existed are still open; going on without waiting for them"),
						 errdetail("A relay_topic() call among them that has not committed yet may have its first events sent twice.")));
				return;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 10L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
}

/*
 * A relay session begins: forget the batch of the previous one (what it did
 * not save is sent again), decide pending handovers and load the seams,
 * before anything is decoded.
 */
void
eb_backfill_session_start(void)
{
	batch.active = false;
	batch_gen++;
	check_now = true;
	nseams = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	eb_backfill_wait_older_transactions();
	CommitTransactionCommand();

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(eb_relay_catalog_relid("relay_backfill_progress")))
	{
		eb_backfill_resolve_pending();
		CommandCounterIncrement();
		eb_backfill_load_seams();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* Kafka acknowledged a message of the batch (arg: its generation). */
static void
eb_backfill_acked(void *arg)
{
	if ((uint64) (uintptr_t) arg == batch_gen && batch.active)
		batch.acked++;
}

static EbEmitResult
eb_backfill_emit(void *arg, EbTopic *topic, TupleTableSlot *slot)
{
	EbFillState *st = (EbFillState *) arg;
	bool		isnull;
	int64		position = DatumGetInt64(slot_getattr(slot, Anum_ev_position, &isnull));
	MemoryContext old;

	if (isnull)
		return EB_EMIT_SKIPPED;
	Assert(position < st->stop_at); /* the read ends there */
	if (st->sent > 0 && st->bytes >= EB_BACKFILL_BATCH_BYTES)
	{
		/* not taken: the next batch begins with it */
		st->full = true;
		return EB_EMIT_STOP;
	}
	old = MemoryContextSwitchTo(st->row_cxt);
	{
		EbRelayMessage m;

		/* counted only when sent: the batch waits for as many acks */
		if (eb_relay_stored_message(st->target, slot, &m))
		{
			int64		in_flight = eb_in_flight;

			batch.sent++;
			m.on_ack = eb_backfill_acked;
			m.on_ack_arg = (void *) (uintptr_t) batch_gen;
			st->bytes += m.valuelen + m.keylen;
			eb_relay_send(&m);
			if (eb_in_flight > in_flight)
			{
				batch.queued++;
				batch.bytes += m.valuelen + m.keylen;
			}
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->row_cxt);
	st->last = position;
	st->sent++;
	return EB_EMIT_TAKEN;
}

/*
 * Records that Kafka has a backfill's batch: the row of the backfill
 * (topic, partition, started_at) whose next position is still the batch's
 * first moves to the batch's end; any other row is left alone.  In a
 * transaction.  Returns whether the row moved.
 */
static bool
eb_backfill_save(int32 topic_id, int32 partition, TimestampTz started_at,
				 int64 old_next, int64 new_next)
{
	EbSpi		spi;
	Oid			argtypes[5] = {INT4OID, INT4OID, TIMESTAMPTZOID, INT8OID, INT8OID};
	Datum		values[5];
	bool		moved;

	values[0] = Int32GetDatum(topic_id);
	values[1] = Int32GetDatum(partition);
	values[2] = TimestampTzGetDatum(started_at);
	values[3] = Int64GetDatum(old_next);
	values[4] = Int64GetDatum(new_next);
	eb_spi_begin(&spi, true);
	eb_spi_exec("UPDATE eventbus.relay_backfill_progress SET next_position = $5, "
				"completed_at = CASE WHEN $5 >= handover THEN pg_catalog.clock_timestamp() END "
				"WHERE topic_id = $1 AND partition = $2 AND started_at = $3 AND next_position = $4",
				5, argtypes, values, NULL, false);
	moved = SPI_processed > 0;
	eb_spi_end(&spi);
	if (moved)
		save_unflushed = true;
	return moved;
}

/*
 * Ends the worker's transaction of eb_backfill_fill() or
 * eb_backfill_recover().  A batch saved in it is flushed to disk before
 * anything else happens, whatever synchronous_commit says: under
 * exactly-once the next Kafka commit's progress record names only the next
 * batch, so a save lost in a crash would have the saved batch sent again.
 */
static void
eb_backfill_end_xact(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (save_unflushed)
	{
		XLogFlush(XactLastCommitEnd);
		save_unflushed = false;
	}
}

/*
 * Exactly-once: the progress record of a Kafka transaction carries the
 * batch it holds (at most one: the next batch is sent only after this one
 * was acknowledged, which under exactly-once means after the commit), as
 * "backfill": [topic_id, partition, started_at, old_next, new_next,
 * messages, bytes] (the messages handed to the producer, which are the
 * batch's messages in Kafka once it committed; records of earlier
 * versions: the first five).  The
 * batch's row is saved in the next pass of the worker's loop, before the
 * next Kafka commit, so when the relay stops between the commit and the
 * save, the record of that commit is the last one Kafka has: at the next
 * start eb_backfill_recover() saves the batch from it instead of sending
 * it again.  Appends nothing when no unsaved batch is in flight.
 */
void
eb_backfill_progress_note(StringInfo buf)
{
	if (!batch.active || batch.acked >= batch.sent)
		return;
	appendStringInfo(buf, ", \"backfill\": [%d, %d, " INT64_FORMAT ", " INT64_FORMAT ", " INT64_FORMAT ", " INT64_FORMAT ", " INT64_FORMAT "]",
					 batch.topic_id, batch.partition, (int64) batch.started_at,
					 batch.old_next, batch.new_next, batch.queued, batch.bytes);
}

/*
 * Counts a batch eb_backfill_recover() saved (see eb_ack_count_recovered):
 * the record's relay_txn names its Kafka transaction.  In the caller's
 * transaction.
 */
static void
eb_backfill_count_recovered(const char *record, int32 topic_id, int32 partition,
							int64 last_position, int64 messages, int64 bytes)
{
	const char *p = strstr(record, "\"relay_txn\": \"");
	const char *end;
	char		relay_txn[64];
	char		why[EB_RELAY_ERROR_LEN];
	EbRelayTarget *t;
	EbPartShared *part = NULL;
	int64		uid = 0;

	if (p == NULL)
		return;
	p += strlen("\"relay_txn\": \"");
	end = strchr(p, '"');
	if (end == NULL || end - p >= (ptrdiff_t) sizeof(relay_txn))
		return;
	memcpy(relay_txn, p, end - p);
	relay_txn[end - p] = '\0';

	/* the partition's slot as the batch's messages had it (a topic no
	 * longer relayed: its position no longer matters, its events count) */
	t = eb_relay_stored_target(topic_id, why, sizeof(why));
	if (t != NULL)
		part = eb_relay_target_part(t, partition, &uid);
	eb_ack_count_recovered(relay_txn, part, uid, partition, last_position,
						   messages, bytes);
}

/*
 * At the start of an exactly-once session, before any batch is sent: the
 * batch that the last progress record in Kafka carries is in Kafka; if its
 * row still says it is to be sent (next_position is the batch's first), it
 * is saved now.  record: that record's text, or NULL.  Idempotent: a row
 * that moved on, or another backfill of the topic, is left alone.  The
 * record is Kafka's: whoever may write the progress topic can make a batch
 * count as sent, as a forged commit LSN makes transactions count as sent
 * (the topic's ACLs protect both, docs/relay.md).
 */
void
eb_backfill_recover(const char *record)
{
	const char *p;
	int32		topic_id,
				partition;
	int64		started_at,
				old_next,
				new_next,
				messages = 0,
				bytes = 0;
	int			fields;

	if (record == NULL || (p = strstr(record, "\"backfill\": [")) == NULL)
		return;
	fields = sscanf(p + strlen("\"backfill\": ["),
					"%d, %d, " INT64_FORMAT ", " INT64_FORMAT ", " INT64_FORMAT ", " INT64_FORMAT ", " INT64_FORMAT,
					&topic_id, &partition, &started_at, &old_next, &new_next,
					&messages, &bytes);
	if (fields < 5 || old_next < 0 || new_next < old_next)
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(eb_relay_catalog_relid("relay_backfill_progress")) &&
		eb_backfill_save(topic_id, partition, (TimestampTz) started_at, old_next, new_next))
	{
		ereport(LOG,
				(errmsg("pg_eventbus relay: Kafka has the backfill batch of positions " INT64_FORMAT " to " INT64_FORMAT " of partition %d (topic id %d); it is not sent again",
						old_next, new_next - 1, partition, topic_id)));
		/* counted, unless the relay saw that Kafka transaction commit */
		if (fields == 7 && messages > 0 && messages <= new_next - old_next &&
			bytes >= 0)
			eb_backfill_count_recovered(record, topic_id, partition,
										new_next - 1, messages, bytes);
	}
	eb_backfill_end_xact();
}

/*
 * Called by the relay worker's loop outside decoding: saves the progress
 * of the batch in flight once Kafka acknowledged all of it, and then sends
 * the next batch (at most max_messages) of a backfill, if any, as a
 * transaction of its own ending at sink->read_lsn.  Returns the number of
 * messages handed to the producer.
 */
int
eb_backfill_fill(EbBackfillSink *sink, int max_messages)
{
	EbSpi		spi;
	EbFillState st;
	EbTopic    *topic;
	EbBackfillCandidate *cand;
	EbBackfillCandidate *c = NULL;
	int			ncand;
	int			i;
	int32		refused = -1;
	char		why[EB_RELAY_ERROR_LEN];
	int64		next;
	int64		handover;
	int64		horizon;
	int			limit;
	bool		blocked = false;
	TimestampTz now = GetCurrentTimestamp();
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	if (batch.active && batch.acked < batch.sent)
		return 0;
	if (!batch.active && !check_now &&
		!TimestampDifferenceExceeds(checked_at, now, EB_BACKFILL_CHECK_MS))
		return 0;
	if (max_messages <= 0 && !batch.active)
		return 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!OidIsValid(eb_relay_catalog_relid("relay_backfill_progress")))
	{
		eb_backfill_end_xact();
		checked_at = now;
		check_now = false;
		return 0;
	}
	if (batch.active)
	{
		(void) eb_backfill_save(batch.topic_id, batch.partition, batch.started_at,
								batch.old_next, batch.new_next);
		batch.active = false;
		CommandCounterIncrement();
	}
	checked_at = now;
	check_now = false;
	if (max_messages <= 0)
	{
		eb_backfill_end_xact();
		check_now = true;
		return 0;
	}

	/* handovers decided late (a relay_topic() call the barrier missed) */
	eb_backfill_resolve_pending();
	CommandCounterIncrement();
	eb_backfill_load_seams();

	/* the backfills of topics no longer relayed (dropped) end */
	eb_spi_begin(&spi, true);
	eb_spi_exec("DELETE FROM eventbus.relay_backfill_progress b WHERE NOT EXISTS "
				"(SELECT FROM eventbus.topic t WHERE t.topic_id = b.topic_id AND t.relay_to IS NOT NULL)",
				0, NULL, NULL, NULL, false);
	eb_spi_exec("SELECT b.topic_id, t.topic, b.partition, b.next_position, b.handover, b.started_at "
				"FROM eventbus.relay_backfill_progress b JOIN eventbus.topic t USING (topic_id) "
				"WHERE b.next_position < b.handover "
				"ORDER BY b.started_at, b.topic_id, b.partition LIMIT " CppAsString2(EB_BACKFILL_CANDIDATES),
				0, NULL, NULL, NULL, false);
	ncand = (int) SPI_processed;
	cand = palloc(sizeof(EbBackfillCandidate) * Max(ncand, 1));
	for (i = 0; i < ncand; i++)
	{
		tup = SPI_tuptable->vals[i];
		desc = SPI_tuptable->tupdesc;
		cand[i].topic_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		cand[i].name = MemoryContextStrdup(CurTransactionContext, SPI_getvalue(tup, desc, 2));
		cand[i].partition = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		cand[i].next = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		cand[i].handover = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		cand[i].started_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
	}
	eb_spi_end(&spi);

	/*
	 * The oldest backfill that can go on: one whose events cannot be sent
	 * now (its owner may not relay, say) does not hold back the others; it
	 * is tried again at the next pass, and relay_status says why it waits.
	 */
	st.target = NULL;
	for (i = 0; i < ncand && st.target == NULL; i++)
	{
		c = &cand[i];
		if (c->topic_id == refused)
			continue;			/* its other partitions: refused just now */
		topic = eb_topic_get(c->name, true);
		if (topic == NULL || c->partition >= topic->partitions)
			continue;
		st.target = eb_relay_stored_target(c->topic_id, why, sizeof(why));
		if (st.target == NULL)
		{
			refused = c->topic_id;
			eb_relay_error_keyed(psprintf("the backfill of topic \"%s\" waits: %s",
										  c->name, why),
								 psprintf("backfill waits %s", c->name));
		}
	}
	if (st.target == NULL)
	{
		eb_backfill_end_xact();
		return 0;
	}
	memset(&batch, 0, sizeof(batch));
	batch.topic_id = c->topic_id;
	batch.partition = c->partition;
	batch.started_at = c->started_at;
	next = c->next;
	handover = c->handover;

	horizon = eb_read_horizon(topic, batch.partition, NULL);
	st.stop_at = Min(handover, horizon);
	st.last = next - 1;
	st.sent = 0;
	st.bytes = 0;
	st.full = false;
	st.row_cxt = AllocSetContextCreate(CurTransactionContext, "pg_eventbus backfill row",
									   ALLOCSET_DEFAULT_SIZES);
	limit = Min(max_messages, eb_relay_backfill_batch);
	batch.old_next = next;
	batch.active = true;
	batch_gen++;

	/*
	 * A snapshot taken after the progress row and the horizon were read
	 * (the transaction's first one is older): it sees every event below the
	 * horizon that committed.
	 */
	PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
	eb_relay_txn_begin(InvalidXLogRecPtr);
	(void) eb_read_range_blocked(topic, batch.partition, next - 1, st.stop_at, limit,
								 GetActiveSnapshot(), eb_backfill_emit, &st, &blocked);
	eb_relay_txn_commit(sink->read_lsn, GetCurrentTimestamp());

	/*
	 * Only positions below stop_at are read.  Fewer than the limit, not
	 * stopped by the byte bound nor by an event the snapshot did not see:
	 * every position below stop_at was visited.
	 * Otherwise the next batch goes on after the last event sent (an event
	 * not seen is read again then).
	 */
	if (!st.full && !blocked && st.sent < limit)
		batch.new_next = Max(st.stop_at, next);
	else
		batch.new_next = st.last + 1;
	eb_backfill_end_xact();
	check_now = true;
	return (int) st.sent;
}
