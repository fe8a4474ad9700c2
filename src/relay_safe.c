/*-------------------------------------------------------------------------
 *
 * relay_safe.c
 *	  Where start_at => 'last_acknowledged' starts: per partition, a
 *	  position below which every event the relay had to send was
 *	  acknowledged by Kafka (EbPartShared.relay_safe_position).
 *
 * The highest acknowledged position is not that: positions are taken at
 * publish() and transactions commit in another order, so a transaction
 * holding lower positions may commit, and be relayed, after higher ones
 * were acknowledged; so may one whose messages waited for another Kafka
 * partition's leader.
 *
 * A sample takes, for each partition the relay acknowledged events of
 * since its position was last found safe, the read horizon (every position
 * below it belongs to a transaction that has ended, and a registration
 * ends only after its commit record was written), and then the end of the
 * WAL inserted so far.  Once the slot is confirmed at or past that point,
 * every transaction that committed below a sampled horizon was decoded and
 * its messages acknowledged (under exactly-once: in a Kafka transaction
 * that committed), so min(horizon, highest acknowledged + 1) becomes the
 * partition's safe position.  The cap keeps events that were never
 * acknowledged, such as those published after stop_relay(), above it.
 *
 * Samples queue up, at most EB_SAFE_SAMPLES, spread over the time the
 * oldest waits for the slot, so that a relay that lags behind by a minute
 * still moves its safe positions every couple of seconds.  They are
 * dropped when a session ends (a new slot does not decode what committed
 * before it).  None are taken
 *
 *  - while a transaction that was prepared when the session began is
 *	  still open: after a restart, prepared transactions are not registered
 *	  again, so the horizon does not see them;
 *  - while the relay's slot replaced an earlier one and the warning of
 *	  eventbus.relay_slot is not resolved: what committed before the new
 *	  slot was never decoded, and the safe positions from before the loss
 *	  are what a resend needs.
 *
 * Raised positions are saved in eventbus.relay_acknowledged about once a
 * second (and when a session ends), so that a resend after a restart or a
 * promotion has them too: what they say is about Kafka, and stays true.
 *
 * Everything here runs in the relay worker: eb_safe_watch() also inside
 * decoding and delivery callbacks (hash operations in TopMemoryContext
 * only), the rest between WAL records, outside any transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "privileged.h"
#include "relay_int.h"
#include "shmem.h"

#define EB_SAFE_SAMPLE_MS 10	/* shortest time between two samples */
#define EB_SAFE_SAMPLES 32		/* samples waiting for the slot, at most */
#define EB_SAFE_RECHECK_MS 1000 /* a slot warning is looked at again */
#define EB_SAFE_SAVE_MS 1000	/* raised positions are saved */

/* A partition to sample. */
typedef struct EbSafeWatch
{
	EbPartShared *part;			/* the key */
	int64		uid;
	int32		partition;
} EbSafeWatch;

typedef struct EbSafeItem
{
	EbPartShared *part;
	int64		uid;
	int32		partition;
	int64		horizon;
} EbSafeItem;

typedef struct EbSafeSample
{
	XLogRecPtr	lsn;			/* end of the WAL inserted after the horizons */
	TimestampTz taken_at;
	int			n;
	EbSafeItem	items[FLEXIBLE_ARRAY_MEMBER];
} EbSafeSample;

static HTAB *watch = NULL;		/* EbSafeWatch by partition slot */
static EbSafeSample *queue[EB_SAFE_SAMPLES];	/* a ring, oldest at head */
static int	head = 0;
static int	queued = 0;
static TimestampTz last_taken = 0;

/* prepared transactions open when the session began, until all ended */
static TransactionId *prepared = NULL;
static int	nprepared = 0;

/* the relay's slot replaced an earlier one, the warning is not resolved */
static bool slot_warning = false;
static TimestampTz slot_warning_checked = 0;

/* positions raised since they were last saved */
typedef struct EbSafeKey
{
	int64		uid;
	int32		partition;
} EbSafeKey;

typedef struct EbSafeDirty
{
	EbSafeKey	key;
	int64		below;
} EbSafeDirty;

static HTAB *dirty = NULL;
static TimestampTz last_saved = 0;

static void eb_safe_drop_queue(void);

/* A partition whose events were acknowledged: sampled until found safe. */
void
eb_safe_watch(EbPartShared *part, int64 uid, int32 partition)
{
	EbSafeWatch *w;

	if (watch == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(EbPartShared *);
		ctl.entrysize = sizeof(EbSafeWatch);
		ctl.hcxt = TopMemoryContext;
		watch = hash_create("pg_eventbus relay safe positions", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	w = hash_search(watch, &part, HASH_ENTER, NULL);
	w->uid = uid;
	w->partition = partition;
}

/*
 * Reads, in a transaction of its own, whether the relay's slot warning is
 * unresolved and (at_start) which prepared transactions of the database
 * are open.
 */
static void
eb_safe_read_state(bool at_start)
{
	EbSpi		spi;
	MemoryContext outer = CurrentMemoryContext;

	char		slot[NAMEDATALEN];

	eb_relay_slot_name(MyDatabaseId, slot);
	slot_warning = false;
	if (at_start)
		nprepared = 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* after DROP EXTENSION the session ends soon: nothing to hold back */
	if (!OidIsValid(eb_relay_catalog_relid("relay_slot")))
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(outer);
		return;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	eb_spi_begin(&spi, true);
	{
		Oid			argtypes[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(slot)};

		eb_spi_exec("SELECT FROM eventbus.relay_slot WHERE slot_name = $1 AND warning IS NOT NULL",
					1, argtypes, values, NULL, true);
		slot_warning = SPI_processed > 0;
	}
	if (at_start)
	{
		Oid			argtypes[1] = {OIDOID};
		Datum		values[1] = {ObjectIdGetDatum(MyDatabaseId)};

		eb_spi_exec("SELECT p.transaction::pg_catalog.text FROM pg_catalog.pg_prepared_xact() p "
					"WHERE p.dbid = $1",
					1, argtypes, values, NULL, true);
		if (SPI_processed > 0)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			if (prepared != NULL)
				pfree(prepared);
			prepared = palloc(sizeof(TransactionId) * SPI_processed);
			MemoryContextSwitchTo(old);
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

				if (v != NULL)
					prepared[nprepared++] = (TransactionId) strtoul(v, NULL, 10);
			}
		}
	}
	eb_spi_end(&spi);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);
	slot_warning_checked = GetCurrentTimestamp();
}

/* A new session: no sample is pending; what holds sampling back. */
void
eb_safe_session_start(void)
{
	eb_safe_drop_queue();
	eb_safe_read_state(true);
}

/* The session ended: its samples say nothing of the next slot. */
void
eb_safe_session_end(void)
{
	eb_safe_drop_queue();
}

/*
 * Between WAL records, outside a transaction: while the slot warning holds
 * sampling back, looks again now and then whether it was resolved.
 */
void
eb_safe_recheck(void)
{
	if (slot_warning &&
		TimestampDifferenceExceeds(slot_warning_checked, GetCurrentTimestamp(),
								   EB_SAFE_RECHECK_MS))
		eb_safe_read_state(false);
}

static void
eb_safe_drop_queue(void)
{
	while (queued > 0)
	{
		pfree(queue[head]);
		head = (head + 1) % EB_SAFE_SAMPLES;
		queued--;
	}
	head = 0;
}

/* Is sampling held back by a prepared transaction from before the session? */
static bool
eb_safe_prepared_open(void)
{
	for (int i = 0; i < nprepared; i++)
		if (TransactionIdIsInProgress(prepared[i]))
			return true;
	nprepared = 0;
	return false;
}

/* Applies one item of a sample the slot is confirmed past. */
static void
eb_safe_apply(const EbSafeItem *it)
{
	LWLock	   *lock = &it->part->lock;
	int64		raised = -1;
	bool		raise = false;
	bool		done = true;
	EbSafeWatch *w;

	/* shared first: most samples find nothing to raise */
	for (int pass = 0; pass < 2; pass++)
	{
		LWLockAcquire(lock, pass == 0 ? LW_SHARED : LW_EXCLUSIVE);
		if (eb_part_key_matches(it->part, MyDatabaseId, it->uid, it->partition))
		{
			int64		safe = Min(it->horizon, it->part->relayed_position + 1);

			raise = safe > it->part->relay_safe_position;
			if (raise && pass == 1)
			{
				it->part->relay_safe_position = safe;
				raised = safe;
			}
			done = Max(safe, it->part->relay_safe_position) > it->part->relayed_position;
		}
		else
			raise = false;
		LWLockRelease(lock);
		if (!raise)
			break;
	}
	if (raised >= 0)
	{
		EbSafeKey	key;
		EbSafeDirty *d;
		bool		found;

		/* hashed as bytes: no padding left undefined */
		memset(&key, 0, sizeof(key));
		key.uid = it->uid;
		key.partition = it->partition;

		if (dirty == NULL)
		{
			HASHCTL		ctl;

			ctl.keysize = sizeof(EbSafeKey);
			ctl.entrysize = sizeof(EbSafeDirty);
			ctl.hcxt = TopMemoryContext;
			dirty = hash_create("pg_eventbus relay safe positions to save", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
		d = hash_search(dirty, &key, HASH_ENTER, &found);
		d->below = found ? Max(d->below, raised) : raised;
	}
	/* acknowledged again since the sample: stays watched */
	w = done ? hash_search(watch, &it->part, HASH_FIND, NULL) : NULL;
	if (w != NULL && w->uid == it->uid && w->partition == it->partition)
		hash_search(watch, &it->part, HASH_REMOVE, NULL);
}

/* Takes a sample of the watched partitions; NULL if there is none. */
static EbSafeSample *
eb_safe_take(TimestampTz now)
{
	EbSafeSample *s;
	HASH_SEQ_STATUS seq;
	EbSafeWatch *w;
	long		n = hash_get_num_entries(watch);

	s = MemoryContextAlloc(TopMemoryContext,
						   offsetof(EbSafeSample, items) + n * sizeof(EbSafeItem));
	s->n = 0;
	hash_seq_init(&seq, watch);
	while ((w = hash_seq_search(&seq)) != NULL)
	{
		int64		h = eb_part_horizon(w->part, MyDatabaseId, w->uid, w->partition,
										InvalidOid, NULL);

		if (h < 0)
		{
			/* the slot holds another partition now */
			hash_search(watch, &w->part, HASH_REMOVE, NULL);
			continue;
		}
		Assert(s->n < n);
		s->items[s->n].part = w->part;
		s->items[s->n].uid = w->uid;
		s->items[s->n].partition = w->partition;
		s->items[s->n].horizon = h;
		s->n++;
	}
	/* after the horizons: every commit below them ends at or before this */
	s->lsn = GetXLogInsertEndRecPtr();
	s->taken_at = now;
	if (s->n == 0)
	{
		pfree(s);
		return NULL;
	}
	return s;
}

/*
 * With the slot confirmed at confirmed: applies the samples it is past,
 * then takes the next when it is time (force: whatever the time since the
 * last), and applies it at once if the slot is past it already (nothing in
 * flight, all WAL read).
 */
void
eb_safe_advance(XLogRecPtr confirmed, bool force, TimestampTz now)
{
	long		spacing;

	for (;;)
	{
		while (queued > 0 && confirmed >= queue[head]->lsn)
		{
			EbSafeSample *s = queue[head];

			for (int i = 0; i < s->n; i++)
				eb_safe_apply(&s->items[i]);
			pfree(s);
			head = (head + 1) % EB_SAFE_SAMPLES;
			queued--;
		}
		if (watch == NULL || hash_get_num_entries(watch) == 0 ||
			queued == EB_SAFE_SAMPLES || slot_warning || eb_safe_prepared_open())
			return;

		/*
		 * Every 10 ms, or every 10 us per watched partition, or spread over
		 * the time the oldest sample has waited so far, whichever is longer.
		 */
		spacing = Max(EB_SAFE_SAMPLE_MS, hash_get_num_entries(watch) / 100);
		if (queued > 0)
			spacing = Max(spacing, (long) ((now - queue[head]->taken_at) / 1000 / EB_SAFE_SAMPLES));
		if (last_taken > now)
			last_taken = 0;		/* the clock went back */
		if (!force && !TimestampDifferenceExceeds(last_taken, now, (int) spacing))
			return;
		last_taken = now;
		force = false;
		{
			EbSafeSample *s = eb_safe_take(now);

			if (s == NULL)
				return;
			queue[(head + queued) % EB_SAFE_SAMPLES] = s;
			queued++;
			if (confirmed < s->lsn)
				return;
		}
	}
}

/*
 * Between WAL records, outside a transaction: saves the positions raised
 * since the last save, every EB_SAFE_SAVE_MS (force: now), in
 * eventbus.relay_acknowledged, only ever raising them.
 */
void
eb_safe_save(bool force)
{
	MemoryContext outer = CurrentMemoryContext;
	TimestampTz now;
	HASH_SEQ_STATUS seq;
	EbSafeDirty *d;
	Datum	   *uids;
	Datum	   *parts;
	Datum	   *belows;
	int			n = 0;
	EbSpi		spi;

	if (dirty == NULL || hash_get_num_entries(dirty) == 0)
		return;
	now = GetCurrentTimestamp();
	if (last_saved > now)
		last_saved = 0;			/* the clock went back */
	if (!force && !TimestampDifferenceExceeds(last_saved, now, EB_SAFE_SAVE_MS))
		return;
	last_saved = now;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (OidIsValid(eb_relay_catalog_relid("relay_acknowledged")))
	{
		long		max = hash_get_num_entries(dirty);
		Oid			argtypes[3] = {INT8ARRAYOID, INT4ARRAYOID, INT8ARRAYOID};
		Datum		values[3];

		uids = palloc(sizeof(Datum) * max);
		parts = palloc(sizeof(Datum) * max);
		belows = palloc(sizeof(Datum) * max);
		hash_seq_init(&seq, dirty);
		while ((d = hash_seq_search(&seq)) != NULL)
		{
			uids[n] = Int64GetDatum(d->key.uid);
			parts[n] = Int32GetDatum(d->key.partition);
			belows[n] = Int64GetDatum(d->below);
			n++;
		}
		values[0] = PointerGetDatum(construct_array(uids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[1] = PointerGetDatum(construct_array(parts, n, INT4OID, 4, true, TYPALIGN_INT));
		values[2] = PointerGetDatum(construct_array(belows, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		PushActiveSnapshot(GetTransactionSnapshot());
		eb_spi_begin(&spi, true);
		eb_spi_exec("INSERT INTO eventbus.relay_acknowledged AS a (topic_id, partition, below, saved_at) "
					"SELECT t.topic_id, d.partition, d.below, pg_catalog.now() "
					"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) AS d(uid, partition, below) "
					"JOIN eventbus.topic t ON t.uid = d.uid AND d.partition < t.partitions "
					"ON CONFLICT (topic_id, partition) DO UPDATE SET "
					"below = GREATEST(a.below, excluded.below), saved_at = excluded.saved_at",
					3, argtypes, values, NULL, false);
		eb_spi_end(&spi);
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);
	/* saved (or the extension is gone): forget them */
	hash_seq_init(&seq, dirty);
	while ((d = hash_seq_search(&seq)) != NULL)
		hash_search(dirty, &d->key, HASH_REMOVE, NULL);
}
