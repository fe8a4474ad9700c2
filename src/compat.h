/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  One spelling of every PostgreSQL API that changed between the
 *	  supported majors (15 to 19) and that pg_eventbus uses.
 *
 * Every test of PG_VERSION_NUM lives here: the rest of the code calls the
 * eb_ spelling below and never tests the version itself.  Each entry names
 * the major that changed the API; each was checked against that major's
 * own headers (16 against its source, the others against Debian's
 * postgresql-server-dev packages).
 *
 * APIs that pg_eventbus uses and that did not change from 15 to 19, so need
 * nothing here: pg_class_aclcheck, InitMaterializedSRF, MarkGUCPrefixReserved,
 * shmem_request_hook, RequestNamedLWLockTranche / GetNamedLWLockTranche,
 * GetFlushRecPtr, XL_ROUTINE, CreateDecodingContext, ReplicationSlotDrop,
 * ProcessUtility_hook_type, RegisterSnapshot, heap_getattr, pqsignal, die,
 * ConditionVariableTimedSleep, WaitLatch, the BackgroundWorker API and
 * PG_WAIT_EXTENSION.
 *
 * Headers that moved: get_database_name is declared in utils/lsyscache.h
 * from 19 (commands/dbcommands.h before); GetConfigOption is no longer
 * reached through the headers below from 17 on (utils/guc.h declares it in
 * every major).  This header includes all of them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_COMPAT_H
#define EB_COMPAT_H

#include "postgres.h"

#include "access/genam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "access/tableam.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_namespace.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "postmaster/bgworker.h"
#include "replication/logical.h"
#if PG_VERSION_NUM >= 190000
#include "replication/logicalctl.h"
#endif
#include "replication/message.h"
#include "replication/reorderbuffer.h"
#include "replication/slot.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 200000
#error "pg_eventbus supports PostgreSQL 15 to 19"
#endif

/*
 * Switch cases that fall through: 19 builds with -Wimplicit-fallthrough=5,
 * where only its pg_fallthrough attribute counts (not a comment).
 */
#ifndef pg_fallthrough
#if defined(__has_attribute)
#if __has_attribute(fallthrough)
#define pg_fallthrough __attribute__((fallthrough))
#endif
#endif
#ifndef pg_fallthrough
#define pg_fallthrough do {} while (0)
#endif
#endif

/*
 * The check that a function has the type of a callback: 19 renamed
 * AssertVariableIsOfType to StaticAssertVariableIsOfType.
 */
#if PG_VERSION_NUM >= 190000
#define EB_ASSERT_VARIABLE_IS_OF_TYPE(varname, typename) \
	StaticAssertVariableIsOfType(varname, typename)
#else
#define EB_ASSERT_VARIABLE_IS_OF_TYPE(varname, typename) \
	AssertVariableIsOfType(varname, typename)
#endif

/*
 * Privileges.  16 replaced the per-catalog pg_<kind>_ownercheck and most
 * pg_<kind>_aclcheck functions by object_ownercheck and object_aclcheck
 * (pg_class_aclcheck stays).
 */
static inline bool
eb_relation_ownercheck(Oid relid, Oid roleid)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(RelationRelationId, relid, roleid);
#else
	return pg_class_ownercheck(relid, roleid);
#endif
}

static inline bool
eb_database_ownercheck(Oid dboid, Oid roleid)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(DatabaseRelationId, dboid, roleid);
#else
	return pg_database_ownercheck(dboid, roleid);
#endif
}

static inline AclResult
eb_namespace_aclcheck(Oid nspid, Oid roleid, AclMode mode)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(NamespaceRelationId, nspid, roleid, mode);
#else
	return pg_namespace_aclcheck(nspid, roleid, mode);
#endif
}

/*
 * Index entries for a tuple just inserted (not an update, no ON CONFLICT):
 * 16 added onlySummarizing; 19 replaced the booleans by flags and reordered
 * the arguments.  Returns the indexes needing a recheck.
 */
static inline List *
eb_insert_index_tuples(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate)
{
#if PG_VERSION_NUM >= 190000
	return ExecInsertIndexTuples(rri, estate, 0, slot, NIL, NULL);
#elif PG_VERSION_NUM >= 160000
	return ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL, false);
#else
	return ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif
}

/*
 * The IndexInfo of a plain index (no expressions, no predicate, not being
 * built): 16 added summarizing, 18 withoutoverlaps (false: a btree index).
 */
static inline IndexInfo *
eb_make_index_info(int numattrs, int numkeyattrs, Oid amoid, bool unique)
{
#if PG_VERSION_NUM >= 180000
	return makeIndexInfo(numattrs, numkeyattrs, amoid, NIL, NIL, unique, false,
						 true, false, false, false);
#elif PG_VERSION_NUM >= 160000
	return makeIndexInfo(numattrs, numkeyattrs, amoid, NIL, NIL, unique, false,
						 true, false, false);
#else
	return makeIndexInfo(numattrs, numkeyattrs, amoid, NIL, NIL, unique, false,
						 true, false);
#endif
}

/*
 * Scans: 18 added index_beginscan's instrumentation (NULL: none), 19 the
 * scan option flags of index_beginscan and table_beginscan (SO_NONE: as
 * before).
 */
static inline IndexScanDesc
eb_index_beginscan(Relation heap, Relation index, Snapshot snapshot,
				   int nkeys, int norderbys)
{
#if PG_VERSION_NUM >= 190000
	return index_beginscan(heap, index, snapshot, NULL, nkeys, norderbys, SO_NONE);
#elif PG_VERSION_NUM >= 180000
	return index_beginscan(heap, index, snapshot, NULL, nkeys, norderbys);
#else
	return index_beginscan(heap, index, snapshot, nkeys, norderbys);
#endif
}

static inline TableScanDesc
eb_table_beginscan(Relation rel, Snapshot snapshot, int nkeys, ScanKeyData *key)
{
#if PG_VERSION_NUM >= 190000
	return table_beginscan(rel, snapshot, nkeys, key, SO_NONE);
#else
	return table_beginscan(rel, snapshot, nkeys, key);
#endif
}

/*
 * A shared hash table of a fixed number of entries: 19 replaced the initial
 * and maximum sizes by one number of elements.
 */
static inline HTAB *
eb_shmem_init_hash(const char *name, long nelems, HASHCTL *info, int flags)
{
#if PG_VERSION_NUM >= 190000
	return ShmemInitHash(name, nelems, info, flags);
#else
	return ShmemInitHash(name, nelems, nelems, info, flags);
#endif
}

/*
 * The new tuple of a decoded INSERT, or NULL: up to 16 a ReorderBufferTupleBuf
 * wrapping it, from 17 the HeapTuple itself.
 */
static inline HeapTuple
eb_change_new_tuple(ReorderBufferChange *change)
{
#if PG_VERSION_NUM >= 170000
	return change->data.tp.newtuple;
#else
	return change->data.tp.newtuple ? &change->data.tp.newtuple->tuple : NULL;
#endif
}

/* A decoded transaction's commit time: 19 made xact_time an anonymous union. */
static inline TimestampTz
eb_txn_commit_time(ReorderBufferTXN *txn)
{
#if PG_VERSION_NUM >= 190000
	return txn->commit_time;
#else
	return txn->xact_time.commit_time;
#endif
}

/*
 * A logical decoding message: 17 added flush (whether to flush WAL at once;
 * a transactional message is flushed by its commit, so never).
 */
static inline XLogRecPtr
eb_log_logical_message(const char *prefix, const char *message, size_t size,
					   bool transactional)
{
#if PG_VERSION_NUM >= 170000
	return LogLogicalMessage(prefix, message, size, transactional, false);
#else
	return LogLogicalMessage(prefix, message, size, transactional);
#endif
}

/*
 * A wait event set for the life of the process: 17 replaced the memory
 * context by a resource owner (NULL: the session's lifetime, allocated in
 * TopMemoryContext as before).
 */
static inline WaitEventSet *
eb_create_wait_event_set(int nevents)
{
#if PG_VERSION_NUM >= 170000
	return CreateWaitEventSet(NULL, nevents);
#else
	return CreateWaitEventSet(TopMemoryContext, nevents);
#endif
}

/*
 * A wait event of the extension's own, named in pg_stat_activity from 17
 * (WaitEventExtensionNew); before, every wait is "Extension".  Call it once
 * per process and name (it takes a lock from 17 on) and keep the result.
 */
static inline uint32
eb_wait_event(const char *name)
{
#if PG_VERSION_NUM >= 170000
	return WaitEventExtensionNew(name);
#else
	(void) name;
	return PG_WAIT_EXTENSION;
#endif
}

/* The index of a PGPROC in ProcGlobal->allProcs: 17 removed pgprocno. */
static inline int
eb_proc_number(PGPROC *proc)
{
#if PG_VERSION_NUM >= 170000
	return GetNumberFromPGProc(proc);
#else
	return proc->pgprocno;
#endif
}

/*
 * The dummy PGPROC of the prepared transaction the current transaction is
 * becoming (call at PREPARE): 19 finds it by full transaction id.
 */
static inline PGPROC *
eb_prepared_dummy_proc(void)
{
#if PG_VERSION_NUM >= 190000
	return TwoPhaseGetDummyProc(GetTopFullTransactionIdIfAny(), false);
#else
	return TwoPhaseGetDummyProc(GetTopTransactionIdIfAny(), false);
#endif
}

/*
 * Background workers that core itself terminates when their database is
 * dropped, renamed, moved or copied as a template: 19 added the flag.  The
 * launcher still releases a database first where the flag does not exist
 * (and where it does: core checks for an active replication slot before it
 * terminates workers).
 */
#if PG_VERSION_NUM >= 190000
#define EB_BGWORKER_INTERRUPTIBLE BGWORKER_INTERRUPTIBLE
#else
#define EB_BGWORKER_INTERRUPTIBLE 0
#endif

/*
 * NOT NULL became a catalogued constraint in 18.  There, a primary key
 * declared in CREATE TABLE ... INHERITS makes the child's not-null
 * constraints local ones under the child's own names (merged with the
 * inherited ones), and a later ALTER COLUMN ... TYPE on the parent then
 * fails on those names; a key added after the table exists keeps the
 * inherited constraints.  Before 18 both ways give the same catalog.
 */
#if PG_VERSION_NUM >= 180000
#define EB_INHERITED_KEY_IN_CREATE_TABLE false
#else
#define EB_INHERITED_KEY_IN_CREATE_TABLE true
#endif

/*
 * Replication slots.
 *
 * Failover slots (synchronized to standbys by slotsync) exist from 17;
 * earlier, failover is ignored and EB_HAVE_FAILOVER_SLOTS is not defined.
 */
#if PG_VERSION_NUM >= 170000
#define EB_HAVE_FAILOVER_SLOTS 1
#endif

static inline void
eb_replication_slot_create(const char *name, bool db_specific,
						   ReplicationSlotPersistency persistency,
						   bool two_phase, bool failover)
{
#if PG_VERSION_NUM >= 190000
	/* 19 added repack (slots of REPACK CONCURRENTLY) */
	ReplicationSlotCreate(name, db_specific, persistency, two_phase, false, failover, false);
#elif PG_VERSION_NUM >= 170000
	ReplicationSlotCreate(name, db_specific, persistency, two_phase, failover, false);
#else
	(void) failover;
	ReplicationSlotCreate(name, db_specific, persistency, two_phase);
#endif
}

/*
 * Logical decoding for a new slot: 19 added the repack argument (false: an
 * ordinary logical slot) to both functions.
 */
static inline void
eb_check_logical_decoding_requirements(void)
{
#if PG_VERSION_NUM >= 190000
	CheckLogicalDecodingRequirements(false);
#else
	CheckLogicalDecodingRequirements();
#endif
}

static inline LogicalDecodingContext *
eb_create_init_decoding_context(const char *plugin, List *options,
								bool need_full_snapshot, XLogRecPtr restart_lsn,
								XLogReaderRoutine *xl_routine,
								LogicalOutputPluginWriterPrepareWrite prepare_write,
								LogicalOutputPluginWriterWrite do_write,
								LogicalOutputPluginWriterUpdateProgress update_progress)
{
#if PG_VERSION_NUM >= 190000
	return CreateInitDecodingContext(plugin, options, need_full_snapshot, false,
									 restart_lsn, xl_routine, prepare_write,
									 do_write, update_progress);
#else
	return CreateInitDecodingContext(plugin, options, need_full_snapshot,
									 restart_lsn, xl_routine, prepare_write,
									 do_write, update_progress);
#endif
}

/*
 * Acquires a slot: 18 added error_if_invalid, and checks there what 17 and
 * earlier checked when decoding from the slot; true, as core's logical
 * decoding functions pass.
 */
static inline void
eb_replication_slot_acquire(const char *name, bool nowait)
{
#if PG_VERSION_NUM >= 180000
	ReplicationSlotAcquire(name, nowait, true);
#else
	ReplicationSlotAcquire(name, nowait);
#endif
}

/*
 * Whether a slot's persistent data says it was invalidated, and why, in the
 * words of pg_replication_slots.invalidation_reason (NULL when valid).  15
 * only knew the WAL position at which WAL it needed was removed; 16 keeps
 * the cause instead; 18 added idle_timeout.  The caller holds the slot's
 * mutex or has it acquired.
 */
static inline const char *
eb_slot_invalidation_reason(const ReplicationSlotPersistentData *data)
{
#if PG_VERSION_NUM >= 160000
	switch (data->invalidated)
	{
		case RS_INVAL_NONE:
			return NULL;
		case RS_INVAL_WAL_REMOVED:
			return "wal_removed";
		case RS_INVAL_HORIZON:
			return "rows_removed";
		case RS_INVAL_WAL_LEVEL:
			return "wal_level_insufficient";
#if PG_VERSION_NUM >= 180000
		case RS_INVAL_IDLE_TIMEOUT:
			return "idle_timeout";
#endif
	}
	return "unknown";
#else
	return XLogRecPtrIsInvalid(data->invalidated_at) ? NULL : "wal_removed";
#endif
}

/*
 * Whether a logical slot of a failover-capable major is synchronized to
 * standbys (failover) or is a synchronized copy on a standby (synced).
 * Before 17 neither exists.  The caller holds the slot's mutex or has it
 * acquired.
 */
static inline bool
eb_slot_failover(const ReplicationSlotPersistentData *data)
{
#ifdef EB_HAVE_FAILOVER_SLOTS
	return data->failover;
#else
	(void) data;
	return false;
#endif
}

static inline bool
eb_slot_synced(const ReplicationSlotPersistentData *data)
{
#ifdef EB_HAVE_FAILOVER_SLOTS
	return data->synced;
#else
	(void) data;
	return false;
#endif
}

/*
 * The pid of the process that has a slot acquired, 0 if none: 19 keeps the
 * process's number (active_proc) instead of its pid.  The caller holds the
 * slot's mutex.
 */
static inline pid_t
eb_slot_active_pid(const ReplicationSlot *slot)
{
#if PG_VERSION_NUM >= 190000
	return slot->active_proc == INVALID_PROC_NUMBER ? 0 :
		GetPGProcByNumber(slot->active_proc)->pid;
#else
	return slot->active_pid;
#endif
}

/*
 * Whether every standby named in synchronized_standby_slots has confirmed
 * WAL up to lsn (17+; before 17 there is no such setting: true).  Needs the
 * decoding slot acquired; a non-failover slot never waits.
 */
static inline bool
eb_standby_slots_caught_up(XLogRecPtr lsn)
{
#ifdef EB_HAVE_FAILOVER_SLOTS
	return StandbySlotsHaveCaughtup(lsn, DEBUG1);
#else
	(void) lsn;
	return true;
#endif
}

/*
 * Turns an existing slot (not acquired by anyone) into a failover slot: 17
 * took the new value, 18 pointers to the values to change (NULL: keep).
 * Does nothing before 17.
 */
static inline void
eb_replication_slot_set_failover(const char *name)
{
#if PG_VERSION_NUM >= 180000
	bool		failover = true;

	ReplicationSlotAlter(name, &failover, NULL);
#elif PG_VERSION_NUM >= 170000
	ReplicationSlotAlter(name, true);
#else
	(void) name;
#endif
}

/*
 * The wal_level logical decoding needs.  From 19 core turns logical
 * decoding on by itself while a logical slot exists (effective_wal_level
 * becomes logical), so replica is enough; before, wal_level must be
 * logical.  eb_ensure_logical_decoding() does that switch after a slot was
 * created (a no-op before 19).
 */
#if PG_VERSION_NUM >= 190000
#define EB_LOGICAL_WAL_LEVEL WAL_LEVEL_REPLICA
#define EB_LOGICAL_WAL_LEVEL_NAME "replica"
#else
#define EB_LOGICAL_WAL_LEVEL WAL_LEVEL_LOGICAL
#define EB_LOGICAL_WAL_LEVEL_NAME "logical"
#endif

static inline void
eb_ensure_logical_decoding(void)
{
#if PG_VERSION_NUM >= 190000
	EnsureLogicalDecodingEnabled();
#endif
}

/*
 * Building a Jsonb value token by token: 19 keeps the builder's state in a
 * JsonbInState (result in ->result) where older majors pass a
 * JsonbParseState ** and return the value.  Zero-initialize an EbJsonbBuild,
 * push with eb_jsonb_push(), read the finished value with
 * eb_jsonb_result().
 */
#if PG_VERSION_NUM >= 190000
typedef JsonbInState EbJsonbBuild;

static inline void
eb_jsonb_push(EbJsonbBuild *b, JsonbIteratorToken tok, JsonbValue *v)
{
	pushJsonbValue(b, tok, v);
}

static inline JsonbValue *
eb_jsonb_result(EbJsonbBuild *b)
{
	return b->result;
}
#else
typedef struct EbJsonbBuild
{
	JsonbParseState *state;
	JsonbValue *result;
} EbJsonbBuild;

static inline void
eb_jsonb_push(EbJsonbBuild *b, JsonbIteratorToken tok, JsonbValue *v)
{
	b->result = pushJsonbValue(&b->state, tok, v);
}

static inline JsonbValue *
eb_jsonb_result(EbJsonbBuild *b)
{
	return b->result;
}
#endif

#endif							/* EB_COMPAT_H */
