/*-------------------------------------------------------------------------
 *
 * notify.c
 *	  Wake-ups: LISTEN "eventbus.<topic>" notifications and eventbus.wait().
 *
 * A transaction that issues NOTIFY takes a cluster-wide lock at commit and
 * holds it through the commit's WAL flush, which would serialize every
 * producer.  So producers never notify.  A publishing transaction only
 * remembers its topics; its commit callback, which runs once the commit is
 * visible (and its abort callback: an aborted producer no longer holds back
 * the read horizon), sets the topic's notify_pending flag, broadcasts the topic's
 * condition variable and sets the latch of the database worker.
 *
 * The database worker (worker.c) calls eb_notify_pass(): it sends one
 * NOTIFY per pending topic, at most one per topic every
 * eventbus.notify_interval, all in one transaction.  The payload names the
 * topic and the end position of each partition.  Each database served by
 * the launcher has its own database worker, whose latch is in the
 * database's shared entry (shmem.h).
 *
 * Nobody may be listening to a topic.  Then a commit to it marks nothing
 * and wakes nobody: with a thousand topics in use, nearly every commit is
 * its topic's first within an interval, and the worker sent about one
 * NOTIFY per commit (a fifth of a CPU at 10,000 commits a second), also
 * when the only listener listened to another topic.  Before its first
 * LISTEN on a channel "eventbus.<topic>" runs (ProcessUtility hook), a
 * backend counts itself in the listener count of (its database, <topic>)
 * (eb_listener_count: a fixed array by hash; topics that share an entry
 * only cost needless notifications), and stays counted until it exits;
 * UNLISTEN does not uncount it.  A commit reads its topics' counts after it
 * became visible, a listener checks for events after its LISTEN committed:
 * either the commit sees the listener and marks its topic, or the
 * listener's check sees the commit.
 *
 * eventbus.wait() does not need the worker: it prepares to sleep on the
 * topic's condition variable, then checks for events with the latest
 * snapshot, then sleeps.  A commit is visible before its broadcast, so a
 * commit just before the call is either seen by the check or wakes the
 * sleep.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "lib/stringinfo.h"
#include "port/pg_bitutils.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "nodes/plannodes.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "utils/portal.h"
#include "storage/condition_variable.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "compat.h"
#include "catalog.h"
#include "group.h"
#include "notify.h"
#include "position.h"
#include "read.h"
#include "shmem.h"
#include "util.h"

PG_FUNCTION_INFO_V1(eb_wait);

int			eb_notify_interval = 10;

#define EB_PUBLISHED_MAX 32
#define EB_NOTIFY_PAYLOAD_MAX 7900
/* wait() sleeps at most a day */
#define EB_WAIT_MAX_US ((int64) 24 * 3600 * USECS_PER_SEC)

/* Topics this transaction published to. */
static EbTopicShared *published[EB_PUBLISHED_MAX];
static int64 published_uid[EB_PUBLISHED_MAX];
static pg_atomic_uint32 *published_listeners[EB_PUBLISHED_MAX];
static int	npublished = 0;
static bool published_overflow = false;

/* In the worker: when each topic was last notified. */
typedef struct EbNotified
{
	int64		uid;
	TimestampTz at;
} EbNotified;

static HTAB *notified = NULL;

/*
 * In the worker: a pass that looked at every slot is done, and no pass
 * since has failed half-way (it may have taken bits it did not put back).
 */
static bool scanned_all = false;
static bool pass_running = false;
/* the entries of eb_shared->listeners this backend is counted in */
static bool listener_counted[EB_LISTENER_BUCKETS];
static bool listener_exit_registered = false;

/* The notification channel of topic t is EB_CHANNEL_PREFIX "t". */
#define EB_CHANNEL_PREFIX "eventbus."

static void eb_notify_wake_worker(Oid dboid);

void
eb_notify_record(EbTopic *topic)
{
	EbTopicShared *t = topic->tshared;
	int			i;

	if (t == NULL)
		return;
	for (i = 0; i < npublished; i++)
	{
		if (published[i] == t)
			return;
	}
	if (npublished < EB_PUBLISHED_MAX)
	{
		published[npublished] = t;
		published_uid[npublished] = topic->uid;
		published_listeners[npublished] = eb_listener_count(MyDatabaseId, topic->name);
		npublished++;
	}
	else
		published_overflow = true;
}

/* A database's notify bitmap, looked up when first needed. */
typedef struct EbBitsRef
{
	Oid			dboid;
	bool		resolved;
	pg_atomic_uint64 *bits;
} EbBitsRef;

/*
 * Marks the topic for a notification, in its slot and in the database's
 * bitmap, if mark (someone may listen to it), and wakes its wait()ers.  Returns true
 * if this call marked it: otherwise it was marked already (the worker knows,
 * and sends the notification when the topic's interval has passed) or mark
 * was false.  The caller issued a memory barrier after its commit became
 * visible (see eb_notify_xact_end).
 */
static bool
eb_notify_signal(EbTopicShared *t, EbBitsRef *ref, bool mark)
{
	bool		first = false;

	/* read first: most commits find the flag set and write nothing */
	if (mark && pg_atomic_read_u32(&t->notify_pending) == 0 &&
		pg_atomic_exchange_u32(&t->notify_pending, 1) == 0)
	{
		int			i = t - eb_shared->topics;

		first = true;
		if (!ref->resolved)
		{
			ref->bits = eb_notify_bits(ref->dboid);
			ref->resolved = true;
		}
		if (ref->bits != NULL)
			pg_atomic_fetch_or_u64(&ref->bits[i / 64], UINT64CONST(1) << (i % 64));
	}

	/*
	 * A wait()er counts itself before it prepares to sleep and checks for
	 * events; we read the count after our commit became visible.  Either it
	 * sees the commit or we see it and broadcast.
	 */
	if (pg_atomic_read_u32(&t->waiters) > 0)
		ConditionVariableBroadcast(&t->committed);
	return first;
}

/*
 * Called at the end of every transaction; wake at commit and at abort: an
 * aborted producer's positions no longer hold back the read horizon, so
 * events committed behind them become readable.  Not at PREPARE (the
 * prepared transaction still holds them; COMMIT or ROLLBACK PREPARED
 * wakes the database's topics).
 */
void
eb_notify_xact_end(bool wake)
{
	int			i;

	if (wake && eb_shared != NULL && (npublished > 0 || published_overflow))
	{
		bool		signalled = false;
		EbBitsRef	ref = {MyDatabaseId, false, NULL};

		/* the commit (or abort) is visible: order what we read after it */
		pg_memory_barrier();
		for (i = 0; i < npublished; i++)
		{
			if (published[i]->key.uid == published_uid[i] &&
				eb_notify_signal(published[i], &ref,
								 pg_atomic_read_u32(published_listeners[i]) > 0))
				signalled = true;
		}
		if (published_overflow)
		{
			eb_notify_database(MyDatabaseId, false);
			signalled = true;
		}
		if (signalled)
			eb_notify_wake_worker(MyDatabaseId);
	}
	npublished = 0;
	published_overflow = false;
}

/* Tells the worker sending notifications, if it serves dboid, to look. */
static void
eb_notify_wake_worker(Oid dboid)
{
	EbDbShared *d = eb_db_shared(dboid, false);

	/* without dbs_lock, which every waking commit of every database would take */
	if (d != NULL)
		eb_set_published_latch(&d->notify_latch);
}

/*
 * Every topic of a database may have new events (too many topics to track,
 * or a prepared transaction committed): wakes them all.
 */
void
eb_notify_database(Oid dboid, bool wake_worker)
{
	int			i;
	EbBitsRef	ref = {dboid, false, NULL};
	bool		marked = false;

	pg_memory_barrier();
	for (i = 0; i < eb_shared->max_topics; i++)
	{
		EbTopicShared *t = &eb_shared->topics[i];

		/*
		 * Not a slot still being set up: its flag would stay set, and
		 * publishers, finding it set, would not wake the worker.
		 */
		if (t->in_use && t->initialized && t->key.dboid == dboid)
		{
			bool		mark;

			/* name is written before initialized is set (position.c) */
			pg_read_barrier();
			mark = pg_atomic_read_u32(eb_listener_count(dboid, t->name)) > 0;

			(void) eb_notify_signal(t, &ref, mark);
			marked |= mark;
		}
	}
	if (wake_worker && marked)
		eb_notify_wake_worker(dboid);
}

static void
eb_notify_listener_exit(int code, Datum arg)
{
	int			i;

	for (i = 0; i < EB_LISTENER_BUCKETS; i++)
	{
		if (listener_counted[i])
			pg_atomic_fetch_sub_u32(&eb_shared->listeners[i], 1);
		listener_counted[i] = false;
	}
}

/*
 * Called before a LISTEN runs: a backend that listens to a channel
 * "eventbus.<topic>" counts in that topic's listener count until it exits
 * (a full barrier: the count is visible before the LISTEN commits).
 */
void
eb_notify_listen(const char *channel)
{
	pg_atomic_uint32 *count;
	int			i;

	if (eb_shared == NULL || channel == NULL ||
		strncmp(channel, EB_CHANNEL_PREFIX, strlen(EB_CHANNEL_PREFIX)) != 0)
		return;
	count = eb_listener_count(MyDatabaseId, channel + strlen(EB_CHANNEL_PREFIX));
	i = count - eb_shared->listeners;
	if (listener_counted[i])
		return;
	if (!listener_exit_registered)
	{
		before_shmem_exit(eb_notify_listener_exit, (Datum) 0);
		listener_exit_registered = true;
	}
	listener_counted[i] = true;
	pg_atomic_fetch_add_u32(count, 1);
}

/* The database worker announces itself as the sender of notifications. */
void
eb_notify_register(bool active)
{
	EbDbShared *d = eb_db_shared(MyDatabaseId, active);

	if (d == NULL)
		return;
	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	d->notify_latch = active ? MyLatch : NULL;
	LWLockRelease(eb_shared->dbs_lock);
}

/* {"topic": ..., "end_positions": [...]}, without positions if too long */
static char *
eb_notify_payload(const char *name)
{
	EbTopic    *topic = eb_topic_get(name, true);
	StringInfoData buf;
	int32		p;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"topic\": ");
	escape_json(&buf, name);
	if (topic != NULL)
	{
		int			before = buf.len;

		appendStringInfoString(&buf, ", \"end_positions\": [");
		for (p = 0; p < topic->partitions; p++)
		{
			int64		end;

			(void) eb_read_horizon(topic, p, &end);
			appendStringInfo(&buf, "%s" INT64_FORMAT, p > 0 ? ", " : "", end);
		}
		appendStringInfoChar(&buf, ']');
		if (buf.len > EB_NOTIFY_PAYLOAD_MAX)
		{
			buf.len = before;
			buf.data[before] = '\0';
		}
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * Looks at topic slot i for the worker's pass: if its topic (of this
 * database) is marked and its interval has passed, unmarks it and adds its
 * name to *names; if the interval has not passed, lowers *next to when it
 * does.  Returns true if the slot stays marked for a later pass.
 */
static bool
eb_notify_consider(int i, TimestampTz now, long *next, List **names)
{
	EbTopicShared *t = &eb_shared->topics[i];
	EbNotified *n;
	bool		found;
	int64		uid;
	char		name[NAMEDATALEN];
	long		since;

	if (pg_atomic_read_u32(&t->notify_pending) == 0)
		return false;
	LWLockAcquire(&t->lock, LW_SHARED);
	if (!t->in_use || t->key.dboid != MyDatabaseId)
	{
		/* another database's (its own bitmap has it) or free */
		LWLockRelease(&t->lock);
		return false;
	}
	if (!t->initialized)
	{
		LWLockRelease(&t->lock);
		return true;
	}
	uid = t->key.uid;
	strlcpy(name, t->name, NAMEDATALEN);
	LWLockRelease(&t->lock);

	n = hash_search(notified, &uid, HASH_ENTER, &found);
	if (!found)
		n->at = 0;
	since = (long) ((now - n->at) / 1000);
	if (found && since < eb_notify_interval)
	{
		long		wait = eb_notify_interval - since;

		*next = *next < 0 ? wait : Min(*next, wait);
		return true;
	}
	if (pg_atomic_exchange_u32(&t->notify_pending, 0) == 1)
	{
		n->at = now;
		*names = lappend(*names, pstrdup(name));
	}
	return false;
}

/*
 * Sends the notifications that are due.  Returns how many milliseconds
 * until more are due (coalesced ones), or -1 if none is pending.
 */
long
eb_notify_pass(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		next = -1;
	List	   *names = NIL;
	ListCell   *lc;
	int			i;
	int			w;
	pg_atomic_uint64 *bits;

	if (notified == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(EbNotified);
		ctl.hcxt = TopMemoryContext;
		notified = hash_create("pg_eventbus notified topics", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	else if (hash_get_num_entries(notified) > eb_shared->max_topics)
	{
		/*
		 * Only topics notified within the last interval matter.  Forget
		 * the others, or every topic ever dropped would stay here for the
		 * worker's life.
		 */
		HASH_SEQ_STATUS seq;
		EbNotified *n;

		hash_seq_init(&seq, notified);
		while ((n = hash_seq_search(&seq)) != NULL)
		{
			if ((now - n->at) / 1000 >= eb_notify_interval)
				(void) hash_search(notified, &n->uid, HASH_REMOVE, NULL);
		}
	}

	bits = eb_notify_bits(MyDatabaseId);
	if (pass_running)
		scanned_all = false;	/* the last pass failed */
	pass_running = true;
	if (bits == NULL || !scanned_all)
	{
		/*
		 * The first pass of this worker looks at every slot: a topic may
		 * have been marked while no worker (or no database entry) was there
		 * to be told.  So does the pass after one that failed.
		 */
		for (i = 0; i < eb_shared->max_topics; i++)
		{
			if (pg_atomic_read_u32(&eb_shared->topics[i].notify_pending) != 0 &&
				eb_notify_consider(i, now, &next, &names) && bits != NULL)
				pg_atomic_fetch_or_u64(&bits[i / 64], UINT64CONST(1) << (i % 64));
		}
		scanned_all = bits != NULL;
	}
	else
	{
		/* only the slots marked since the last pass */
		for (w = 0; w < eb_shared->notify_words; w++)
		{
			uint64		word;
			uint64		keep = 0;

			if (pg_atomic_read_u64(&bits[w]) == 0)
				continue;
			word = pg_atomic_exchange_u64(&bits[w], 0);
			while (word != 0)
			{
				int			b = pg_rightmost_one_pos64(word);

				word &= word - 1;
				i = w * 64 + b;
				if (i < eb_shared->max_topics && eb_notify_consider(i, now, &next, &names))
					keep |= UINT64CONST(1) << b;
			}
			/* coalesced: looked at again on the next pass */
			if (keep != 0)
				pg_atomic_fetch_or_u64(&bits[w], keep);
		}
	}

	if (names != NIL)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();

		/*
		 * A notification is not data: a crash that loses this commit loses
		 * no event, and listeners do not survive a crash anyway.  Not
		 * waiting for the commit's WAL flush shortens the time the NOTIFY
		 * lock is held and keeps a slow disk from delaying the next
		 * notifications.
		 */
		(void) set_config_option("synchronous_commit", "off", PGC_SUSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		PushActiveSnapshot(GetTransactionSnapshot());
		foreach(lc, names)
		{
			char	   *name = lfirst(lc);

			Async_Notify(psprintf(EB_CHANNEL_PREFIX "%s", name), eb_notify_payload(name));
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		list_free_deep(names);
	}
	pass_running = false;
	return next;
}

typedef struct EbAnyEvent
{
	bool		found;
} EbAnyEvent;

static EbEmitResult
eb_any_emit(void *arg, EbTopic *topic, TupleTableSlot *slot)
{
	((EbAnyEvent *) arg)->found = true;
	return EB_EMIT_STOP;
}

/*
 * Would poll() return something for this group now?  Uses the latest
 * snapshot.  With a member, partitions it leases count from what it was
 * handed, and partitions leased to others are skipped.
 */
static bool
eb_group_has_events(const char *group_name, EbTopic *topic, const char *member)
{
	static SPIPlanPtr plan_due = NULL;
	EbSpi		spi;
	EbGroup		g;
	EbPartState *states;
	Oid			argtypes[3] = {INT4OID, INT4OID, TIMESTAMPTZOID};
	Datum		values[3];
	Snapshot	snapshot;
	bool		result = false;
	bool		locked;
	uint64		i;
	int32		p;

	snapshot = RegisterSnapshot(GetLatestSnapshot());
	PushActiveSnapshot(snapshot);
	eb_spi_begin(&spi, true);
	locked = eb_group_lookup_locked(group_name, topic, &g, false);
	eb_check_group_member(&g, group_name, spi.save_userid);
	states = eb_group_partition_states(&g, topic, member, false);
	if (g.paused)
		goto done;				/* poll() would return nothing */

	/*
	 * A retry that is due counts as an event: an index probe per partition
	 * (group_retry_due), not a read of every retry of the group.  The time
	 * is a parameter: a volatile function cannot bound an index scan.
	 */
	values[0] = Int32GetDatum(g.group_id);
	values[1] = Int32GetDatum(topic->partitions);
	values[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	eb_spi_plan(&plan_due,
				"SELECT p FROM pg_catalog.generate_series(0, $2 - 1) p, "
				"LATERAL (SELECT FROM eventbus.group_retry r "
				"  WHERE r.group_id = $1 AND r.partition = p AND r.not_before <= $3 "
				"  LIMIT 1) due",
				3, argtypes);
	eb_spi_run(plan_due, values, NULL, true);
	for (i = 0; i < SPI_processed && !result; i++)
	{
		bool		isnull;

		p = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		if (p >= 0 && p < topic->partitions && !states[p].held_by_other)
			result = true;
	}
	for (p = 0; p < topic->partitions && !result; p++)
	{
		EbAnyEvent	any = {false};

		if (states[p].held_by_other)
			continue;
		(void) eb_read_partition(topic, p,
								 states[p].mine ? states[p].fetched : states[p].committed,
								 1, snapshot, eb_any_emit, &any);
		result = any.found;
	}
done:
	/* not held through wait()'s sleep: a delete_group() may go ahead */
	if (locked)
		eb_group_unlock(g.group_id, false);
	eb_spi_end(&spi);
	PopActiveSnapshot();
	UnregisterSnapshot(snapshot);
	return result;
}

/*
 * May wait() stop holding back the xmin horizon while it sleeps?  Its own
 * checks use fresh snapshots, but the statement that called it holds one
 * (the portal's), and anything that reads with that snapshot after the
 * sleep could miss rows that vacuum removed meanwhile.  So only when
 * nothing can: outside a transaction block (no cursor of the transaction
 * reads later) and called directly by a statement that is
 * SELECT eventbus.wait(...) with constant or parameter arguments.
 */
static bool
eb_wait_may_release_xmin(FunctionCallInfo fcinfo)
{
	PlannedStmt *pstmt;
	Plan	   *plan;
	TargetEntry *tle;
	FuncExpr   *fexpr;
	ListCell   *lc;

	if (IsTransactionBlock() || IsolationUsesXactSnapshot())
		return false;
	if (ActivePortal == NULL || list_length(ActivePortal->stmts) != 1)
		return false;
	pstmt = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (pstmt->commandType != CMD_SELECT || pstmt->subplans != NIL ||
		pstmt->utilityStmt != NULL)
		return false;
	plan = pstmt->planTree;
	if (plan == NULL || !IsA(plan, Result) || plan->lefttree != NULL ||
		plan->initPlan != NIL || plan->qual != NIL ||
		((Result *) plan)->resconstantqual != NULL ||
		list_length(plan->targetlist) != 1)
		return false;
	tle = linitial_node(TargetEntry, plan->targetlist);
	if (!IsA(tle->expr, FuncExpr))
		return false;
	fexpr = (FuncExpr *) tle->expr;
	if (fexpr->funcid != fcinfo->flinfo->fn_oid)
		return false;
	foreach(lc, fexpr->args)
	{
		Node	   *arg = (Node *) lfirst(lc);

		if (IsA(arg, RelabelType))
			arg = (Node *) ((RelabelType *) arg)->arg;
		if (!IsA(arg, Const) && !IsA(arg, Param))
			return false;
	}
	return true;
}

/*
 * Sleeps on the topic's condition variable.  With release_xmin, nothing
 * reads with the statement's snapshot after this call (see
 * eb_wait_may_release_xmin): do not hold back vacuum while sleeping.  The
 * value is put back before anything else runs.
 */
static void
eb_wait_sleep(EbTopicShared *t, long sleep_ms, bool release_xmin)
{
	TransactionId xmin = MyProc->xmin;

	if (!release_xmin)
	{
		(void) ConditionVariableTimedSleep(&t->committed, sleep_ms, PG_WAIT_EXTENSION);
		return;
	}
	MyProc->xmin = InvalidTransactionId;
	PG_TRY();
	{
		(void) ConditionVariableTimedSleep(&t->committed, sleep_ms, PG_WAIT_EXTENSION);
	}
	PG_FINALLY();
	{
		MyProc->xmin = xmin;
	}
	PG_END_TRY();
}

/*
 * wait(group_name text, topic text, timeout interval, member text)
 *	returns boolean
 */
Datum
eb_wait(PG_FUNCTION_ARGS)
{
	char	   *group_name = eb_arg_name(fcinfo, 0, "group");
	char	   *topic_name = eb_arg_name(fcinfo, 1, "topic");
	char	   *member = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	Interval   *timeout;
	EbTopic    *topic;
	EbTopicShared *t;
	TimestampTz deadline;
	int64		timeout_us;
	bool		release_xmin;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("eventbus.wait() cannot be used in a %s transaction",
						XactIsoLevel == XACT_SERIALIZABLE ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("Such a transaction sees only events committed before it started, so it would wait for events it cannot poll."),
				 errhint("Call wait() in a READ COMMITTED transaction, best as a statement of its own outside a transaction block.")));
	eb_arg_not_null(fcinfo, 2, "timeout");
	timeout = PG_GETARG_INTERVAL_P(2);
	if (eb_interval_sign(timeout) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	{
		/* in double: years of timeout would overflow int64 microseconds */
		double		us = (double) timeout->time +
			((double) timeout->day + (double) timeout->month * DAYS_PER_MONTH) * USECS_PER_DAY;

		timeout_us = us >= (double) EB_WAIT_MAX_US ? EB_WAIT_MAX_US : (int64) us;
	}

	topic = eb_topic_get(topic_name, false);
	eb_check_read_privilege(topic);
	eb_require_primary();
	t = eb_topic_state(topic);
	deadline = GetCurrentTimestamp() + timeout_us;
	release_xmin = eb_wait_may_release_xmin(fcinfo);

	for (;;)
	{
		TimestampTz now;
		long		sleep_ms;
		volatile int outcome = 0;	/* 1: events, 2: timed out */
		EbTopicShared *volatile counted = t;

		/*
		 * Counted before preparing to sleep and checking (a full barrier):
		 * a commit that does not see the count is seen by the check (see
		 * eb_notify_signal).
		 */
		pg_atomic_fetch_add_u32(&counted->waiters, 1);
		PG_TRY();
		{
			ConditionVariablePrepareToSleep(&t->committed);
			if (eb_group_has_events(group_name, topic, member))
				outcome = 1;
			else if ((now = GetCurrentTimestamp()) >= deadline)
				outcome = 2;
			else
			{
				/* re-check at least every second: retries fall due without commits */
				sleep_ms = Min((long) ((deadline - now) / 1000) + 1, 1000L);
				eb_wait_sleep(t, sleep_ms, release_xmin);
			}
			ConditionVariableCancelSleep();
		}
		PG_FINALLY();
		{
			pg_atomic_fetch_sub_u32(&counted->waiters, 1);
		}
		PG_END_TRY();
		if (outcome == 1)
			PG_RETURN_BOOL(true);
		if (outcome == 2)
			PG_RETURN_BOOL(false);
		/* the topic may have been dropped and its slot reused meanwhile */
		topic = eb_topic_get(topic_name, false);
		t = eb_topic_state(topic);
	}
}
