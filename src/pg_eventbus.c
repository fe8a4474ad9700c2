/*-------------------------------------------------------------------------
 *
 * pg_eventbus.c
 *	  Module entry point: settings, hooks and callbacks.  Each module's own
 *	  initialization lives in that module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "settings.h"
#include "compat.h"
#include "stats.h"
#include "catalog.h"
#include "group.h"
#include "notify.h"
#include "publish.h"
#include "relay.h"
#include "shmem.h"
#include "trace.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Prepared transactions.  A transaction that published events or outbox
 * messages and is then prepared is remembered under its GID in shared
 * memory; when COMMIT PREPARED succeeds (in any session), its database's
 * topics are woken up, the relay too, and its outbox messages are counted.
 */
static ProcessUtility_hook_type prev_process_utility = NULL;

/* The GID of the PREPARE TRANSACTION ending the current transaction. */
static char prepare_gid[GIDSIZE];

static void
eb_prepared_remember(uint64 outbox)
{
	int			i;

	if (eb_shared == NULL || prepare_gid[0] == '\0')
		return;
	LWLockAcquire(eb_shared->map_lock, LW_EXCLUSIVE);
	for (i = 0; i < eb_shared->nprepared; i++)
	{
		EbPrepared *e = &eb_shared->prepared[i];

		if (e->used)
			continue;
		e->used = true;
		strlcpy(e->gid, prepare_gid, sizeof(e->gid));
		e->dboid = MyDatabaseId;
		e->outbox = outbox;
		break;
	}
	LWLockRelease(eb_shared->map_lock);
}

static void
eb_prepared_finished(const char *gid, bool commit)
{
	int			i;
	bool		found = false;
	EbPrepared	copy;

	if (eb_shared == NULL || eb_shared->nprepared == 0)
		return;
	LWLockAcquire(eb_shared->map_lock, LW_EXCLUSIVE);
	for (i = 0; i < eb_shared->nprepared && !found; i++)
	{
		EbPrepared *e = &eb_shared->prepared[i];

		if (!e->used || strcmp(e->gid, gid) != 0)
			continue;
		copy = *e;
		e->used = false;
		found = true;
	}
	LWLockRelease(eb_shared->map_lock);
	if (!found)
		return;
	/* rolled back too: its positions no longer hold back readers */
	eb_notify_database(copy.dboid, true);
	if (!commit)
		return;
	eb_outbox_count_committed(copy.outbox);
	eb_relay_wake();
}

/* CREATE, ALTER or DROP EXTENSION pg_eventbus ran in this transaction. */
static bool extension_changed = false;

/*
 * Databases released for a command of this transaction (see
 * eb_stmt_needs_database_alone); their workers may start again once it
 * ends, when what it did is visible.
 */
static List *released_dbs = NIL;

static void
eb_released_dbs_end(void)
{
	ListCell   *lc;

	foreach(lc, released_dbs)
		eb_release_database_end(lfirst_oid(lc));
	list_free(released_dbs);
	released_dbs = NIL;
}

/* Does the statement create, update or drop this extension? */
static bool
eb_stmt_changes_extension(Node *parsetree)
{
	ListCell   *lc;

	if (IsA(parsetree, CreateExtensionStmt))
		return strcmp(((CreateExtensionStmt *) parsetree)->extname, EB_EXTENSION) == 0;
	if (IsA(parsetree, AlterExtensionStmt))
		return strcmp(((AlterExtensionStmt *) parsetree)->extname, EB_EXTENSION) == 0;
	if (IsA(parsetree, DropStmt) && ((DropStmt *) parsetree)->removeType == OBJECT_EXTENSION)
	{
		foreach(lc, ((DropStmt *) parsetree)->objects)
		{
			if (strcmp(strVal(lfirst(lc)), EB_EXTENSION) == 0)
				return true;
		}
	}
	return false;
}

/*
 * The database a statement needs without other connections: DROP
 * DATABASE, ALTER DATABASE ... RENAME or SET TABLESPACE, CREATE DATABASE
 * with it as the template.  InvalidOid for any other statement, or when the
 * current user could not run the statement anyway (so that nobody else can
 * stop our workers by trying).
 */
static Oid
eb_stmt_needs_database_alone(Node *parsetree)
{
	const char *dbname = NULL;
	ListCell   *lc;
	Oid			dboid;

	if (IsA(parsetree, DropdbStmt))
		dbname = ((DropdbStmt *) parsetree)->dbname;
	else if (IsA(parsetree, RenameStmt) &&
			 ((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
		dbname = ((RenameStmt *) parsetree)->subname;
	else if (IsA(parsetree, AlterDatabaseStmt))
	{
		foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
		{
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				dbname = ((AlterDatabaseStmt *) parsetree)->dbname;
		}
	}
	else if (IsA(parsetree, CreatedbStmt))
	{
		foreach(lc, ((CreatedbStmt *) parsetree)->options)
		{
			DefElem    *opt = lfirst(lc);

			if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
				dbname = defGetString(opt);
		}
	}
	if (dbname == NULL)
		return InvalidOid;
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid) || dboid == MyDatabaseId ||
		!eb_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;
	return dboid;
}

static void
eb_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	TransactionStmt *stmt = NULL;
	Oid			release_db;

	if (IsA(parsetree, TransactionStmt))
		stmt = (TransactionStmt *) parsetree;

	if (stmt != NULL && stmt->kind == TRANS_STMT_PREPARE)
		strlcpy(prepare_gid, stmt->gid, sizeof(prepare_gid));
	if (IsA(parsetree, ListenStmt))
		eb_notify_listen(((ListenStmt *) parsetree)->conditionname);
	if (eb_stmt_changes_extension(parsetree))
		extension_changed = true;

	/* our workers there must not make the command fail */
	release_db = eb_stmt_needs_database_alone(parsetree);
	if (OidIsValid(release_db))
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		released_dbs = lappend_oid(released_dbs, release_db);
		MemoryContextSwitchTo(old);
		eb_release_database(release_db);
	}

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	if (stmt != NULL && (stmt->kind == TRANS_STMT_COMMIT_PREPARED ||
						 stmt->kind == TRANS_STMT_ROLLBACK_PREPARED))
		eb_prepared_finished(stmt->gid, stmt->kind == TRANS_STMT_COMMIT_PREPARED);
}

static void
eb_xact_callback(XactEvent event, void *arg)
{
	uint64		outbox;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (eb_catalog_changed_in_xact())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that created, altered or dropped topics")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			eb_pending_xact_end(false);
			eb_stats_xact_end(true);
			eb_catalog_xact_end(true);
			(void) eb_outbox_xact_end(true);
			eb_notify_xact_end(true);
			/* the commit is visible and flushed: let the relay read it now */
			if (eb_xact_published)
				eb_relay_wake();
			eb_xact_published = false;
			prepare_gid[0] = '\0';
			if (extension_changed)
				eb_extension_changed();
			extension_changed = false;
			eb_released_dbs_end();
			break;
		case XACT_EVENT_PREPARE:
			eb_pending_xact_end(true);	/* handed to the prepared xact */
			eb_stats_xact_end(false);
			eb_catalog_xact_end(false);
			outbox = eb_outbox_xact_end(false);
			eb_notify_xact_end(false);
			if (eb_xact_published)
				eb_prepared_remember(outbox);
			eb_xact_published = false;
			prepare_gid[0] = '\0';
			extension_changed = false;
			eb_released_dbs_end();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			eb_pending_xact_end(false);
			eb_stats_xact_end(false);
			eb_catalog_xact_end(false);
			(void) eb_outbox_xact_end(false);
			eb_notify_xact_end(true);	/* the horizon may move: wake readers */
			eb_xact_published = false;
			prepare_gid[0] = '\0';
			extension_changed = false;
			eb_released_dbs_end();
			break;
		default:
			break;
	}
}

static void
eb_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* registrations last until the top-level transaction ends */
		eb_catalog_subxact_end(mySubid, parentSubid, false);
		eb_outbox_subxact_end(GetCurrentTransactionNestLevel(), false);
		eb_stats_subxact_end(GetCurrentTransactionNestLevel(), false);
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		eb_catalog_subxact_end(mySubid, parentSubid, true);
		eb_outbox_subxact_end(GetCurrentTransactionNestLevel(), true);
		eb_stats_subxact_end(GetCurrentTransactionNestLevel(), true);
	}
}

static const struct config_enum_entry eb_relay_delivery_options[] = {
	{"exactly_once", EB_RELAY_EXACTLY_ONCE, false},
	{"at_least_once", EB_RELAY_AT_LEAST_ONCE, false},
	{NULL, 0, false}
};

void
_PG_init(void)
{
	DefineCustomStringVariable("eventbus.database",
							   "Databases the pg_eventbus background workers may serve (comma-separated); empty: every database.",
							   "The workers run in each of these databases where the extension is installed.",
							   &eb_database,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   eb_database_check_hook, NULL, NULL);

	DefineCustomIntVariable("eventbus.max_topics_per_database",
							"Topics one database may have; -1: half of eventbus.max_topics; 0: no limit of its own.",
							NULL,
							&eb_max_topics_per_database,
							-1,
							-1,
							1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("eventbus.max_partitions_per_database",
							"Partitions one database may have across its topics; -1: half of eventbus.max_partitions; 0: no limit of its own.",
							NULL,
							&eb_max_partitions_per_database,
							-1,
							-1,
							10000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	/*
	 * The default, 976 kB (999424 bytes), stays below Kafka's default
	 * limit on a record batch (message.max.bytes, 1048588 bytes): 49164
	 * bytes are left for the batch's framing (61 bytes), the record's
	 * (under 40) and each header's (under 10), which are not counted in an
	 * event's size.  A whole number of kB, so that SHOW prints a size
	 * pg_size_bytes() reads.
	 */
	DefineCustomIntVariable("eventbus.max_event_size",
							"Largest event accepted by publish, in bytes (value, key and headers; for a relayed topic, as the relay sends them).",
							NULL,
							&eb_max_event_size,
							999424,
							1024,
							MaxAllocSize / 2,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("eventbus.maintenance_naptime",
							"Time between maintenance passes (segment rotation and retention) of the background worker.",
							NULL,
							&eb_maintenance_naptime,
							10000,
							100,
							3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("eventbus.notify_interval",
							"Shortest time between two notifications of one topic (LISTEN \"eventbus.<topic>\").",
							NULL,
							&eb_notify_interval,
							10,
							0,
							60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("eventbus.kafka_brokers",
							   "Kafka bootstrap servers for the relay (host:port, comma-separated); empty: no relay.",
							   NULL,
							   &eb_kafka_brokers,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("eventbus.kafka_properties",
							   "Further librdkafka properties for the relay's producer, as key=value pairs separated by commas.",
							   "Put secrets in eventbus.kafka_properties_file instead: the server logs new values of settings on reload.",
							   &eb_kafka_properties,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("eventbus.kafka_properties_file",
							   "File with further librdkafka properties for the relay, one key=value per line (for secrets).",
							   NULL,
							   &eb_kafka_properties_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("eventbus.relay_max_in_flight",
							"Messages the relay may have sent to Kafka without acknowledgement before it pauses reading WAL.",
							NULL,
							&eb_relay_max_in_flight,
							100000,
							100,
							10000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("eventbus.relay_backfill_batch",
							"Events of a backfill the relay sends before it waits for their acknowledgement and saves the backfill's progress.",
							"At-least-once: after a crash or failed delivery at most this many events of a backfill are sent again.",
							&eb_relay_backfill_batch,
							10000,
							1,
							1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("eventbus.relay_delivery",
							 "How the relay delivers to Kafka: exactly_once (transactional producer, progress kept in Kafka) or at_least_once.",
							 NULL,
							 &eb_relay_delivery,
							 EB_RELAY_DELIVERY_DEFAULT,
							 eb_relay_delivery_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("eventbus.relay_transactional_id",
							   "Kafka transactional.id of this server's relays in exactly_once mode; empty: pg_eventbus-<system identifier>-<database OID>.",
							   "With a value, each database's relay uses the value followed by -<database OID>.",
							   &eb_relay_transactional_id,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("eventbus.relay_progress_topic",
							   "Kafka topic where the relay records, in each Kafka transaction, how far it got (exactly_once mode).",
							   NULL,
							   &eb_relay_progress_topic,
							   EB_RELAY_PROGRESS_TOPIC_DEFAULT,
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("eventbus.relay_commit_interval",
							"Longest time the relay keeps a Kafka transaction open while it has more to send (exactly_once mode).",
							NULL,
							&eb_relay_commit_interval,
							100,
							1,
							60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("eventbus.max_topics",
								"Topics that can be in use at once, across all databases.",
								NULL,
								&eb_max_topics,
								1024,
								16,
								1000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

		DefineCustomIntVariable("eventbus.max_partitions",
								"Partitions that can be in use at once, across all topics and databases.",
								NULL,
								&eb_max_partitions,
								16384,
								64,
								10000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

		DefineCustomIntVariable("eventbus.max_databases",
								"Databases the background workers can serve at once.",
								NULL,
								&eb_max_databases,
								32,
								1,
								10000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	}

	eb_trace_init();

	MarkGUCPrefixReserved("eventbus");

	if (IsBinaryUpgrade)
		return;

	eb_catalog_init();
	eb_consume_init();
	eb_relay_slot_init();
	RegisterXactCallback(eb_xact_callback, NULL);
	RegisterSubXactCallback(eb_subxact_callback, NULL);

	if (process_shared_preload_libraries_in_progress)
	{
		eb_shmem_init();
		eb_worker_register();
		prev_process_utility = ProcessUtility_hook;
		ProcessUtility_hook = eb_process_utility;
	}
}
