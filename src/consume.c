/*-------------------------------------------------------------------------
 *
 * consume.c
 *	  eventbus.poll(), commit(), nack() and release().
 *
 * Two ways to consume a group's partitions:
 *
 *	- In a transaction (no member): poll() locks the group_partition row of
 *	  each partition it returns events from, FOR UPDATE SKIP LOCKED, so the
 *	  partition is held by this transaction and other members of the group
 *	  get other partitions without waiting.  commit() in the same
 *	  transaction moves the position together with the consumer's own
 *	  writes: each event is applied exactly once.  commit => true does both
 *	  in the poll itself.  An aborted transaction leaves its events for the
 *	  next poll.
 *
 *	- With a lease (member and lease): poll() records the member as holder
 *	  of the partitions it returns events from, until the lease expires.
 *	  fetched_position remembers what was handed out, so the holder gets
 *	  new events on each poll.  An expired lease lets another member take
 *	  the partition (generation + 1); it starts again after the committed
 *	  position.  commit() and nack() with the old member are then refused.
 *
 * Only partitions that have something to deliver are taken, visited in a
 * rotating order so concurrent members spread over partitions.
 *
 * nack() records the event in group_retry.  poll() delivers due retries of
 * a partition before its new events, and never delivers a new event that
 * has a retry row (it is scheduled).  A retry row ends when a commit covers
 * it after it was redelivered, or when it goes to the dead-letter topic.
 *
 * Writes are per partition and batch, never per event.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/tuplestore.h"

#include "pg_eventbus.h"
#include "catalog.h"
#include "group.h"
#include "position.h"
#include "publish.h"
#include "read.h"
#include "util.h"

PG_FUNCTION_INFO_V1(eb_poll);
PG_FUNCTION_INFO_V1(eb_commit);
PG_FUNCTION_INFO_V1(eb_nack);
PG_FUNCTION_INFO_V1(eb_release);

#define EB_POLL_MAX_EVENTS 100000

typedef struct EbRetry
{
	int32		partition;
	int64		position;
	int32		attempts;
	bool		due;
} EbRetry;

typedef struct EbPollState
{
	ReturnSetInfo *rsinfo;
	text	   *topic_name;
	int32		attempt;		/* attempt number of what is emitted */
	int64		want;			/* a retry: the one position wanted, else -1 */
	bool		found;
	int64		last;			/* last position passed */
	int64	   *skip;			/* positions with a retry row, ascending */
	int			nskip;
	int			skip_idx;
} EbPollState;

static uint32 poll_rotation = 0;
static bool poll_rotation_seeded = false;

static SPIPlanPtr plan_retries = NULL;
static SPIPlanPtr plan_lock = NULL;
static SPIPlanPtr plan_lease = NULL;
static SPIPlanPtr plan_ack_lock = NULL;
static SPIPlanPtr plan_commit = NULL;
static SPIPlanPtr plan_commit_retries = NULL;
static SPIPlanPtr plan_advance = NULL;
static SPIPlanPtr plan_retry_delivered = NULL;
static SPIPlanPtr plan_retry_done = NULL;

static void
eb_put_event(EbPollState *st, TupleTableSlot *slot)
{
	Datum		values[9];
	bool		nulls[9];

	slot_getallattrs(slot);
	memset(nulls, 0, sizeof(nulls));
	values[0] = PointerGetDatum(st->topic_name);
	values[1] = slot->tts_values[Anum_ev_partition - 1];
	values[2] = slot->tts_values[Anum_ev_position - 1];
	values[3] = slot->tts_values[Anum_ev_event_id - 1];
	values[4] = slot->tts_values[Anum_ev_key - 1];
	nulls[4] = slot->tts_isnull[Anum_ev_key - 1];
	values[5] = slot->tts_values[Anum_ev_value - 1];
	values[6] = slot->tts_values[Anum_ev_headers - 1];
	nulls[6] = slot->tts_isnull[Anum_ev_headers - 1];
	values[7] = slot->tts_values[Anum_ev_created_at - 1];
	values[8] = Int32GetDatum(st->attempt);
	tuplestore_putvalues(st->rsinfo->setResult, st->rsinfo->setDesc, values, nulls);
}

static EbEmitResult
eb_poll_emit(void *arg, EbTopic *topic, TupleTableSlot *slot)
{
	EbPollState *st = (EbPollState *) arg;
	bool		isnull;
	int64		position = DatumGetInt64(slot_getattr(slot, Anum_ev_position, &isnull));

	if (st->want >= 0)
	{
		if (position != st->want)
			return EB_EMIT_STOP;
		st->found = true;
		eb_put_event(st, slot);
		return EB_EMIT_TAKEN;
	}

	st->last = position;
	while (st->skip_idx < st->nskip && st->skip[st->skip_idx] < position)
		st->skip_idx++;
	if (st->skip_idx < st->nskip && st->skip[st->skip_idx] == position)
		return EB_EMIT_SKIPPED;
	eb_put_event(st, slot);
	return EB_EMIT_TAKEN;
}

/*
 * Takes a partition for this poll.  Returns false if another member holds
 * it.  Sets the positions to read after.
 */
static bool
eb_claim(EbGroup *g, int32 partition, const char *member, Interval *lease,
		 int64 *committed, int64 *fetched)
{
	Oid			argtypes[5] = {INT4OID, INT4OID, TEXTOID, INTERVALOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partition);
	if (member)
		values[2] = CStringGetTextDatum(member);
	else
		nulls[2] = 'n';

	eb_spi_plan(&plan_lock,
				"SELECT committed_position, fetched_position, "
				"  member IS NOT NULL AND lease_until > now() "
				"  AND member IS DISTINCT FROM $3 "
				"FROM eventbus.group_partition "
				"WHERE group_id = $1 AND partition = $2 FOR UPDATE SKIP LOCKED",
				3, argtypes);
	eb_spi_run(plan_lock, values, nulls, false);
	if (SPI_processed != 1)
		return false;			/* held by another member's transaction */
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	if (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)))
		return false;			/* leased to another member */
	*committed = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	*fetched = *committed;
	if (member == NULL)
		return true;

	/*
	 * Lease it.  A new holder, an expired lease or a holder in another
	 * session starts again after the committed position.
	 */
	values[3] = IntervalPGetDatum(lease);
	values[4] = CStringGetTextDatum(eb_session_id());
	eb_spi_plan(&plan_lease,
				"UPDATE eventbus.group_partition SET "
				"  generation = generation + "
				"    CASE WHEN member IS DISTINCT FROM $3 THEN 1 ELSE 0 END, "
				"  fetched_position = CASE WHEN member IS DISTINCT FROM $3 "
				"    OR lease_until IS NULL OR lease_until <= now() "
				"    OR fetched_session IS DISTINCT FROM $5 "
				"    THEN committed_position ELSE fetched_position END, "
				"  fetched_session = $5, "
				"  member = $3, lease_until = now() + $4 "
				"WHERE group_id = $1 AND partition = $2 "
				"RETURNING committed_position, fetched_position",
				5, argtypes);
	eb_spi_run(plan_lease, values, nulls, false);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*committed = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	*fetched = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	return true;
}

static Datum
eb_int8_array_datum(int64 *v, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/*
 * Records what a poll handed out of a partition: the new fetched (lease) or
 * committed (commit => true) position, and the retries delivered.
 */
static void
eb_record_delivery(EbGroup *g, int32 partition, int64 last, bool advance,
				   bool do_commit, Interval *lease, int64 *retried, int nretried)
{
	Oid			argtypes[5] = {INT4OID, INT4OID, INT8OID, BOOLOID, INTERVALOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partition);
	values[2] = Int64GetDatum(last);
	values[3] = BoolGetDatum(do_commit);
	if (lease)
		values[4] = IntervalPGetDatum(lease);
	else
		nulls[4] = 'n';

	if (advance)
	{
		eb_spi_plan(&plan_advance,
					"UPDATE eventbus.group_partition SET "
					"  fetched_position = greatest(fetched_position, $3), "
					"  committed_position = CASE WHEN $4 "
					"    THEN greatest(committed_position, $3) ELSE committed_position END, "
					"  committed_at = CASE WHEN $4 THEN now() ELSE committed_at END "
					"WHERE group_id = $1 AND partition = $2",
					4, argtypes);
		eb_spi_run(plan_advance, values, nulls, false);
	}
	if (nretried > 0)
	{
		Oid			rtypes[4] = {INT4OID, INT4OID, INT8ARRAYOID, INTERVALOID};
		Datum		rvalues[4];
		char		rnulls[4] = {' ', ' ', ' ', ' '};

		rvalues[0] = values[0];
		rvalues[1] = values[1];
		rvalues[2] = eb_int8_array_datum(retried, nretried);
		rvalues[3] = values[4];
		rnulls[3] = nulls[4];
		if (do_commit)
		{
			eb_spi_plan(&plan_retry_done,
						"DELETE FROM eventbus.group_retry "
						"WHERE group_id = $1 AND partition = $2 AND position = ANY ($3)",
						3, rtypes);
			eb_spi_run(plan_retry_done, rvalues, rnulls, false);
		}
		else
		{
			/* A lease holder gets it again only once its lease has run out. */
			eb_spi_plan(&plan_retry_delivered,
						"UPDATE eventbus.group_retry SET delivered = true, "
						"  not_before = CASE WHEN $4 IS NULL THEN not_before "
						"    ELSE now() + $4 END "
						"WHERE group_id = $1 AND partition = $2 AND position = ANY ($3)",
						4, rtypes);
			eb_spi_run(plan_retry_delivered, rvalues, rnulls, false);
		}
	}
}

/* Drops a retry whose event retention removed: it can never be delivered. */
static void
eb_forget_retry(EbGroup *g, int32 partition, int64 position)
{
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		values[3];

	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partition);
	values[2] = Int64GetDatum(position);
	eb_spi_exec("DELETE FROM eventbus.group_retry "
				"WHERE group_id = $1 AND partition = $2 AND position = $3",
				3, argtypes, values, NULL, false);
}

/*
 * The group's retries, of one partition or (partition -1) of all, ordered
 * by partition and position; a fresh statement each time.
 */
static EbRetry *
eb_read_retries(EbGroup *g, int32 partition, int *n)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	EbRetry    *retries;
	uint64		r;

	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partition);
	eb_spi_plan(&plan_retries,
				"SELECT partition, position, attempts, not_before <= now() "
				"FROM eventbus.group_retry WHERE group_id = $1 "
				"AND ($2 < 0 OR partition = $2) "
				"ORDER BY partition, position",
				2, argtypes);
	eb_spi_run(plan_retries, values, NULL, false);
	*n = (int) SPI_processed;
	retries = palloc(sizeof(EbRetry) * Max(*n, 1));
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		retries[r].partition = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		retries[r].position = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		retries[r].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		retries[r].due = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	}
	return retries;
}

/*
 * poll(group_name, topic, max_events, member, lease, commit)
 */
Datum
eb_poll(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	int32		max_events = PG_ARGISNULL(2) ? 100 : PG_GETARG_INT32(2);
	char	   *member = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	Interval   *lease = PG_ARGISNULL(4) ? NULL : PG_GETARG_INTERVAL_P(4);
	bool		do_commit = PG_ARGISNULL(5) ? false : PG_GETARG_BOOL(5);
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	EbPollState st;
	EbPartState *rows;
	EbRetry    *retries;
	int			nretries;
	int			remaining = max_events;
	Snapshot	snapshot;
	int32		i;
	int32		start;

	if (max_events < 1 || max_events > EB_POLL_MAX_EVENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be between 1 and %d", EB_POLL_MAX_EVENTS)));
	if (member != NULL && (strlen(member) == 0 || strlen(member) > 200))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("member must have 1 to 200 characters")));
	if ((member == NULL) != (lease == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("member and lease go together"),
				 errhint("Without them, poll() holds partitions for the current transaction; with both, it leases them to the member.")));
	if (lease != NULL && eb_interval_sign(lease) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be positive")));

	eb_check_writable("eventbus.poll()");
	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);
	InitMaterializedSRF(fcinfo, 0);
	snapshot = GetActiveSnapshot();

	memset(&st, 0, sizeof(st));
	st.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	st.topic_name = cstring_to_text(topic->name);

	eb_spi_begin(&spi, true);
	eb_group_lookup(group_name, topic, &g);
	eb_check_group_member(&g, group_name, spi.save_userid);

	/* Where each partition stands, without locking anything yet. */
	rows = eb_group_partition_states(&g, topic, member, true);

	/*
	 * Which partitions have retries, as a hint only: a partition's retries
	 * are read again once this poll holds it.
	 */
	retries = eb_read_retries(&g, -1, &nretries);

	if (!poll_rotation_seeded)
	{
		poll_rotation = pg_prng_uint32(&pg_global_prng_state);
		poll_rotation_seeded = true;
	}
	start = (int32) (poll_rotation++ % (uint32) topic->partitions);

	for (i = 0; i < topic->partitions && remaining > 0; i++)
	{
		int32		p = (start + i) % topic->partitions;
		int64		from;
		int64		committed;
		int64		fetched;
		bool		has_due = false;
		int			first_retry = -1;
		int			nret = 0;
		EbRetry    *pretries;
		int64	   *retried;
		int			nretried = 0;
		int			k;

		CHECK_FOR_INTERRUPTS();
		if (rows[p].held_by_other)
			continue;
		for (k = 0; k < nretries; k++)
		{
			if (retries[k].partition != p)
				continue;
			if (first_retry < 0)
				first_retry = k;
			nret++;
			has_due |= retries[k].due;
		}
		from = rows[p].mine ? rows[p].fetched : rows[p].committed;
		if (!has_due && from + 1 >= eb_read_horizon(topic, p, NULL))
			continue;			/* nothing to deliver */
		if (!eb_claim(&g, p, member, lease, &committed, &fetched))
			continue;
		from = member ? fetched : committed;

		/*
		 * Now that this poll holds the partition, its retries as they stand:
		 * a member that held it until just now may have delivered and
		 * committed one of them since the hint was read.
		 */
		pretries = eb_read_retries(&g, p, &nret);
		first_retry = 0;

		/* Due retries first. */
		retried = palloc(sizeof(int64) * Max(nret, 1));
		for (k = 0; k < nret && remaining > 0; k++)
		{
			if (!pretries[k].due)
				continue;
			st.want = pretries[k].position;
			st.attempt = pretries[k].attempts + 1;
			st.found = false;
			(void) eb_read_partition(topic, p, pretries[k].position - 1, 1, snapshot,
									 eb_poll_emit, &st);
			if (st.found)
			{
				retried[nretried++] = pretries[k].position;
				remaining--;
			}
			else if (pretries[k].position < eb_first_position(topic, p))
				eb_forget_retry(&g, p, pretries[k].position);
		}

		/* Then new events, skipping those waiting for a retry. */
		st.want = -1;
		st.attempt = 1;
		st.last = from;
		st.skip = palloc(sizeof(int64) * Max(nret, 1));
		st.nskip = 0;
		st.skip_idx = 0;
		for (k = 0; k < nret; k++)
			st.skip[st.nskip++] = pretries[k].position;
		if (remaining > 0)
			remaining -= eb_read_partition(topic, p, from, remaining, snapshot,
										   eb_poll_emit, &st);

		if (st.last > from || nretried > 0)
			eb_record_delivery(&g, p, st.last, st.last > from && (member || do_commit),
							   do_commit, lease, retried, nretried);
	}
	eb_spi_end(&spi);
	return (Datum) 0;
}

/*
 * The group's partition row, locked for update, with the lease check:
 * a named member must hold the partition; without a member nobody else may
 * hold an active lease on it.
 */
static void
eb_lock_for_ack(EbGroup *g, const char *group_name, EbTopic *topic, int32 partition,
				const char *member, int64 *committed)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *holder;
	bool		active;
	bool		ensured = false;

	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partition);
	for (;;)
	{
		eb_spi_plan(&plan_ack_lock,
					"SELECT committed_position, member, coalesce(lease_until > now(), false) "
					"FROM eventbus.group_partition WHERE group_id = $1 AND partition = $2 "
					"FOR UPDATE",
					2, argtypes);
		eb_spi_run(plan_ack_lock, values, NULL, false);
		if (SPI_processed > 0 || ensured)
			break;
		/* a partition added to the topic since the group last saw it */
		eb_group_ensure_partitions(g, topic);
		ensured = true;
	}
	if (SPI_processed != 1)
		elog(ERROR, "partition %d of group \"%s\" has no position row", partition, group_name);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*committed = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	holder = SPI_getvalue(tup, desc, 2);
	active = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));

	if (member != NULL && (holder == NULL || strcmp(holder, member) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("member \"%s\" does not hold partition %d of topic \"%s\" in group \"%s\"",
						member, partition, topic->name, group_name),
				 holder ? errdetail("Member \"%s\" holds it now; its events since the last commit are being delivered again.", holder)
				 : errdetail("Its lease ended."),
				 errhint("Poll again to take a partition.")));
	if (member == NULL && holder != NULL && active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("partition %d of topic \"%s\" is leased to member \"%s\" of group \"%s\"",
						partition, topic->name, holder, group_name),
				 errhint("Pass member => '%s' if this is that member.", holder)));
}

static void
eb_ack_args(FunctionCallInfo fcinfo, EbTopic **topic, int32 *partition, int64 *position)
{
	int64		end;

	eb_arg_not_null(fcinfo, 2, "partition");
	eb_arg_not_null(fcinfo, 3, "position");
	*partition = PG_GETARG_INT32(2);
	*position = PG_GETARG_INT64(3);
	eb_check_partition_arg(*topic, *partition);
	(void) eb_read_horizon(*topic, *partition, &end);
	if (*position < 0 || *position >= end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position %lld was never handed out in partition %d of topic \"%s\"",
						(long long) *position, *partition, (*topic)->name),
				 errdetail("The partition's positions run from 0 to %lld.", (long long) end - 1)));
}

/*
 * commit(group_name, topic, partition, position, member)
 */
Datum
eb_commit(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	char	   *member = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	int32		partition;
	int64		position;
	int64		committed;
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		values[3];

	eb_check_writable("eventbus.commit()");
	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);
	eb_ack_args(fcinfo, &topic, &partition, &position);

	eb_spi_begin(&spi, true);
	eb_group_lookup(group_name, topic, &g);
	eb_check_group_member(&g, group_name, spi.save_userid);
	eb_lock_for_ack(&g, group_name, topic, partition, member, &committed);
	values[0] = Int32GetDatum(g.group_id);
	values[1] = Int32GetDatum(partition);
	values[2] = Int64GetDatum(position);
	eb_spi_plan(&plan_commit,
				"UPDATE eventbus.group_partition SET "
				"committed_position = greatest(committed_position, $3), "
				"fetched_position = greatest(fetched_position, $3), committed_at = now() "
				"WHERE group_id = $1 AND partition = $2",
				3, argtypes);
	eb_spi_run(plan_commit, values, NULL, false);
	eb_spi_plan(&plan_commit_retries,
				"DELETE FROM eventbus.group_retry "
				"WHERE group_id = $1 AND partition = $2 AND position <= $3 AND delivered",
				3, argtypes);
	eb_spi_run(plan_commit_retries, values, NULL, false);
	eb_spi_end(&spi);
	PG_RETURN_VOID();
}

typedef struct EbFetchOne
{
	int64		want;
	bool		found;
	Datum		value;
	text	   *key;
	Jsonb	   *headers;
	Datum		event_id;
} EbFetchOne;

static EbEmitResult
eb_fetch_one_emit(void *arg, EbTopic *topic, TupleTableSlot *slot)
{
	EbFetchOne *f = (EbFetchOne *) arg;
	bool		isnull;

	if (DatumGetInt64(slot_getattr(slot, Anum_ev_position, &isnull)) != f->want)
		return EB_EMIT_STOP;
	f->found = true;
	f->value = slot_getattr(slot, Anum_ev_value, &isnull);
	f->value = PointerGetDatum(PG_DETOAST_DATUM_COPY(f->value));
	f->key = NULL;
	f->headers = NULL;
	if (!slot_attisnull(slot, Anum_ev_key))
		f->key = DatumGetTextPCopy(slot_getattr(slot, Anum_ev_key, &isnull));
	if (!slot_attisnull(slot, Anum_ev_headers))
		f->headers = DatumGetJsonbPCopy(slot_getattr(slot, Anum_ev_headers, &isnull));
	/* by reference into the buffer: copy before the slot lets it go */
	f->event_id = datumCopy(slot_getattr(slot, Anum_ev_event_id, &isnull), false, UUID_LEN);
	return EB_EMIT_STOP;
}

/* Reads one committed event; errors out if there is none at that position. */
static void
eb_fetch_event(EbTopic *topic, int32 partition, int64 position, EbFetchOne *f)
{
	memset(f, 0, sizeof(*f));
	f->want = position;
	(void) eb_read_partition(topic, partition, position - 1, 1, GetActiveSnapshot(),
							 eb_fetch_one_emit, f);
	if (!f->found)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("there is no event at position %lld of partition %d of topic \"%s\"",
						(long long) position, partition, topic->name),
				 errdetail("It was not committed, was rolled back, or was removed by retention.")));
}

/*
 * Publishes a copy of the event to the group's dead-letter topic, with
 * headers saying where it came from and why.
 */
static void
eb_dead_letter(EbGroup *g, const char *group_name, EbTopic *topic, int32 partition,
			   int64 position, int32 attempts, const char *reason, EbFetchOne *event)
{
	EbFetchOne	f = *event;
	EbTopic    *dlq;
	Oid			argtypes[8] = {JSONBOID, TEXTOID, TEXTOID, INT4OID, INT8OID, UUIDOID, INT4OID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Jsonb	   *headers;
	bool		isnull;
	int32		dpart;
	int64		dpos;

	if (f.headers)
		values[0] = JsonbPGetDatum(f.headers);
	else
		nulls[0] = 'n';
	values[1] = CStringGetTextDatum(reason ? reason : "");
	values[2] = CStringGetTextDatum(topic->name);
	values[3] = Int32GetDatum(partition);
	values[4] = Int64GetDatum(position);
	values[5] = f.event_id;
	values[6] = Int32GetDatum(attempts);
	values[7] = CStringGetTextDatum(group_name);
	eb_spi_exec("SELECT coalesce($1, '{}'::jsonb) || jsonb_build_object("
				"'eventbus-dlq-reason', $2, 'eventbus-dlq-topic', $3, "
				"'eventbus-dlq-partition', $4::text, 'eventbus-dlq-position', $5::text, "
				"'eventbus-dlq-event-id', $6::text, 'eventbus-dlq-attempts', $7::text, "
				"'eventbus-dlq-group', $8)",
				8, argtypes, values, nulls, true);
	headers = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	dlq = eb_topic_get(g->dead_letter_topic, false);
	eb_publish_internal(dlq, f.value, f.key, headers, &dpart, &dpos);
}

/*
 * nack(group_name, topic, partition, position, retry_after, reason, member)
 */
Datum
eb_nack(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	char	   *reason = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
	char	   *member = PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6));
	Interval   *retry_after;
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	int32		partition;
	int64		position;
	int64		committed;
	int32		attempts;
	Oid			argtypes[6] = {INT4OID, INT4OID, INT8OID, INT4OID, INTERVALOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	const char *result;
	EbFetchOne	event;

	eb_check_writable("eventbus.nack()");
	eb_arg_not_null(fcinfo, 4, "retry_after");
	retry_after = PG_GETARG_INTERVAL_P(4);
	if (eb_interval_sign(retry_after) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_after must not be negative")));
	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);
	eb_ack_args(fcinfo, &topic, &partition, &position);

	eb_spi_begin(&spi, true);
	eb_group_lookup(group_name, topic, &g);
	eb_check_group_member(&g, group_name, spi.save_userid);
	eb_lock_for_ack(&g, group_name, topic, partition, member, &committed);
	eb_fetch_event(topic, partition, position, &event);

	values[0] = Int32GetDatum(g.group_id);
	values[1] = Int32GetDatum(partition);
	values[2] = Int64GetDatum(position);
	eb_spi_exec("SELECT attempts FROM eventbus.group_retry "
				"WHERE group_id = $1 AND partition = $2 AND position = $3 FOR UPDATE",
				3, argtypes, values, NULL, false);
	attempts = 1;
	if (SPI_processed == 1)
		attempts += DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	if (attempts >= g.max_attempts)
	{
		eb_dead_letter(&g, group_name, topic, partition, position, attempts, reason, &event);
		eb_spi_exec("DELETE FROM eventbus.group_retry "
					"WHERE group_id = $1 AND partition = $2 AND position = $3",
					3, argtypes, values, NULL, false);
		result = "dead-lettered";
	}
	else
	{
		values[3] = Int32GetDatum(attempts);
		values[4] = IntervalPGetDatum(retry_after);
		if (reason)
			values[5] = CStringGetTextDatum(reason);
		else
			nulls[5] = 'n';
		eb_spi_exec("INSERT INTO eventbus.group_retry "
					"(group_id, partition, position, attempts, not_before, reason) "
					"VALUES ($1, $2, $3, $4, now() + $5, $6) "
					"ON CONFLICT (group_id, partition, position) DO UPDATE SET "
					"attempts = EXCLUDED.attempts, not_before = EXCLUDED.not_before, "
					"reason = EXCLUDED.reason, delivered = false",
					6, argtypes, values, nulls, false);
		result = "retry";
	}
	eb_spi_end(&spi);
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/*
 * release(group_name, topic, member): ends a member's leases.
 */
Datum
eb_release(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	char	   *member;
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	uint64		released;

	eb_arg_not_null(fcinfo, 2, "member");
	member = text_to_cstring(PG_GETARG_TEXT_PP(2));
	eb_check_writable("eventbus.release()");
	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);

	eb_spi_begin(&spi, true);
	eb_group_lookup(group_name, topic, &g);
	eb_check_group_member(&g, group_name, spi.save_userid);
	values[0] = Int32GetDatum(g.group_id);
	values[1] = CStringGetTextDatum(member);
	eb_spi_exec("UPDATE eventbus.group_partition SET member = NULL, lease_until = NULL, "
				"fetched_position = committed_position "
				"WHERE group_id = $1 AND member = $2",
				2, argtypes, values, NULL, false);
	released = SPI_processed;
	eb_spi_end(&spi);
	PG_RETURN_INT32((int32) released);
}
