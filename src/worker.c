/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  Background workers of pg_eventbus.
 *
 * The launcher is registered at startup and connects to no database.  It
 * looks up eventbus.database and starts the database worker there, and the
 * relay worker (relay_worker.c) when eventbus.kafka_brokers is set; when
 * the database does not exist it logs once and waits for a configuration
 * reload instead of failing in a loop.  It restarts a worker that exits (at
 * most every few seconds) and replaces them when the settings name another
 * database or clear the brokers.
 *
 * The database worker sends the coalesced LISTEN notifications of its
 * database (notify.c) as soon as publishing transactions commit, and runs
 * maintenance (segment rotation and retention, segment.c) for every topic
 * every eventbus.maintenance_naptime, each topic in its own transaction.  An error is logged and the loop goes on after a
 * pause; the worker keeps no state that an error could leave inconsistent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pg_eventbus.h"
#include "catalog.h"
#include "notify.h"
#include "relay.h"
#include "segment.h"
#include "worker.h"

PGDLLEXPORT void eb_launcher_main(Datum arg);
PGDLLEXPORT void eb_db_worker_main(Datum arg);

#define EB_LAUNCHER_NAPTIME_MS 5000
#define EB_WORKER_RESTART_MS 5000

void
eb_worker_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_eventbus");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "eb_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_eventbus launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_eventbus launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * Finds a database by name.  Without a database connection only a heap
 * scan of the shared catalog pg_database is possible (indexes are not).
 */
static Oid
eb_lookup_database(const char *name)
{
	Oid			dboid = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), name) == 0)
		{
			dboid = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dboid;
}

/* Starts one of the workers of a database: "worker" or "relay". */
static BackgroundWorkerHandle *
eb_start_worker(Oid dboid, const char *kind, const char *function)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_eventbus");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_eventbus %s", kind);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_eventbus %s", kind);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("pg_eventbus could not start its %s", kind),
				 errhint("Raise max_worker_processes.")));
		return NULL;
	}
	return handle;
}

/* A worker slot the launcher keeps running while wanted. */
typedef struct EbManagedWorker
{
	const char *kind;
	const char *function;
	BackgroundWorkerHandle *handle;
	Oid			dboid;
	TimestampTz last_start;
} EbManagedWorker;

static void
eb_stop_worker(EbManagedWorker *w)
{
	if (w->handle == NULL)
		return;
	TerminateBackgroundWorker(w->handle);
	(void) WaitForBackgroundWorkerShutdown(w->handle);
	pfree(w->handle);
	w->handle = NULL;
}

/* Runs w in dboid if wanted, restarting it at most every few seconds. */
static void
eb_manage_worker(EbManagedWorker *w, Oid dboid, bool wanted)
{
	pid_t		pid;
	BgwHandleStatus status = BGWH_STOPPED;

	if (w->handle != NULL && (!wanted || w->dboid != dboid))
		eb_stop_worker(w);
	if (!wanted)
		return;
	if (w->handle != NULL)
		status = GetBackgroundWorkerPid(w->handle, &pid);
	if (status == BGWH_STOPPED &&
		TimestampDifferenceExceeds(w->last_start, GetCurrentTimestamp(), EB_WORKER_RESTART_MS))
	{
		if (w->handle != NULL)
			pfree(w->handle);
		w->handle = eb_start_worker(dboid, w->kind, w->function);
		w->dboid = dboid;
		w->last_start = GetCurrentTimestamp();
	}
}

void
eb_launcher_main(Datum arg)
{
	EbManagedWorker db_worker = {"worker", "eb_db_worker_main", NULL, InvalidOid, 0};
	EbManagedWorker relay = {"relay", "eb_relay_main", NULL, InvalidOid, 0};
	char	   *warned_for = NULL;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	for (;;)
	{
		Oid			dboid;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		dboid = eb_lookup_database(eb_database);
		if (!OidIsValid(dboid))
		{
			if (warned_for == NULL || strcmp(warned_for, eb_database) != 0)
			{
				ereport(WARNING,
						(errcode(ERRCODE_UNDEFINED_DATABASE),
						 errmsg("database \"%s\" named by eventbus.database does not exist",
								eb_database),
						 errdetail("The pg_eventbus workers are idle."),
						 errhint("Create the database or change eventbus.database, then reload the configuration.")));
				if (warned_for)
					pfree(warned_for);
				warned_for = MemoryContextStrdup(TopMemoryContext, eb_database);
			}
		}
		else if (warned_for != NULL)
		{
			pfree(warned_for);
			warned_for = NULL;
		}

		eb_manage_worker(&db_worker, dboid, OidIsValid(dboid));
		eb_manage_worker(&relay, dboid, OidIsValid(dboid) &&
						 eb_kafka_brokers != NULL && eb_kafka_brokers[0] != '\0');

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 EB_LAUNCHER_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

static void
eb_db_worker_exit(int code, Datum arg)
{
	if (eb_shared != NULL)
		eb_notify_register(false);
}

static void
eb_maint_log(void *arg, const char *topic, const char *action, int32 segment,
			 const char *detail)
{
	ereport(strcmp(action, "dropped") == 0 ? LOG : DEBUG1,
			(errmsg("pg_eventbus: topic \"%s\": %s segment %d%s%s", topic, action,
					segment, detail ? ": " : "", detail ? detail : "")));
}

/* One maintenance pass over all topics of this database. */
static void
eb_worker_pass(MemoryContext loop_cxt)
{
	List	   *volatile names = NIL;
	ListCell   *lc;
	bool		installed;

	/* now() in the passes below must be the time of the pass, not of startup */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	installed = OidIsValid(get_extension_oid(EB_EXTENSION, true));
	if (installed)
	{
		MemoryContext old = MemoryContextSwitchTo(loop_cxt);

		names = eb_topic_names();
		MemoryContextSwitchTo(old);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();

	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		CHECK_FOR_INTERRUPTS();
		pgstat_report_activity(STATE_RUNNING, "maintenance");
		/* one topic's failure must not stop the others' maintenance */
		PG_TRY();
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			eb_maintain_topic(name, eb_maint_log, NULL);
			PopActiveSnapshot();
			CommitTransactionCommand();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			HOLD_INTERRUPTS();
			MemoryContextSwitchTo(loop_cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			RESUME_INTERRUPTS();
			ereport(WARNING,
					(errmsg("pg_eventbus: maintenance of topic \"%s\" failed: %s",
							name, edata->message)));
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
eb_db_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	MemoryContext loop_cxt;
	sigjmp_buf	local_sigjmp_buf;
	volatile TimestampTz next_maintenance = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_eventbus worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	eb_notify_register(true);
	before_shmem_exit(eb_db_worker_exit, (Datum) 0);

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		/* An error escaped a pass: log it, clean up, pause, go on. */
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		LWLockReleaseAll();
		ConditionVariableCancelSleep();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(loop_cxt);
		RESUME_INTERRUPTS();
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(eb_maintenance_naptime, 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	PG_exception_stack = &local_sigjmp_buf;

	/*
	 * Notifications are sent as soon as the latch is set (at commit of
	 * publishing transactions), maintenance every eventbus.maintenance_naptime.
	 */
	for (;;)
	{
		TimestampTz now;
		long		timeout;
		long		notify_wait;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		notify_wait = eb_notify_pass();

		now = GetCurrentTimestamp();
		if (now >= next_maintenance)
		{
			eb_worker_pass(loop_cxt);
			now = GetCurrentTimestamp();
			next_maintenance = TimestampTzPlusMilliseconds(now, eb_maintenance_naptime);
		}
		timeout = (long) ((next_maintenance - now) / 1000) + 1;
		if (notify_wait >= 0)
			timeout = Min(timeout, notify_wait);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
