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
#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "pg_eventbus.h"
#include "stats.h"
#include "catalog.h"
#include "group.h"
#include "notify.h"
#include "publish.h"
#include "relay.h"
#include "shmem.h"
#include "worker.h"

PG_MODULE_MAGIC;

char	   *eb_database = NULL;
int			eb_max_topics = 1024;
int			eb_max_partitions = 16384;
int			eb_max_event_size = 1048576;
int			eb_maintenance_naptime = 10000;

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

static void
eb_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	TransactionStmt *stmt = NULL;

	if (IsA(parsetree, TransactionStmt))
		stmt = (TransactionStmt *) parsetree;
	if (stmt != NULL && stmt->kind == TRANS_STMT_PREPARE)
		strlcpy(prepare_gid, stmt->gid, sizeof(prepare_gid));

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

void
_PG_init(void)
{
	DefineCustomStringVariable("eventbus.database",
							   "Database served by the pg_eventbus background workers.",
							   NULL,
							   &eb_database,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("eventbus.max_event_size",
							"Largest event accepted by publish, in bytes (value, key and headers).",
							NULL,
							&eb_max_event_size,
							1048576,
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
	}

	MarkGUCPrefixReserved("eventbus");

	if (IsBinaryUpgrade)
		return;

	eb_catalog_init();
	eb_consume_init();
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
