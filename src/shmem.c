/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory of pg_eventbus.
 *
 * Two fixed arrays hold the state of topics and partitions that have been
 * used since the server started; two hash maps find an array slot by key.
 * Array slots are never moved and their LWLocks are initialized once, so a
 * backend may keep a pointer to a slot: after taking the slot's lock it
 * checks that the key still matches (a dropped topic's slots are reused).
 *
 * Locking protocol
 *
 *	- map_lock (shared to look up, exclusive to add or remove) protects the
 *	  hash maps and every slot's in_use flag and key.  It is never acquired
 *	  while a slot lock is held.
 *	- EbTopicShared.lock: shared while assigning positions in any partition
 *	  of the topic, exclusive while switching to a new segment.  Taken
 *	  before any partition lock of the topic.
 *	- EbPartShared.lock: exclusive to assign positions, to link or unlink a
 *	  registration (EbReg) of the partition, or to change relayed_position;
 *	  shared to compute the read horizon.  An EbReg's part, lo, xid,
 *	  prepared, prev and next are written only under the lock of the
 *	  partition it is linked into.
 *	- overflow_mutex (a spinlock) protects the free list of overflow
 *	  registrations; it is taken inside a partition lock, never around one.
 *	- slice_of[i] is read and written only by the backend using PGPROC i, and
 *	  by the backend preparing a transaction whose dummy PGPROC is i.
 *
 * Registrations (the read horizon, see position.c)
 *
 * A transaction's first position in a partition is registered under the
 * partition lock that assigns it, and stays registered until the top-level
 * transaction ends: commit, abort, or for a prepared transaction COMMIT or
 * ROLLBACK PREPARED.  Registrations are appended to the partition's list in
 * assignment order, and positions are assigned in increasing order under
 * the same lock, so the list is sorted and its head is the lowest position
 * an open transaction holds: the horizon is O(1), whatever the number of
 * backends.  Positions of aborted subtransactions stay registered (as gaps)
 * until the top-level transaction ends.
 *
 * The registrations live in one fixed array.  Every PGPROC (backends and
 * the dummy PGPROCs of prepared transactions) owns a slice of
 * EB_REGS_PER_PROC entries, used without any further lock; a transaction
 * that writes to more partitions than that takes entries from a shared
 * overflow pool, and when that is exhausted publish fails with an error
 * (positions are never handed out unregistered).  At PREPARE the backend
 * marks its registrations prepared and swaps slices with the dummy PGPROC
 * of the prepared transaction, after unlinking what the previous prepared
 * transaction of that dummy left (it has finished).  Prepared
 * registrations are removed lazily: whoever finds one at the head of a
 * list (or needs its entry) unlinks it once its transaction is no longer
 * in progress.  Registrations end before commit only through an abort;
 * they end after the commit is visible (the commit callback runs after the
 * transaction left the proc array), so a reader that no longer sees a
 * registration sees the commit or, if its snapshot is older, stops at the
 * row (read.c).
 *
 *	- dbs_lock (shared to look up, exclusive to change) protects the
 *	  per-database entries (EbDbShared): dboid, ext_state, recheck,
 *	  release_req/release_ack, hold_until, notify_latch, worker_pid, and
 *	  launcher_latch.  An entry is taken by the launcher (or by a backend
 *	  that needs a database's workers gone or CREATE EXTENSION noticed) and
 *	  freed by the launcher once no worker runs there and the database no
 *	  longer exists or lacks the extension; so a process connected to a
 *	  database with the extension may keep a pointer to its entry, after
 *	  checking that its dboid still matches.  Only ProcArrayLock (to see
 *	  whether a worker is alive) is taken while holding dbs_lock.
 *	- EbRelayShared.mutex (a spinlock) protects a database's relay status;
 *	  the outbox counters are atomics.  Prepared transactions that
 *	  published (prepared[]) are under map_lock.
 *	- EbTopicShared.name is written under the topic lock
 *	  when the slot is initialized; notify_pending is an atomic flag set at
 *	  commit and cleared by the worker that sends NOTIFY; whoever sets it
 *	  also sets the slot's bit in its database's notify_bits (atomics, one
 *	  word per 64 topic slots per database entry), which the worker drains,
 *	  so that it looks only at marked slots; "committed" is a condition
 *	  variable broadcast at commit, for eventbus.wait(), only when waiters
 *	  (an atomic count of wait() calls) is not zero.
 *	- The stat_* counters of topic and partition slots are atomics, added
 *	  to without any lock (stats.c); they and stats_reset are reset when the
 *	  slot is taken, under the slot's lock.
 *	- notify_latch is set by the database worker at start and cleared at
 *	  exit (under dbs_lock); committing producers read it without the lock.
 *
 * What a publishing transaction takes: the topic lock once (shared) and the
 * partition lock once (exclusive) per publish (position.c), the partition
 * lock once more per partition at commit or abort.  Neither here nor in
 * the wake-ups at commit (notify.c) does it take a lock or spinlock shared
 * by all topics or by a whole database, unless it writes to more than
 * EB_REGS_PER_PROC partitions (overflow_mutex).
 *
 * Nothing here survives a restart: a topic's state is rebuilt from its
 * tables the first time it is used (see topic.c).  A dropped topic's slots
 * are freed when the drop commits; those that DROP EXTENSION or DROP
 * DATABASE leave behind are reclaimed when the arrays are full: taking a
 * slot reports that they are (NULL), and the caller (catalog.c, which knows
 * which topics exist) frees the stale ones with eb_shared_reclaim() and
 * tries again.  Nothing here calls up into the rest of the extension.
 *
 * Invalidation of the backends' topic caches (catalog.c): after a committed
 * change, the version of the topic (or, for changes to a database's topic
 * list, of the database) is bumped.  Versions live in two fixed arrays of
 * atomics, indexed by a hash of (database, topic name) and of the database:
 * two keys that share an entry only cost a needless reload.  They are read
 * without a lock: a bump follows the commit it announces, and a reader
 * reads the version before it loads with a new snapshot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "utils/timestamp.h"

#include "settings.h"
#include "compat.h"
#include "shmem.h"

EbShared   *eb_shared = NULL;

static HTAB *topic_map = NULL;
static HTAB *part_map = NULL;

typedef struct EbTopicMapEntry
{
	EbTopicKey	key;
	int			idx;
} EbTopicMapEntry;

typedef struct EbPartMapEntry
{
	EbPartKey	key;
	int			idx;
} EbPartMapEntry;

static bool eb_part_busy(EbPartShared *part);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* PGPROCs that own a slice of registrations (pgprocno is below this). */
static int
eb_reg_nprocs(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

/* Registrations in all: the slices plus the overflow pool. */
static int
eb_reg_total(void)
{
	return (eb_reg_nprocs() + MaxBackends) * EB_REGS_PER_PROC;
}

/* Entries of the per-topic version array: a power of two, 4 per topic. */
static uint32
eb_topic_versions(void)
{
	uint32		n = 1024;

	while (n < (uint32) eb_max_topics * 4 && n < (1U << 30))
		n <<= 1;
	return n;
}

/* Words of a database's notify bitmap: a bit per topic slot. */
static int
eb_notify_nwords(void)
{
	return (eb_max_topics + 63) / 64;
}

static Size
eb_shmem_size(void)
{
	Size		size;

	size = MAXALIGN(sizeof(EbShared));
	size = add_size(size, mul_size(eb_max_topics, sizeof(EbTopicShared)));
	size = add_size(size, mul_size(eb_max_partitions, sizeof(EbPartShared)));
	size = add_size(size, mul_size(eb_reg_total(), sizeof(EbReg)));
	size = add_size(size, mul_size(eb_reg_nprocs(), sizeof(int32)));
	size = add_size(size, mul_size(max_prepared_xacts, sizeof(EbPrepared)));
	size = add_size(size, mul_size(eb_max_databases, sizeof(EbDbShared)));
	size = add_size(size, mul_size(mul_size(eb_max_databases, eb_notify_nwords()),
								   sizeof(pg_atomic_uint64)));
	size = add_size(size, hash_estimate_size(eb_max_topics, sizeof(EbTopicMapEntry)));
	size = add_size(size, hash_estimate_size(eb_max_partitions, sizeof(EbPartMapEntry)));
	size = add_size(size, mul_size(EB_DB_VERSIONS, sizeof(pg_atomic_uint64)));
	size = add_size(size, mul_size(EB_LISTENER_BUCKETS, sizeof(pg_atomic_uint32)));
	size = add_size(size, mul_size(eb_topic_versions(), sizeof(pg_atomic_uint64)));
	return size;
}

static void
eb_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(eb_shmem_size());
	RequestNamedLWLockTranche("pg_eventbus", 2);
}

static void
eb_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	eb_shared = NULL;
	topic_map = NULL;
	part_map = NULL;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	eb_shared = ShmemInitStruct("pg_eventbus", MAXALIGN(sizeof(EbShared)), &found);
	if (!found)
	{
		char	   *p;
		int			i;

		eb_shared->map_lock = &(GetNamedLWLockTranche("pg_eventbus"))[0].lock;
		eb_shared->dbs_lock = &(GetNamedLWLockTranche("pg_eventbus"))[1].lock;
		eb_shared->tranche_id = eb_shared->map_lock->tranche;
		pg_atomic_init_u64(&eb_shared->maintenance_wakeups, 0);
		eb_shared->max_topics = eb_max_topics;
		eb_shared->max_partitions = eb_max_partitions;
		eb_shared->nprocs = eb_reg_nprocs();
		eb_shared->nregs = eb_reg_total();

		p = ShmemAlloc(mul_size(eb_max_topics, sizeof(EbTopicShared)));
		eb_shared->topics = (EbTopicShared *) p;
		p = ShmemAlloc(mul_size(eb_max_partitions, sizeof(EbPartShared)));
		eb_shared->parts = (EbPartShared *) p;
		p = ShmemAlloc(mul_size(eb_shared->nregs, sizeof(EbReg)));
		eb_shared->regs = (EbReg *) p;
		p = ShmemAlloc(mul_size(eb_shared->nprocs, sizeof(int32)));
		eb_shared->slice_of = (int32 *) p;
		p = ShmemAlloc(mul_size(EB_DB_VERSIONS, sizeof(pg_atomic_uint64)));
		eb_shared->db_versions = (pg_atomic_uint64 *) p;
		for (i = 0; i < EB_DB_VERSIONS; i++)
			pg_atomic_init_u64(&eb_shared->db_versions[i], 1);
		p = ShmemAlloc(mul_size(eb_topic_versions(), sizeof(pg_atomic_uint64)));
		eb_shared->topic_versions = (pg_atomic_uint64 *) p;
		eb_shared->topic_versions_mask = eb_topic_versions() - 1;
		for (i = 0; i <= (int) eb_shared->topic_versions_mask; i++)
			pg_atomic_init_u64(&eb_shared->topic_versions[i], 1);

		for (i = 0; i < eb_max_topics; i++)
		{
			EbTopicShared *t = &eb_shared->topics[i];

			memset(t, 0, sizeof(*t));
			LWLockInitialize(&t->lock, eb_shared->tranche_id);
			ConditionVariableInit(&t->committed);
			pg_atomic_init_u32(&t->waiters, 0);
			pg_atomic_init_u32(&t->notify_pending, 0);
			pg_atomic_init_u64(&t->stat_published, 0);
			pg_atomic_init_u64(&t->stat_consumed, 0);
			pg_atomic_init_u64(&t->stat_dead_lettered, 0);
		}
		for (i = 0; i < eb_max_partitions; i++)
		{
			EbPartShared *pt = &eb_shared->parts[i];

			memset(pt, 0, sizeof(*pt));
			LWLockInitialize(&pt->lock, eb_shared->tranche_id);
			pg_atomic_init_u64(&pt->stat_relayed, 0);
		}
		for (i = 0; i < eb_shared->nregs; i++)
		{
			EbReg	   *r = &eb_shared->regs[i];

			memset(r, 0, sizeof(*r));
			r->prev = r->next = -1;
			r->free_next = -1;
			/* entries past the slices form the overflow free list */
			if (i >= eb_shared->nprocs * EB_REGS_PER_PROC && i + 1 < eb_shared->nregs)
				r->free_next = i + 1;
		}
		for (i = 0; i < eb_shared->nprocs; i++)
			eb_shared->slice_of[i] = i;
		SpinLockInit(&eb_shared->overflow_mutex);
		eb_shared->overflow_free = eb_shared->nprocs * EB_REGS_PER_PROC < eb_shared->nregs ?
			eb_shared->nprocs * EB_REGS_PER_PROC : -1;
		eb_shared->nprepared = max_prepared_xacts;
		if (max_prepared_xacts > 0)
		{
			p = ShmemAlloc(mul_size(max_prepared_xacts, sizeof(EbPrepared)));
			eb_shared->prepared = (EbPrepared *) p;
			memset(p, 0, mul_size(max_prepared_xacts, sizeof(EbPrepared)));
		}

		eb_shared->max_databases = eb_max_databases;
		p = ShmemAlloc(mul_size(eb_max_databases, sizeof(EbDbShared)));
		eb_shared->dbs = (EbDbShared *) p;
		for (i = 0; i < eb_max_databases; i++)
		{
			EbDbShared *d = &eb_shared->dbs[i];

			memset(d, 0, sizeof(*d));
			SpinLockInit(&d->relay.mutex);
			pg_atomic_init_u64(&d->relay.outbox_committed, 0);
			pg_atomic_init_u64(&d->relay.outbox_relayed, 0);
		}
		eb_shared->launcher_latch = NULL;
		eb_shared->notify_words = eb_notify_nwords();
		p = ShmemAlloc(mul_size(mul_size(eb_max_databases, eb_shared->notify_words),
								sizeof(pg_atomic_uint64)));
		eb_shared->notify_bits = (pg_atomic_uint64 *) p;
		for (i = 0; i < eb_max_databases * eb_shared->notify_words; i++)
			pg_atomic_init_u64(&eb_shared->notify_bits[i], 0);
		p = ShmemAlloc(mul_size(EB_LISTENER_BUCKETS, sizeof(pg_atomic_uint32)));
		eb_shared->listeners = (pg_atomic_uint32 *) p;
		for (i = 0; i < EB_LISTENER_BUCKETS; i++)
			pg_atomic_init_u32(&eb_shared->listeners[i], 0);
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(EbTopicKey);
	info.entrysize = sizeof(EbTopicMapEntry);
	topic_map = eb_shmem_init_hash("pg_eventbus topics", eb_max_topics,
							  &info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(EbPartKey);
	info.entrysize = sizeof(EbPartMapEntry);
	part_map = eb_shmem_init_hash("pg_eventbus partitions", eb_max_partitions,
							 &info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);

	LWLockRelease(AddinShmemInitLock);
}

/*
 * The entry of a database; with create, takes a free one if there is none
 * (NULL when all are in use).  A new entry starts with a relay status of
 * "not started".
 */
EbDbShared *
eb_db_shared(Oid dboid, bool create)
{
	static EbDbShared *mine = NULL;
	EbDbShared *found = NULL;
	EbDbShared *free_entry = NULL;
	int			i;

	if (eb_shared == NULL || !OidIsValid(dboid))
		return NULL;
	/*
	 * The entry of a database where the extension is installed is not freed
	 * while we are connected to it; whoever needs certainty (create) looks
	 * under the lock.
	 */
	if (!create && dboid == MyDatabaseId && mine != NULL && mine->dboid == dboid)
		return mine;

	LWLockAcquire(eb_shared->dbs_lock, create ? LW_EXCLUSIVE : LW_SHARED);
	for (i = 0; i < eb_shared->max_databases && found == NULL; i++)
	{
		EbDbShared *d = &eb_shared->dbs[i];

		if (d->dboid == dboid)
			found = d;
		else if (!OidIsValid(d->dboid) && free_entry == NULL)
			free_entry = d;
	}
	if (found == NULL && create && free_entry != NULL)
	{
		EbRelayShared *r = &free_entry->relay;

		found = free_entry;
		found->dboid = dboid;
		found->ext_state = EB_EXT_UNKNOWN;
		found->recheck = false;
		found->release_req = found->release_ack = 0;
		found->hold_until = 0;
		found->notify_latch = NULL;
		found->worker_pid = 0;
		/* nobody uses a free entry's relay status */
		memset((char *) r + offsetof(EbRelayShared, pid), 0,
			   offsetof(EbRelayShared, outbox_committed) - offsetof(EbRelayShared, pid));
		strlcpy(r->state, "not started", EB_RELAY_STATE_LEN);
		pg_atomic_write_u64(&r->outbox_committed, 0);
		pg_atomic_write_u64(&r->outbox_relayed, 0);
	}
	LWLockRelease(eb_shared->dbs_lock);
	if (found != NULL && dboid == MyDatabaseId)
		mine = found;
	return found;
}

/*
 * The notify bitmap of a database (eb_shared->notify_words words), NULL if
 * it has no entry.  A stale bit (the entry or the slot was reused) only
 * makes the worker look at a slot for nothing.
 */
pg_atomic_uint64 *
eb_notify_bits(Oid dboid)
{
	EbDbShared *d = eb_db_shared(dboid, false);

	if (d == NULL)
		return NULL;
	return &eb_shared->notify_bits[(d - eb_shared->dbs) * eb_shared->notify_words];
}

/* The relay status of a database, NULL if it has no entry. */
EbRelayShared *
eb_relay_state(Oid dboid)
{
	EbDbShared *d = eb_db_shared(dboid, false);

	return d ? &d->relay : NULL;
}

/* Sets the launcher's latch: a database's workers need its attention. */
void
eb_wake_launcher(void)
{
	Latch	   *latch;

	if (eb_shared == NULL)
		return;
	LWLockAcquire(eb_shared->dbs_lock, LW_SHARED);
	latch = eb_shared->launcher_latch;
	LWLockRelease(eb_shared->dbs_lock);
	if (latch != NULL)
		SetLatch(latch);
}

/* Ends this backend's registrations when it exits (normally done already). */
static void
eb_pending_exit(int code, Datum arg)
{
	if (eb_shared != NULL && MyProc != NULL)
		eb_pending_xact_end(false);
}

void
eb_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = eb_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = eb_shmem_startup;
}

/*
 * Errors out unless the library was preloaded, so that functions relying on
 * shared memory fail with an actionable message.
 */
void
eb_require_shmem(void)
{
	static bool exit_hook_set = false;

	if (eb_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_eventbus must be loaded via shared_preload_libraries"),
				 errhint("Add pg_eventbus to shared_preload_libraries in postgresql.conf and restart the server.")));
	if (!exit_hook_set)
	{
		before_shmem_exit(eb_pending_exit, (Datum) 0);
		exit_hook_set = true;
	}
}

static void
topic_key(EbTopicKey *key, Oid dboid, int64 uid)
{
	memset(key, 0, sizeof(*key));
	key->dboid = dboid;
	key->uid = uid;
}

static void
part_key(EbPartKey *key, Oid dboid, int64 uid, int32 partition)
{
	memset(key, 0, sizeof(*key));
	key->dboid = dboid;
	key->uid = uid;
	key->partition = partition;
}

bool
eb_topic_key_matches(EbTopicShared *t, Oid dboid, int64 uid)
{
	return t->in_use && t->key.dboid == dboid && t->key.uid == uid;
}

bool
eb_part_key_matches(EbPartShared *p, Oid dboid, int64 uid, int32 partition)
{
	return p->in_use && p->key.dboid == dboid && p->key.uid == uid &&
		p->key.partition == partition;
}

/*
 * Takes a free topic slot for key, or returns NULL when all are in use.
 */
static EbTopicShared *
topic_slot_alloc(const EbTopicKey *key)
{
	EbTopicMapEntry *e;
	EbTopicShared *t = NULL;
	bool		found;
	int			i;

	LWLockAcquire(eb_shared->map_lock, LW_EXCLUSIVE);
	e = hash_search(topic_map, key, HASH_ENTER_NULL, &found);
	if (e != NULL && found)
		t = &eb_shared->topics[e->idx];
	for (i = 0; e != NULL && !found && i < eb_shared->max_topics; i++)
	{
		if (eb_shared->topics[i].in_use)
			continue;
		t = &eb_shared->topics[i];
		LWLockAcquire(&t->lock, LW_EXCLUSIVE);
		t->key = *key;
		t->in_use = true;
		t->initialized = false;
		t->parent_relid = InvalidOid;
		t->seg_relid = InvalidOid;
		t->seg_no = 0;
		t->name[0] = '\0';
		pg_atomic_write_u32(&t->notify_pending, 0);
		pg_atomic_write_u64(&t->stat_published, 0);
		pg_atomic_write_u64(&t->stat_consumed, 0);
		pg_atomic_write_u64(&t->stat_dead_lettered, 0);
		t->stats_reset = GetCurrentTimestamp();
		LWLockRelease(&t->lock);
		e->idx = i;
		break;
	}
	if (t == NULL && e != NULL)
		hash_search(topic_map, key, HASH_REMOVE, NULL);
	LWLockRelease(eb_shared->map_lock);
	return t;
}

/* Takes a free partition slot for key, or returns NULL when all are in use. */
static EbPartShared *
part_slot_alloc(const EbPartKey *key)
{
	EbPartMapEntry *e;
	EbPartShared *p = NULL;
	bool		found;
	int			i;

	LWLockAcquire(eb_shared->map_lock, LW_EXCLUSIVE);
	e = hash_search(part_map, key, HASH_ENTER_NULL, &found);
	if (e != NULL && found)
		p = &eb_shared->parts[e->idx];
	for (i = 0; e != NULL && !found && i < eb_shared->max_partitions; i++)
	{
		if (eb_shared->parts[i].in_use)
			continue;
		p = &eb_shared->parts[i];
		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		p->key = *key;
		p->in_use = true;
		p->initialized = false;
		p->parent_relid = InvalidOid;
		p->reg_head = p->reg_tail = -1;
		p->next_position = 0;
		p->seg_no = 0;
		p->seg_start = 0;
		p->relayed_position = -1;
		pg_atomic_write_u64(&p->stat_relayed, 0);
		LWLockRelease(&p->lock);
		e->idx = i;
		break;
	}
	if (p == NULL && e != NULL)
		hash_search(part_map, key, HASH_REMOVE, NULL);
	LWLockRelease(eb_shared->map_lock);
	return p;
}

/*
 * Finds (and with create, allocates) the shared slot of a topic.  The caller
 * must take the slot's lock and check the key with eb_topic_key_matches
 * before trusting it.  Returns NULL when there is none, or with create when
 * every slot is in use (see eb_shared_reclaim).
 */
EbTopicShared *
eb_shared_topic_slot(Oid dboid, int64 uid, bool create)
{
	EbTopicKey	key;
	EbTopicMapEntry *e;
	EbTopicShared *t = NULL;

	topic_key(&key, dboid, uid);

	LWLockAcquire(eb_shared->map_lock, LW_SHARED);
	e = hash_search(topic_map, &key, HASH_FIND, NULL);
	if (e != NULL)
		t = &eb_shared->topics[e->idx];
	LWLockRelease(eb_shared->map_lock);
	if (t != NULL || !create)
		return t;

	return topic_slot_alloc(&key);
}

/* The same for a partition. */
EbPartShared *
eb_shared_part_slot(Oid dboid, int64 uid, int32 partition, bool create)
{
	EbPartKey	key;
	EbPartMapEntry *e;
	EbPartShared *p = NULL;

	part_key(&key, dboid, uid, partition);

	LWLockAcquire(eb_shared->map_lock, LW_SHARED);
	e = hash_search(part_map, &key, HASH_FIND, NULL);
	if (e != NULL)
		p = &eb_shared->parts[e->idx];
	LWLockRelease(eb_shared->map_lock);
	if (p != NULL || !create)
		return p;

	return part_slot_alloc(&key);
}

/*
 * The databases, other than the current one, that own slots.
 */
List *
eb_shared_other_databases(void)
{
	List	   *dbs = NIL;
	int			i;

	LWLockAcquire(eb_shared->map_lock, LW_SHARED);
	for (i = 0; i < eb_shared->max_topics; i++)
	{
		EbTopicShared *t = &eb_shared->topics[i];

		if (t->in_use && t->key.dboid != MyDatabaseId)
			dbs = list_append_unique_oid(dbs, t->key.dboid);
	}
	for (i = 0; i < eb_shared->max_partitions; i++)
	{
		EbPartShared *p = &eb_shared->parts[i];

		if (p->in_use && p->key.dboid != MyDatabaseId)
			dbs = list_append_unique_oid(dbs, p->key.dboid);
	}
	LWLockRelease(eb_shared->map_lock);
	return dbs;
}

/*
 * Frees every slot whose topic stale() says no longer exists.  stale() is
 * called under map_lock and must not do anything but look at its argument.
 * Partitions that an open transaction registered in are left alone.  Returns the number of slots freed.
 */
int
eb_shared_reclaim(bool (*stale) (Oid dboid, int64 uid, void *arg), void *arg)
{
	int			freed = 0;
	int			i;

	LWLockAcquire(eb_shared->map_lock, LW_EXCLUSIVE);
	for (i = 0; i < eb_shared->max_topics; i++)
	{
		EbTopicShared *t = &eb_shared->topics[i];
		EbTopicKey	key = t->key;

		if (!t->in_use || !stale(key.dboid, key.uid, arg))
			continue;
		LWLockAcquire(&t->lock, LW_EXCLUSIVE);
		t->in_use = false;
		t->initialized = false;
		memset(&t->key, 0, sizeof(t->key));
		LWLockRelease(&t->lock);
		hash_search(topic_map, &key, HASH_REMOVE, NULL);
		freed++;
	}
	for (i = 0; i < eb_shared->max_partitions; i++)
	{
		EbPartShared *p = &eb_shared->parts[i];
		EbPartKey	key = p->key;
		bool		busy;

		if (!p->in_use || !stale(key.dboid, key.uid, arg))
			continue;
		LWLockAcquire(&p->lock, LW_EXCLUSIVE);
		busy = eb_part_busy(p);
		if (!busy)
		{
			p->in_use = false;
			p->initialized = false;
			memset(&p->key, 0, sizeof(p->key));
		}
		LWLockRelease(&p->lock);
		if (!busy)
		{
			hash_search(part_map, &key, HASH_REMOVE, NULL);
			freed++;
		}
	}
	LWLockRelease(eb_shared->map_lock);
	return freed;
}

/*
 * Releases the shared slots of a dropped topic.  Called after the drop
 * committed, so no backend can be assigning positions in it.
 */
void
eb_shared_forget_topic(Oid dboid, int64 uid, int32 partitions)
{
	EbTopicKey	tkey;
	EbTopicMapEntry *te;
	int32		i;

	if (eb_shared == NULL)
		return;

	topic_key(&tkey, dboid, uid);
	LWLockAcquire(eb_shared->map_lock, LW_EXCLUSIVE);
	te = hash_search(topic_map, &tkey, HASH_FIND, NULL);
	if (te != NULL)
	{
		EbTopicShared *t = &eb_shared->topics[te->idx];

		LWLockAcquire(&t->lock, LW_EXCLUSIVE);
		t->in_use = false;
		t->initialized = false;
		memset(&t->key, 0, sizeof(t->key));
		LWLockRelease(&t->lock);
		hash_search(topic_map, &tkey, HASH_REMOVE, NULL);
	}
	for (i = 0; i < partitions; i++)
	{
		EbPartKey	pkey;
		EbPartMapEntry *pe;

		part_key(&pkey, dboid, uid, i);
		pe = hash_search(part_map, &pkey, HASH_FIND, NULL);
		if (pe != NULL)
		{
			EbPartShared *p = &eb_shared->parts[pe->idx];
			bool		busy;

			LWLockAcquire(&p->lock, LW_EXCLUSIVE);
			/* a registration still points here: leave it be */
			busy = eb_part_busy(p);
			if (!busy)
			{
				p->in_use = false;
				p->initialized = false;
				memset(&p->key, 0, sizeof(p->key));
			}
			LWLockRelease(&p->lock);
			if (!busy)
				hash_search(part_map, &pkey, HASH_REMOVE, NULL);
		}
	}
	LWLockRelease(eb_shared->map_lock);
}

/* ---------- registrations of open transactions ---------- */

/* This backend's registrations in the current top-level transaction. */
typedef struct EbMyReg
{
	EbPartShared *part;
	int32		reg;
} EbMyReg;

static EbMyReg *my_regs = NULL;
static int	my_nregs = 0;
static int	my_maxregs = 0;
static int	my_slice_used = 0;	/* entries of my slice in my_regs */
static int32 my_spare = -1;		/* an overflow entry taken, not yet linked */

static inline EbReg *
reg_at(int32 i)
{
	return &eb_shared->regs[i];
}

static inline bool
reg_is_overflow(int32 i)
{
	return i >= eb_shared->nprocs * EB_REGS_PER_PROC;
}

static int32
my_slice_base(void)
{
	Assert(MyProc != NULL && eb_proc_number(MyProc) < eb_shared->nprocs);
	return eb_shared->slice_of[eb_proc_number(MyProc)] * EB_REGS_PER_PROC;
}

static void
overflow_push(int32 i)
{
	Assert(reg_is_overflow(i));
	SpinLockAcquire(&eb_shared->overflow_mutex);
	reg_at(i)->free_next = eb_shared->overflow_free;
	eb_shared->overflow_free = i;
	SpinLockRelease(&eb_shared->overflow_mutex);
}

static int32
overflow_pop(void)
{
	int32		i;

	SpinLockAcquire(&eb_shared->overflow_mutex);
	i = eb_shared->overflow_free;
	if (i >= 0)
		eb_shared->overflow_free = reg_at(i)->free_next;
	SpinLockRelease(&eb_shared->overflow_mutex);
	return i;
}

/* Unlinks registration i from part's list.  Caller holds part->lock. */
static void
reg_unlink(EbPartShared *part, int32 i)
{
	EbReg	   *r = reg_at(i);

	Assert(LWLockHeldByMeInMode(&part->lock, LW_EXCLUSIVE));
	Assert(r->part == part);
	if (r->prev >= 0)
		reg_at(r->prev)->next = r->next;
	else
		part->reg_head = r->next;
	if (r->next >= 0)
		reg_at(r->next)->prev = r->prev;
	else
		part->reg_tail = r->prev;
	r->part = NULL;
	r->prev = r->next = -1;
	r->prepared = false;
	if (reg_is_overflow(i))
		overflow_push(i);
}

/*
 * Unlinks registration i if it is still linked and, when only_finished,
 * if it belongs to a prepared transaction that has finished.  Takes the
 * lock of the partition the entry points to.
 */
static void
reg_release_if(int32 i, bool only_finished)
{
	EbReg	   *r = reg_at(i);
	EbPartShared *part;

	/* an aligned pointer is read atomically; checked again under the lock */
	part = ((volatile EbReg *) r)->part;
	if (part == NULL)
		return;
	LWLockAcquire(&part->lock, LW_EXCLUSIVE);
	if (r->part == part &&
		(!only_finished || (r->prepared && !TransactionIdIsInProgress(r->xid))))
		reg_unlink(part, i);
	LWLockRelease(&part->lock);
}

/*
 * Unlinks the registrations of finished prepared transactions at the head
 * of part's list.  Caller holds part->lock exclusively.
 */
static void
part_pop_finished(EbPartShared *part)
{
	while (part->reg_head >= 0)
	{
		EbReg	   *r = reg_at(part->reg_head);

		if (!r->prepared || TransactionIdIsInProgress(r->xid))
			break;
		reg_unlink(part, part->reg_head);
	}
}

/* Does an open transaction hold positions in part?  Lock held exclusively. */
static bool
eb_part_busy(EbPartShared *part)
{
	part_pop_finished(part);
	return part->reg_head >= 0;
}

/*
 * Frees the overflow entries of prepared transactions that have finished
 * but were not at the head of their list.  Called when the pool is empty.
 */
static void
overflow_sweep(void)
{
	int32		i;

	for (i = eb_shared->nprocs * EB_REGS_PER_PROC; i < eb_shared->nregs; i++)
	{
		if (((volatile EbReg *) reg_at(i))->prepared)
			reg_release_if(i, true);
	}
}

/*
 * Prepares the registration of this transaction in part, before any LWLock
 * is taken: returns -1 if the transaction is registered there already, else
 * the entry eb_pending_set() will link.  Errors out when the pool is
 * exhausted, so no position is ever handed out unregistered.
 */
int32
eb_pending_reserve(EbPartShared *part)
{
	int			i;

	for (i = my_nregs - 1; i >= 0; i--)
	{
		if (my_regs[i].part == part)
			return -1;
	}
	/* the registration names the top-level transaction */
	(void) GetTopTransactionId();
	if (my_nregs == my_maxregs)
	{
		int			n = Max(16, my_maxregs * 2);

		if (my_regs == NULL)
			my_regs = MemoryContextAlloc(TopMemoryContext, sizeof(EbMyReg) * n);
		else
			my_regs = repalloc(my_regs, sizeof(EbMyReg) * n);
		my_maxregs = n;
	}
	if (my_slice_used < EB_REGS_PER_PROC)
		return my_slice_base() + my_slice_used;
	if (my_spare < 0)
		my_spare = overflow_pop();
	if (my_spare < 0)
	{
		overflow_sweep();
		my_spare = overflow_pop();
	}
	if (my_spare < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many partitions written by open transactions"),
				 errdetail("This transaction already publishes to %d partitions, and the shared pool of %d further registrations is in use.",
						   my_nregs, MaxBackends * EB_REGS_PER_PROC),
				 errhint("Publish to fewer partitions per transaction, or raise max_connections to enlarge the pool.")));
	return my_spare;
}

/*
 * Registers lo, the first position this transaction took in part, in the
 * entry eb_pending_reserve() returned (nothing if that was -1).  Caller
 * holds part->lock exclusively and took lo under it.
 */
void
eb_pending_set(EbPartShared *part, int32 reg, int64 lo)
{
	EbReg	   *r;

	Assert(LWLockHeldByMeInMode(&part->lock, LW_EXCLUSIVE));
	if (reg < 0)
		return;
	r = reg_at(reg);
	Assert(r->part == NULL);
	Assert(reg_is_overflow(reg) ? reg == my_spare : reg == my_slice_base() + my_slice_used);
	Assert(part->reg_tail < 0 || reg_at(part->reg_tail)->lo < lo);
	r->lo = lo;
	r->xid = GetTopTransactionIdIfAny();
	r->prepared = false;
	r->prev = part->reg_tail;
	r->next = -1;
	if (part->reg_tail >= 0)
		reg_at(part->reg_tail)->next = reg;
	else
		part->reg_head = reg;
	part->reg_tail = reg;
	r->part = part;

	my_regs[my_nregs].part = part;
	my_regs[my_nregs].reg = reg;
	my_nregs++;
	if (reg_is_overflow(reg))
		my_spare = -1;
	else
		my_slice_used++;
}

bool
eb_pending_active(void)
{
	return my_nregs > 0;
}

/*
 * The top-level transaction ended.  On commit or abort, unlinks this
 * transaction's registrations.  On PREPARE, hands them to the prepared
 * transaction: they are marked prepared, and this backend swaps slices with
 * the dummy PGPROC of the prepared transaction.  Must not fail.
 */
void
eb_pending_xact_end(bool prepare)
{
	int			i;

	if (eb_shared == NULL || MyProc == NULL)
		return;
	if (my_nregs > 0 && prepare)
	{
		PGPROC	   *dummy;
		int32		dbase;

		Assert(TransactionIdIsValid(GetTopTransactionIdIfAny()));
		for (i = 0; i < my_nregs; i++)
		{
			EbPartShared *part = my_regs[i].part;

			LWLockAcquire(&part->lock, LW_EXCLUSIVE);
			Assert(reg_at(my_regs[i].reg)->part == part);
			reg_at(my_regs[i].reg)->prepared = true;
			LWLockRelease(&part->lock);
		}
		if (my_slice_used > 0)
		{
			int32		tmp;

			dummy = eb_prepared_dummy_proc();
			Assert(eb_proc_number(dummy) < eb_shared->nprocs);
			dbase = eb_shared->slice_of[eb_proc_number(dummy)] * EB_REGS_PER_PROC;
			/* what the dummy's previous prepared transaction left has finished */
			for (i = 0; i < EB_REGS_PER_PROC; i++)
				reg_release_if(dbase + i, false);
			tmp = eb_shared->slice_of[eb_proc_number(dummy)];
			eb_shared->slice_of[eb_proc_number(dummy)] = eb_shared->slice_of[eb_proc_number(MyProc)];
			eb_shared->slice_of[eb_proc_number(MyProc)] = tmp;
		}
	}
	else
	{
		for (i = 0; i < my_nregs; i++)
		{
			EbPartShared *part = my_regs[i].part;

			LWLockAcquire(&part->lock, LW_EXCLUSIVE);
			if (reg_at(my_regs[i].reg)->part == part)
				reg_unlink(part, my_regs[i].reg);
			LWLockRelease(&part->lock);
		}
	}
	if (my_spare >= 0)
	{
		overflow_push(my_spare);
		my_spare = -1;
	}
	my_nregs = 0;
	my_slice_used = 0;
}

/*
 * A partition slot initialized for another incarnation of the topic (same
 * uid, another parent table: the extension was dropped and the topic
 * restored from a dump) is made uninitialized, so that it is rebuilt from
 * the tables.  Returns false, changing nothing, if an open transaction
 * still holds positions there.
 */
bool
eb_part_reset_if_stale(EbPartShared *part, Oid dboid, int64 uid,
					   int32 partition, Oid parent_relid)
{
	bool		ok = true;

	LWLockAcquire(&part->lock, LW_EXCLUSIVE);
	if (eb_part_key_matches(part, dboid, uid, partition) && part->initialized &&
		part->parent_relid != parent_relid)
	{
		if (eb_part_busy(part))
			ok = false;
		else
		{
			part->initialized = false;
			part->parent_relid = InvalidOid;
			part->next_position = 0;
			part->seg_no = 0;
			part->seg_start = 0;
			part->relayed_position = -1;
		}
	}
	LWLockRelease(&part->lock);
	return ok;
}

/*
 * The first registration in part's list that is not the current
 * transaction's (a transaction has at most one per partition).
 */
static int32
first_other(EbPartShared *part, TransactionId self)
{
	int32		head = part->reg_head;

	if (head >= 0 && TransactionIdIsValid(self) && reg_at(head)->xid == self &&
		!reg_at(head)->prepared)
		head = reg_at(head)->next;
	return head;
}

/*
 * The read horizon of part: the lowest position an open transaction other
 * than the current one registered (a transaction reads its own events),
 * or the next position to be handed out.  Returns -1 if the
 * slot no longer belongs to that partition (of that parent table) or is not
 * initialized.
 */
int64
eb_part_horizon(EbPartShared *part, Oid dboid, int64 uid, int32 partition,
				Oid parent_relid, int64 *next_position)
{
	int64		horizon;
	bool		prepared_head = false;
	TransactionId self = GetTopTransactionIdIfAny();
	int32		head;

	LWLockAcquire(&part->lock, LW_SHARED);
	if (!eb_part_key_matches(part, dboid, uid, partition) || !part->initialized ||
		part->parent_relid != parent_relid)
	{
		LWLockRelease(&part->lock);
		return -1;
	}
	horizon = part->next_position;
	if (next_position)
		*next_position = part->next_position;
	head = first_other(part, self);
	if (head >= 0)
	{
		EbReg	   *r = reg_at(head);

		prepared_head = r->prepared;
		horizon = r->lo;
	}
	LWLockRelease(&part->lock);
	if (!prepared_head)
		return horizon;

	/* a prepared transaction may have finished: look again, exclusively */
	LWLockAcquire(&part->lock, LW_EXCLUSIVE);
	if (!eb_part_key_matches(part, dboid, uid, partition) || !part->initialized ||
		part->parent_relid != parent_relid)
	{
		LWLockRelease(&part->lock);
		return -1;
	}
	part_pop_finished(part);
	head = first_other(part, self);
	horizon = head >= 0 ? reg_at(head)->lo : part->next_position;
	if (next_position)
		*next_position = part->next_position;
	LWLockRelease(&part->lock);
	return horizon;
}

/* ---------- versions of the topic caches (catalog.c) ---------- */

static inline pg_atomic_uint64 *
db_version_entry(Oid dboid)
{
	return &eb_shared->db_versions[murmurhash32((uint32) dboid) % EB_DB_VERSIONS];
}

/* The hash of a topic name in a database: topic versions, listener counts. */
static inline uint32
db_name_hash(Oid dboid, const char *name)
{
	return hash_combine(murmurhash32((uint32) dboid),
						hash_bytes((const unsigned char *) name, strlen(name)));
}

static inline pg_atomic_uint64 *
topic_version_entry(Oid dboid, const char *name)
{
	return &eb_shared->topic_versions[db_name_hash(dboid, name) & eb_shared->topic_versions_mask];
}

/*
 * The count of backends listening to "eventbus.<name>" in database dboid,
 * shared with the (database, name) pairs of the same hash.
 */
pg_atomic_uint32 *
eb_listener_count(Oid dboid, const char *name)
{
	return &eb_shared->listeners[db_name_hash(dboid, name) % EB_LISTENER_BUCKETS];
}

/* The version of a database's topic list: bumped by changes to it. */
uint64
eb_db_version(Oid dboid)
{
	return pg_atomic_read_u64(db_version_entry(dboid));
}

void
eb_db_version_bump(Oid dboid)
{
	if (eb_shared != NULL)
		pg_atomic_fetch_add_u64(db_version_entry(dboid), 1);
}

/* The version of a topic of a database (by name): bumped by changes to it. */
uint64
eb_topic_version(Oid dboid, const char *name)
{
	return pg_atomic_read_u64(topic_version_entry(dboid, name));
}

void
eb_topic_version_bump(Oid dboid, const char *name)
{
	if (eb_shared != NULL)
		pg_atomic_fetch_add_u64(topic_version_entry(dboid, name), 1);
}
