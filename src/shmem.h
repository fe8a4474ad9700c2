/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared state of pg_eventbus: per-topic and per-partition position
 *	  counters, the registrations of open producer transactions, and the
 *	  versions that invalidate backends' topic caches.
 *
 * See shmem.c for the locking protocol.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SHMEM_H
#define EB_SHMEM_H

#include "access/xact.h"
#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

/* Identity of a topic in shared memory: database and incarnation id. */
typedef struct EbTopicKey
{
	Oid			dboid;
	int32		pad;			/* always zero; keeps the key hashable as bytes */
	int64		uid;
} EbTopicKey;

typedef struct EbPartKey
{
	Oid			dboid;
	int32		partition;
	int64		uid;
} EbPartKey;

typedef struct EbTopicShared
{
	LWLock		lock;			/* shared: assign positions; exclusive: switch
								 * segments */
	EbTopicKey	key;
	bool		in_use;
	bool		initialized;	/* seg_relid/seg_no valid */
	Oid			parent_relid;	/* topic's parent table when initialized */
	Oid			seg_relid;		/* segment receiving new events */
	int32		seg_no;
	char		name[NAMEDATALEN];
	ConditionVariable committed;	/* broadcast after a commit published here */
	pg_atomic_uint32 waiters;	/* eventbus.wait() calls that may sleep on
								 * committed: none, no broadcast */
	pg_atomic_uint32 notify_pending;	/* a commit published since the last
										 * NOTIFY */
	/* monotonic counters since stats_reset (stats.c), added at commit */
	pg_atomic_uint64 stat_published;	/* events of committed publishes */
	pg_atomic_uint64 stat_consumed; /* positions groups committed past */
	pg_atomic_uint64 stat_dead_lettered;	/* events groups dead-lettered */
	TimestampTz stats_reset;	/* when the slot was taken */
} EbTopicShared;

typedef struct EbPartShared
{
	LWLock		lock;			/* protects everything below */
	EbPartKey	key;
	bool		in_use;
	bool		initialized;	/* next_position valid */
	Oid			parent_relid;	/* topic's parent table when initialized */
	int32		reg_head;		/* registrations of open transactions, in */
	int32		reg_tail;		/* assignment order (index in regs, -1) */
	int64		next_position;	/* next position to hand out */
	int32		seg_no;			/* segment seg_start refers to */
	int64		seg_start;		/* first position this partition can have in
								 * segment seg_no */
	int64		relayed_position;	/* highest position Kafka acknowledged
									 * since startup, -1 if none */
	pg_atomic_uint64 stat_relayed;	/* events Kafka acknowledged since the
									 * slot was taken */
} EbPartShared;

/*
 * A registration: the first position an open transaction took in a
 * partition.  Linked into the partition's list from its assignment until
 * the top-level transaction ends (for a prepared transaction: until COMMIT
 * or ROLLBACK PREPARED).  See shmem.c.
 */
typedef struct EbReg
{
	EbPartShared *part;			/* list it is linked into; NULL when free */
	int64		lo;				/* first position taken in part */
	TransactionId xid;			/* top-level transaction */
	bool		prepared;		/* belongs to a prepared transaction */
	int32		prev;			/* neighbours in part's list, -1 at the ends */
	int32		next;
	int32		free_next;		/* overflow free list */
} EbReg;

/* Entries of the per-database version array (databases share by hash). */
#define EB_DB_VERSIONS 64

/*
 * Listener counts, by hash of (database, channel's topic name): channels
 * that share an entry only cost needless notifications (notify.c).
 */
#define EB_LISTENER_BUCKETS 1024

/* Registrations each PGPROC (backend or prepared transaction) always has. */
#define EB_REGS_PER_PROC 8

#define EB_RELAY_ERROR_LEN 512
#define EB_RELAY_STATE_LEN 64

/* What the relay worker reports; protected by mutex. */
typedef struct EbRelayShared
{
	slock_t		mutex;
	pid_t		pid;			/* 0 when no relay worker runs */
	Latch	   *latch;			/* set at commit of publishing transactions */
	char		state[EB_RELAY_STATE_LEN];
	char		slot_name[NAMEDATALEN];
	uint64		events_relayed;
	uint64		bytes_relayed;
	int64		in_flight;
	bool		have_latency;
	double		latency_p50_ms;
	double		latency_p99_ms;
	TimestampTz started_at;
	TimestampTz last_ack_at;
	TimestampTz last_error_at;
	char		last_error[EB_RELAY_ERROR_LEN];
	TimestampTz last_error_resolved_at; /* first acknowledgement after
										 * last_error_at, 0 if none */
	uint64		skipped;		/* changes and messages the output plugin
								 * could not relay */
	XLogRecPtr	last_skipped_lsn;
	char		last_skip_reason[EB_RELAY_ERROR_LEN];
	bool		counted_known;	/* exactly-once: the relay worker's own, see */
	XLogRecPtr	counted_lsn;	/* relay_ack.c (eb_ack_counted) */
	char		counted_txn[64];
	pg_atomic_uint64 outbox_committed;	/* outbox messages of committed
										 * transactions */
	pg_atomic_uint64 outbox_relayed;	/* outbox messages acknowledged */
} EbRelayShared;

/*
 * The shared state of one database the workers serve: an entry per
 * database OID, in a fixed array of eventbus.max_databases entries (see
 * shmem.c for the locking protocol).  The launcher (launcher.c) takes an
 * entry for every database it runs workers in and frees it when the
 * database is gone.
 */
typedef enum EbExtState
{
	EB_EXT_UNKNOWN = 0,			/* no database worker has looked yet */
	EB_EXT_PRESENT,				/* the database worker runs: installed */
	EB_EXT_ABSENT				/* the last look found no extension */
} EbExtState;

typedef struct EbDbShared
{
	Oid			dboid;			/* InvalidOid: free */
	/* the fields below up to relay are protected by dbs_lock */
	EbExtState	ext_state;		/* written by the database worker */
	bool		recheck;		/* CREATE or DROP EXTENSION committed here:
								 * restart the workers now */
	uint32		release_req;	/* bumped by a backend that needs every
								 * worker of the database gone */
	uint32		release_ack;	/* release_req the launcher last satisfied */
	TimestampTz hold_until;		/* no worker starts here before then */
	Latch	   *notify_latch;	/* the database worker's, NULL if none */
	pid_t		worker_pid;		/* the database worker's, 0 if none */
	EbRelayShared relay;		/* the database's relay (its own mutex) */
} EbDbShared;

/*
 * A prepared transaction that published events or outbox messages: at
 * COMMIT PREPARED its topics are notified and its messages counted.
 */
typedef struct EbPrepared
{
	bool		used;
	char		gid[GIDSIZE];
	Oid			dboid;
	uint64		outbox;			/* outbox messages */
} EbPrepared;

typedef struct EbShared
{
	LWLock	   *map_lock;		/* protects the two hash maps and in_use */
	int			tranche_id;
	pg_atomic_uint64 *db_versions;	/* EB_DB_VERSIONS versions of databases'
									 * topic lists (see shmem.c) */
	pg_atomic_uint64 *topic_versions;	/* versions of topics, by hash */
	uint32		topic_versions_mask;	/* their number minus one */
	pg_atomic_uint64 maintenance_wakeups;	/* count of explicit wake-ups */
	int			max_topics;
	int			max_partitions;
	int			nprocs;			/* PGPROCs that own a slice of regs */
	int			nregs;			/* nprocs * EB_REGS_PER_PROC + overflow */
	EbTopicShared *topics;
	EbPartShared *parts;
	EbReg	   *regs;
	int32	   *slice_of;		/* per pgprocno: its slice of regs */
	slock_t		overflow_mutex; /* protects overflow_free */
	int32		overflow_free;	/* first free overflow entry, -1 if none */
	EbPrepared *prepared;		/* max_prepared_transactions entries, under
								 * map_lock */
	int			nprepared;
	LWLock	   *dbs_lock;		/* protects the entries of dbs (see above) */
	int			max_databases;
	EbDbShared *dbs;
	Latch	   *launcher_latch; /* under dbs_lock; NULL while no launcher */
	int			notify_words;	/* words per database in notify_bits */
	pg_atomic_uint64 *notify_bits;	/* per entry of dbs, a bit per topic slot:
									 * notify_pending was set (notify.c) */
	pg_atomic_uint32 *listeners;	/* EB_LISTENER_BUCKETS counts: backends
									 * that ran LISTEN on a channel
									 * "eventbus.<topic>" of the entry's
									 * (database, topic) (notify.c) */
} EbShared;

extern EbShared *eb_shared;

extern void eb_shmem_init(void);
extern void eb_require_shmem(void);

extern EbTopicShared *eb_shared_topic_slot(Oid dboid, int64 uid, bool create);
extern EbPartShared *eb_shared_part_slot(Oid dboid, int64 uid, int32 partition,
										 bool create);
extern bool eb_topic_key_matches(EbTopicShared *t, Oid dboid, int64 uid);
extern bool eb_part_key_matches(EbPartShared *p, Oid dboid, int64 uid, int32 partition);
extern void eb_shared_forget_topic(Oid dboid, int64 uid, int32 partitions);
extern struct List *eb_shared_other_databases(void);
extern int	eb_shared_reclaim(bool (*stale) (Oid dboid, int64 uid, void *arg), void *arg);

extern int32 eb_pending_reserve(EbPartShared *part);
extern void eb_pending_set(EbPartShared *part, int32 reg, int64 lo);
extern void eb_pending_xact_end(bool prepare);
extern bool eb_pending_active(void);
extern bool eb_part_reset_if_stale(EbPartShared *part, Oid dboid, int64 uid,
								   int32 partition, Oid parent_relid);
extern int64 eb_part_horizon(EbPartShared *part, Oid dboid, int64 uid,
							 int32 partition, Oid parent_relid,
							 int64 *next_position);

extern EbDbShared *eb_db_shared(Oid dboid, bool create);
extern pg_atomic_uint64 *eb_notify_bits(Oid dboid);
extern EbRelayShared *eb_relay_state(Oid dboid);
extern void eb_wake_launcher(void);

extern uint64 eb_db_version(Oid dboid);
extern void eb_db_version_bump(Oid dboid);
extern pg_atomic_uint32 *eb_listener_count(Oid dboid, const char *name);
extern uint64 eb_topic_version(Oid dboid, const char *name);
extern void eb_topic_version_bump(Oid dboid, const char *name);

/*
 * Sets the latch a worker published in shared memory (*slot, NULL if
 * none), read without the lock that guards the slot, as every waking commit
 * does: a pointer is read whole, and a latch is in its process's PGPROC,
 * which stays in shared memory, so setting the latch of a worker that has
 * just exited only wakes that PGPROC's next owner once.
 */
static inline void
eb_set_published_latch(Latch **slot)
{
	Latch	   *latch = *(Latch *volatile *) slot;

	if (latch != NULL)
		SetLatch(latch);
}

#endif							/* EB_SHMEM_H */
