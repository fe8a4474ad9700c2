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
 *	- EbPartShared.lock: exclusive to assign positions, to change npending
 *	  or relayed_position; shared to compute the read horizon.  Each backend's
 *	  EbPending entry is written only under the lock of the partition it
 *	  points to, and read by others under that lock.
 *
 *	- EbRelayShared.mutex (a spinlock) protects the relay worker's status;
 *	  the outbox counters are atomics.  Prepared transactions that
 *	  published (prepared[]) are under map_lock.
 *	- EbTopicShared.name is written under the topic lock
 *	  when the slot is initialized; notify_pending is an atomic flag set at
 *	  commit and cleared by the worker that sends NOTIFY; "committed" is a
 *	  condition variable broadcast at commit, for eventbus.wait().
 *	- notify_latch/notify_dboid are set by the database worker at start and
 *	  cleared at exit under the relay spinlock.
 *
 * Nothing here survives a restart: a topic's state is rebuilt from its
 * tables the first time it is used (see topic.c).  A dropped topic's slots
 * are freed when the drop commits; those that DROP EXTENSION or DROP
 * DATABASE leave behind are reclaimed when the arrays are full (see
 * eb_catalog_reclaim_slots).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"

#include "pg_eventbus.h"
#include "compat.h"
#include "catalog.h"
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

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static int
eb_pending_slots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
eb_shmem_size(void)
{
	Size		size;

	size = MAXALIGN(sizeof(EbShared));
	size = add_size(size, mul_size(eb_max_topics, sizeof(EbTopicShared)));
	size = add_size(size, mul_size(eb_max_partitions, sizeof(EbPartShared)));
	size = add_size(size, mul_size(eb_pending_slots(), sizeof(EbPending)));
	size = add_size(size, mul_size(max_prepared_xacts, sizeof(EbPrepared)));
	size = add_size(size, hash_estimate_size(eb_max_topics, sizeof(EbTopicMapEntry)));
	size = add_size(size, hash_estimate_size(eb_max_partitions, sizeof(EbPartMapEntry)));
	return size;
}

static void
eb_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(eb_shmem_size());
	RequestNamedLWLockTranche("pg_eventbus", 1);
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

		eb_shared->map_lock = &(GetNamedLWLockTranche("pg_eventbus"))->lock;
		eb_shared->tranche_id = eb_shared->map_lock->tranche;
		pg_atomic_init_u64(&eb_shared->catalog_version, 1);
		pg_atomic_init_u64(&eb_shared->maintenance_wakeups, 0);
		eb_shared->max_topics = eb_max_topics;
		eb_shared->max_partitions = eb_max_partitions;
		eb_shared->npending = eb_pending_slots();

		p = ShmemAlloc(mul_size(eb_max_topics, sizeof(EbTopicShared)));
		eb_shared->topics = (EbTopicShared *) p;
		p = ShmemAlloc(mul_size(eb_max_partitions, sizeof(EbPartShared)));
		eb_shared->parts = (EbPartShared *) p;
		p = ShmemAlloc(mul_size(eb_shared->npending, sizeof(EbPending)));
		eb_shared->pending = (EbPending *) p;

		for (i = 0; i < eb_max_topics; i++)
		{
			EbTopicShared *t = &eb_shared->topics[i];

			memset(t, 0, sizeof(*t));
			LWLockInitialize(&t->lock, eb_shared->tranche_id);
			ConditionVariableInit(&t->committed);
			pg_atomic_init_u32(&t->notify_pending, 0);
		}
		for (i = 0; i < eb_max_partitions; i++)
		{
			EbPartShared *pt = &eb_shared->parts[i];

			memset(pt, 0, sizeof(*pt));
			LWLockInitialize(&pt->lock, eb_shared->tranche_id);
		}
		memset(eb_shared->pending, 0, mul_size(eb_shared->npending, sizeof(EbPending)));
		eb_shared->nprepared = max_prepared_xacts;
		if (max_prepared_xacts > 0)
		{
			p = ShmemAlloc(mul_size(max_prepared_xacts, sizeof(EbPrepared)));
			eb_shared->prepared = (EbPrepared *) p;
			memset(p, 0, mul_size(max_prepared_xacts, sizeof(EbPrepared)));
		}

		memset(&eb_shared->relay, 0, sizeof(eb_shared->relay));
		SpinLockInit(&eb_shared->relay.mutex);
		strlcpy(eb_shared->relay.state, "not started", EB_RELAY_STATE_LEN);
		pg_atomic_init_u64(&eb_shared->relay.outbox_committed, 0);
		pg_atomic_init_u64(&eb_shared->relay.outbox_relayed, 0);
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

/* Clears this backend's pending assignment when it exits. */
static void
eb_pending_exit(int code, Datum arg)
{
	if (eb_shared != NULL && MyProc != NULL)
		eb_pending_clear();
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
		t->seg_relid = InvalidOid;
		t->seg_no = 0;
		t->name[0] = '\0';
		pg_atomic_write_u32(&t->notify_pending, 0);
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
		p->npending = 0;
		p->next_position = 0;
		p->seg_no = 0;
		p->seg_start = 0;
		p->relayed_position = -1;
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
 * before trusting it.  When every slot is in use, the slots of topics that
 * no longer exist are reclaimed once before giving up.
 */
EbTopicShared *
eb_topic_shared(Oid dboid, int64 uid, bool create)
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

	t = topic_slot_alloc(&key);
	if (t == NULL && eb_catalog_reclaim_slots() > 0)
		t = topic_slot_alloc(&key);
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many topics in use"),
				 errdetail("Shared memory has room for %d topics.", eb_shared->max_topics),
				 errhint("Raise eventbus.max_topics and restart the server.")));
	return t;
}

EbPartShared *
eb_part_shared(Oid dboid, int64 uid, int32 partition, bool create)
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

	p = part_slot_alloc(&key);
	if (p == NULL && eb_catalog_reclaim_slots() > 0)
		p = part_slot_alloc(&key);
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many partitions in use"),
				 errdetail("Shared memory has room for %d partitions across all topics.",
						   eb_shared->max_partitions),
				 errhint("Raise eventbus.max_partitions and restart the server.")));
	return p;
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
 * Partitions with a publisher between assignment and insertion are left
 * alone.  Returns the number of slots freed.
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
		busy = p->npending > 0;
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
			/* a publisher between assignment and insertion: leave it be */
			busy = p->npending > 0;
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

static EbPending *
my_pending(void)
{
	Assert(MyProc != NULL && eb_proc_number(MyProc) < eb_shared->npending);
	return &eb_shared->pending[eb_proc_number(MyProc)];
}

/*
 * Records that this backend holds positions from lo upwards in part that are
 * not yet in the index.  Caller holds part->lock exclusively.
 */
void
eb_pending_set(EbPartShared *part, int64 lo)
{
	EbPending  *mine = my_pending();

	Assert(LWLockHeldByMeInMode(&part->lock, LW_EXCLUSIVE));
	Assert(mine->part == NULL);
	mine->part = part;
	mine->key = part->key;
	mine->lo = lo;
	part->npending++;
}

bool
eb_pending_active(void)
{
	return eb_shared != NULL && MyProc != NULL && my_pending()->part != NULL;
}

/*
 * Clears this backend's pending assignment, if any.  Called once the rows
 * are in the index, and on (sub)transaction abort after LWLocks have been
 * released.
 */
void
eb_pending_clear(void)
{
	EbPending  *mine;
	EbPartShared *part;

	if (eb_shared == NULL || MyProc == NULL)
		return;
	mine = my_pending();
	part = mine->part;
	if (part == NULL)
		return;
	LWLockAcquire(&part->lock, LW_EXCLUSIVE);
	/* the slot cannot have been released meanwhile (see forget), but check */
	if (part->in_use && memcmp(&part->key, &mine->key, sizeof(EbPartKey)) == 0)
	{
		part->npending--;
		Assert(part->npending >= 0);
	}
	mine->part = NULL;
	LWLockRelease(&part->lock);
}

/*
 * The first position of part that a reader must not go past: the lowest
 * pending assignment, or the next position to be handed out.  Returns -1 if
 * the slot no longer belongs to that partition or is not initialized.
 */
int64
eb_part_horizon(EbPartShared *part, Oid dboid, int64 uid, int32 partition,
				int64 *next_position)
{
	int64		horizon;

	LWLockAcquire(&part->lock, LW_SHARED);
	if (!eb_part_key_matches(part, dboid, uid, partition) || !part->initialized)
	{
		LWLockRelease(&part->lock);
		return -1;
	}
	horizon = part->next_position;
	if (next_position)
		*next_position = part->next_position;
	if (part->npending > 0)
	{
		int			i;

		for (i = 0; i < eb_shared->npending; i++)
		{
			EbPending  *pe = &eb_shared->pending[i];

			if (pe->part == part && pe->lo < horizon)
				horizon = pe->lo;
		}
	}
	LWLockRelease(&part->lock);
	return horizon;
}

uint64
eb_catalog_version(void)
{
	return pg_atomic_read_u64(&eb_shared->catalog_version);
}

void
eb_catalog_version_bump(void)
{
	if (eb_shared != NULL)
		pg_atomic_fetch_add_u64(&eb_shared->catalog_version, 1);
}
