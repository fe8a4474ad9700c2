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
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "tcop/pquery.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/tuplestore.h"

#include "settings.h"
#include "stats.h"
#include "catalog.h"
#include "group.h"
#include "position.h"
#include "publish.h"
#include "read.h"
#include "topic.h"
#include "util.h"

PG_FUNCTION_INFO_V1(eb_poll);
PG_FUNCTION_INFO_V1(eb_commit);
PG_FUNCTION_INFO_V1(eb_commit_member);
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
	bool		leased;			/* generation is set */
	int64		generation;		/* lease generation of the partition */
	int64		want;			/* a retry: the one position wanted, else -1 */
	bool		found;
	int64		last;			/* last position passed */
	int64	   *skip;			/* positions with a retry row, ascending */
	int			nskip;
	int			skip_idx;
} EbPollState;

/*
 * What this backend handed out, per group and partition (backend-local):
 * the highest position polls of the current top-level transaction handed
 * out (commit() and nack() without a member accept nothing beyond it), and
 * the lease generation this session was last handed (a lease holder's
 * commit() and nack() are fenced by it).  A generation handed out in a
 * transaction counts once that transaction commits.
 */
typedef struct EbHandedKey
{
	int32		group_id;
	int32		partition;
} EbHandedKey;

typedef struct EbHanded
{
	EbHandedKey key;
	bool		xact_handed;	/* xact_position is valid */
	int64		xact_position;
	bool		has_generation;
	int64		generation;
	bool		xact_has_generation;
	int64		xact_generation;
} EbHanded;

static HTAB *handed = NULL;
static bool handed_in_xact = false;

static EbHanded *
eb_handed_entry(int32 group_id, int32 partition, bool create)
{
	EbHandedKey key;
	EbHanded   *h;
	bool		found;

	if (handed == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		ctl.keysize = sizeof(EbHandedKey);
		ctl.entrysize = sizeof(EbHanded);
		ctl.hcxt = TopMemoryContext;
		handed = hash_create("pg_eventbus handed-out positions", 64, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.group_id = group_id;
	key.partition = partition;
	h = hash_search(handed, &key, create ? HASH_ENTER : HASH_FIND, &found);
	if (h != NULL && !found)
	{
		h->xact_handed = false;
		h->xact_position = -1;
		h->has_generation = false;
		h->generation = 0;
		h->xact_has_generation = false;
		h->xact_generation = 0;
	}
	return h;
}

static void
eb_handed_record(int32 group_id, int32 partition, int64 position,
				 bool leased, int64 generation)
{
	EbHanded   *h = eb_handed_entry(group_id, partition, true);

	if (position >= 0 && (!h->xact_handed || position > h->xact_position))
	{
		h->xact_position = position;
		h->xact_handed = true;
	}
	if (leased)
	{
		h->xact_has_generation = true;
		h->xact_generation = generation;
	}
	handed_in_xact = true;
}

/* Highest position handed out in this transaction; -1 if none. */
static int64
eb_handed_position(int32 group_id, int32 partition)
{
	EbHanded   *h = eb_handed_entry(group_id, partition, false);

	return (h != NULL && h->xact_handed) ? h->xact_position : -1;
}

/* The lease generation this session was handed; false if none. */
static bool
eb_handed_generation(int32 group_id, int32 partition, int64 *generation)
{
	EbHanded   *h = eb_handed_entry(group_id, partition, false);

	if (h == NULL)
		return false;
	if (h->xact_has_generation)
	{
		*generation = h->xact_generation;
		return true;
	}
	if (h->has_generation)
	{
		*generation = h->generation;
		return true;
	}
	return false;
}

static void
eb_handed_xact_end(bool commit)
{
	HASH_SEQ_STATUS seq;
	EbHanded   *h;

	if (handed == NULL || !handed_in_xact)
		return;
	handed_in_xact = false;
	hash_seq_init(&seq, handed);
	while ((h = hash_seq_search(&seq)) != NULL)
	{
		if (commit && h->xact_has_generation)
		{
			h->has_generation = true;
			h->generation = h->xact_generation;
		}
		h->xact_handed = false;
		h->xact_position = -1;
		h->xact_has_generation = false;
		if (!h->has_generation)
			(void) hash_search(handed, &h->key, HASH_REMOVE, NULL);
	}
}

/*
 * poll(commit => true) commits what it returns before the statement has
 * read it.  Each such call is remembered until the end of the statement
 * that made it (ExecutorEnd): by then the statement must have read the
 * whole result.  The call is found in the statement's plan by the
 * expression context poll() was called in; only a function scan (poll() in
 * FROM) qualifies, and it keeps poll()'s tuple store until ExecutorEnd, so
 * the store can be asked whether it was read to its end.  A plan with a
 * LIMIT is refused too (a sort under it reads everything and the limit
 * drops rows).  The error rolls the transaction back, poll()'s commit
 * included: nothing is lost, nothing applied twice.  A query that makes a
 * function's result (RETURN QUERY, an SQL function) is refused: its caller
 * may drop rows.  Calls never checked
 * (a statement that did not end normally) are refused at commit.
 */
typedef struct EbCommitPoll
{
	Tuplestorestate *store;
	ExprContext *econtext;
	EState	   *estate;
	SubTransactionId subid;
} EbCommitPoll;

static List *commit_polls = NIL;	/* in TopTransactionContext */
static ExecutorEnd_hook_type prev_executor_end = NULL;

typedef struct EbPlanCheck
{
	EbCommitPoll *poll;
	bool		found;
	bool		limit;
} EbPlanCheck;

static bool
eb_plan_check_walker(PlanState *ps, void *arg)
{
	EbPlanCheck *c = (EbPlanCheck *) arg;

	if (ps == NULL)
		return false;
	if (IsA(ps, LimitState))
		c->limit = true;
	if (IsA(ps, FunctionScanState) && ps->ps_ExprContext == c->poll->econtext)
		c->found = true;
	return planstate_tree_walker(ps, eb_plan_check_walker, arg);
}

static void
eb_commit_poll_error(const char *msg, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s", msg),
			 errdetail("%s The transaction is rolled back, so the positions poll() committed are not lost.", detail),
			 errhint("Call poll(..., commit => true) in FROM and read its whole result; limit a batch with max_events, not LIMIT. Or poll without commit => true and commit() what was processed.")));
}

static void
eb_executor_end(QueryDesc *queryDesc)
{
	if (commit_polls != NIL)
	{
		ListCell   *lc;

		foreach(lc, commit_polls)
		{
			EbCommitPoll *cp = (EbCommitPoll *) lfirst(lc);
			EbPlanCheck c;
			ListCell   *sp;

			if (cp->estate != queryDesc->estate)
				continue;
			/* checked once, whatever the outcome */
			commit_polls = foreach_delete_current(commit_polls, lc);

			memset(&c, 0, sizeof(c));
			c.poll = cp;
			(void) eb_plan_check_walker(queryDesc->planstate, &c);
			foreach(sp, queryDesc->estate->es_subplanstates)
				(void) eb_plan_check_walker((PlanState *) lfirst(sp), &c);

			if (!c.found)
				eb_commit_poll_error("poll(commit => true) must be called in FROM",
									 "Elsewhere in a statement its result cannot be checked to be read in full.");
			if (c.limit)
				eb_commit_poll_error("poll(commit => true) cannot be used in a statement with LIMIT",
									 "Rows the limit drops would be committed without being processed.");
			if (!tuplestore_ateof(cp->store))
				eb_commit_poll_error("the statement did not read every event poll(commit => true) committed",
									 "A LIMIT, a cursor or loop that stopped early, SELECT INTO or a semi-join left events unread.");

			/*
			 * A query whose rows become a function's result (PL/pgSQL
			 * RETURN QUERY, the last statement of an SQL function) hands
			 * them to the calling statement, which may drop some (a LIMIT
			 * there): reading poll's result here proves nothing.
			 */
			if (queryDesc->operation == CMD_SELECT &&
				(queryDesc->dest->mydest == DestTuplestore ||
				 queryDesc->dest->mydest == DestSQLFunction))
				eb_commit_poll_error("poll(commit => true) cannot be used in a query that returns a function's result",
									 "The rows of RETURN QUERY or of an SQL function's last statement go to the calling statement, which may not read them all.");
		}
	}
	if (prev_executor_end)
		prev_executor_end(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

/* Remembers a poll(commit => true) until its statement ends. */
static void
eb_commit_poll_track(ReturnSetInfo *rsinfo)
{
	MemoryContext old;
	EbCommitPoll *cp;
	ListCell   *lc;

	if (rsinfo->econtext == NULL || rsinfo->econtext->ecxt_estate == NULL)
		eb_commit_poll_error("poll(commit => true) must be called in FROM",
							 "Here its result cannot be checked to be read in full.");
	foreach(lc, commit_polls)
	{
		if (((EbCommitPoll *) lfirst(lc))->econtext == rsinfo->econtext)
			eb_commit_poll_error("poll(commit => true) cannot be called more than once in one FROM item",
								 "Called again for another row (LATERAL, a correlated subquery) or next to another poll(), it drops a result that may not have been read.");
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	cp = palloc(sizeof(EbCommitPoll));
	cp->store = rsinfo->setResult;
	cp->econtext = rsinfo->econtext;
	cp->estate = rsinfo->econtext->ecxt_estate;
	cp->subid = GetCurrentSubTransactionId();
	commit_polls = lappend(commit_polls, cp);
	MemoryContextSwitchTo(old);
}

static void
eb_consume_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (commit_polls != NIL)
			{
				commit_polls = NIL;
				eb_commit_poll_error("the statement did not read every event poll(commit => true) committed",
									 "The statement that called poll() did not end normally.");
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			commit_polls = NIL;
			eb_handed_xact_end(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			commit_polls = NIL;
			eb_handed_xact_end(false);
			break;
	}
}

static void
eb_consume_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	/* calls of the aborted subtransaction and of those under it */
	foreach(lc, commit_polls)
	{
		if (((EbCommitPoll *) lfirst(lc))->subid >= mySubid)
			commit_polls = foreach_delete_current(commit_polls, lc);
	}
}

/* Called once from _PG_init. */
void
eb_consume_init(void)
{
	prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = eb_executor_end;
	RegisterXactCallback(eb_consume_xact_callback, NULL);
	RegisterSubXactCallback(eb_consume_subxact_callback, NULL);
}

static uint32 poll_rotation = 0;
static bool poll_rotation_seeded = false;

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
	Datum		values[10];
	bool		nulls[10];

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
	values[9] = Int64GetDatum(st->generation);
	nulls[9] = !st->leased;
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
		 int64 *committed, int64 *fetched, int64 *generation, int64 *lost_reported)
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
				"  member IS NOT NULL AND lease_until > clock_timestamp() "
				"  AND member IS DISTINCT FROM $3, coalesce(lost_reported, -1) "
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
	*lost_reported = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
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
				"    OR lease_until IS NULL OR lease_until <= clock_timestamp() "
				"    OR fetched_session IS DISTINCT FROM $5 "
				"    THEN committed_position ELSE fetched_position END, "
				"  fetched_session = $5, "
				"  member = $3, lease_until = clock_timestamp() + $4 "
				"WHERE group_id = $1 AND partition = $2 "
				"RETURNING committed_position, fetched_position, generation",
				5, argtypes);
	eb_spi_run(plan_lease, values, nulls, false);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*committed = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	*fetched = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	*generation = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
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
						"    ELSE clock_timestamp() + $4 END "
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
 * Warns, once per partition and loss, that retention removed events of the
 * partition the group had not consumed; reading goes on from the first
 * retained event.  consumer_lag.lost_events shows the count until the group
 * commits past them.
 */
static void
eb_report_lost(EbGroup *g, const char *group_name, EbTopic *topic, int32 partition,
			   int64 committed, int64 lost_reported)
{
	int64		first = eb_first_position(topic, partition);
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		values[3];

	if (first < 0 || first <= committed + 1 || first == lost_reported)
		return;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("consumer group \"%s\" lost %lld events of partition %d of topic \"%s\" to retention",
					group_name, (long long) (first - (committed + 1)), partition, topic->name),
			 errdetail("Positions %lld to %lld were removed by the topic's retention before the group consumed them; it goes on from position %lld.",
					   (long long) (committed + 1), (long long) (first - 1), (long long) first),
			 errhint("Consume faster than the retention of the topic, or make the retention longer with eventbus.alter_topic().")));
	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partition);
	values[2] = Int64GetDatum(first);
	eb_spi_exec("UPDATE eventbus.group_partition SET lost_reported = $3 "
				"WHERE group_id = $1 AND partition = $2",
				3, argtypes, values, NULL, false);
}

/*
 * Retries of one partition of the group, in position order, a fresh
 * statement each time: those due at now, and those above position after,
 * due or not (poll() skips them as new events).  Each comes through an
 * index (group_retry_due, the primary key), so retries due later at
 * positions already read cost nothing.  now is a parameter, not
 * clock_timestamp() in the query: a volatile function cannot bound an
 * index scan.
 */
static EbRetry *
eb_read_retries(EbGroup *g, int32 partition, TimestampTz now, int64 after, int *n)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[4] = {INT4OID, INT4OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[4];
	EbRetry    *retries;
	uint64		r;

	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partition);
	values[2] = TimestampTzGetDatum(now);
	values[3] = Int64GetDatum(after);
	eb_spi_plan(&plan,
				"SELECT position, attempts, not_before <= $3 "
				"FROM eventbus.group_retry WHERE group_id = $1 AND partition = $2 "
				"AND not_before <= $3 "
				"UNION "
				"SELECT position, attempts, not_before <= $3 "
				"FROM eventbus.group_retry WHERE group_id = $1 AND partition = $2 "
				"AND position > $4 "
				"ORDER BY 1",
				4, argtypes);
	eb_spi_run(plan, values, NULL, false);
	*n = (int) SPI_processed;
	retries = palloc(sizeof(EbRetry) * Max(*n, 1));
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		retries[r].partition = partition;
		retries[r].position = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		retries[r].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		retries[r].due = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	}
	return retries;
}

/*
 * Which partitions of the group have a retry due at now: an index probe per
 * partition (group_retry_due), whatever the number of retries due later.
 * LIMIT 1 in a lateral subquery keeps the planner from joining a scan of
 * the whole table instead.
 */
static bool *
eb_partitions_with_due_retries(EbGroup *g, int32 partitions, TimestampTz now)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {INT4OID, INT4OID, TIMESTAMPTZOID};
	Datum		values[3];
	bool	   *due = palloc0(sizeof(bool) * partitions);
	uint64		r;

	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partitions);
	values[2] = TimestampTzGetDatum(now);
	eb_spi_plan(&plan,
				"SELECT p FROM pg_catalog.generate_series(0, $2 - 1) p, "
				"LATERAL (SELECT FROM eventbus.group_retry r "
				"  WHERE r.group_id = $1 AND r.partition = p AND r.not_before <= $3 "
				"  LIMIT 1) due",
				3, argtypes);
	eb_spi_run(plan, values, NULL, false);
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int32		p = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
												   SPI_tuptable->tupdesc, 1, &isnull));

		if (p >= 0 && p < partitions)
			due[p] = true;
	}
	return due;
}

/*
 * Balanced leases.  The members of a group are those that polled with a
 * lease that has not run out yet (eventbus.group_member); each may hold at
 * most ceil(partitions / members) partitions, as Kafka's assignors give
 * out.  A member above its share gives up, at its poll, partitions it holds
 * with nothing handed out uncommitted (highest partition numbers first);
 * a partition with uncommitted events stays its own until it commits them
 * or its lease runs out, so no partition is taken from under a member.
 * Returns the member's share.
 */
static int32
eb_balance_leases(EbGroup *g, EbTopic *topic, const char *member, Interval *lease)
{
	static SPIPlanPtr plan_join = NULL;
	static SPIPlanPtr plan_expire = NULL;
	static SPIPlanPtr plan_giveup = NULL;
	Oid			argtypes[3] = {INT4OID, TEXTOID, INTERVALOID};
	Datum		values[3];
	Oid			gargtypes[3] = {INT4OID, TEXTOID, INT4OID};
	Datum		gvalues[3];
	bool		isnull;
	int64		members;
	int32		share;

	values[0] = Int32GetDatum(g->group_id);
	values[1] = CStringGetTextDatum(member);
	values[2] = IntervalPGetDatum(lease);
	eb_spi_plan(&plan_expire,
				"DELETE FROM eventbus.group_member "
				"WHERE group_id = $1 AND expires_at <= clock_timestamp()",
				1, argtypes);
	eb_spi_run(plan_expire, values, NULL, false);
	eb_spi_plan(&plan_join,
				"WITH me AS ("
				"  INSERT INTO eventbus.group_member (group_id, member, expires_at) "
				"  VALUES ($1, $2, clock_timestamp() + $3) "
				"  ON CONFLICT (group_id, member) DO UPDATE SET expires_at = EXCLUDED.expires_at "
				"  RETURNING member) "
				"SELECT 1 + (SELECT count(*) FROM eventbus.group_member m "
				"            WHERE m.group_id = $1 AND m.member <> $2 "
				"            AND m.expires_at > clock_timestamp()) "
				"FROM me",
				3, argtypes);
	eb_spi_run(plan_join, values, NULL, false);
	members = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	share = (int32) ((topic->partitions + members - 1) / members);

	gvalues[0] = values[0];
	gvalues[1] = values[1];
	gvalues[2] = Int32GetDatum(share);
	eb_spi_plan(&plan_giveup,
				"WITH held AS ("
				"  SELECT partition, fetched_position <= committed_position AS clean "
				"  FROM eventbus.group_partition "
				"  WHERE group_id = $1 AND member = $2 AND lease_until > clock_timestamp()), "
				"excess AS ("
				"  SELECT h.partition FROM held h WHERE h.clean "
				"  ORDER BY h.partition DESC "
				"  LIMIT greatest((SELECT count(*) FROM held) - $3, 0)) "
				"UPDATE eventbus.group_partition gp SET member = NULL, lease_until = NULL "
				"FROM excess e WHERE gp.group_id = $1 AND gp.partition = e.partition "
				"AND gp.member = $2",
				3, gargtypes);
	eb_spi_run(plan_giveup, gvalues, NULL, false);
	return share;
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
	bool	   *due_hint;
	int			remaining = max_events;
	Snapshot	snapshot;
	int32		i;
	int32		start;
	int32		share;
	int32		held = 0;

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
	if (lease != NULL && do_commit)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("commit => true cannot be used with a lease"),
				 errdetail("A leased member processes events after its poll and commits them with commit(); commit => true would mark them done before that."),
				 errhint("Pass either member and lease, or commit => true.")));

	/*
	 * A cursor (DECLARE, a PL/pgSQL FOR loop, a client's fetch size) may
	 * stop reading at any row, even after the executor has read poll's
	 * whole result in a batch, so the end-of-statement check cannot see it:
	 * refuse the form there.  Statements run to completion have the unnamed
	 * portal.
	 */
	if (do_commit && ActivePortal != NULL && ActivePortal->name[0] != '\0')
		eb_commit_poll_error("poll(commit => true) cannot run in a cursor or a PL/pgSQL FOR loop",
							 "A cursor can stop before the rows it already fetched are processed; they would be committed anyway.");

	eb_check_writable("eventbus.poll()");
	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);
	InitMaterializedSRF(fcinfo, 0);
	snapshot = GetActiveSnapshot();

	memset(&st, 0, sizeof(st));
	st.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	st.topic_name = cstring_to_text(topic->name);

	eb_spi_begin(&spi, true);
	(void) eb_group_lookup_locked(group_name, topic, &g, false);
	eb_check_group_member(&g, group_name, spi.save_userid);
	if (g.paused)
	{
		/* a paused group delivers nothing (pause_group) */
		eb_spi_end(&spi);
		return (Datum) 0;
	}

	/* A leased member's fair share; partitions above it are given up. */
	share = topic->partitions;
	if (member != NULL && eb_groups_catalog_v2())
		share = eb_balance_leases(&g, topic, member, lease);

	/* Where each partition stands, without locking anything yet. */
	rows = eb_group_partition_states(&g, topic, member, true);
	for (i = 0; i < topic->partitions; i++)
		held += rows[i].leased_to_me ? 1 : 0;

	/*
	 * Which partitions have retries due, as a hint only: a partition's
	 * retries are read again once this poll holds it.
	 */
	due_hint = eb_partitions_with_due_retries(&g, topic->partitions, GetCurrentTimestamp());

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
		int64		generation = 0;
		int64		lost_reported;
		int64		handed_max = -1;
		int			nret = 0;
		EbRetry    *pretries;
		int64	   *retried;
		int			nretried = 0;
		int			k;

		CHECK_FOR_INTERRUPTS();
		if (rows[p].held_by_other)
			continue;
		if (member != NULL && !rows[p].leased_to_me && held >= share)
			continue;			/* not more than its share */
		from = rows[p].mine ? rows[p].fetched : rows[p].committed;
		if (!due_hint[p] && from + 1 >= eb_read_horizon(topic, p, NULL))
			continue;			/* nothing to deliver */
		if (!eb_claim(&g, p, member, lease, &committed, &fetched, &generation,
					  &lost_reported))
			continue;
		if (member != NULL && !rows[p].leased_to_me)
			held++;
		eb_report_lost(&g, group_name, topic, p, committed, lost_reported);
		from = member ? fetched : committed;
		st.leased = member != NULL;
		st.generation = generation;

		/*
		 * Now that this poll holds the partition, its retries as they stand:
		 * a member that held it until just now may have delivered and
		 * committed one of them since the hint was read.
		 */
		pretries = eb_read_retries(&g, p, GetCurrentTimestamp(), from, &nret);

		/* Due retries first. */
		retried = palloc(sizeof(int64) * Max(nret, 1));
		for (k = 0; k < nret && remaining > 0; k++)
		{
			if (!pretries[k].due)
				continue;
			st.want = pretries[k].position;
			st.attempt = pretries[k].attempts + 1;
			st.found = false;
			(void) eb_read_range(topic, p, pretries[k].position - 1,
								 pretries[k].position + 1, 1, snapshot, eb_poll_emit, &st);
			if (st.found)
			{
				retried[nretried++] = pretries[k].position;
				handed_max = Max(handed_max, pretries[k].position);
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
		if (do_commit && st.last > committed)
			eb_stats_count(topic, EB_STAT_CONSUMED, st.last - committed);
		if (st.last > from)
			handed_max = Max(handed_max, st.last);
		eb_handed_record(g.group_id, p, handed_max, member != NULL, generation);
	}
	eb_spi_end(&spi);
	if (do_commit)
		eb_commit_poll_track(st.rsinfo);
	return (Datum) 0;
}

/* A group's partition row as commit() and nack() see it. */
typedef struct EbAckRow
{
	int64		committed;
	int64		fetched;
	int64		generation;
} EbAckRow;

/*
 * The group's partition row, locked for update, with the lease check:
 * a named member must hold the partition, in the lease generation it was
 * handed (generation, or when NULL what this session was handed); without
 * a member nobody else may hold an active lease on it.
 */
static void
eb_lock_for_ack(EbGroup *g, const char *group_name, EbTopic *topic, int32 partition,
				const char *member, bool has_generation, int64 generation,
				EbAckRow *row)
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
					"SELECT committed_position, member, "
					"  coalesce(lease_until > clock_timestamp(), false), "
					"  fetched_position, generation "
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
	row->committed = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	holder = SPI_getvalue(tup, desc, 2);
	active = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	row->fetched = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	row->generation = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));

	if (member != NULL && (holder == NULL || strcmp(holder, member) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("member \"%s\" does not hold partition %d of topic \"%s\" in group \"%s\"",
						member, partition, topic->name, group_name),
				 holder ? errdetail("Member \"%s\" holds it now; its events since the last commit are being delivered again.", holder)
				 : errdetail("Its lease ended."),
				 errhint("Poll again to take a partition.")));
	if (member != NULL)
	{
		if (!has_generation)
			has_generation = eb_handed_generation(g->group_id, partition, &generation);
		if (!has_generation)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("this session was not handed partition %d of topic \"%s\" in group \"%s\"",
							partition, topic->name, group_name),
					 errhint("Pass generation => the value poll() returned with the events.")));
		if (generation != row->generation)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("lease generation %lld of partition %d of topic \"%s\" in group \"%s\" has ended",
							(long long) generation, partition, topic->name, group_name),
					 errdetail("The partition was taken over since (generation %lld); its events since the last commit are being delivered again.",
							   (long long) row->generation),
					 errhint("Poll again to take a partition.")));
	}
	if (member == NULL && holder != NULL && active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("partition %d of topic \"%s\" is leased to member \"%s\" of group \"%s\"",
						partition, topic->name, holder, group_name),
				 errhint("Pass member => '%s' if this is that member.", holder)));
}

/*
 * Was position handed to the caller?  With a member: to that member (its
 * fetched position).  Without: by a poll of the current transaction.
 */
static bool
eb_was_handed(EbGroup *g, int32 partition, int64 position, const char *member,
			  EbAckRow *row, int64 *upto)
{
	*upto = member ? row->fetched : eb_handed_position(g->group_id, partition);
	return position <= *upto;
}

static void
eb_not_handed_error(const char *what, EbGroup *g, const char *group_name,
					EbTopic *topic, int32 partition, int64 position,
					const char *member, int64 upto)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 member
			 ? errmsg("cannot %s position %lld of partition %d of topic \"%s\": it was not handed to member \"%s\" of group \"%s\"",
					  what, (long long) position, partition, topic->name, member, group_name)
			 : errmsg("cannot %s position %lld of partition %d of topic \"%s\": no poll of this transaction handed it to group \"%s\"",
					  what, (long long) position, partition, topic->name, group_name),
			 upto >= 0
			 ? errdetail("Positions up to %lld of that partition were handed out.", (long long) upto)
			 : errdetail("Nothing of that partition was handed out%s.",
						 member ? " to this member" : " in this transaction"),
			 errhint("Commit and nack only what poll() returned, in the transaction that polled it (or, with a lease, as the member that holds it). To move the group on purpose, use eventbus.seek().")));
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
 * commit(group_name, topic, partition, position, member, generation)
 *
 * Refuses a position beyond what was handed to the caller (see
 * eb_was_handed); a position at or below the committed one that was not
 * handed out in this transaction changes nothing.
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
	EbAckRow	row;
	int64		upto;
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		values[3];

	eb_check_writable("eventbus.commit()");
	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);
	eb_ack_args(fcinfo, &topic, &partition, &position);

	eb_spi_begin(&spi, true);
	(void) eb_group_lookup_locked(group_name, topic, &g, false);
	eb_check_group_member(&g, group_name, spi.save_userid);
	eb_lock_for_ack(&g, group_name, topic, partition, member,
					!PG_ARGISNULL(5), PG_ARGISNULL(5) ? 0 : PG_GETARG_INT64(5), &row);
	if (!eb_was_handed(&g, partition, position, member, &row, &upto))
	{
		/* at or below the committed position: done already, nothing to do */
		if (position <= row.committed)
		{
			eb_spi_end(&spi);
			PG_RETURN_VOID();
		}
		eb_not_handed_error("commit", &g, group_name, topic, partition, position,
							member, upto);
	}
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
	if (position > row.committed)
		eb_stats_count(topic, EB_STAT_CONSUMED, position - row.committed);
	PG_RETURN_VOID();
}

/*
 * commit(group_name, topic, member): commits, on every partition this
 * session was handed as that member, everything handed to it (its fetched
 * position), with the retries delivered up to there.  Fenced as the
 * positional commit() is: a partition taken over since this session was
 * handed it makes the call fail (55006) and commit nothing.  A partition
 * the member gave up or whose lease ran out with nothing uncommitted is
 * skipped.  Returns the number of partitions whose position moved.
 */
Datum
eb_commit_member(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	char	   *member;
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	Oid			argtypes[4] = {INT4OID, TEXTOID, TEXTOID, INT4OID};
	Datum		values[4];
	SPITupleTable *rows;
	uint64		nrows;
	uint64		r;
	int32	   *todo;
	int64	   *todo_gen;
	int			ntodo = 0;
	int			i;
	int32		committed = 0;

	eb_arg_not_null(fcinfo, 2, "member");
	member = text_to_cstring(PG_GETARG_TEXT_PP(2));
	eb_check_writable("eventbus.commit()");
	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);

	eb_spi_begin(&spi, true);
	(void) eb_group_lookup_locked(group_name, topic, &g, false);
	eb_check_group_member(&g, group_name, spi.save_userid);
	values[0] = Int32GetDatum(g.group_id);
	values[1] = CStringGetTextDatum(member);
	values[2] = CStringGetTextDatum(eb_session_id());
	eb_spi_exec("SELECT partition, generation, member, "
				"  coalesce(member = $2 AND fetched_session = $3 "
				"           AND fetched_position > committed_position, false) "
				"FROM eventbus.group_partition WHERE group_id = $1 ORDER BY partition",
				3, argtypes, values, NULL, false);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	todo = palloc(sizeof(int32) * Max(nrows, 1));
	todo_gen = palloc(sizeof(int64) * Max(nrows, 1));
	for (r = 0; r < nrows; r++)
	{
		bool		isnull;
		int32		p = DatumGetInt32(SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
		int64		gen = DatumGetInt64(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull));
		bool		pending = DatumGetBool(SPI_getbinval(rows->vals[r], rows->tupdesc, 4, &isnull));
		int64		handed_gen;

		if (!eb_handed_generation(g.group_id, p, &handed_gen))
			continue;			/* never handed to this session */
		if (handed_gen != gen)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("lease generation %lld of partition %d of topic \"%s\" in group \"%s\" has ended",
							(long long) handed_gen, p, topic->name, group_name),
					 errdetail("The partition was taken over since (generation %lld); its events since the last commit are being delivered again. Nothing was committed.",
							   (long long) gen),
					 errhint("Poll again to take a partition.")));
		if (pending)
		{
			todo[ntodo] = p;
			todo_gen[ntodo++] = gen;
		}
	}
	for (i = 0; i < ntodo; i++)
	{
		Oid			uargtypes[3] = {INT4OID, INT4OID, INT8OID};
		Datum		uvalues[3];

		uvalues[0] = values[0];
		uvalues[1] = Int32GetDatum(todo[i]);
		uvalues[2] = Int64GetDatum(todo_gen[i]);
		eb_spi_exec("DELETE FROM eventbus.group_retry r USING eventbus.group_partition gp "
					"WHERE r.group_id = $1 AND r.partition = $2 AND r.delivered "
					"AND gp.group_id = $1 AND gp.partition = $2 AND gp.generation = $3 "
					"AND r.position <= gp.fetched_position",
					3, uargtypes, uvalues, NULL, false);
		eb_spi_exec("UPDATE eventbus.group_partition SET "
					"committed_position = greatest(committed_position, fetched_position), "
					"committed_at = now() "
					"WHERE group_id = $1 AND partition = $2 AND generation = $3",
					3, uargtypes, uvalues, NULL, false);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("lease generation %lld of partition %d of topic \"%s\" in group \"%s\" has ended",
							(long long) todo_gen[i], todo[i], topic->name, group_name),
					 errdetail("The partition was taken over meanwhile; nothing was committed."),
					 errhint("Poll again to take a partition.")));
		committed++;
	}
	eb_spi_end(&spi);
	PG_RETURN_INT32(committed);
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
	(void) eb_read_range(topic, partition, position - 1, position + 1, 1,
						 GetActiveSnapshot(), eb_fetch_one_emit, f);
	if (!f->found)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("there is no event at position %lld of partition %d of topic \"%s\"",
						(long long) position, partition, topic->name),
				 errdetail("It was not committed, was rolled back, or was removed by retention.")));
}

/*
 * The headers of the copy of an event sent to the dead-letter topic: the
 * event's own, and where it came from and why.  Built in memory context cxt.
 * The reason, which the consumer writes (a stack trace, say), is cut to
 * EB_DLQ_REASON_MAX bytes there, so that the copy of an event that could be
 * relayed can be relayed too.
 */
#define EB_DLQ_REASON_MAX 1024

static Jsonb *
eb_dead_letter_headers(const char *group_name, EbTopic *topic, int32 partition,
					   int64 position, int32 attempts, const char *reason,
					   EbFetchOne *event, MemoryContext cxt)
{
	Oid			argtypes[8] = {JSONBOID, TEXTOID, TEXTOID, INT4OID, INT8OID, UUIDOID, INT4OID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	MemoryContext old;
	Jsonb	   *headers;

	if (event->headers)
		values[0] = JsonbPGetDatum(event->headers);
	else
		nulls[0] = 'n';
	/* the first EB_DLQ_REASON_MAX bytes: eventbus.dead_letter keeps it whole */
	values[1] = PointerGetDatum(cstring_to_text_with_len(reason ? reason : "",
														 reason ? pg_mbcliplen(reason, strlen(reason),
																			   EB_DLQ_REASON_MAX) : 0));
	values[2] = CStringGetTextDatum(topic->name);
	values[3] = Int32GetDatum(partition);
	values[4] = Int64GetDatum(position);
	values[5] = event->event_id;
	values[6] = Int32GetDatum(attempts);
	values[7] = CStringGetTextDatum(group_name);
	eb_spi_exec("SELECT coalesce($1, '{}'::jsonb) || jsonb_build_object("
				"'eventbus-dlq-reason', $2, 'eventbus-dlq-topic', $3, "
				"'eventbus-dlq-partition', $4::text, 'eventbus-dlq-position', $5::text, "
				"'eventbus-dlq-event-id', $6::text, 'eventbus-dlq-attempts', $7::text, "
				"'eventbus-dlq-group', $8)",
				8, argtypes, values, nulls, true);
	old = MemoryContextSwitchTo(cxt);
	headers = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	MemoryContextSwitchTo(old);
	return headers;
}

/* Error context of the dead-letter copy's checks; arg is the topic's name. */
static void
eb_dead_letter_context(void *arg)
{
	errcontext("copy of the event for dead-letter topic \"%s\" (commit() the event to skip it instead)",
			   (const char *) arg);
}

/*
 * Records a dead letter of the group in eventbus.dead_letter, for redrive()
 * and purge_dead_letters(); false with 0.1.0 objects (no such table).
 */
static bool
eb_record_dead_letter(EbGroup *g, int32 partition, int64 position, int32 attempts,
					  const char *reason)
{
	Oid			argtypes[5] = {INT4OID, INT4OID, INT8OID, INT4OID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	if (!eb_groups_catalog_v2())
		return false;
	values[0] = Int32GetDatum(g->group_id);
	values[1] = Int32GetDatum(partition);
	values[2] = Int64GetDatum(position);
	values[3] = Int32GetDatum(attempts);
	if (reason)
		values[4] = CStringGetTextDatum(reason);
	else
		nulls[4] = 'n';
	eb_spi_exec("INSERT INTO eventbus.dead_letter "
				"(group_id, partition, position, attempts, reason) "
				"VALUES ($1, $2, $3, $4, $5) "
				"ON CONFLICT (group_id, partition, position) DO UPDATE SET "
				"attempts = EXCLUDED.attempts, reason = EXCLUDED.reason, "
				"dead_lettered_at = EXCLUDED.dead_lettered_at, dlq_topic = NULL, "
				"dlq_partition = NULL, dlq_position = NULL",
				5, argtypes, values, nulls, false);
	/* the group's monotonic count (group_stats); the row is locked already */
	eb_spi_exec("UPDATE eventbus.group_partition SET dead_lettered = dead_lettered + 1 "
				"WHERE group_id = $1 AND partition = $2",
				2, argtypes, values, NULL, false);
	return true;
}

/*
 * nack(group_name, topic, partition, position, retry_after, reason, member,
 *		generation)
 *
 * Refuses a position that was not handed to the caller (as commit() does)
 * or that the group has committed, unless it is a retry redelivered since
 * it was given back.  The copy to the dead-letter topic is published after
 * the group's own tables are updated, as the caller, who must still be
 * allowed to publish there.
 */
Datum
eb_nack(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	char	   *reason = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
	char	   *member = PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6));
	MemoryContext upper = CurrentMemoryContext;
	Interval   *retry_after;
	EbTopic    *topic;
	EbGroup		g;
	EbSpi		spi;
	int32		partition;
	int64		position;
	EbAckRow	row;
	int64		upto;
	int32		attempts;
	bool		redelivered = false;
	Oid			argtypes[6] = {INT4OID, INT4OID, INT8OID, INT4OID, INTERVALOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	const char *result;
	EbFetchOne	event;
	Jsonb	   *dlq_headers = NULL;
	char	   *dlq_name = NULL;
	bool		recorded = false;
	MemoryContext old;

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
	(void) eb_group_lookup_locked(group_name, topic, &g, false);
	eb_check_group_member(&g, group_name, spi.save_userid);
	eb_lock_for_ack(&g, group_name, topic, partition, member,
					!PG_ARGISNULL(7), PG_ARGISNULL(7) ? 0 : PG_GETARG_INT64(7), &row);
	if (!eb_was_handed(&g, partition, position, member, &row, &upto))
		eb_not_handed_error("nack", &g, group_name, topic, partition, position,
							member, upto);

	values[0] = Int32GetDatum(g.group_id);
	values[1] = Int32GetDatum(partition);
	values[2] = Int64GetDatum(position);
	eb_spi_exec("SELECT attempts, delivered FROM eventbus.group_retry "
				"WHERE group_id = $1 AND partition = $2 AND position = $3 FOR UPDATE",
				3, argtypes, values, NULL, false);
	attempts = 1;
	if (SPI_processed == 1)
	{
		attempts += DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		redelivered = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	if (position <= row.committed && !redelivered)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot nack position %lld of partition %d of topic \"%s\": group \"%s\" has committed it",
						(long long) position, partition, topic->name, group_name),
				 errdetail("The group's committed position in that partition is %lld%s.",
						   (long long) row.committed,
						   attempts > 1 ? ", and the event was given back already and not delivered again since" : ""),
				 errhint("nack() gives back an event being processed. To process committed events again on purpose, use eventbus.seek().")));

	/* the event must exist; kept for the dead-letter topic */
	old = MemoryContextSwitchTo(upper);
	eb_fetch_event(topic, partition, position, &event);
	MemoryContextSwitchTo(old);

	if (attempts >= g.max_attempts)
	{
		if (g.dead_letter_topic != NULL)
		{
			dlq_headers = eb_dead_letter_headers(group_name, topic, partition, position,
												 attempts, reason, &event, upper);
			old = MemoryContextSwitchTo(upper);
			dlq_name = pstrdup(g.dead_letter_topic);
			MemoryContextSwitchTo(old);
		}
		eb_spi_exec("DELETE FROM eventbus.group_retry "
					"WHERE group_id = $1 AND partition = $2 AND position = $3",
					3, argtypes, values, NULL, false);
		recorded = eb_record_dead_letter(&g, partition, position, attempts, reason);
		if (g.dead_letter_topic == NULL)
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("consumer group \"%s\" gave up position %lld of partition %d of topic \"%s\" after %d attempts",
							group_name, (long long) position, partition, topic->name, attempts),
					 errdetail("The topic is a dead-letter topic, so the group has none of its own; the event is kept for eventbus.redrive() and counted in eventbus.groups.dead_letters."),
					 errhint("Redrive it with eventbus.redrive() or forget it with eventbus.purge_dead_letters().")));
		result = "dead-lettered";
		eb_stats_count(topic, EB_STAT_DEAD_LETTERED, 1);
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
					"VALUES ($1, $2, $3, $4, clock_timestamp() + $5, $6) "
					"ON CONFLICT (group_id, partition, position) DO UPDATE SET "
					"attempts = EXCLUDED.attempts, not_before = EXCLUDED.not_before, "
					"reason = EXCLUDED.reason, delivered = false",
					6, argtypes, values, nulls, false);
		result = "retry";
	}
	eb_spi_end(&spi);

	if (dlq_name != NULL)
	{
		/* as the caller again: its right to publish there is checked now */
		EbTopic    *dlq = eb_topic_get(dlq_name, true);
		int32		dpart;
		int64		dpos;
		ErrorContextCallback dlq_context;
		bool		size_by_mapping;

		/* created on the first dead letter, for the group's owner */
		if (dlq == NULL)
			dlq = eb_topic_ensure_dead_letter(dlq_name, topic, g.owner);

		if (pg_class_aclcheck(dlq->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to publish to dead-letter topic \"%s\"", dlq_name),
					 errdetail("Group \"%s\" sends an event there when it is given back for the %d%s time.",
							   group_name, g.max_attempts,
							   g.max_attempts == 1 ? "st" : g.max_attempts == 2 ? "nd" :
							   g.max_attempts == 3 ? "rd" : "th"),
					 errhint("Grant INSERT on the topic to the consuming role, or change the group's dead-letter topic with eventbus.alter_group().")));
		/*
		 * A copy the relay could never send would stop the dead-letter
		 * topic's relaying; its size as stored may exceed
		 * eventbus.max_event_size by the headers added here.
		 */
		dlq_context.callback = eb_dead_letter_context;
		dlq_context.arg = dlq_name;
		dlq_context.previous = error_context_stack;
		error_context_stack = &dlq_context;
		size_by_mapping = eb_check_relayed_size(dlq, event.value, event.key,
												dlq_headers, false);
		error_context_stack = dlq_context.previous;
		eb_publish_internal(dlq, event.value, event.key, dlq_headers,
							size_by_mapping, &dpart, &dpos);
		if (recorded)
		{
			Oid			dargtypes[6] = {INT4OID, INT4OID, INT8OID, TEXTOID, INT4OID, INT8OID};
			Datum		dvalues[6];

			dvalues[0] = Int32GetDatum(g.group_id);
			dvalues[1] = Int32GetDatum(partition);
			dvalues[2] = Int64GetDatum(position);
			dvalues[3] = CStringGetTextDatum(dlq_name);
			dvalues[4] = Int32GetDatum(dpart);
			dvalues[5] = Int64GetDatum(dpos);
			eb_spi_begin(&spi, true);
			eb_spi_exec("UPDATE eventbus.dead_letter SET dlq_topic = $4, dlq_partition = $5, "
						"dlq_position = $6 WHERE group_id = $1 AND partition = $2 AND position = $3",
						6, dargtypes, dvalues, NULL, false);
			eb_spi_end(&spi);
		}
	}
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
	(void) eb_group_lookup_locked(group_name, topic, &g, false);
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
