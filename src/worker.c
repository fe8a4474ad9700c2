/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The database worker of pg_eventbus, one per database it serves.
 *
 * The launcher (launcher.c, registered here at startup) starts a database
 * worker in every database it may serve.  The worker first looks for the
 * extension: when it is not installed, the worker says so in the
 * database's shared entry, drops the relay's replication slot if one was
 * left behind by DROP EXTENSION (the launcher has stopped the relay
 * already), and exits; the launcher looks again later.  When installed,
 * it reports that (the launcher then starts the relay, relay_worker.c, if
 * eventbus.kafka_brokers is set) and serves the database until the
 * extension is dropped or the launcher stops it.
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
#include "replication/slot.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "compat.h"
#include "catalog.h"
#include "notify.h"
#include "relay.h"
#include "segment.h"
#include "shmem.h"
#include "worker.h"

PGDLLEXPORT void eb_db_worker_main(Datum arg);

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

static void
eb_db_worker_exit(int code, Datum arg)
{
	EbDbShared *d;

	if (eb_shared == NULL)
		return;
	eb_notify_register(false);
	d = eb_db_shared(MyDatabaseId, false);
	if (d == NULL)
		return;
	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	if (d->worker_pid == MyProcPid)
		d->worker_pid = 0;
	LWLockRelease(eb_shared->dbs_lock);
}

/*
 * Becomes the database's worker, unless another one still runs there: one
 * started by a launcher that has exited since (its workers outlive it).
 */
static bool
eb_claim_database(void)
{
	EbDbShared *d = eb_db_shared(MyDatabaseId, true);
	bool		claimed = false;

	if (d == NULL)
		return false;
	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	if (d->worker_pid == 0 || d->worker_pid == MyProcPid ||
		BackendPidGetProc(d->worker_pid) == NULL)
	{
		d->worker_pid = MyProcPid;
		claimed = true;
	}
	LWLockRelease(eb_shared->dbs_lock);
	return claimed;
}

/* Says in the database's entry whether the extension is installed. */
static void
eb_report_extension(EbExtState state)
{
	EbDbShared *d = eb_db_shared(MyDatabaseId, true);

	if (d == NULL)
		return;
	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	d->ext_state = state;
	LWLockRelease(eb_shared->dbs_lock);
}

static bool
eb_extension_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid(EB_EXTENSION, true));
	CommitTransactionCommand();
	return installed;
}

/*
 * After DROP EXTENSION: drops the relay's replication slot of this
 * database, which would otherwise retain WAL for nobody.  The launcher
 * stops the relay before it lets this worker look for the extension, so
 * the slot is not in use; if it is (a relay not yet gone), it is left for
 * the next look.
 */
static void
eb_drop_relay_slot_after_drop_extension(void)
{
	/* in use (a relay not yet gone): left for the next look */
	(void) eb_relay_slot_drop_unused("because the extension is no longer installed");
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
	if (!installed)
	{
		/* dropped (without the launcher hearing of it): it looks again */
		eb_report_extension(EB_EXT_ABSENT);
		eb_wake_launcher();
		proc_exit(0);
	}

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

	pgstat_report_activity(STATE_RUNNING, "looking for the extension");
	if (!eb_extension_installed())
	{
		eb_report_extension(EB_EXT_ABSENT);
		eb_drop_relay_slot_after_drop_extension();
		proc_exit(0);
	}
	before_shmem_exit(eb_db_worker_exit, (Datum) 0);
	if (!eb_claim_database())
		proc_exit(0);
	eb_report_extension(EB_EXT_PRESENT);
	eb_wake_launcher();			/* it may start the relay now */
	pgstat_report_activity(STATE_IDLE, NULL);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_eventbus worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	eb_notify_register(true);

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
