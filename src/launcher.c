/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one background worker, connected to no database, that
 *	  runs the workers of every database where the extension is installed.
 *
 * Every few seconds, and whenever something asks for it (a worker stopped,
 * CREATE or DROP EXTENSION committed, a database is about to be dropped,
 * a configuration reload), the launcher reads pg_database (a heap scan of
 * the shared catalog: without a database connection no index can be used)
 * and keeps, for each database it may serve, a database worker
 * (worker.c) running, plus a relay worker (relay_worker.c) when
 * eventbus.kafka_brokers is set.  Databases it may serve: every database
 * that accepts connections and is not a template, or, when
 * eventbus.database is set, those of them it lists.
 *
 * Whether the extension is installed can only be seen from inside the
 * database, so the database worker looks first: when the extension is
 * missing it says so in the database's shared entry and exits.  The
 * launcher then looks again after a pause that doubles up to five minutes
 * (and at once after CREATE EXTENSION commits there); at most
 * EB_MAX_LOOKING such looks run at a time.  The relay worker starts only
 * once the database worker reports the extension installed.
 *
 * Stopping.  A database that is dropped, no longer listed, or whose
 * extension is dropped loses its workers: the launcher terminates them
 * (never waiting for a process in its loop) and, after DROP EXTENSION,
 * lets the database worker look once more once the relay is gone, which
 * drops the relay's replication slot there.  DROP DATABASE and the other
 * commands that need a database without connections (ALTER DATABASE ...
 * RENAME or SET TABLESPACE, CREATE DATABASE from it as a template) must not
 * find our workers there, nor an active relay slot (core refuses to drop a
 * database with one): the backend running the command asks the launcher
 * to release the database (eb_release_database) and waits, bounded, until
 * it has; no worker starts there again until the command is over.
 *
 * Shared state: the per-database entries of shmem.h (EbDbShared), under
 * dbs_lock.  The launcher's own bookkeeping (worker handles, when to look
 * again) lives in its local memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "settings.h"
#include "compat.h"
#include "relay.h"
#include "shmem.h"
#include "worker.h"

PGDLLEXPORT void eb_launcher_main(Datum arg);

#define EB_LAUNCHER_NAPTIME_MS 5000
/* a worker that stopped is started again at most this often */
#define EB_WORKER_RESTART_MS 5000
/* pauses between looks at a database without the extension */
#define EB_LOOK_PAUSE_MIN_MS 5000
#define EB_LOOK_PAUSE_MAX_MS 300000
/* database workers looking for the extension at a time */
#define EB_MAX_LOOKING 2
/* how long a release keeps workers out of a database, at most */
#define EB_HOLD_MS 60000
/* how long a backend waits for the launcher to release a database */
#define EB_RELEASE_WAIT_MS 10000

/* The launcher's bookkeeping for one database. */
typedef struct EbDbWorkers
{
	Oid			dboid;			/* hash key */
	char		name[NAMEDATALEN];
	bool		exists;			/* found in the latest scan of pg_database */
	bool		wanted;			/* ... and may be served */
	BackgroundWorkerHandle *worker;
	BackgroundWorkerHandle *relay;
	TimestampTz worker_next;	/* earliest (re)start of the database worker */
	TimestampTz relay_next;		/* earliest (re)start of the relay */
	int			pause_ms;		/* next pause while the extension is absent */
	EbExtState	ext;			/* what the database worker last reported */
	bool		absent_logged;
} EbDbWorkers;

static HTAB *launcher_dbs = NULL;
static bool full_warned = false;

/*
 * eventbus.database: empty, or a comma-separated list of database names
 * (kept as written: names are not folded to lower case, so a single name
 * means what it meant when the setting named one database).
 */
bool
eb_database_check_hook(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	List	   *names;
	bool		ok;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	copy = pstrdup(*newval);
	ok = SplitGUCList(copy, ',', &names);
	if (!ok)
		GUC_check_errdetail("List syntax is invalid: database names separated by commas are expected.");
	list_free(names);
	pfree(copy);
	return ok;
}

/* The names listed in eventbus.database; NIL when it is empty. */
static List *
eb_database_list(void)
{
	List	   *names = NIL;

	if (eb_database == NULL || eb_database[0] == '\0')
		return NIL;
	/* checked by the hook; a failure here leaves the list as split so far */
	(void) SplitGUCList(pstrdup(eb_database), ',', &names);
	return names;
}

static bool
eb_name_in(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
	{
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return true;
	}
	return false;
}

/* May the workers serve this database (by eventbus.database)? */
bool
eb_database_served(const char *dbname)
{
	List	   *names = eb_database_list();

	return dbname != NULL && (names == NIL || eb_name_in(names, dbname));
}

/* Starts one of the workers of a database: "worker" or "relay". */
static BackgroundWorkerHandle *
eb_start_worker(Oid dboid, const char *kind, const char *function)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION |
		EB_BGWORKER_INTERRUPTIBLE;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_eventbus");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_eventbus %s", kind);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_eventbus %s", kind);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	/* the handle lives as long as the worker, beyond this loop */
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		static TimestampTz warned_at = 0;
		TimestampTz now = GetCurrentTimestamp();

		/* at most once a minute: every database may be waiting for a slot */
		if (warned_at != 0 && !TimestampDifferenceExceeds(warned_at, now, 60000))
			return NULL;
		warned_at = now;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("pg_eventbus could not start its %s in database %u", kind, dboid),
				 errhint("Raise max_worker_processes: pg_eventbus needs one for the launcher, and one (two with a Kafka relay) per database it serves.")));
		return NULL;
	}
	return handle;
}

/* Is the worker of *h running (or starting)?  Forgets it once stopped. */
static bool
eb_running(BackgroundWorkerHandle **h)
{
	pid_t		pid;

	if (*h == NULL)
		return false;
	if (GetBackgroundWorkerPid(*h, &pid) == BGWH_STOPPED)
	{
		pfree(*h);
		*h = NULL;
		return false;
	}
	return true;
}

/* Asks a worker to stop; does not wait (its exit sets our latch). */
static void
eb_stop(BackgroundWorkerHandle *h)
{
	if (h != NULL)
		TerminateBackgroundWorker(h);
}

/*
 * Reads pg_database: marks every database in launcher_dbs that exists, and
 * whether it may be served; adds those that may be and are new.
 */
static List *
eb_scan_databases(void)
{
	List	   *existing = NIL;
	List	   *names;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	HASH_SEQ_STATUS seq;
	EbDbWorkers *w;
	MemoryContext cxt = CurrentMemoryContext;

	hash_seq_init(&seq, launcher_dbs);
	while ((w = hash_seq_search(&seq)) != NULL)
		w->exists = w->wanted = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	MemoryContextSwitchTo(cxt);
	names = eb_database_list();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		bool		wanted;
		bool		found;

		existing = lappend_oid(existing, db->oid);
		/*
		 * Templates are left alone: a connection to one would make CREATE
		 * DATABASE fail.
		 */
		wanted = db->datallowconn && !db->datistemplate &&
			!database_is_invalid_form(db) &&
			(names == NIL || eb_name_in(names, NameStr(db->datname)));
		w = hash_search(launcher_dbs, &db->oid, wanted ? HASH_ENTER : HASH_FIND, &found);
		if (w == NULL)
			continue;
		if (!found)
		{
			memset((char *) w + sizeof(Oid), 0, sizeof(EbDbWorkers) - sizeof(Oid));
			w->pause_ms = EB_LOOK_PAUSE_MIN_MS;
		}
		strlcpy(w->name, NameStr(db->datname), NAMEDATALEN);
		w->exists = true;
		w->wanted = wanted;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return existing;
}

/*
 * Tells backends waiting in eb_release_database() that our workers are
 * gone from their database, and frees the entries of databases where no
 * worker of ours runs and that no longer exist (existing: the OIDs of those
 * that do), are not served, or do not have the extension (so that they
 * never keep served databases out of the eventbus.max_databases entries;
 * the next look takes one again).  Call after eb_manage_database() saw every
 * database.
 */
static void
eb_settle_entries(List *existing, TimestampTz now)
{
	int			i;

	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	for (i = 0; i < eb_shared->max_databases; i++)
	{
		EbDbShared *d = &eb_shared->dbs[i];
		EbDbWorkers *w;
		bool		idle;

		if (!OidIsValid(d->dboid))
			continue;
		w = hash_search(launcher_dbs, &d->dboid, HASH_FIND, NULL);
		idle = w == NULL || (w->worker == NULL && w->relay == NULL);
		if (!idle)
			continue;
		d->release_ack = d->release_req;
		if (!list_member_oid(existing, d->dboid) ||
			((w == NULL || w->ext == EB_EXT_ABSENT) && !d->recheck &&
			 d->hold_until <= now))
			d->dboid = InvalidOid;
	}
	LWLockRelease(eb_shared->dbs_lock);
}

/* Warns once about each listed database that does not exist. */
static void
eb_warn_missing(void)
{
	static List *warned = NIL;
	List	   *names = eb_database_list();
	List	   *still = NIL;
	ListCell   *lc;

	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		HASH_SEQ_STATUS seq;
		EbDbWorkers *w;
		bool		exists = false;

		hash_seq_init(&seq, launcher_dbs);
		while ((w = hash_seq_search(&seq)) != NULL)
		{
			if (w->exists && strcmp(w->name, name) == 0)
				exists = true;
		}
		if (exists)
			continue;
		if (!eb_name_in(warned, name))
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("database \"%s\" named by eventbus.database does not exist", name),
					 errdetail("The pg_eventbus workers serve only the databases named by eventbus.database that exist."),
					 errhint("Create the database or change eventbus.database, then reload the configuration.")));
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			still = lappend(still, pstrdup(name));
			MemoryContextSwitchTo(old);
		}
	}
	/* forget those that exist now, so that a new absence is reported */
	list_free_deep(warned);
	warned = still;
}

/* Shortens *timeout_ms to reach "at". */
static void
eb_wake_at(TimestampTz at, TimestampTz now, long *timeout_ms)
{
	long		ms = (long) ((at - now) / 1000) + 1;

	*timeout_ms = Min(*timeout_ms, Max(ms, 1));
}

/*
 * Keeps the workers of one database as they should be.  looking counts the
 * database workers that are still looking for the extension.
 */
static void
eb_manage_database(EbDbWorkers *w, TimestampTz now, int *looking, long *timeout_ms)
{
	EbDbShared *d;
	bool		recheck;
	bool		held;
	EbExtState	ext;
	bool		worker_up = eb_running(&w->worker);
	bool		relay_up = eb_running(&w->relay);
	bool		relay_wanted;

	d = eb_db_shared(w->dboid, false);
	if (d == NULL && !w->wanted)
	{
		eb_stop(w->worker);
		eb_stop(w->relay);
		return;
	}
	if (d == NULL && !worker_up && !relay_up && w->ext == EB_EXT_ABSENT &&
		now < w->worker_next)
	{
		/* no extension there: no entry either until the next look */
		eb_wake_at(w->worker_next, now, timeout_ms);
		return;
	}
	if (d == NULL)
		d = eb_db_shared(w->dboid, true);
	if (d == NULL)
	{
		/* every entry is taken: no worker of ours can run there */
		if (!full_warned)
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pg_eventbus serves at most %d databases", eb_shared->max_databases),
					 errdetail("Database \"%s\" gets no workers.", w->name),
					 errhint("Raise eventbus.max_databases and restart the server, or list the databases to serve in eventbus.database.")));
			full_warned = true;
		}
		return;
	}

	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	recheck = d->recheck;
	d->recheck = false;
	held = d->hold_until > now || d->release_req != d->release_ack;
	if (d->ext_state != EB_EXT_UNKNOWN)
		w->ext = d->ext_state;
	ext = w->ext;
	LWLockRelease(eb_shared->dbs_lock);

	if (!w->wanted || held)
	{
		/* eb_settle_entries() tells the releasing backend once they are gone */
		eb_stop(w->worker);
		eb_stop(w->relay);
		/* once the hold is over, start again at once */
		w->worker_next = w->relay_next = 0;
		return;
	}

	if (recheck)
	{
		/* the extension was created or dropped: start over */
		eb_stop(w->worker);
		eb_stop(w->relay);
		w->worker_next = w->relay_next = 0;
		w->pause_ms = EB_LOOK_PAUSE_MIN_MS;
		w->absent_logged = false;
		return;
	}

	if (!worker_up)
	{
		/* look for the extension only once the relay is gone */
		if (relay_up)
		{
			eb_stop(w->relay);
			return;
		}
		if (ext == EB_EXT_ABSENT && !w->absent_logged &&
			eb_database != NULL && eb_database[0] != '\0')
		{
			ereport(LOG,
					(errmsg("pg_eventbus: database \"%s\" named by eventbus.database does not have the extension installed",
							w->name),
					 errhint("Run CREATE EXTENSION pg_eventbus in it; its workers start then.")));
			w->absent_logged = true;
		}
		if (now < w->worker_next)
		{
			eb_wake_at(w->worker_next, now, timeout_ms);
			return;
		}
		if (ext != EB_EXT_PRESENT && *looking >= EB_MAX_LOOKING)
			return;				/* the next look is due when one ends */
		w->worker = eb_start_worker(w->dboid, "worker", "eb_db_worker_main");
		if (w->worker != NULL && ext != EB_EXT_PRESENT)
			(*looking)++;
		if (w->worker == NULL || ext == EB_EXT_ABSENT)
		{
			/* pause before the next look, longer each time */
			w->worker_next = TimestampTzPlusMilliseconds(now, w->pause_ms);
			w->pause_ms = Min(w->pause_ms * 2, EB_LOOK_PAUSE_MAX_MS);
		}
		else
			w->worker_next = TimestampTzPlusMilliseconds(now, EB_WORKER_RESTART_MS);
		return;
	}

	if (ext == EB_EXT_PRESENT)
	{
		w->pause_ms = EB_LOOK_PAUSE_MIN_MS;
		w->absent_logged = false;
	}

	relay_wanted = ext == EB_EXT_PRESENT &&
		eb_kafka_brokers != NULL && eb_kafka_brokers[0] != '\0';
	if (!relay_wanted)
	{
		eb_stop(w->relay);
		return;
	}
	if (relay_up)
		return;
	if (now < w->relay_next)
	{
		eb_wake_at(w->relay_next, now, timeout_ms);
		return;
	}
	w->relay = eb_start_worker(w->dboid, "relay", "eb_relay_main");
	/* no free worker slot: try again later rather than every few seconds */
	w->relay_next = TimestampTzPlusMilliseconds(now, w->relay != NULL ?
												EB_WORKER_RESTART_MS : EB_LOOK_PAUSE_MAX_MS / 5);
}

static void
eb_launcher_exit(int code, Datum arg)
{
	if (eb_shared == NULL)
		return;
	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	if (eb_shared->launcher_latch == MyLatch)
		eb_shared->launcher_latch = NULL;
	LWLockRelease(eb_shared->dbs_lock);
}

void
eb_launcher_main(Datum arg)
{
	HASHCTL		ctl;
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(EbDbWorkers);
	ctl.hcxt = TopMemoryContext;
	launcher_dbs = hash_create("pg_eventbus launcher databases", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_eventbus launcher loop",
									 ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	eb_shared->launcher_latch = MyLatch;
	LWLockRelease(eb_shared->dbs_lock);
	before_shmem_exit(eb_launcher_exit, (Datum) 0);

	for (;;)
	{
		HASH_SEQ_STATUS seq;
		EbDbWorkers *w;
		TimestampTz now;
		long		timeout_ms = EB_LAUNCHER_NAPTIME_MS;
		int			looking = 0;
		List	   *existing;

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		pgstat_report_activity(STATE_RUNNING, "scanning databases");
		existing = eb_scan_databases();
		eb_warn_missing();

		/* database workers still looking for the extension */
		hash_seq_init(&seq, launcher_dbs);
		while ((w = hash_seq_search(&seq)) != NULL)
		{
			if (eb_running(&w->worker) && w->ext != EB_EXT_PRESENT)
				looking++;
		}

		now = GetCurrentTimestamp();
		hash_seq_init(&seq, launcher_dbs);
		while ((w = hash_seq_search(&seq)) != NULL)
		{
			eb_manage_database(w, now, &looking, &timeout_ms);
			/* dropped or no longer served, and its workers are gone */
			if (!w->wanted && w->worker == NULL && w->relay == NULL)
				(void) hash_search(launcher_dbs, &w->dboid, HASH_REMOVE, NULL);
		}
		eb_settle_entries(existing, now);
		pgstat_report_activity(STATE_IDLE, NULL);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * In a backend about to run a command that needs database dboid without
 * other connections (DROP DATABASE and the like): asks the launcher to stop
 * our workers there, and waits until they are gone (at most
 * EB_RELEASE_WAIT_MS).  No worker starts there again until
 * eb_release_database_end(), or EB_HOLD_MS.
 */
void
eb_release_database(Oid dboid)
{
	EbDbShared *d;
	uint32		req;
	TimestampTz deadline;

	if (eb_shared == NULL || !OidIsValid(dboid))
		return;
	d = eb_db_shared(dboid, true);
	if (d == NULL)
		return;					/* no entry: the launcher runs nothing there */

	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	d->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EB_HOLD_MS);
	req = ++d->release_req;
	LWLockRelease(eb_shared->dbs_lock);
	eb_wake_launcher();

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), EB_RELEASE_WAIT_MS);
	for (;;)
	{
		bool		done;
		bool		launcher;

		LWLockAcquire(eb_shared->dbs_lock, LW_SHARED);
		done = (int32) (d->release_ack - req) >= 0;
		launcher = eb_shared->launcher_latch != NULL;
		LWLockRelease(eb_shared->dbs_lock);
		if (done || !launcher || GetCurrentTimestamp() >= deadline)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The command is over (done or failed): the workers may start again. */
void
eb_release_database_end(Oid dboid)
{
	EbDbShared *d;

	if (eb_shared == NULL || !OidIsValid(dboid))
		return;
	d = eb_db_shared(dboid, false);
	if (d == NULL)
		return;
	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	d->hold_until = 0;
	LWLockRelease(eb_shared->dbs_lock);
	eb_wake_launcher();
}

/*
 * At commit of CREATE EXTENSION or DROP EXTENSION in this database: the
 * launcher starts or stops its workers now rather than at its next look.
 */
void
eb_extension_changed(void)
{
	EbDbShared *d;

	if (eb_shared == NULL)
		return;
	d = eb_db_shared(MyDatabaseId, true);
	if (d == NULL)
		return;
	LWLockAcquire(eb_shared->dbs_lock, LW_EXCLUSIVE);
	/* the launcher may have freed it meanwhile: then it looks anyway */
	if (d->dboid == MyDatabaseId)
		d->recheck = true;
	LWLockRelease(eb_shared->dbs_lock);
	eb_wake_launcher();
}
