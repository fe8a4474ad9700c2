/*-------------------------------------------------------------------------
 *
 * relay_ack.c
 *	  The relay's acknowledgement tracking: decoded transactions in flight,
 *	  sending their messages (through relay_kafka.c) and counting them until
 *	  acknowledged, delivery reports, committing Kafka transactions once
 *	  their messages are acknowledged, messages Kafka refused for good,
 *	  confirming the slot, and the counters of relay_status.
 *
 * Decoded transactions enter a FIFO in commit order, each with a count of
 * messages not yet acknowledged.  The slot's confirmed position moves only
 * to the end of the newest transaction of the fully acknowledged prefix
 * (LogicalConfirmReceivedLocation, then the slot is saved, at most every
 * EB_SLOT_SAVE_MS).  When nothing is in flight and all WAL has been read,
 * the slot is confirmed at the read position, so an idle database does not
 * retain WAL.
 *
 * Delivery reports (eb_delivery_cb) are served by rd_kafka_poll() in the
 * worker's main thread, as are all librdkafka callbacks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "privileged.h"
#include "relay_int.h"
#include "shmem.h"

EbRelayTxn *eb_current_txn = NULL;
int64		eb_in_flight = 0;
TimestampTz eb_in_flight_since = 0;
bool		eb_stopped_at_refusal = false;
bool		eb_stopped_for_metadata = false;
uint64		eb_stat_events = 0;
uint64		eb_stat_bytes = 0;
XLogRecPtr	eb_last_commit_lsn = InvalidXLogRecPtr;
XLogRecPtr	eb_last_end_lsn = InvalidXLogRecPtr;

/* exactly-once: transactions skipped because Kafka has them */
static int64 skipped = 0;
static bool skipped_logged = false;

/*
 * Exactly-once: messages Kafka refused for good inside a transaction, which
 * therefore had to be aborted.  When decoding comes to them again, they
 * are refused without being sent (their topic's policy applies then), so
 * that such messages cannot make every later transaction fail.  An entry
 * is found by commit LSN and event id; an event a backfill sends from the
 * topic's tables has LSN 0/0, and its event id alone finds it.
 *
 * Nothing is forgotten to make room: with more refusals in one Kafka
 * transaction than a fixed table holds, each attempt would forget those
 * the next needs, and the relay would retry forever.  An entry goes once a
 * Kafka transaction committed after it was used (that transaction's
 * progress covers the refused event's transaction or backfill batch, so
 * it is not sent again; a backfill of the same events started later sends
 * it again, the cause may be fixed by then), or when its topic's policy is
 * 'stop'.  One attempt adds at most the messages in flight.
 */
typedef struct EbKnownRefusalKey
{
	XLogRecPtr	lsn;
	char		event_id[40];
} EbKnownRefusalKey;

typedef struct EbKnownRefusal
{
	EbKnownRefusalKey key;
	rd_kafka_resp_err_t err;
	bool		used;			/* refused without sending in this session */
} EbKnownRefusal;
static HTAB *known_refusals = NULL;

/*
 * The dead letters of the transactions the session will skip uncounted
 * (commit LSN above counted_lsn, up to eb_progress_lsn; see
 * eb_ack_counted): keys as of known_refusals, in eb_session_cxt; NULL if
 * none.
 */
static HTAB *skipped_dead_letters = NULL;

static dlist_head txns = DLIST_STATIC_INIT(txns);
static dlist_head refusals = DLIST_STATIC_INIT(refusals);
static XLogRecPtr confirmed = InvalidXLogRecPtr;
static bool slot_dirty = false;
static TimestampTz last_save = 0;

static TimestampTz stat_last_ack = 0;
static bool ack_unstamped = false;	/* acknowledged since stat_last_ack was taken */
static TimestampTz stats_published_at = 0;
static double latency_ring[EB_LATENCY_RING];
static int	latency_count = 0;
static int	latency_next = 0;

static void eb_ack_stamp(TimestampTz now);
static void eb_ack_deferred_drop(void);
static void eb_ack_position_apply(EbPartShared *part, int64 uid, int32 partition,
								  int64 position, uint64 count);
static rd_kafka_resp_err_t eb_relay_known_refusal(XLogRecPtr lsn, const char *event_id);
static void eb_known_refusals_init(void);
static void eb_ack_skipped_session_start(void);
static void eb_known_refusal_key(EbKnownRefusalKey *key, XLogRecPtr lsn,
								 const char *event_id);
static HTAB *eb_message_table(const char *name, Size entrysize, MemoryContext cxt);
static void eb_known_refusals_sweep(bool forget_used);

/* A new session: nothing in flight, the slot confirmed at confirmed_flush. */
void
eb_ack_session_start(XLogRecPtr confirmed_flush)
{
	dlist_init(&txns);
	dlist_init(&refusals);
	eb_stopped_at_refusal = false;
	eb_current_txn = NULL;
	eb_in_flight = 0;
	eb_in_flight_since = 0;
	confirmed = confirmed_flush;
	slot_dirty = false;
	eb_last_commit_lsn = InvalidXLogRecPtr;
	eb_last_end_lsn = InvalidXLogRecPtr;
	skipped = 0;
	skipped_logged = false;
	/* the first session since the server started: see eb_ack_counted */
	if (eb_exactly_once && !eb_my_relay->counted_known)
	{
		eb_my_relay->counted_lsn = eb_progress_lsn;
		eb_my_relay->counted_known = true;
	}
	eb_ack_skipped_session_start();
	eb_known_refusals_init();
	eb_known_refusals_sweep(false);
}

/* The session ended: what it tracked is gone with eb_session_cxt. */
void
eb_ack_session_end(void)
{
	skipped_dead_letters = NULL;
	dlist_init(&txns);
	dlist_init(&refusals);
	eb_current_txn = NULL;
	eb_in_flight = 0;
	eb_ack_deferred_drop();
}

/* ---------- acknowledgement callbacks under exactly-once ---------- */

/*
 * A message's on_ack (a backfill's progress) says Kafka has the message.
 * Under exactly-once a delivery report does not say that yet: the Kafka
 * transaction can still be aborted.  So the callbacks wait here until the
 * transaction commits (eb_ack_deferred_run) and are dropped when it is
 * aborted or the session ends (the backfill then sends its batch again).
 * Runs of the same callback and argument are counted, not listed.
 */
typedef struct EbDeferredAck
{
	EbRelayAckFn fn;
	void	   *arg;
	int64		count;
} EbDeferredAck;

static EbDeferredAck *deferred = NULL;
static int	ndeferred = 0;
static int	maxdeferred = 0;

static void
eb_ack_call(EbRelayAckFn fn, void *arg)
{
	if (!eb_exactly_once)
	{
		fn(arg);
		return;
	}
	if (ndeferred > 0 && deferred[ndeferred - 1].fn == fn &&
		deferred[ndeferred - 1].arg == arg)
	{
		deferred[ndeferred - 1].count++;
		return;
	}
	if (ndeferred == maxdeferred)
	{
		maxdeferred = Max(16, maxdeferred * 2);
		deferred = deferred == NULL ?
			MemoryContextAlloc(TopMemoryContext, maxdeferred * sizeof(EbDeferredAck)) :
			repalloc(deferred, maxdeferred * sizeof(EbDeferredAck));
	}
	deferred[ndeferred].fn = fn;
	deferred[ndeferred].arg = arg;
	deferred[ndeferred].count = 1;
	ndeferred++;
}

/*
 * What relay_status, relay_backlog() and start_at => 'last_acknowledged'
 * read of a delivered message: the partition's relayed_position and its
 * count of relayed events, the outbox's count, the relay's counts of events
 * and bytes.  Under exactly-once they too wait
 * for the Kafka transaction's commit: an event delivered in a transaction
 * that is then aborted is not in Kafka for read_committed consumers, and a
 * backfill from the last acknowledged position must send it.  Kept per
 * partition (the highest position and a count), in a hash table that
 * lives as long as the process; emptied at each commit or abort.
 */
typedef struct EbPendingPos
{
	EbPartShared *part;			/* the key */
	int64		uid;
	int32		partition;
	int64		position;
	uint64		count;
} EbPendingPos;

/* Counts not applied yet: per partition, and of the outbox and the relay. */
typedef struct EbPendingCounts
{
	const char *name;			/* of the hash table */
	HTAB	   *pos;			/* EbPendingPos by partition slot */
	EbPendingPos *last;			/* the entry used last */
	uint64		outbox;
	uint64		events;
	uint64		bytes;
} EbPendingCounts;

/* of the open Kafka transaction */
static EbPendingCounts pending = {.name = "pg_eventbus relay positions"};

/*
 * At-least-once: of the delivery reports served by one poll, applied when
 * it returns (eb_ack_stamp), so that a partition's lock, which publishers
 * take to assign positions, is taken once per partition and poll rather
 * than once per message.
 */
static EbPendingCounts acked = {.name = "pg_eventbus relay acknowledged positions"};

/* Moves a partition's relayed_position to position, counts count events. */
static void
eb_ack_position_apply(EbPartShared *part, int64 uid, int32 partition,
					  int64 position, uint64 count)
{
	LWLockAcquire(&part->lock, LW_EXCLUSIVE);
	if (eb_part_key_matches(part, MyDatabaseId, uid, partition))
	{
		if (part->relayed_position < position)
			part->relayed_position = position;
		pg_atomic_fetch_add_u64(&part->stat_relayed, count);
	}
	LWLockRelease(&part->lock);
}

/*
 * Notes a message at position of a partition in c, to apply later; count:
 * whether it counts as relayed (0: it only moves the position).
 */
static void
eb_counts_position(EbPendingCounts *c, EbPartShared *part, int64 uid,
				   int32 partition, int64 position, uint64 count)
{
	EbPendingPos *e;
	bool		found;

	if (c->last != NULL && c->last->part == part && c->last->uid == uid &&
		c->last->partition == partition)
		e = c->last;
	else
	{
		if (c->pos == NULL)
		{
			HASHCTL		ctl;

			ctl.keysize = sizeof(EbPartShared *);
			ctl.entrysize = sizeof(EbPendingPos);
			ctl.hcxt = TopMemoryContext;
			c->pos = hash_create(c->name, 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
		e = hash_search(c->pos, &part, HASH_ENTER, &found);
		if (!found || e->uid != uid || e->partition != partition)
		{
			/* new, or the slot now holds another partition: apply the old */
			if (found)
				eb_ack_position_apply(e->part, e->uid, e->partition,
									  e->position, e->count);
			e->uid = uid;
			e->partition = partition;
			e->position = -1;
			e->count = 0;
		}
		c->last = e;
	}
	e->position = Max(e->position, position);
	e->count += count;
}

/*
 * Applies the counts of c (apply) or forgets them, and empties c.  Whether
 * c held anything.
 */
static bool
eb_counts_end(EbPendingCounts *c, bool apply)
{
	HASH_SEQ_STATUS seq;
	EbPendingPos *e;
	bool		any = c->outbox > 0 || c->events > 0 || c->last != NULL;

	if (apply && c->outbox > 0)
		pg_atomic_fetch_add_u64(&eb_my_relay->outbox_relayed, c->outbox);
	if (apply)
	{
		eb_stat_events += c->events;
		eb_stat_bytes += c->bytes;
	}
	c->outbox = 0;
	c->events = 0;
	c->bytes = 0;
	c->last = NULL;
	if (c->pos == NULL)
		return any;
	hash_seq_init(&seq, c->pos);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (apply)
			eb_ack_position_apply(e->part, e->uid, e->partition,
								  e->position, e->count);
		hash_search(c->pos, &e->part, HASH_REMOVE, NULL);
	}
	return any;
}

/* Counts a delivered message: in shared memory now, or at the commit. */
static void
eb_ack_position(EbRelayMsgRef *ref)
{
	if (!eb_exactly_once)
		eb_counts_position(&acked, ref->part, ref->uid_check, ref->partition,
						   ref->position, 1);
	else
		eb_counts_position(&pending, ref->part, ref->uid_check,
						   ref->partition, ref->position, 1);
}

/*
 * Exactly-once: the counts above (and the partitions' relayed_position)
 * take a message when the Kafka transaction that carried it committed.  The
 * relay may not learn that it did: the brokers committed, but the relay's
 * call failed, or the worker stopped while it waited for the answer.  The
 * next session reads the transaction's progress record back and skips its
 * PostgreSQL transactions (and eb_backfill_recover() saves its backfill
 * batch), so their messages would never be counted: outbox_backlog would
 * stay above 0 until the server restarts, and relay_backlog() would count
 * events Kafka has.
 *
 * So the relay keeps in shared memory (a worker that stopped passes them to
 * the next) the commit LSN up to which messages were counted since the
 * server started, counted_lsn, and the name of the last Kafka transaction
 * counted, counted_txn.  A skipped transaction above counted_lsn is
 * counted: its messages are noted in skipped_counts and applied at its
 * commit, together with counted_lsn, so that an ERROR part-way through it
 * leaves both as they were.  A message the relay remembers Kafka refused
 * (dead-lettered in the attempt whose commit went unanswered) moves its
 * partition's position but is not counted as relayed; after a worker
 * restart the relay no longer knows it, and counts it.  A backfill batch
 * is counted by its record's relay_txn (eb_ack_count_recovered), as the
 * commit LSN of a backfill-only record says nothing new.  The first
 * session after the server started takes what Kafka had then: messages
 * committed before a restart are not counted.
 */
static EbPendingCounts skipped_counts = {.name = "pg_eventbus relay skipped positions"};

/*
 * At a session's start, outside any transaction: reads the dead letters of
 * the transactions it will skip uncounted.  The relay records a dead
 * letter durably before the Kafka transaction that leaves its event out
 * can commit, so a dead-lettered event of such a transaction has its row.
 */
static void
eb_ack_load_skipped_dead_letters(XLogRecPtr above, XLogRecPtr upto)
{
	EbSpi		spi;
	Oid			argtypes[2] = {PG_LSNOID, PG_LSNOID};
	Datum		values[2];

	skipped_dead_letters = NULL;	/* the last session's was in eb_session_cxt */
	if (upto <= above)
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(eb_relay_catalog_relid("relay_dead_letter")))
	{
		values[0] = LSNGetDatum(above);
		values[1] = LSNGetDatum(upto);
		eb_spi_begin(&spi, false);
		eb_spi_exec("SELECT lsn, event_id::pg_catalog.text FROM eventbus.relay_dead_letter WHERE lsn > $1 AND lsn <= $2",
					2, argtypes, values, NULL, false);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		isnull;
			XLogRecPtr	lsn = DatumGetLSN(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
			char	   *event_id = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
			EbKnownRefusalKey key;

			if (skipped_dead_letters == NULL)
				skipped_dead_letters = eb_message_table("pg_eventbus relay skipped dead letters",
														sizeof(EbKnownRefusalKey),
														eb_session_cxt);
			eb_known_refusal_key(&key, lsn, event_id ? event_id : "");
			(void) hash_search(skipped_dead_letters, &key, HASH_ENTER, NULL);
		}
		eb_spi_end(&spi);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static void
eb_ack_counted(XLogRecPtr commit_lsn, const char *relay_txn)
{
	if (eb_my_relay->counted_lsn < commit_lsn)
		eb_my_relay->counted_lsn = commit_lsn;
	if (relay_txn != NULL)
		strlcpy(eb_my_relay->counted_txn, relay_txn, sizeof(eb_my_relay->counted_txn));
}

/* At a session's start: nothing noted; the dead letters it may skip. */
static void
eb_ack_skipped_session_start(void)
{
	(void) eb_counts_end(&skipped_counts, false);
	if (eb_exactly_once)
		eb_ack_load_skipped_dead_letters(eb_my_relay->counted_lsn, eb_progress_lsn);
}

/* A message of a skipped transaction that was never counted: notes it. */
static void
eb_ack_count_skipped(EbRelayMessage *m)
{
	bool		refused = false;

	if (!m->outbox && hash_get_num_entries(known_refusals) > 0)
		refused = eb_relay_known_refusal(m->lsn, m->event_id ? m->event_id : "") !=
			RD_KAFKA_RESP_ERR_NO_ERROR;
	if (!m->outbox && !refused && skipped_dead_letters != NULL)
	{
		EbKnownRefusalKey key;

		eb_known_refusal_key(&key, m->lsn, m->event_id ? m->event_id : "");
		refused = hash_search(skipped_dead_letters, &key, HASH_FIND, NULL) != NULL;
	}
	if (!refused)
	{
		skipped_counts.events++;
		skipped_counts.bytes += m->valuelen + m->keylen;
	}
	if (m->outbox)
		skipped_counts.outbox++;
	else if (m->part != NULL)
		eb_counts_position(&skipped_counts, m->part, m->uid, m->partition,
						   m->position, refused ? 0 : 1);
}

/*
 * eb_backfill_recover() saved a backfill batch that the last progress
 * record in Kafka (Kafka transaction relay_txn) carries: counts it unless
 * that transaction was counted (see above).
 */
void
eb_ack_count_recovered(const char *relay_txn, EbPartShared *part, int64 uid,
					   int32 partition, int64 last_position, int64 events,
					   int64 bytes)
{
	if (!eb_my_relay->counted_known || relay_txn == NULL ||
		strcmp(relay_txn, eb_my_relay->counted_txn) == 0)
		return;
	if (part != NULL && events > 0)
		eb_ack_position_apply(part, uid, partition, last_position, (uint64) events);
	eb_stat_events += events;
	eb_stat_bytes += bytes;
	eb_ack_counted(InvalidXLogRecPtr, relay_txn);
	eb_relay_publish_stats(true);
}

/* The Kafka transaction committed: its messages' callbacks run now. */
static void
eb_ack_deferred_run(void)
{
	int			i;

	for (i = 0; i < ndeferred; i++)
	{
		int64		n;

		for (n = 0; n < deferred[i].count; n++)
			deferred[i].fn(deferred[i].arg);
	}
	ndeferred = 0;
	(void) eb_counts_end(&pending, true);
}

/* The Kafka transaction was aborted: nothing of it counts as delivered. */
static void
eb_ack_deferred_drop(void)
{
	ndeferred = 0;
	(void) eb_counts_end(&pending, false);
}

/*
 * Exactly-once: commits the open Kafka transaction, if any, with its
 * progress record (note: more of the record, see eb_kafka_txn_progress).
 * First waits until every message sent in it is acknowledged.  Waits while
 * the brokers do not answer: until wait_ms passed (0: until shutdown).  On
 * success the transactions it holds may be confirmed and the callbacks
 * that waited for it run; anything else ends the session: relaying starts
 * again from the slot.
 */
bool
eb_ack_kafka_commit(XLogRecPtr commit_lsn, XLogRecPtr end_lsn, const char *note, long wait_ms)
{
	TimestampTz deadline = wait_ms > 0 ?
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms) : 0;

	if (!eb_kafka_txn_open())
		return true;
	while (eb_in_flight > 0 && !eb_session_failed)
	{
		rd_kafka_poll(eb_producer, 100);
		eb_relay_publish_stats(false);
		CHECK_FOR_INTERRUPTS();
		if (eb_shutdown_requested || (deadline != 0 && GetCurrentTimestamp() >= deadline))
		{
			eb_session_failed = true;
			break;
		}
	}
	if (eb_session_failed)
	{
		eb_ack_kafka_abort();
		return false;
	}
	if (!eb_kafka_txn_progress(commit_lsn, end_lsn, note))
	{
		eb_ack_deferred_drop();
		return false;
	}
	for (;;)
	{
		switch (eb_kafka_txn_commit_try(commit_lsn, deadline))
		{
			case EB_KAFKA_COMMITTED:
				eb_ack_deferred_run();
				/* what was decoded is counted now (not what was skipped yet) */
				eb_ack_counted(eb_last_commit_lsn, eb_kafka_txn_name());
				eb_known_refusals_sweep(true);
				return true;
			case EB_KAFKA_COMMIT_FAILED:
				eb_ack_deferred_drop();
				return false;
			case EB_KAFKA_COMMIT_RETRY:
				eb_relay_publish_stats(false);
				CHECK_FOR_INTERRUPTS();
				break;
		}
	}
}

/* Exactly-once: aborts the open Kafka transaction and what waited for it. */
void
eb_ack_kafka_abort(void)
{
	eb_ack_deferred_drop();
	eb_kafka_txn_abort();
}

/* Has the slot moved since it was last saved? */
bool
eb_relay_slot_dirty(void)
{
	return slot_dirty;
}

static int
eb_cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* Copies the counters to shared memory, at most every EB_STATS_MS unless forced. */
void
eb_relay_publish_stats(bool force)
{
	TimestampTz now = GetCurrentTimestamp();
	double		p50 = 0,
				p99 = 0;
	bool		have = latency_count > 0;

	eb_ack_stamp(now);
	if (!force && !TimestampDifferenceExceeds(stats_published_at, now, EB_STATS_MS))
		return;
	stats_published_at = now;
	if (have)
	{
		double		sorted[EB_LATENCY_RING];

		memcpy(sorted, latency_ring, sizeof(double) * latency_count);
		qsort(sorted, latency_count, sizeof(double), eb_cmp_double);
		p50 = sorted[(latency_count - 1) / 2];
		p99 = sorted[(int) ((latency_count - 1) * 0.99)];
	}
	SpinLockAcquire(&eb_my_relay->mutex);
	eb_my_relay->events_relayed = eb_stat_events;
	eb_my_relay->bytes_relayed = eb_stat_bytes;
	eb_my_relay->in_flight = eb_in_flight;
	if (stat_last_ack != 0)
		eb_my_relay->last_ack_at = stat_last_ack;
	/* an acknowledgement after the last error: that error is resolved */
	if (eb_my_relay->last_error_at != 0 &&
		eb_my_relay->last_error_resolved_at == 0 &&
		stat_last_ack > eb_my_relay->last_error_at)
		eb_my_relay->last_error_resolved_at = stat_last_ack;
	if (eb_session_active)
	{
		const char *state = "running";

		if (eb_brokers_down)
			state = "broker unreachable";
		else if (eb_in_flight > 0 &&
				 TimestampDifferenceExceeds(Max(stat_last_ack, eb_in_flight_since), now,
											EB_ACK_STALL_MS))
			state = "not acknowledging";
		strlcpy(eb_my_relay->state, state, EB_RELAY_STATE_LEN);
	}
	eb_my_relay->have_latency = have;
	eb_my_relay->latency_p50_ms = p50;
	eb_my_relay->latency_p99_ms = p99;
	SpinLockRelease(&eb_my_relay->mutex);
}

/* ---------- delivery reports ---------- */

/*
 * The time of the last acknowledgement: now, if any came since it was
 * taken; and (at-least-once) the positions they moved, into shared memory.
 */
static void
eb_ack_stamp(TimestampTz now)
{
	if (ack_unstamped)
	{
		stat_last_ack = now;
		ack_unstamped = false;
		if (acked.last != NULL)
			(void) eb_counts_end(&acked, true);
	}
}

/*
 * Serves librdkafka's callbacks (delivery reports among them) for up to
 * timeout_ms, then takes the time of the acknowledgements it served.
 * Other callers of rd_kafka_poll() leave that to the next call here or to
 * eb_relay_publish_stats().
 */
void
eb_relay_poll(int timeout_ms)
{
	rd_kafka_poll(eb_producer, timeout_ms);
	if (ack_unstamped)
		eb_ack_stamp(GetCurrentTimestamp());
}

static void
eb_relay_refusal_reason(EbRelayRefusal *r, rd_kafka_resp_err_t err)
{
	r->code = err;
	snprintf(r->error, sizeof(r->error), "%s (%s)", rd_kafka_err2str(err),
			 rd_kafka_err2name(err));
}

/*
 * librdkafka's own errors for a message whose Kafka topic it could not use
 * (unknown partition or topic) hide the brokers' reason, such as "not
 * authorized": the brokers are asked about the topic (outside decoding) and
 * their refusal, if any, becomes the reason recorded and shown.
 */
static void
eb_relay_refusals_explain(void)
{
	dlist_iter	it;

	dlist_foreach(it, &refusals)
	{
		EbRelayRefusal *r = dlist_container(EbRelayRefusal, node, it.cur);
		rd_kafka_resp_err_t err;

		if ((r->code == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
			 r->code == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
			 r->code == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) &&
			eb_kafka_topic_refusal(r->kafka_topic, &err) && err != r->code)
			eb_relay_refusal_reason(r, err);
	}
}

/*
 * Remembers a message Kafka refused for good; its transaction is not
 * confirmed until the main loop applied the topic's policy
 * (eb_relay_apply_policies).  No table access here: this runs inside
 * librdkafka callbacks and decoding.  sent: the message went out in the
 * open Kafka transaction (refused in its delivery report).  Under
 * exactly-once its callback then waits for that transaction's commit, which
 * will not come (the refusal aborts it); a message refused before it was
 * sent (metadata, the producer, a refusal remembered from an aborted
 * transaction) waits for no Kafka transaction: its callback runs now, or
 * a backfill batch of nothing but such messages would wait for a commit
 * that nothing opens.
 */
void
eb_relay_refused(EbRelayTxn *t, EbRelayMsgRef *ref, const char *kafka_topic,
				 rd_kafka_resp_err_t err, bool sent)
{
	EbRelayRefusal *r = MemoryContextAllocZero(eb_session_cxt, sizeof(EbRelayRefusal));

	r->txn = t;
	r->topic_id = ref->topic_id;
	r->partition = ref->partition;
	r->position = ref->position;
	r->lsn = ref->lsn;
	r->outbox = ref->outbox;
	strlcpy(r->topic, ref->topic, sizeof(r->topic));
	strlcpy(r->kafka_topic, kafka_topic, sizeof(r->kafka_topic));
	strlcpy(r->event_id, ref->event_id, sizeof(r->event_id));
	eb_relay_refusal_reason(r, err);
	t->refused++;
	dlist_push_tail(&refusals, &r->node);
	if (ref->on_ack && sent)
		eb_ack_call(ref->on_ack, ref->on_ack_arg);
	else if (ref->on_ack)
		ref->on_ack(ref->on_ack_arg);
}

/* A hash table of entrysize entries keyed by EbKnownRefusalKey, in cxt. */
static HTAB *
eb_message_table(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(EbKnownRefusalKey);
	ctl.entrysize = entrysize;
	ctl.hcxt = cxt;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static void
eb_known_refusal_key(EbKnownRefusalKey *key, XLogRecPtr lsn, const char *event_id)
{
	memset(key, 0, sizeof(*key));
	key->lsn = lsn;
	strlcpy(key->event_id, event_id, sizeof(key->event_id));
}

/*
 * The table of refusals, made at the first session's start (every use is
 * within a session), so not in a librdkafka callback.
 */
static void
eb_known_refusals_init(void)
{
	if (known_refusals == NULL)
		known_refusals = eb_message_table("pg_eventbus relay refused messages",
										  sizeof(EbKnownRefusal), TopMemoryContext);
}

/*
 * Remembers a message refused inside a Kafka transaction (exactly-once).
 * Runs in a delivery report, so no ERROR may leave it through librdkafka:
 * out of memory, the message is not remembered (it is sent once more, and
 * refused once more).  (HASH_ENTER_NULL is not for tables in palloc'd
 * memory, so the ERROR is caught here.)
 */
static void
eb_relay_remember_refusal(EbRelayMsgRef *ref, rd_kafka_resp_err_t err)
{
	EbKnownRefusalKey key;
	MemoryContext cxt = CurrentMemoryContext;

	eb_known_refusal_key(&key, ref->lsn, ref->event_id);
	PG_TRY();
	{
		bool		found;
		EbKnownRefusal *k = hash_search(known_refusals, &key, HASH_ENTER, &found);

		k->err = err;
		if (!found)
			k->used = false;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
	}
	PG_END_TRY();
}

/*
 * Forgets a refused message whose topic's policy is 'stop': the next attempt
 * sends it again (the cause may be gone by then), as at-least-once does.
 */
static void
eb_relay_forget_refusal(XLogRecPtr lsn, const char *event_id)
{
	EbKnownRefusalKey key;

	eb_known_refusal_key(&key, lsn, event_id);
	(void) hash_search(known_refusals, &key, HASH_REMOVE, NULL);
}

/*
 * The error Kafka refused this message with in an earlier transaction
 * (exactly-once), RD_KAFKA_RESP_ERR_NO_ERROR if none.  Marks the entry
 * used: the next Kafka commit makes it unneeded.
 */
static rd_kafka_resp_err_t
eb_relay_known_refusal(XLogRecPtr lsn, const char *event_id)
{
	EbKnownRefusalKey key;
	EbKnownRefusal *k;

	if (hash_get_num_entries(known_refusals) == 0)
		return RD_KAFKA_RESP_ERR_NO_ERROR;
	eb_known_refusal_key(&key, lsn, event_id);
	k = hash_search(known_refusals, &key, HASH_FIND, NULL);
	if (k == NULL)
		return RD_KAFKA_RESP_ERR_NO_ERROR;
	k->used = true;
	return k->err;
}

/*
 * After a Kafka commit (forget_used) or at a session's start: the entries
 * used before the commit go; at a session's start, none counts as used.
 */
static void
eb_known_refusals_sweep(bool forget_used)
{
	HASH_SEQ_STATUS seq;
	EbKnownRefusal *k;

	hash_seq_init(&seq, known_refusals);
	while ((k = hash_seq_search(&seq)) != NULL)
	{
		if (!forget_used)
			k->used = false;
		else if (k->used)
			(void) hash_search(known_refusals, &k->key, HASH_REMOVE, NULL);
	}
}

/* ---------- sending ---------- */

/*
 * Sends a message of the current transaction and counts it in flight until
 * its delivery report.  The Kafka partition is the event's own
 * when the Kafka topic had as many partitions as the local one when the
 * topic's mapping was decided; otherwise librdkafka's murmur2 partitioner
 * picks one from the key (see eb_relay_partition).
 */
void
eb_relay_send(EbRelayMessage *m)
{
	EbRelayTxn *t = eb_current_txn;
	EbRelayMsgRef *ref;
	rd_kafka_resp_err_t err;
	rd_kafka_resp_err_t refused;
	int32		partition = RD_KAFKA_PARTITION_UA;

	Assert(t != NULL && eb_producer != NULL);
	if (eb_session_failed)
		return;					/* this session will not confirm anything more */
	if (t->skip)
	{
		/* exactly-once: Kafka has it already */
		if (t->uncounted)
			eb_ack_count_skipped(m);
		return;
	}

	if (!eb_relay_partition(m, &partition, &refused))
	{
		/*
		 * The brokers have not described the Kafka topic (they do not
		 * answer, or not yet for this topic), so its mapping cannot be
		 * decided, and nothing may go by key in its place.  Asking is not
		 * done inside decoding: nothing of this transaction is confirmed,
		 * the session ends, and the next one starts from the confirmed
		 * position once the brokers described the topic
		 * (eb_kafka_topics_prepare).
		 */
		ereport(LOG,
				(errmsg("pg_eventbus relay: Kafka topic \"%s\" of the transaction at %X/%X is not described by the brokers yet; relaying goes on from the confirmed position once it is",
						m->kafka_topic, LSN_FORMAT_ARGS(m->lsn))));
		t->failed = true;
		eb_session_failed = true;
		eb_stopped_for_metadata = true;
		return;
	}

	{
		size_t		topiclen = m->topic ? strlen(m->topic) + 1 : 1;
		size_t		idlen = m->event_id ? strlen(m->event_id) + 1 : 1;

		ref = MemoryContextAlloc(eb_session_cxt, sizeof(EbRelayMsgRef) + topiclen + idlen);
		ref->topic = (char *) (ref + 1);
		ref->event_id = ref->topic + topiclen;
		memcpy(ref->topic, m->topic ? m->topic : "", topiclen);
		memcpy(ref->event_id, m->event_id ? m->event_id : "", idlen);
	}
	ref->topic_id = m->topic_id;
	ref->lsn = m->lsn;
	ref->txn = t;
	ref->part = m->part;
	ref->uid_check = m->uid;
	ref->partition = m->partition;
	ref->position = m->position;
	ref->bytes = m->valuelen + m->keylen;
	ref->outbox = m->outbox;
	ref->on_ack = m->on_ack;
	ref->on_ack_arg = m->on_ack_arg;
	ref->ktopic = NULL;
	if (refused == RD_KAFKA_RESP_ERR_NO_ERROR && eb_exactly_once)
		refused = eb_relay_known_refusal(m->lsn, ref->event_id);
	if (refused != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		/*
		 * The brokers' metadata refuses the topic, or (exactly-once) Kafka
		 * refused this message for good in an earlier, aborted transaction:
		 * not sent.
		 */
		eb_relay_refused(t, ref, m->kafka_topic, refused, false);
		pfree(ref);
		t->messages++;
		return;
	}

	if (eb_exactly_once)
	{
		if (!eb_kafka_txn_begin())
		{
			pfree(ref);
			t->failed = true;
			return;
		}
		t->kafka_txn = eb_kafka_txn_seq;
	}

	for (;;)
	{
		err = eb_kafka_produce(m, partition, ref);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
		if (eb_kafka_error_is_permanent(err))
		{
			/* refused at once (too large for the producer, unknown topic) */
			eb_relay_refused(t, ref, m->kafka_topic, err, false);
			pfree(ref);
			t->messages++;
			return;
		}
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || eb_shutdown_requested)
		{
			if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				eb_relay_error(psprintf("could not queue a message for Kafka topic \"%s\": %s",
										m->kafka_topic, rd_kafka_err2str(err)));
			pfree(ref);
			t->failed = true;
			eb_session_failed = true;
			return;
		}
		/* the producer's queue is full: serve delivery reports and retry */
		rd_kafka_poll(eb_producer, 100);
		CHECK_FOR_INTERRUPTS();
	}
	t->pending++;
	t->messages++;
	if (eb_in_flight++ == 0)
		eb_in_flight_since = GetCurrentTimestamp();
	ref->ktopic = eb_kafka_topic_sending(m->kafka_topic);
}

void
eb_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	EbRelayMsgRef *ref = (EbRelayMsgRef *) msg->_private;

	if (ref == NULL)
		return;
	eb_in_flight--;
	ref->txn->pending--;
	eb_kafka_topic_answered(ref->ktopic);
	if (msg->err && eb_kafka_error_is_permanent(msg->err))
	{
		eb_relay_refused(ref->txn, ref, rd_kafka_topic_name(msg->rkt), msg->err, true);
		/* the Kafka transaction fails with it; the next one leaves it out */
		if (eb_exactly_once)
			eb_relay_remember_refusal(ref, msg->err);
	}
	else if (msg->err)
	{
		if (msg->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
			msg->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
			eb_relay_error(psprintf("delivery to Kafka topic \"%s\" failed: %s; relaying again from the last confirmed position",
									rd_kafka_topic_name(msg->rkt),
									rd_kafka_err2str(msg->err)));
		ref->txn->failed = true;
		eb_session_failed = true;
	}
	else
	{
		if (eb_exactly_once)
			eb_kafka_txn_note_offset(rd_kafka_topic_name(msg->rkt), msg->partition,
									 msg->offset);
		if (eb_exactly_once)
		{
			pending.events++;
			pending.bytes += ref->bytes;
		}
		else
		{
			eb_stat_events++;
			eb_stat_bytes += ref->bytes;
		}
		/* the clock is read once per poll, not per message (eb_relay_poll) */
		ack_unstamped = true;
		eb_brokers_down = false;
		eb_broker_error[0] = '\0';
		if (ref->on_ack)
			eb_ack_call(ref->on_ack, ref->on_ack_arg);
		if (ref->outbox && eb_exactly_once)
			pending.outbox++;
		else if (ref->outbox)
			pg_atomic_fetch_add_u64(&eb_my_relay->outbox_relayed, 1);
		else if (ref->part != NULL)
			eb_ack_position(ref);
	}
	pfree(ref);
}

/* ---------- the output plugin's transactions ---------- */

void
eb_relay_txn_begin(XLogRecPtr commit_lsn)
{
	EbRelayTxn *t = MemoryContextAllocZero(eb_session_cxt, sizeof(EbRelayTxn));

	t->commit_lsn = commit_lsn;
	/*
	 * exactly-once: a transaction Kafka has already is not sent again.  A
	 * backfill batch (no commit LSN: its events come from the topic's
	 * tables) is always sent; its progress is kept in
	 * eventbus.relay_backfill_progress.
	 */
	t->skip = eb_exactly_once && !XLogRecPtrIsInvalid(commit_lsn) &&
		commit_lsn <= eb_progress_lsn;
	if (t->skip)
	{
		skipped++;
		t->uncounted = commit_lsn > eb_my_relay->counted_lsn;
		/* what a skipped transaction cut off by an ERROR had noted */
		(void) eb_counts_end(&skipped_counts, false);
	}
	else if (skipped > 0 && !skipped_logged)
	{
		ereport(LOG,
				(errmsg("pg_eventbus relay: skipped " INT64_FORMAT " transactions that Kafka already had (up to commit LSN %X/%X)",
						skipped, LSN_FORMAT_ARGS(eb_progress_lsn))));
		skipped_logged = true;
	}
	dlist_push_tail(&txns, &t->node);
	eb_current_txn = t;
}

void
eb_relay_txn_commit(XLogRecPtr end_lsn, TimestampTz commit_time)
{
	EbRelayTxn *t = eb_current_txn;

	Assert(t != NULL);
	t->end_lsn = end_lsn;
	t->commit_time = commit_time;
	t->committed = true;
	if (!XLogRecPtrIsInvalid(t->commit_lsn))
	{
		/* what a progress record says Kafka has: decoded transactions */
		eb_last_commit_lsn = t->commit_lsn;
		eb_last_end_lsn = end_lsn;
	}
	eb_current_txn = NULL;
	if (t->uncounted && !eb_session_failed)
	{
		/*
		 * exactly-once: Kafka had it, uncounted (a failed session may have
		 * left messages out: the next one counts it); nothing ERRORs in here
		 */
		bool		any = eb_counts_end(&skipped_counts, true);

		eb_ack_counted(t->commit_lsn, NULL);
		if (any)
			eb_relay_publish_stats(true);
	}

	/*
	 * A transaction that sent nothing (most of a database's transactions
	 * touch no relayed topic) waits for nothing but the transactions before
	 * it: it becomes part of the one before, which confirms up to its end.
	 * So while Kafka holds back acknowledgements, memory grows with the
	 * messages in flight, not with every transaction decoded meanwhile.
	 */
	if (t->messages == 0 && t->pending == 0 && !t->failed && t->refused == 0 &&
		t->kafka_txn == 0 && dlist_has_prev(&txns, &t->node))
	{
		EbRelayTxn *prev = dlist_container(EbRelayTxn, node,
										   dlist_prev_node(&txns, &t->node));

		if (prev->committed)
		{
			prev->end_lsn = Max(prev->end_lsn, end_lsn);
			dlist_delete(&t->node);
			pfree(t);
		}
	}
}

/* ---------- confirming ---------- */

static void
eb_latency_add(double ms)
{
	latency_ring[latency_next] = ms;
	latency_next = (latency_next + 1) % EB_LATENCY_RING;
	if (latency_count < EB_LATENCY_RING)
		latency_count++;
}

/*
 * Confirms the slot up to the newest transaction of the fully acknowledged
 * prefix, or up to the read position when everything read is acknowledged.
 */
void
eb_relay_confirm(LogicalDecodingContext *ctx, bool caught_up, bool force_save)
{
	XLogRecPtr	upto = InvalidXLogRecPtr;
	TimestampTz now = GetCurrentTimestamp();

	while (!dlist_is_empty(&txns))
	{
		EbRelayTxn *t = dlist_head_element(EbRelayTxn, node, &txns);

		if (!t->committed || t->pending > 0 || t->failed || t->refused > 0)
			break;
		/* exactly-once: only once Kafka committed its transaction */
		if (t->kafka_txn > eb_kafka_txn_committed)
			break;
		upto = t->end_lsn;
		if (t->messages > 0)
			eb_latency_add((double) (now - t->commit_time) / 1000.0);
		dlist_delete(&t->node);
		pfree(t);
	}
	if (dlist_is_empty(&txns) && caught_up && eb_in_flight == 0 && eb_current_txn == NULL &&
		!eb_session_failed && !eb_kafka_txn_open())
		upto = Max(upto, ctx->reader->EndRecPtr);

	if (!XLogRecPtrIsInvalid(upto) && upto > confirmed)
	{
		LogicalConfirmReceivedLocation(upto);
		confirmed = upto;
		/* a checkpoint saves the slot from now on */
		ReplicationSlotMarkDirty();
		slot_dirty = true;
	}
	if (slot_dirty && (force_save || TimestampDifferenceExceeds(last_save, now, EB_SLOT_SAVE_MS)))
	{
		ReplicationSlotSave();
		last_save = now;
		slot_dirty = false;
	}
}

/* ---------- refused messages ---------- */

/*
 * Applies the topics' on_error policies (eventbus.relay_policy, as it is
 * now) to the messages Kafka refused for good, in order, outside decoding
 * and in a transaction of its own.  'dead_letter': the message is recorded
 * in eventbus.relay_dead_letter, durably, before its transaction can be
 * confirmed.  'stop' (the default, and always for outbox messages): the
 * session ends there; its transaction is never confirmed, relaying starts
 * again from the confirmed position after a back-off, and the status says
 * which message and why.
 */
void
eb_relay_apply_policies(void)
{
	dlist_mutable_iter it;
	EbSpi		spi;
	EbRelayRefusal *stop_at = NULL;
	int			recorded = 0;
	char		msg[EB_RELAY_ERROR_LEN];

	if (dlist_is_empty(&refusals))
		return;
	eb_relay_refusals_explain();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	eb_spi_begin(&spi, false);
	dlist_foreach_modify(it, &refusals)
	{
		EbRelayRefusal *r = dlist_container(EbRelayRefusal, node, it.cur);
		bool		dead_letter = false;

		if (!r->outbox)
		{
			Oid			argtypes[1] = {INT4OID};
			Datum		values[1];

			/*
			 * A topic dropped since (drop_topic(force => true) while
			 * relayed): nobody can act on its event any more, so it is
			 * recorded and passed over, whatever the policy was.
			 */
			values[0] = Int32GetDatum(r->topic_id);
			eb_spi_exec("SELECT CASE WHEN NOT EXISTS (SELECT FROM eventbus.topic WHERE topic_id = $1) "
						"THEN 'dead_letter' ELSE "
						"(SELECT on_error FROM eventbus.relay_policy WHERE topic_id = $1) END",
						1, argtypes, values, NULL, true);
			if (SPI_processed == 1)
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

				dead_letter = v != NULL && strcmp(v, "dead_letter") == 0;
			}
		}
		if (!dead_letter)
		{
			stop_at = r;
			eb_relay_forget_refusal(r->lsn, r->event_id);
			break;
		}
		{
			Oid			argtypes[7] = {TEXTOID, TEXTOID, INT4OID, INT8OID, TEXTOID, LSNOID, TEXTOID};
			Datum		values[7];

			values[0] = CStringGetTextDatum(r->topic);
			values[1] = CStringGetTextDatum(r->kafka_topic);
			values[2] = Int32GetDatum(r->partition);
			values[3] = Int64GetDatum(r->position);
			values[4] = CStringGetTextDatum(r->event_id);
			values[5] = LSNGetDatum(r->lsn);
			values[6] = CStringGetTextDatum(r->error);
			eb_spi_exec("INSERT INTO eventbus.relay_dead_letter (topic, kafka_topic, partition, position, event_id, lsn, error) "
						"SELECT $1, $2, $3, $4, $5::pg_catalog.uuid, $6, $7 "
						"WHERE NOT EXISTS (SELECT FROM eventbus.relay_dead_letter WHERE event_id = $5::pg_catalog.uuid AND lsn = $6)",
						7, argtypes, values, NULL, false);
		}
		snprintf(msg, sizeof(msg),
				 "event %s of topic \"%s\" (partition %d, position " INT64_FORMAT ") was refused by Kafka topic \"%s\": %s; recorded in eventbus.relay_dead_letter",
				 r->event_id, r->topic, r->partition, r->position, r->kafka_topic, r->error);
		eb_relay_error_keyed(msg, "\001dead letter");
		r->txn->refused--;
		dlist_delete(&r->node);
		pfree(r);
		recorded++;
	}
	eb_spi_end(&spi);
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* durable before the slot moves past them, whatever synchronous_commit says */
	if (recorded > 0)
		XLogFlush(XactLastCommitEnd);

	if (stop_at != NULL)
	{
		if (stop_at->outbox)
			snprintf(msg, sizeof(msg),
					 "outbox message %s (commit LSN %X/%X) was refused by Kafka topic \"%s\": %s; relaying waits at it",
					 stop_at->event_id, LSN_FORMAT_ARGS(stop_at->lsn),
					 stop_at->kafka_topic, stop_at->error);
		else
			snprintf(msg, sizeof(msg),
					 "event %s of topic \"%s\" (partition %d, position " INT64_FORMAT ", commit LSN %X/%X) was refused by Kafka topic \"%s\": %s; relaying waits at it (on_error 'stop')",
					 stop_at->event_id, stop_at->topic, stop_at->partition,
					 stop_at->position, LSN_FORMAT_ARGS(stop_at->lsn),
					 stop_at->kafka_topic, stop_at->error);
		eb_relay_error(msg);
		stop_at->txn->failed = true;
		eb_session_failed = true;
		eb_stopped_at_refusal = true;
	}
}
